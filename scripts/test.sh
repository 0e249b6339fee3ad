#!/usr/bin/env bash
# descend's one test command (README "Tests"): installs into ./.venv if needed, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
. .venv/bin/activate
# torch first and pinned to the local CPU build: an unpinned torch would pull a multi-GB CUDA build.
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e ".[dev]"
# PSGD Kron's reference declares triton (a GPU compiler) that its CPU path never imports: install it alone
python -c "import kron_torch" 2>/dev/null || pip install -q --no-deps kron-torch==0.3.3
ruff check src tests benchmarks
mypy  # config and files: [tool.mypy] in pyproject.toml
# headless Chromium renders the benchmark report in tests/bench/test_report.py (CI runs as root)
command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
    || echo "warning: chromium not installed; tests/bench/test_report.py will fail in CI"
# PostgreSQL on 127.0.0.1 for tests/bench/test_postgres.py (two workers sharing one study); stopped on exit
. scripts/postgres.sh
start_postgres
python -m pytest -q -n 2 "$@"
