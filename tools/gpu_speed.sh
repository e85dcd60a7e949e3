#!/usr/bin/env bash
# Issue 15's GPU measurements as one command that fits a 10-minute slot, on a box with JAX (CUDA), PyTorch
# and timm and no network, from a checkout that carries wheels/ (tools/fetch_wheels.sh):
#
#     OUT=results tools/gpu_speed.sh
#
# 1. where xxs's training step spends its time on this device (bench/step_profile.py, ~1-2 minutes);
# 2. the side-by-side table (bench/speed.py): keras-io, xxs, timm's mobilevit_xxs, xs, s; fp32 and mixed
#    bfloat16; batch 64, 128, 256. It rewrites its report after every model, so when the time budget runs
#    out the report holds every model measured until then.
# BUDGET (seconds, default 540) bounds the whole script; PROFILE_ARGS / SPEED_ARGS replace the defaults
# (a dry run on a CPU: PROFILE_ARGS="--image-size 64 --batch-size 4 --steps 1 --warmup 1"
#  SPEED_ARGS="--variants keras-io xxs --timm --batch-sizes 2 --image-size 64 --warmup 1 --steps 1").
set -uo pipefail
cd "$(dirname "$0")/.."
python -c "import keras" 2>/dev/null || python -m pip install --quiet --no-index --find-links wheels keras==3.15.1
export KERAS_BACKEND=jax
OUT=${OUT:-bench}
BUDGET=${BUDGET:-540}
timeout 150 python bench/step_profile.py --variant xxs --out "$OUT" ${PROFILE_ARGS:---batch-size 64} \
    || echo "step_profile: stopped or failed (exit $?)"
timeout $((BUDGET - SECONDS)) python bench/speed.py --out "$OUT" ${SPEED_ARGS:---variants keras-io xxs xs s \
    --timm --batch-sizes 64 128 256 --precisions float32 mixed_bfloat16} \
    || echo "speed: stopped at the time budget or failed (exit $?); $OUT/speed-*.md has every model measured before"
ls -l "$OUT"
