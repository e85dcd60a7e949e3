#!/usr/bin/env bash
# Issues 12 and 15 in one command bounded by BUDGET seconds, for a GPU box lent for ~10 minutes whose tool
# returns at most 8 files from $OUT (16 MB each). From a checkout carrying wheels/ and data/flowers256/, with
# the Python that has JAX first on PATH:
#
#     OUT=results BUDGET=530 tools/gpu_lease.sh
#
# (tools/gpu_train.sh is the whole job at 256 px with no budget, for a box of one's own.)
# 1. the input pipeline on this box's cores (bench/pipeline.py, 1 and 16 threads);
# 2. xxs with the `long` recipe at SIZE px (default 160), for as many epochs (<= the recipe's 200) as the
#    measured pipeline rate leaves time for: at 160 px a crop and a training step cost ~(160/256)^2 of what
#    they cost at 256, and the first lease (at 256) was held to 20 epochs by the pipeline;
# 3. the `fixres` stage at 256 px (5 epochs from the long run's last epoch): on the 2-core CPU the same
#    two stages (160 px, then 256) gave the best weights so far (86.71% at 256, README);
# 4. with what is left, the profile of xxs's training step (bench/step_profile.py), then the speed table
#    (bench/speed.py: xxs, xxs with shifted-sum depthwise convolutions, timm, keras-io at batch 64 and 256,
#    fp32; the full table is tools/gpu_speed.sh).
# $OUT gets log.txt (everything printed), results.tar (run folders without checkpoints, bench reports) and
# checkpoints.tar.NN (the two xxs runs' last checkpoints, split in 15 MB parts: `cat checkpoints.tar.* | tar x`).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder to write}
BUDGET=${BUDGET:-530}
SIZE=${SIZE:-160}
WORK=${WORK:-${TMPDIR:-/tmp}/mvlib-lease}
DATA=(--source folder --data-dir "${DATA_DIR:-data/flowers256}")
ARGS=(${ARGS:-})  # extra train options for a dry run, e.g. ARGS="--limit 40 --steps-per-epoch 1 --batch-size 8"
left() { echo $((BUDGET - SECONDS)); }
mkdir -p "$OUT" "$WORK/runs" "$WORK/bench"
exec > >(tee -a "$OUT/log.txt") 2>&1
source tools/gpu_env.sh
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

pack() {  # everything small, then the checkpoints in parts
    tar -cf "$OUT/results.tar" -C "$WORK" --exclude='*.keras' --exclude='*.h5' runs bench 2>/dev/null
    rm -f "$OUT"/checkpoints.tar.*
    (cd "$WORK/runs" && ls xxs-*/ckpt-*.keras >/dev/null 2>&1 && tar -cf - xxs-*/ckpt-*.keras | split -b 15M -d - "$OUT/checkpoints.tar.")
    ls -l "$OUT"
}

echo "== pipeline ($(left) s left)"
timeout 90 $PY bench/pipeline.py "${DATA[@]}" --image-size "$SIZE" --threads 1 16 --batches 8 --out "$WORK/bench"
# Epochs: the training step ran ~2,000-2,800 images/s at 256 px on one H100 (bench/speed-1-x-nvidia-*), so
# ~1,900 x (256/SIZE)^2 x 0.8 at SIZE; the pipeline must keep up with it while the training process shares
# its cores, so count on 0.8 of its measured mixed rate, and 0.8 s per epoch for starting the epoch's
# workers, validation and the checkpoint. 240 s are kept for compiling (the first epoch took ~2 minutes on
# the H100 box), the fixres stage and packing. Too many epochs would lose the run's end (the cosine schedule
# is set at the start).
EPOCHS=${EPOCHS:-$($PY - "$WORK/bench" "$(left)" "$SIZE" <<'EOF'
import json, math, pathlib, sys
rows = [r for f in pathlib.Path(sys.argv[1]).glob("pipeline-*.json") for r in json.loads(f.read_text())["rows"]]
mixed = max([r["images_per_s"] for r in rows if r["mix"] != "none"] or [1000])
epoch_s = 24 * 128 / min(0.8 * mixed, 1900 * (256 / int(sys.argv[3])) ** 2 * 0.8) + 0.8
print(max(20, min(200, math.floor((int(sys.argv[2]) - 240) / epoch_s / 10) * 10)))
EOF
)}
echo "== xxs long at $SIZE px, $EPOCHS epochs ($(left) s left)"
timeout $(($(left) - 100)) $PY -m mvlib train --variant xxs --recipe long --epochs "$EPOCHS" --image-size "$SIZE" \
    "${DATA[@]}" "${ARGS[@]}" --run-dir "$WORK/runs/xxs-long" || echo "xxs long: stopped or failed (exit $?)"
pack
if (($(left) > 60)); then
    echo "== xxs fixres at 256 px ($(left) s left)"
    timeout $(($(left) - 20)) $PY -m mvlib train --variant xxs --recipe fixres --initial-weights "$WORK/runs/xxs-long" \
        "${DATA[@]}" "${ARGS[@]}" --run-dir "$WORK/runs/xxs-long-fixres" || echo "fixres: stopped or failed (exit $?)"
    pack
fi
# What #15 needs next is where xxs's step spends its time, then the table again: xxs (its batch now stays on
# the GPU, as timm's does), xxs with shifted-sum depthwise convolutions (bench/shifted_depthwise.py: 2.2x the
# training speed of the grouped convolution under JAX on the 2-core CPU, 0.5x under TensorFlow), timm, keras-io.
if (($(left) > 60)); then
    echo "== profile ($(left) s left)"
    timeout -k 10 $(($(left) - 20)) $PY bench/step_profile.py --variant xxs --out "$WORK/bench" ${PROFILE_ARGS:---batch-size 64} \
        || echo "profile: stopped or failed (exit $?)"
    pack
fi
if (($(left) > 60)); then
    echo "== speed ($(left) s left)"
    timeout -k 10 $(($(left) - 20)) $PY bench/speed.py --out "$WORK/bench" ${SPEED_ARGS:---variants xxs keras-io \
        --shifted-depthwise --timm --batch-sizes 64 256 --precisions float32} || echo "speed: stopped or failed (exit $?)"
    pack
fi
echo "== done, $(left) s of the budget left"
