#!/usr/bin/env bash
# descend's quick start (README): install into ./.venv and train a small model with several optimizers.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
. .venv/bin/activate
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0   # CPU build; never an unpinned torch
pip install -q -e .
python -m descend.demo "$@"
