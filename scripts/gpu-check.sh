#!/usr/bin/env bash
# One command that proves a GPU node (what to run first on a new system, and whenever this
# project gets a GPU machine):
#
#   scripts/gpu-check.sh                      # the GPU mlpfctl devices picks
#   scripts/gpu-check.sh --backend rocm       # a given backend
#   scripts/gpu-check.sh --backend cpu --force --preset tiny --steps 6   # the checks on a CPU
#
# One PASS/FAIL/SKIP line per check (devices; 200-step training in the backend's autocast dtype
# with events/s, TFLOP/s and MFU; a process group at world size 1 through NCCL/RCCL; 2-rank DDP
# with >= 2 devices; ONNX export checked on the device; a 4-configuration ASHA study with 2 workers
# sharing the device) and a JSON record in benchmarks/results/gpu_check-<backend>.json.
# Exit 0: every check passed, or there is no GPU here (it says so); 1: a check failed.
# The work is done by benchmarks/gpu_check.py (python -m benchmarks.gpu_check --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${MLPFCTL_PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
cd "$ROOT"
exec "$PY" -m benchmarks.gpu_check "$@"
