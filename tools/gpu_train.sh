#!/usr/bin/env bash
# The GPU run, as one command on a box with JAX (CUDA) and no TensorFlow or network, from a checkout that
# carries wheels/ (tools/fetch_wheels.sh) and data/flowers256/ (tools/pack_photos.py):
#
#     OUT=results tools/gpu_train.sh
#
# Measures the input pipeline on this machine's cores (bench/pipeline.py: can it feed ~2,000 images/s?),
# then trains xxs with the "long" recipe, then its "fixres" stage (5 epochs at 256 from the long run's last
# epoch), and the keras-io model with the keras-io recipe, on JAX; writes the run folders under $OUT
# (default: runs/) and prints each run's summary. On one H100 box the first epoch of each run compiled for
# ~1.5-2 minutes, and its 16 cores cropped ~1,300 images/s at 256 px (the first lease, README), so the 200
# epochs should take ~8-10 minutes more -- an estimate; a run prints its own after its first steps.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/gpu_env.sh
OUT=${OUT:-runs}
# ARGS: extra train options, e.g. ARGS="--epochs 1 --limit 64" for a dry run of this script on a CPU
ARGS=(--source folder --data-dir ${DATA_DIR:-data/flowers256} ${ARGS:-})
$PY bench/pipeline.py --data-dir ${DATA_DIR:-data/flowers256} --out "$OUT"
$PY -m mvlib train --variant xxs --recipe long "${ARGS[@]}" --run-dir "$OUT/xxs-long"
$PY -m mvlib train --variant xxs --recipe fixres --initial-weights "$OUT/xxs-long" "${ARGS[@]}" --run-dir "$OUT/xxs-long-fixres"
$PY -m mvlib train --variant keras-io --recipe keras-io "${ARGS[@]}" --run-dir "$OUT/keras-io-keras-io"
