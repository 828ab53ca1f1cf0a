#!/usr/bin/env bash
# One slot of one of issue 14's training chains, under DDP on 2 GPUs unless GPUS says otherwise
# (BENCHMARKS.md, "Issue 14's wide recipe from the bundled model" and what follows it). CHAIN picks the
# chain (default: the one whose last kept slot is the bundled model):
#   wide:    configs/small_wide_224.toml with a 20000-step schedule, from the capture-like model (run to
#            its end; its last slot was the bundled model until the random stage replaced it, so it can no
#            longer be continued from the repository);
#   outward: configs/small_outward_224.toml (6000 steps), from the wide chain's last slot (run to its end
#            on 2026-11-30 and not kept, so it has no kept slot: BENCHMARKS.md);
#   varied:  configs/small_varied_224.toml (6000 steps), the same from the wide chain's last slot, with
#            room orbits and arcs whose views each have their own height and aim point (run to its end
#            on 2026-11-30; its weights were not kept, the random stage started from them);
#   random:  configs/small_random_224.toml (2400 steps, one slot), the varied recipe with `random` trained
#            on, from the varied stage's last slot (put in fast3r/weights/fast3r-small-224 for the run).
#            Its last slot was the bundled model from 2026-11-30 until the long stage replaced it;
#   random_long: configs/small_random_long_224.toml, that recipe on an 8000-step schedule from the random
#            stage's last slot (2026-12-01: one 2-GPU slot, then two 1-GPU slots). Its last slot was the
#            bundled model until the random_rooms stage replaced it;
#   random_rooms: configs/small_random_rooms_224.toml (7200 steps), from the long stage's end, with `random`
#            rooms drawn more often (2026-12-01, two slots on one H200). Its last slot was the bundled model
#            until the wide_baseline stage replaced it;
#   fresh_rooms: configs/small_fresh_rooms_224.toml (7200 steps), the rooms stage's recipe on new scenes,
#            from the rooms stage's end (run 2026-12-01, two slots on one H200; not kept, so it has no
#            kept slot and starts again from the bundled model);
#   wide_baseline: configs/small_wide_baseline_224.toml (7200 steps), from the rooms stage's end, with
#            `orbit` and `random` drawn more often still (2026-12-01, two slots on one H200). Its last slot
#            was the bundled model until the wide_random stage replaced it;
#   wide_random: configs/small_wide_random_224.toml (9000 steps), from the wide-baseline stage's end, with
#            half the samples `random`, at its config's pool rate (0.5) (2026-12-01, three slots on one
#            H200). Its last slot was the bundled model until the more_scenes stage replaced it;
#   more_scenes: configs/small_more_scenes_224.toml (9000 steps), the wide random recipe on twice the new
#            scenes per step (1.0, all rendered by the CPU workers), from the wide random stage's end
#            (2026-12-01, three slots on one H200). Its last slot was the bundled model until the
#            fewer_draws stage replaced it;
#   colour_jitter: configs/small_colour_jitter_224.toml (9000 steps), the more-scenes recipe with each
#            view's colours jittered (`data.augment`), from the more-scenes stage's end (run to its end on
#            2026-12-02 and not kept, so it has no kept slot and starts again from the bundled model);
#   fewer_draws: configs/small_fewer_draws_224.toml (9000 steps), the more-scenes recipe at 1.25 new
#            scenes per step, from the more-scenes stage's end (2026-12-02, two slots on one H200). Its
#            last slot was the bundled model until the lighter_scenes stage replaced it;
#   lighter_scenes: configs/small_lighter_scenes_224.toml (9000 steps), the fewer-draws recipe on pool
#            scenes of 12 views at 1.6 new scenes per step, from the fewer-draws stage's end (2026-12-02,
#            two slots on one H200). Its last slot was the bundled model until the more_random stage
#            replaced it;
#   more_random: configs/small_more_random_224.toml (9000 steps), the lighter-scenes recipe with 10 of 16
#            samples `random` instead of 8, from the lighter-scenes stage's end (2026-12-02, two slots on
#            one H200). Its last slot was the bundled model until the more_random_again stage replaced it;
#   more_random_again: configs/small_more_random_again_224.toml (9000 steps), the more-random recipe
#            unchanged on new scenes, from the more-random stage's end (2026-12-02, two slots on one
#            H200). Its last slot, the schedule's end, is the bundled model;
#   random_eleven: configs/small_random_eleven_224.toml (9000 steps), the more-random recipe with 11 of 16
#            samples `random` and 2 `orbit`, from the bundled model. Planned, not yet run: it has no kept
#            slot, so its first slot starts from the bundled model.
# Run in the repository root of the GPU machine's copy, with $OUT set (the device tool sets it):
#   bash benchmarks/train_chain.sh          # MIN=8.0 minutes of training; MIN=9.0 for a session's last call
# GPUS=1 runs the slot on one GPU when no 2-GPU machine is lent: the batch per GPU stays 16, so each step
# sees half the samples of a 2-GPU step. POOL_RATE and POOL_SHARE override the new scenes per step and the
# share of them rendered on the GPU (data.pool_scenes_per_step, data.pool_device_share).
# The slot it continues is runs/slot when that holds this chain's slot (left there by the last call on a
# still-warm machine, or carried; runs/slot.chain names its chain). Otherwise it is assembled from what
# the repository holds: the bundled model, which is the chain's last kept slot's fp16 weights (checked
# against slot_state/SHA256SUMS), and that slot's optimizer file and log (benchmarks/results/train_small/
# CHAIN_chain/slot_state/optimizer.safetensors, train_log.csv). A chain with no kept slot (no
# slot_state/SHA256SUMS) starts from its config's init_weights; one whose SHA256SUMS no longer matches the
# bundled weights is refused, and only the chain whose last slot is the bundled model keeps its optimiser
# file (0.8 MB each). A whole slot (37 MB) does not fit beside the repository in the 64 MB the device
# tool sends. Back in $OUT (8 files): slot/ (7 files) and logs.tar.gz. ASSEMBLE_ONLY=1 stops once the
# slot is in place (SLOT_DIR, default runs/slot); tests/test_train_chain.py uses it to check that the
# repository still holds a continuable chain. To keep a slot as the new bundled model, copy its weights
# into fast3r/weights/fast3r-small-224/, its optimizer.safetensors into CHAIN_chain/slot_state/ and its
# train_log.csv into CHAIN_chain/, rewrite SHA256SUMS (`sha256sum config.json model*` in the weights
# folder), remove the optimiser file of the chain it replaces, and make that chain the default below.
set -u
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # NVLink multicast off
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:?set OUT to the folder whose files come back}
NAME=${CHAIN:-more_random_again}
rate=0.75  # new scenes per step: the chains before wide_random ran at 0.75 whatever their configs say
case $NAME in
  wide) CONFIG=configs/small_wide_224.toml; schedule=(--set steps=20000 --set data.curriculum_steps=2000) ;;
  outward|varied|random|random_long|random_rooms|fresh_rooms|wide_baseline) CONFIG=configs/small_${NAME}_224.toml; schedule=() ;;
  wide_random|more_scenes|colour_jitter|fewer_draws|lighter_scenes|more_random|more_random_again|random_eleven) CONFIG=configs/small_${NAME}_224.toml; schedule=(); rate= ;;  # their configs' rates
  *) echo "CHAIN must be wide, outward, varied, random, random_long, random_rooms, fresh_rooms, wide_baseline, wide_random, more_scenes, colour_jitter, fewer_draws, lighter_scenes, more_random, more_random_again or random_eleven, got '$NAME'"; exit 2 ;;
esac
rate=${POOL_RATE:-$rate}  # POOL_RATE overrides
pool=(); [ -n "$rate" ] && pool=(--set data.pool_scenes_per_step=$rate)
echo "$NAME: new scenes per step: ${rate:-data.pool_scenes_per_step of $CONFIG}"
if [ -n "${POOL_SHARE:-}" ]; then  # the share of new scenes rendered on the training GPU, over the config's
  pool+=(--set data.pool_device_share=$POOL_SHARE) && echo "$NAME: share rendered on the GPU: $POOL_SHARE"
fi
CHAIN_DIR=benchmarks/results/train_small/${NAME}_chain
BUNDLED=fast3r/weights/fast3r-small-224
SLOT=${SLOT_DIR:-runs/slot}
if [ -f "$SLOT/optimizer.safetensors" ] && [ "$(cat "$SLOT.chain" 2>/dev/null)" != "$NAME" ]; then
  echo "$SLOT holds a slot of another chain, or of none that $SLOT.chain names: not continuing it"
  rm -rf "$SLOT" "$SLOT.chain"
fi
if [ ! -f "$SLOT/optimizer.safetensors" ] && [ -f "$CHAIN_DIR/slot_state/SHA256SUMS" ]; then
  python - "$BUNDLED" "$CHAIN_DIR/slot_state/SHA256SUMS" <<'PY' || exit 2
import hashlib, pathlib, sys
folder, sums = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
expected = dict(reversed(line.split()) for line in sums.read_text().splitlines() if line.strip())
changed = [name for name, digest in expected.items() if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest]
if changed:
    sys.exit(f"the bundled weights are not the chain's last slot ({', '.join(changed)} differ from {sums}): nothing to continue")
PY
  rm -rf "$SLOT" && mkdir -p "$SLOT" && cp $BUNDLED/{config.json,model*.safetensors*} "$SLOT/" \
    && cp $CHAIN_DIR/slot_state/optimizer.safetensors $CHAIN_DIR/train_log.csv "$SLOT/" && echo "$NAME" > "$SLOT.chain" || exit 2
  echo "$NAME: slot assembled from the bundled weights and $CHAIN_DIR"
fi
slot_in=()
if [ -f "$SLOT/optimizer.safetensors" ]; then
  slot_in=(SLOT_IN="$SLOT")
else
  echo "$NAME: no kept slot, so the chain's first slot starts from $CONFIG's init_weights"
fi
[ -n "${ASSEMBLE_ONLY:-}" ] && exit 0
mkdir -p runs
compile=(); [ -n "${COMPILE:-}" ] && compile=(--set "compile=\"$COMPILE\"")  # e.g. COMPILE=default
env GPUS=${GPUS:-2} SLOTS=1 "${slot_in[@]}" CONFIG=$CONFIG TIME_LIMIT_MINUTES=${MIN:-8.0} \
  TRAIN_WORK=/tmp/train_chain benchmarks/train_small.sh runs/chain_out "${schedule[@]}" \
  --set data.num_workers=15 "${pool[@]}" \
  "${compile[@]}" 2>&1 | tee runs/chain.log
if [ -f runs/chain_out/slot/optimizer.safetensors ]; then
  rm -rf "$SLOT" && cp -r runs/chain_out/slot "$SLOT" && echo "$NAME" > "$SLOT.chain" && cp -r runs/chain_out/slot "$OUT/slot"
fi
tar czf "$OUT/logs.tar.gz" runs/chain.log runs/chain_out/results.json /tmp/train_chain/pool1000.log 2>/dev/null
ls -la "$OUT" "$OUT/slot"
