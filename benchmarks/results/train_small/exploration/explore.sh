#!/usr/bin/env bash
# Exploration: three recipes at once on one GPU, then held-out at 8 views.
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
W=/tmp/explore; mkdir -p $W
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c "import torch; print(torch.__version__)"
run() { name=$1; shift
  python3 -m fast3r.train train configs/small_synthetic_224.toml --out $W/$name --set progress=false \
   --set time_limit_minutes=7.4 --set data.num_workers=5 --set 'heldout.view_counts=[8]' --set heldout.scenes=12 \
   --set data.pool_scenes_per_step=1.0 "$@" > $W/$name.log 2>&1
  echo "$name exit $?"; }
run E1 --set steps=1000 --set optim.lr=8e-4 &
run E2 --set steps=1000 --set optim.lr=1.6e-3 &
run E3 --set steps=600 --set data.batch_size=32 --set optim.lr=1.2e-3 &
wait
for n in E1 E2 E3; do tail -2 $W/$n.log; cp $W/$n/train_log.csv $OUT/${n}_train_log.csv; cp $W/$n/heldout.json $OUT/${n}_heldout.json
python3 - $W/$n/heldout.json <<'PY'
import json,sys
h=json.load(open(sys.argv[1]))["8"]
print(sys.argv[1], {k: round(h[k],1) for k in ["RRA@15_pct","RTA@15_pct","mAA30_fast3r_31bin_pct"]})
for t,m in h["by_trajectory"].items(): print("  ",t,{k: round(m[k],1) for k in ["RRA@15_pct","RTA@15_pct","mAA30_fast3r_31bin_pct"]})
PY
done
