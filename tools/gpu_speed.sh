#!/usr/bin/env bash
# Issue 15's GPU measurements as one command that fits a 10-minute slot, on a box with JAX (CUDA), PyTorch
# and timm and no network, from a checkout that carries wheels/ (tools/fetch_wheels.sh):
#
#     OUT=results tools/gpu_speed.sh
#
# 1. where xxs's training step spends its time on this device (bench/step_profile.py, ~1-2 minutes);
# 2. the side-by-side table (bench/speed.py): xxs, timm's mobilevit_xxs, keras-io, xs, s, xxs with
#    shifted-sum depthwise convolutions (in that order); fp32 and mixed bfloat16; batch 64 and 256. It
#    rewrites its report after every model, so when the budget runs out the report holds every model
#    measured until then.
# BUDGET (seconds, default 540) bounds the whole script; PROFILE_ARGS / SPEED_ARGS replace the defaults
# (a dry run on a CPU: PROFILE_ARGS="--image-size 64 --batch-size 4 --steps 1 --warmup 1"
#  SPEED_ARGS="--variants xxs keras-io --timm --batch-sizes 2 --image-size 64 --warmup 1 --steps 1").
set -uo pipefail
cd "$(dirname "$0")/.."
source tools/gpu_env.sh
OUT=${OUT:-bench}
BUDGET=${BUDGET:-540}
left() { echo $((BUDGET - SECONDS)); }   # seconds of the budget left (bash's SECONDS: since the script started)
# `timeout` signals its whole process group (bench/speed.py's children too); -k: SIGKILL 15 s later.
if (($(left) > 30)); then
    limit=$(left); ((limit > 150)) && limit=150
    timeout -k 15 "$limit" $PY bench/step_profile.py --variant xxs --out "$OUT" ${PROFILE_ARGS:---batch-size 64} \
        || echo "step_profile: stopped or failed (exit $?)"
else
    echo "step_profile: not started, $(left) s of the budget left"
fi
if (($(left) > 30)); then
    timeout -k 15 "$(left)" $PY bench/speed.py --out "$OUT" ${SPEED_ARGS:---variants xxs keras-io xs s --shifted-depthwise --timm \
        --batch-sizes 64 256 --precisions float32 mixed_bfloat16} \
        || echo "speed: stopped at the budget or failed (exit $?); $OUT/speed-*.md has every model measured before"
else
    echo "speed: not started, $(left) s of the budget left"
fi
ls -l "$OUT"
