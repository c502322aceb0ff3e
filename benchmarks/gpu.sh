#!/usr/bin/env bash
# The CUDA tests (tests/test_cuda.py), then the benchmark suite on a CUDA GPU in at most 8
# minutes (each step has its own time limit; every section writes its tables as soon as it
# finishes, so a step cut short keeps what the other steps measured). Without a GPU it runs the same steps on the CPU with --quick (a dry run that
# checks the script and the CUDA-ready code paths end to end).
#
#   bash benchmarks/gpu.sh            # results in benchmarks/results/cuda-*.{json,md},
#                                     # plot in docs/scaling-cuda.png
#   PYTHON=/path/to/python bash benchmarks/gpu.sh
#
# On CUDA: SDPA picks the flash / memory-efficient kernels (bf16 autocast: flash), memory is
# torch.cuda's peak allocated bytes, torch.compile uses inductor + Triton.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"

if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "$PY cannot import torch: install the bench extra, or set PYTHON=/path/to/python" >&2
  exit 2
fi
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  DEVICE=cuda
  QUICK=""
  OUT=benchmarks/results
  PLOT=docs/scaling-cuda.png
  "$PY" -c 'import torch; print("GPU:", torch.cuda.get_device_name(), "torch", torch.__version__)'
else
  DEVICE=cpu
  QUICK="--quick"
  OUT=$(mktemp -d)
  PLOT=$OUT/scaling.png
  echo "no CUDA device: dry run of the GPU script on the CPU (--quick, tiny shapes) in $OUT"
fi

status=0
step() {  # step <seconds> <run.py arguments...>
  local limit=$1
  shift
  echo "== benchmarks/run.py --device $DEVICE $QUICK $* (limit ${limit}s)"
  timeout "$limit" "$PY" benchmarks/run.py --device "$DEVICE" $QUICK --out "$OUT" "$@" || {
    echo "   step failed or timed out (exit $?)"
    status=1
  }
}

echo "== pytest tests/test_cuda.py (limit 100s)"
timeout 100 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py -W ignore::DeprecationWarning \
  || { echo "   CUDA tests failed or timed out (exit $?)"; status=1; }
step 180 --sections peak,forward,train,vpf,memory
step 110 --sections compile
step 110 --sections scaling --plot "$PLOT"
step 60 --sections chunked
exit $status
