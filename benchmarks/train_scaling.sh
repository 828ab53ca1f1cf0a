#!/usr/bin/env bash
# Training throughput against the number of GPUs, for the bundled recipe (configs/small_synthetic_224.toml)
# under torchrun with DDP or FSDP2 over NCCL. Each GPU count trains STEPS steps; the views per second are
# the median of the logged windows after the first quarter (warm-up, the scene pool filling).
# Rendering runs on the CPU cores, split between the ranks; the pool grows slowly (0.5 scenes per step and
# rank) so that the GPUs, not the renderers, set the pace.
# Usage: benchmarks/train_scaling.sh OUT_DIR MODE GPUS...     e.g. benchmarks/train_scaling.sh out ddp 1 2
# Environment: STEPS (default 300), TRAIN_WORK (work folder), TRAIN_SETS (more settings: "--set a=1 --set b=2").
# Writes OUT_DIR/scaling_MODE.json (one record per GPU count) and prints a Markdown table.
set -eu
OUT_DIR=${1:?usage: benchmarks/train_scaling.sh OUT_DIR ddp|fsdp2 GPUS...}
MODE=${2:?usage: benchmarks/train_scaling.sh OUT_DIR ddp|fsdp2 GPUS...}
shift 2
STEPS=${STEPS:-300}
WORK=${TRAIN_WORK:-/tmp/fast3r_train_scaling}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT_DIR" "$WORK"
CORES=$(nproc)
read -ra EXTRA <<< "${TRAIN_SETS:-}"
for GPUS in "$@"; do
  RUN="$WORK/${MODE}_$GPUS"
  rm -rf "$RUN"
  torchrun --standalone --nproc_per_node="$GPUS" -m fast3r.cli train configs/small_synthetic_224.toml --out "$RUN" \
    --set "distributed=\"$MODE\"" --set "steps=$STEPS" --set heldout_at_end=false --set export_fp16=false \
    --set ckpt_every=0 --set progress=false --set log_every=10 --set data.pool_scenes_per_step=0.5 \
    --set "data.num_workers=$(( CORES / GPUS - 1 ))" "${EXTRA[@]}" >"$RUN.log" 2>&1 || { tail -n 20 "$RUN.log"; exit 1; }
done
python - "$OUT_DIR/scaling_$MODE.json" "$MODE" "$WORK" "$@" <<'PY'
import json, statistics, sys
import torch
from fast3r.io.atomic import write_text_atomic
from fast3r.train.logs import read_log

out, mode, work, counts = sys.argv[1], sys.argv[2], sys.argv[3], [int(g) for g in sys.argv[4:]]
records = []
for gpus in counts:
    rows = read_log(f"{work}/{mode}_{gpus}/train_log.csv")
    steady = [float(r["views_per_s"]) for r in rows[len(rows) // 4:]]
    records.append({"mode": mode, "gpus": gpus, "views_per_s": statistics.median(steady), "steps": int(rows[-1]["step"]),
                    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch": torch.__version__})
base = records[0]["views_per_s"] / records[0]["gpus"]
print("| mode | GPUs | views / s | per GPU | scaling efficiency |\n| --- | --- | --- | --- | --- |")
for r in records:
    r["efficiency"] = r["views_per_s"] / (base * r["gpus"])
    print(f"| {mode} | {r['gpus']} | {r['views_per_s']:.0f} | {r['views_per_s'] / r['gpus']:.0f} | {r['efficiency']:.2f} |")
write_text_atomic(out, json.dumps(records, indent=2))
PY
