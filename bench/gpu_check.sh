#!/usr/bin/env bash
# The GPU checks of issue 11 on a bare GPU machine, after `make install`: one Markdown report.
#
#   bash bench/gpu_check.sh [OUT.md]     default OUT: bench/out/gpu_check.md
#
# Without CUDA it writes a report saying so and exits 0. Expect 5-10 minutes on one GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" bench/gpu_check.py --out "${1:-bench/out/gpu_check.md}"
