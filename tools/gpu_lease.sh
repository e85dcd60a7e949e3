#!/usr/bin/env bash
# Issues 12 and 15 in one command bounded by BUDGET seconds, for a GPU box lent for ~10 minutes whose tool
# returns at most 8 files from $OUT (16 MB each). From a checkout carrying wheels/, data/flowers256/ and,
# after the first lease, runs/lease/ (what the last lease returned), with the Python that has JAX first on PATH:
#
#     OUT=results BUDGET=530 tools/gpu_lease.sh
#
# (tools/gpu_train.sh is the whole job at 256 px with no budget, for a box of one's own.)
# 1. the input pipeline on this box's cores at SIZE px (bench/pipeline.py: 16 workers, threads and processes);
#    training then uses whichever made more batches (MVLIB_LOADER);
# 2. issue 15 in SPEED_BUDGET seconds (0 skips it, once measured): the profile of xxs's training step
#    (bench/step_profile.py, PROFILE_BUDGET of them), then the speed table (bench/speed.py: xxs, xxs with
#    shifted-sum depthwise convolutions, timm, keras-io);
# 3. issue 12 with the rest: xxs with the `long` recipe at SIZE px (default 160) for its full 200 epochs --
#    more than one lease holds (the H100 box averaged ~4.5 s per epoch at 160 px, checkpoints included, and
#    ~85 s compiling), so the run resumes from runs/lease/xxs-long when that was carried in and stops when
#    the budget does, at the end of an epoch (on SIGTERM `train` commits the epoch it is in); a resumed run
#    continues the schedule with the very batches an uninterrupted one would see. Once it has finished, the
#    `fixres` stage at 256 px (5 epochs from its last epoch).
# $OUT gets log.txt (everything printed), results.tar (run folders without weights, bench reports) and
# checkpoints.tar.NN (the runs' last checkpoints in 15 MB parts). For the next lease:
#     rm -rf runs/lease && mkdir -p runs/lease && cat <files_at>/checkpoints.tar.* | tar x -C runs/lease &&
#     tar xf <files_at>/results.tar -C runs/lease --strip-components 1 runs
# and carry ["data/flowers256", "wheels", "runs/lease"] (~62 MiB of the 64).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the folder to write}
BUDGET=${BUDGET:-530}
SPEED_BUDGET=${SPEED_BUDGET:-230}
PROFILE_BUDGET=${PROFILE_BUDGET:-110}
SIZE=${SIZE:-160}
WORK=${WORK:-${TMPDIR:-/tmp}/mvlib-lease}
DATA=(--source folder --data-dir "${DATA_DIR:-data/flowers256}")
ARGS=(${ARGS:-})  # extra train options for a dry run, e.g. ARGS="--limit 40 --steps-per-epoch 1 --batch-size 8 --epochs 2"
left() { echo $((BUDGET - SECONDS)); }
mkdir -p "$OUT" "$WORK/runs" "$WORK/bench"
exec > >(tee -a "$OUT/log.txt") 2>&1
source tools/gpu_env.sh
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
for run in runs/lease/xxs-*/; do  # what earlier leases trained (a run folder is resumed where it stopped)
    # (a box still warm from an earlier call of this session holds a newer state of the same run)
    [ -f "$run/state.json" ] && [ ! -e "$WORK/runs/$(basename "$run")" ] && cp -r "$run" "$WORK/runs/" && echo "carried in: $run"
done

pack() {  # everything small, then the checkpoints in parts
    tar -cf "$OUT/results.tar" -C "$WORK" --exclude='*.keras' --exclude='*.h5' runs bench 2>/dev/null
    rm -f "$OUT"/checkpoints.tar.*
    (cd "$WORK/runs" && ls xxs-*/ckpt-*.keras >/dev/null 2>&1 && tar -cf - xxs-*/ckpt-*.keras | split -b 15M -d - "$OUT/checkpoints.tar.")
    ls -l "$OUT"
}
finished() {  # has the run in $1 trained all its epochs?
    $PY -c "import json, sys; s = json.load(open(sys.argv[1])); sys.exit(s['epoch'] < s['settings']['recipe']['epochs'])" \
        "$WORK/runs/$1/state.json" 2>/dev/null
}

echo "== pipeline ($(left) s left)"
timeout 90 $PY bench/pipeline.py "${DATA[@]}" --image-size "$SIZE" --workers 16 --batches 8 --mix mixup-or-cutmix --out "$WORK/bench"
# Train with the loader that made more mixed batches here (threads or worker processes; threads if unmeasured).
export MVLIB_LOADER=$($PY -c "import glob, json, sys; rows = [r for f in glob.glob(sys.argv[1]) for r in json.load(open(f))['rows']]
print(max(rows, key=lambda r: r['images_per_s'])['loader'] if rows else 'threads')" "$WORK/bench/pipeline-*.json")
echo "loader: $MVLIB_LOADER"

if ((SPEED_BUDGET > 0)); then
    SPEED_END=$((SECONDS + SPEED_BUDGET))
    echo "== profile ($(left) s left)"
    timeout -k 10 "$PROFILE_BUDGET" $PY bench/step_profile.py --variant xxs --out "$WORK/bench" ${PROFILE_ARGS:---batch-size 256} \
        || echo "profile: stopped or failed (exit $?)"
    echo "== speed ($(left) s left)"
    # xxs, timm, keras-io, then xxs with shifted-sum depthwise convolutions (bench/shifted_depthwise.py:
    # 2.2x the training speed of the grouped convolution under JAX on the 2-core CPU, 0.5x under
    # TensorFlow); the report is rewritten after each model.
    timeout -k 10 $((SPEED_END - SECONDS)) $PY bench/speed.py --out "$WORK/bench" ${SPEED_ARGS:---variants xxs keras-io \
        --shifted-depthwise --timm --batch-sizes 256 --precisions float32} || echo "speed: stopped or failed (exit $?)"
    pack
fi

echo "== xxs long at $SIZE px ($(left) s left)"
# SIGTERM 30 s before the budget ends: `train` finishes the epoch it is in and commits it; KILL 20 s later.
timeout -k 20 $(($(left) - 30)) $PY -m mvlib train --variant xxs --recipe long --image-size "$SIZE" "${DATA[@]}" "${ARGS[@]}" \
    --no-evaluate --run-dir "$WORK/runs/xxs-long" || echo "xxs long: stopped (exit $?); the next lease resumes it"
pack
if finished xxs-long && ! finished xxs-long-fixres && (($(left) > 150)); then
    echo "== xxs fixres at 256 px ($(left) s left)"
    timeout -k 20 $(($(left) - 30)) $PY -m mvlib train --variant xxs --recipe fixres --initial-weights "$WORK/runs/xxs-long" \
        "${DATA[@]}" "${ARGS[@]}" --run-dir "$WORK/runs/xxs-long-fixres" || echo "fixres: stopped (exit $?)"
    pack
fi
# (a second call on a still-warm box compiles from this cache: first epoch 16 s instead of 76 s on the H200)
du -sh "$JAX_COMPILATION_CACHE_DIR" 2>/dev/null
echo "== done, $(left) s of the budget left"
