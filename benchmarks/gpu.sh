#!/bin/sh
# whaled on one GPU, self-contained (torch, numpy, scipy, soundfile; no network), < 5 minutes.
# Prints JSON: real-time factor for one channel and for 64 channels scored together.
# PYTHON=/path/to/python benchmarks/gpu.sh picks the interpreter (default: .venv, else python3).
set -eu
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec timeout 290 "$PYTHON" -W ignore benchmarks/gpu.py
