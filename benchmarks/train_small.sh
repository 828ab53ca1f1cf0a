#!/usr/bin/env bash
# Train the two bundled demo models on one GPU and evaluate them on held-out synthetic scenes:
#   pool1000:   configs/small_synthetic_224.toml             (image indices drawn from 0..999, the release)
#   sequential: configs/small_synthetic_224_sequential.toml  (image indices 0..N-1, the ablation)
# Both train at once on the one GPU (each renders its scene pool with half the CPU cores), then each
# evaluates at 8 / 32 / 128 views. Writes at most 8 files into OUT_DIR:
#   results.json (held-out metrics, summaries, configs), train_log.csv (both runs), curves.png,
#   fast3r_small_pool1000/ (fp16 export in 16 MB shards: config.json, index, 3 shards).
# Usage: benchmarks/train_small.sh OUT_DIR [--set KEY=VALUE ...]   (extra settings go to both runs)
# Work files (checkpoints, logs, fp32 exports) go to $TRAIN_WORK (default /tmp/fast3r_train_small).
# RUNS="pool1000" trains the release model alone (the whole GPU and all CPU cores for one run).
#
# One run across many short GPU slots (BENCHMARKS.md, "Training across GPU slots"): SLOTS=1 trains
# pool1000 alone and writes its compact slot checkpoint (fast3r.train.slot) to OUT_DIR/slot/ (fp16
# weights in 3 shards, config.json, index, optimizer.safetensors, train_log.csv: 7 files, 37 MB) and
# OUT_DIR/results.json, 8 files in all. SLOT_IN=DIR continues from the slot checkpoint in DIR (what the
# last slot brought back, carried in the repo tree at an ignored path such as runs/slot); the log's
# rows are appended. Give every slot the same --set steps=N (the schedule spans all slots).
# CONFIG=FILE trains FILE as pool1000 (e.g. configs/small_wide_224.toml, issue 14's recipe).
# GPUS=N trains each run under torchrun with DDP on N GPUs (batch_size is per GPU; give each rank its
# share of the cores with --set data.num_workers=...); slots continue across GPU counts.
set -u
OUT_DIR=${1:?usage: benchmarks/train_small.sh OUT_DIR [--set KEY=VALUE ...]}
shift
WORK=${TRAIN_WORK:-/tmp/fast3r_train_small}
TIME_LIMIT_MINUTES=${TIME_LIMIT_MINUTES:-27.5}  # the issue allows 30 minutes of one GPU
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT_DIR" "$WORK"
RUNS=${RUNS:-pool1000 sequential}
SLOTS=${SLOTS:-0}
slot_args=()
if [ "$SLOTS" = 1 ]; then
  RUNS=pool1000
  rm -rf "$OUT_DIR/slot"
  # No periodic full checkpoints: only the slot written when the slot ends travels on, and on the H200
  # machines each periodic save stalled training 9-16 s (about 10% of a slot's training time).
  slot_args=(--set "slot_out=$OUT_DIR/slot" --set ckpt_every=0)
  if [ -n "${SLOT_IN:-}" ]; then
    [ -f "$SLOT_IN/optimizer.safetensors" ] || { echo "SLOT_IN=$SLOT_IN holds no slot checkpoint"; exit 2; }
    slot_args+=(--from-slot "$SLOT_IN")
  fi
fi
rm -rf "$WORK/pool1000" "$WORK/sequential"
start=$(date +%s)

GPUS=${GPUS:-1}
launch=(python -m fast3r.train)
if [ "$GPUS" -gt 1 ]; then  # DDP over this machine's GPUs: each rank renders and trains its own batch
  launch=(torchrun --standalone --nproc_per_node="$GPUS" -m fast3r.train)
fi

train() {  # name config [extra args]
  local name=$1 config=$2
  shift 2
  local ddp=()
  [ "$GPUS" -gt 1 ] && ddp=(--set 'distributed="ddp"')
  "${launch[@]}" train "$config" --out "$WORK/$name" --set progress=false "${ddp[@]}" \
    --set "time_limit_minutes=$TIME_LIMIT_MINUTES" "$@" >"$WORK/$name.log" 2>&1
  echo "$name: exit $? after $(( $(date +%s) - start )) s"
}

reports=()
for name in $RUNS; do
  case $name in
    pool1000) config=${CONFIG:-configs/small_synthetic_224.toml} ;;
    sequential) config=configs/small_synthetic_224_sequential.toml ;;
    *) echo "unknown run $name (RUNS takes pool1000 and/or sequential)"; exit 2 ;;
  esac
  train "$name" "$config" "${slot_args[@]}" "$@" &
  reports+=("$name=$WORK/$name")
done
wait

for name in $RUNS; do
  echo "----- $name (last lines of $WORK/$name.log)"
  tail -n 5 "$WORK/$name.log"
done
if [ "$SLOTS" = 1 ]; then  # the slot folder holds the weights and the log: only results.json besides
  python benchmarks/train_small_report.py "$WORK/report" "${reports[@]}" && cp "$WORK/report/results.json" "$OUT_DIR/" \
    || echo "report failed"
else
  python benchmarks/train_small_report.py "$OUT_DIR" "${reports[@]}" || echo "report failed"
fi
if [ "$SLOTS" != 1 ] && [ -d "$WORK/pool1000/model_fp16" ]; then
  rm -rf "$OUT_DIR/fast3r_small_pool1000"
  cp -r "$WORK/pool1000/model_fp16" "$OUT_DIR/fast3r_small_pool1000"
fi
python - "$OUT_DIR/results.json" <<'PY' || true
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
for name, run in runs.items():
    held = run.get("heldout") or {}
    cells = [f"{n} views: RRA@15 {m['RRA@15_pct']:.1f} RTA@15 {m['RTA@15_pct']:.1f} mAA30 {m['mAA30_fast3r_31bin_pct']:.1f}"
             f" (identity poses: RRA@15 {m['identity_baseline']['RRA@15_pct']:.1f} mAA30 {m['identity_baseline']['mAA30_fast3r_31bin_pct']:.1f})"
             for n, m in held.items() if n != "settings"]
    print(name, (run.get("summary") or {}).get("steps_done"), "steps;", "; ".join(cells) or "no held-out results")
PY
echo "total $(( $(date +%s) - start )) s; files in $OUT_DIR:"
find "$OUT_DIR" -type f | sort
