#!/usr/bin/env bash
# Regenerates the example models under models/: simulate the training data,
# then train and export (needs the training packages, see models/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${TWINFLOW_PYTHON:-.venv/bin/python}"
data="$(mktemp -d)/train.csv"
cargo run --release --quiet -- simulate --csv "$data" --frames 800 --units 40 \
    --scenario-file training/sim.yaml
"$py" training/train.py --data "$data" --out models "$@"
