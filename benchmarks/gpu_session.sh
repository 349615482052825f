#!/usr/bin/env bash
# One GPU session for the CUDA back end (issue 12), sized for about 10 minutes of an H100/H200 of the `device`
# tool (.gpu_carry/ is in .gitignore). Two steps:
#
#   benchmarks/gpu_session.sh prepare   # here, on the CPU machine: copies what the device machine lacks into
#                                       # .gpu_carry/ (rootbench models, the scipy-openblas32 wheel) and ignores it
#   device run, carry [".gpu_carry"], timeout_s 600, command:
#       bash benchmarks/gpu_session.sh run
#
# `run` (on the device machine: nvcc, torch, onnxruntime (CPU), pytest are in its image; nothing can be fetched)
# installs the carried wheel, runs the GPU tests (tests/cuda) against onnxruntime and the GPU benchmark
# (benchmarks/gpu.py), and writes under $OUT: env.txt, tests.log, bench.log, gpu.json (written after every
# measurement, so a run cut short keeps what it measured), gpu.md, gpu_batch.png, gpu_flops.png. About 9 minutes
# at most (tests 200 s, benchmark 300 s, plus the start).
set -uo pipefail
cd "$(dirname "$0")/.."
step="${1:-run}"

if [ "$step" = prepare ]; then
   mkdir -p .gpu_carry/whl
   rb="${PYSOFIE_ROOTBENCH:-../shared/models/rootbench}"
   cp -r "$rb" .gpu_carry/rootbench
   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .gpu_carry/whl scipy-openblas32
   du -sh .gpu_carry
   exit 0
fi

OUT="${OUT:-/tmp/pysofie-gpu-out}"
mkdir -p "$OUT"
PY=python3
if ls .gpu_carry/whl/*.whl >/dev/null 2>&1; then
   $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .gpu_carry/whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYSOFIE_ROOTBENCH="$PWD/.gpu_carry/rootbench" PYSOFIE_CACHE_DIR=/tmp/pysofie-cache PYTHONUNBUFFERED=1
{
   date -u; git log -1 --format='commit %H %s' 2>/dev/null; nvidia-smi -L; nvcc --version | tail -1
   $PY -c "import numpy, onnx, onnxruntime, torch; print('numpy', numpy.__version__, 'onnx', onnx.__version__,
'onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers(), 'torch', torch.__version__)"
   $PY -c "from pysofie.build.cuda import find_cublas, gpu_archs, gpu_count; print('gpus', gpu_count(),
'archs', gpu_archs(), 'cublas', find_cublas())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# GPU tests (each family vs onnxruntime, batch growth, device arrays, rootbench + ResNet-18)
timeout 200 $PY -m pytest -q -p no:cacheprovider -n 0 tests/cuda/test_cuda_gpu.py -rs 2>&1 | tee "$OUT/tests.log" | tail -25

# the benchmark: rootbench + ResNet-18 at batch 1..1024
timeout 300 $PY benchmarks/gpu.py --budget 1.5 --out "$OUT" > "$OUT/bench.log" 2>&1; tail -40 "$OUT/bench.log"
ls -l "$OUT"
