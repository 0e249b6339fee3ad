#!/usr/bin/env bash
# descend's quick start (README): install into ./.venv, run the quick benchmark suite, write the HTML report.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
. .venv/bin/activate
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0   # CPU build; never an unpinned torch
pip install -q -e ".[bench]"
descend bench run --suite quick --storage bench.db --report bench-report.html "$@"
