#!/usr/bin/env bash
# descend's one test command (README "Tests"): installs into ./.venv if needed, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
. .venv/bin/activate
# torch first and pinned to the local CPU build: an unpinned torch would pull a multi-GB CUDA build.
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e ".[dev]"
ruff check src tests benchmarks
python -m pytest -q -n 2 "$@"
