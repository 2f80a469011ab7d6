#!/usr/bin/env bash
# Issue 13's GPU figures on a lent GPU machine, in one device call (run from the repo root there):
#   make gpu-wheels here, then the device tool's run with carry [".whl"] and command `bash tests/bench/gpu_trainer.sh`.
# Nothing can be downloaded there, so the trainer image's pins travel as wheels and go on top of the machine's own
# torch; results.json, nvidia-smi's view and the log come back under $OUT.
set -euo pipefail
out="${OUT:-/tmp/gpu-bench}"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/nvidia-smi.csv" || true
python3 tests/bench/gpu_trainer.py --out "$out" 2>&1 | tee "$out/log.txt"
