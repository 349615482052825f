#!/usr/bin/env bash
# One GPU session for the CUDA back end (issue 12) on an H100/H200 of the `device` tool, within its 15 minutes.
# .gpu_carry/ and .gpu_ort/ are in .gitignore. Steps:
#
#   benchmarks/gpu_session.sh prepare   # here, on the CPU machine: copies what the device machine lacks into
#                                       # .gpu_carry/ (rootbench models, the scipy-openblas32 wheel) and the
#                                       # onnxruntime-gpu wheel (255 MB, CUDA 13 build) cut into 48 MiB parts in
#                                       # .gpu_ort/ (a call carries at most 64 MiB); prints the device calls below
#   optional, for the ORT CUDA columns (the image's onnxruntime is CPU-only; its CUDA 13, cuDNN, cuFFT and
#   cuRAND wheels are what onnxruntime-gpu needs): one device call per part, back to back (a machine stays warm
#   about 30 s after a call; a cold start loses the parts, and `run` then says so and goes on without ORT CUDA):
#       carry [".gpu_ort/part00"], timeout_s 60, command: bash benchmarks/gpu_session.sh stage
#       ... the same for part01, part02, ...
#   then, on the same warm machine:
#       carry [".gpu_carry"], timeout_s 600, command: bash benchmarks/gpu_session.sh run
#
# `run` (device machine: nvcc, torch, onnxruntime (CPU), pytest are in its image; nothing can be fetched) installs
# the carried wheels, runs the GPU tests (tests/cuda/test_cuda_gpu.py: every operator family, the recurrent layers,
# the rootbench models and ResNet-18 against onnxruntime) and the GPU benchmark (benchmarks/gpu.py: rootbench +
# ResNet-18 at batch 1..1024 against ORT's CUDA EP with I/O binding; its gpu.md ends with issue 12's targets:
# batch >= 64 against ORT CUDA, Linear_64 at batch 1 below 30 µs), and writes under $OUT: env.txt, tests.log,
# bench.log, gpu.json (written after every measurement, so a run cut short keeps what it measured), gpu.md (with
# the cuBLASLt epilogues on / off table), gpu_batch.png, gpu_flops.png, steps.txt (each step's exit status and
# seconds). Its own budget: 540 s of wall time (PYSOFIE_GPU_BUDGET_S), each step's timeout taken from what is left
# (install <= 90 s, tests <= 230 s, benchmark <= 330 s with a deadline 30 s earlier for its report), so a device call
# with timeout_s 600 ends by itself, with its results under $OUT even when a step fails or times out.
#
#   benchmarks/gpu_session.sh check     # here: shell syntax, the benchmark's --dry-run (CPU columns, batch 1),
#                                       # the GPU tests' collection (they skip without a GPU), the emulated epilogues
#   OUT=/tmp/x benchmarks/gpu_session.sh run   # here too (no GPU): every step runs and fails or skips cleanly
set -uo pipefail
cd "$(dirname "$0")/.."
step="${1:-run}"
PY="${PYTHON:-python3}"
ORT_WHEEL_SPEC="${PYSOFIE_ORT_WHEEL:-onnxruntime-gpu==1.31.1}"  # the override: dry runs of the staging
PARTS=/tmp/pysofie-ort-parts

if [ "$step" = prepare ]; then
   mkdir -p .gpu_carry/whl .gpu_ort
   rb="${PYSOFIE_ROOTBENCH:-../shared/models/rootbench}"
   rm -rf .gpu_carry/rootbench && cp -r "$rb" .gpu_carry/rootbench || exit 1
   dl=(-m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
       --platform manylinux2014_x86_64)
   $PY "${dl[@]}" -d .gpu_carry/whl scipy-openblas32 || exit 1
   if [ "${PYSOFIE_NO_ORT_GPU:-0}" != 1 ]; then
      tmp=$(mktemp -d)
      $PY "${dl[@]}" -d "$tmp" "$ORT_WHEEL_SPEC" || exit 1
      whl=$(ls "$tmp"/*.whl | head -1)
      rm -f .gpu_ort/part* .gpu_ort/MANIFEST
      split -b 48M -d "$whl" .gpu_ort/part
      { basename "$whl"; sha256sum "$whl" | cut -d' ' -f1; ls .gpu_ort | grep '^part' | wc -l; } > .gpu_ort/MANIFEST
      rm -rf "$tmp"
      echo "onnxruntime-gpu: $(sed -n 1p .gpu_ort/MANIFEST) in $(sed -n 3p .gpu_ort/MANIFEST) parts; device calls:"
      for p in .gpu_ort/part*; do
         echo "  carry [\"$p\", \".gpu_ort/MANIFEST\"], timeout_s 60: bash benchmarks/gpu_session.sh stage"
      done
   fi
   echo "  carry [\".gpu_carry\"], timeout_s 600: bash benchmarks/gpu_session.sh run"
   du -sh .gpu_carry .gpu_ort 2>/dev/null
   exit 0
fi

if [ "$step" = stage ]; then  # on the device machine: keep the carried parts outside the tree copy
   mkdir -p "$PARTS"
   cp -f .gpu_ort/part* .gpu_ort/MANIFEST "$PARTS"/ 2>/dev/null
   ls -l "$PARTS"
   exit 0
fi

if [ "$step" = check ]; then
   bash -n "$0" || exit 1
   export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
   OUT="${OUT:-$(mktemp -d)}"
   $PY benchmarks/gpu.py --dry-run --models Linear_64 RNN_d10_L20_h8_B1 --out "$OUT" | tail -8 || exit 1
   $PY -m pytest -q -p no:cacheprovider -n 0 --collect-only tests/cuda/test_cuda_gpu.py | tail -2
   # the epilogue paths on the emulated CUDA runtime (what the GPU tests repeat on the device)
   $PY -m pytest -q -p no:cacheprovider -n 0 tests/cuda/test_cuda_emulated.py -k epilogue | tail -2
   exit 0
fi

OUT="${OUT:-/tmp/pysofie-gpu-out}"
mkdir -p "$OUT"
# The wall-time budget of `run` (the device tool allows 600 s a command): each step's timeout is what is left,
# capped, minus a reserve for writing the report; every step's exit status and seconds go to $OUT/steps.txt.
T0=$(date +%s)
BUDGET="${PYSOFIE_GPU_BUDGET_S:-540}"
RESERVE=25
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
cap() {  # cap MAX: seconds a step may take now (at most MAX, leaving the reserve; at least 5)
   local l=$(( $(left) - RESERVE ))
   [ "$l" -gt "$1" ] && l=$1
   [ "$l" -lt 5 ] && l=5
   echo "$l"
}
step_done() { echo "$1 exit=$2 seconds=$3 left=$(left)" | tee -a "$OUT/steps.txt"; }
: > "$OUT/steps.txt"
echo "budget ${BUDGET} s" >> "$OUT/steps.txt"

t=$(date +%s)
SITE=""
if ls .gpu_carry/whl/*.whl >/dev/null 2>&1; then
   timeout "$(cap 90)" $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .gpu_carry/whl/*.whl && SITE=/tmp/site
fi
# onnxruntime-gpu from the staged parts, when all arrived and the checksum matches
ORT_NOTE="onnxruntime-gpu: not staged (no ORT CUDA columns)"
if [ -f "$PARTS/MANIFEST" ]; then
   name=$(sed -n 1p "$PARTS/MANIFEST"); sum=$(sed -n 2p "$PARTS/MANIFEST"); n=$(sed -n 3p "$PARTS/MANIFEST")
   have=$(ls "$PARTS" | grep -c '^part')
   if [ "$have" = "$n" ]; then
      cat "$PARTS"/part* > "/tmp/$name"
      if [ "$(sha256sum "/tmp/$name" | cut -d' ' -f1)" = "$sum" ] && timeout "$(cap 120)" $PY -m pip install -q \
            --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-ort "/tmp/$name"; then
         SITE="/tmp/site-ort${SITE:+:$SITE}"
         ORT_NOTE="onnxruntime-gpu: installed from $n staged parts ($name)"
      else
         ORT_NOTE="onnxruntime-gpu: staged parts do not match the checksum or did not install (no ORT CUDA columns)"
      fi
   else
      ORT_NOTE="onnxruntime-gpu: $have of $n parts staged (no ORT CUDA columns)"
   fi
fi
step_done install 0 $(( $(date +%s) - t ))
export PYTHONPATH="$PWD/src:$PWD${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
export PYSOFIE_ROOTBENCH="$PWD/.gpu_carry/rootbench" PYSOFIE_CACHE_DIR=/tmp/pysofie-cache PYTHONUNBUFFERED=1
t=$(date +%s)
{
   date -u; git log -1 --format='commit %H %s' 2>/dev/null || echo "commit: not a git checkout"
   timeout 20 nvidia-smi -L; timeout 20 nvcc --version | tail -1
   echo "$ORT_NOTE"
   timeout 60 $PY -c "import numpy, onnx, onnxruntime, torch; print('numpy', numpy.__version__, 'onnx', onnx.__version__,
'onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers(), 'torch', torch.__version__)"
   timeout 60 $PY -c "from pysofie.build.cuda import find_cublas, gpu_archs, gpu_count; print('gpus', gpu_count(),
'archs', gpu_archs(), 'cublas', find_cublas())"
} > "$OUT/env.txt" 2>&1
step_done env 0 $(( $(date +%s) - t ))
cat "$OUT/env.txt"

# GPU tests (each family vs onnxruntime, cuBLASLt epilogues on and off, recurrent layers, batch growth, device
# arrays, rootbench + ResNet-18); their libraries compile in parallel at the first test
t=$(date +%s)
timeout "$(cap 230)" $PY -m pytest -q -p no:cacheprovider -n 0 tests/cuda/test_cuda_gpu.py -rs -s --durations=8 \
   > "$OUT/tests.log" 2>&1
rc=$?
step_done tests "$rc" $(( $(date +%s) - t ))
grep -E "passed|failed|error|cuBLASLt had no algorithm" "$OUT/tests.log" | tail -5
tail -30 "$OUT/tests.log"

# the benchmark: rootbench + ResNet-18 at batch 1..1024 (Linear_64, ResNet-18 and the large convolution first),
# with and without cuBLASLt epilogues; it starts no measurement after its deadline and then writes its report
t=$(date +%s)
tb=$(cap 330)
timeout "$tb" $PY benchmarks/gpu.py --budget 1.5 --deadline $(( tb - 30 )) --out "$OUT" > "$OUT/bench.log" 2>&1
rc=$?
step_done bench "$rc" $(( $(date +%s) - t ))
if [ ! -f "$OUT/gpu.md" ] && [ -f "$OUT/gpu.json" ]; then  # cut short: the report from the rows it wrote
   timeout 60 $PY benchmarks/gpu.py --report "$OUT/gpu.json" >> "$OUT/bench.log" 2>&1
   step_done report "$?" 0
fi
tail -60 "$OUT/bench.log"
ls -l "$OUT"
