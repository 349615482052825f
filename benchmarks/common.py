"""What the benchmark scripts share: interleaved timing, the CPU's name and vector ISA, run metadata, writing the
JSON and Markdown results, and matplotlib (optional) for the charts.

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import interleaved, cpu_name, isa, run_meta, write_results, pyplot
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Optional

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")


def interleaved(fns: dict[str, Callable[[], object]], reps: int, target_s: float = 0.02,
                budget_s: Optional[float] = 8.0, min_reps: int = 5, warmup: int = 2, cpu_time: bool = False):
    """Median seconds per call of each function; the repetitions alternate between the functions (forward, then
    backward), so that a change of machine load hits all of them alike.

    Each function is first called `warmup` times. A repetition calls a function `inner` times in a row, enough
    for about target_s (at most 1000; target_s=0: once). With budget_s, slow functions get fewer repetitions
    (at least min_reps) so that all repetitions together take about budget_s; budget_s=None: always `reps`.
    Returns {name: median wall seconds per call}; with cpu_time=True, (wall medians, process CPU medians)."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    inner = {k: 1 for k in fns}
    if target_s > 0 or budget_s is not None:
        total = 0.0
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            one = max(time.perf_counter() - t0, 1e-7)
            if target_s > 0:
                inner[k] = max(1, min(1000, int(target_s / one)))
            total += one * inner[k]
        if budget_s is not None:
            reps = max(min_reps, min(reps, int(budget_s / total)))
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    keys = list(fns)
    for r in range(reps):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            f, n = fns[k], inner[k]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                f()
            cpu[k].append((time.process_time() - c0) / n)
            wall[k].append((time.perf_counter() - t0) / n)
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    if cpu_time:
        return med_wall, {k: statistics.median(v) for k, v in cpu.items()}
    return med_wall


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def isa(flags=ISA_FLAGS) -> list[str]:
    """The vector instruction sets among `flags` that this CPU has (those that matter for the kernels)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [x for x in flags if x in have]
    except OSError:
        pass
    return []


def run_meta(script: str, argv=None, **extra) -> dict:
    """What every result file records: date, CPU, ISA, cores, load, Python, and the command that made it."""
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "cpu": cpu_name(),
            "machine": platform.machine(), "isa": isa(), "cores": os.cpu_count(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else [],
            "python": platform.python_version(),
            "command": " ".join(["python", script, *(argv if argv is not None else sys.argv[1:])])}
    meta.update(extra)
    return meta


def _write(path: str, text: str) -> None:
    """Write through a temporary file in the same directory, then rename (no half-written result file)."""
    from pysofie.build.fs import atomic_write
    atomic_write(path, text)


def write_json(path: str, obj) -> None:
    _write(path, json.dumps(obj, indent=1) + "\n")


def write_results(base: str, data: dict, markdown: Optional[str] = None) -> None:
    """base.json (data) and, given the table, base.md."""
    write_json(base + ".json", data)
    if markdown is not None:
        _write(base + ".md", markdown)


def pyplot(quiet: bool = False):
    """matplotlib.pyplot with the Agg backend, or None (and a note) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if not quiet:
            print("(matplotlib not installed: no chart)")
        return None
    return plt
