import os

# Tests compile at -O1: speed is not what they test (benchmarks do that).
os.environ.setdefault("PYSOFIE_OPT", "1")
