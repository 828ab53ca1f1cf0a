"""What a restart from a compact slot checkpoint costs: the loss curve of a run restarted from one
against the same run uninterrupted (same data: batches are a pure function of seed and step).

    python benchmarks/train_slot_restart.py --steps 60 --restart-at 20 --out /tmp/slot_restart
    python benchmarks/train_slot_restart.py --config configs/small_synthetic_224.toml --steps 2000 --restart-at 1000 \
        --set data.num_workers=14 --out /tmp/slot_restart          # the same on a GPU

Trains `--steps` steps straight (exact checkpoint at `--restart-at`), turns that checkpoint into a slot
checkpoint (fast3r.train.slot), continues from it in a fresh folder, and prints JSON: per-step relative
loss differences after the restart, and the mean loss of both over the last half of the steps after it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fast3r.model.pretrained import load_state
from fast3r.train.config import load_train_config
from fast3r.train.logs import read_log
from fast3r.train.slot import save_slot
from fast3r.train.state import checkpoint_path, load_checkpoint
from fast3r.train.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny_cpu.toml")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--restart-at", type=int, default=20)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", required=True, help="work folder (must not hold runs)")
    args = parser.parse_args()
    out = Path(args.out)
    common = [*args.overrides, f"steps={args.steps}", "log_every=1", "heldout_at_end=false", "progress=false"]
    straight = load_train_config(args.config, [*common, f"ckpt_every={args.restart_at}", "keep_checkpoints=1000",
                                               f'out_dir="{out / "straight"}"'])  # fmt: skip
    train(straight)

    payload = load_checkpoint(checkpoint_path(straight.out_dir, args.restart_at))
    model = straight.model.build()
    load_state(model, payload["model"], "the checkpoint's weights")
    slot = out / "slot"
    save_slot(slot, model, payload["optimizer"], payload["scheduler"], args.restart_at, straight.to_dict(),
              Path(straight.out_dir) / "train_log.csv")  # fmt: skip
    restarted = load_train_config(args.config, [*common, "ckpt_every=0", f'out_dir="{out / "restarted"}"'])
    train(restarted, from_slot=str(slot))

    def losses(run) -> np.ndarray:
        return np.array([float(row["loss"]) for row in read_log(Path(run.out_dir) / "train_log.csv")])

    a, b = losses(straight)[args.restart_at :], losses(restarted)[args.restart_at :]
    relative = np.abs(b - a) / np.abs(a)
    tail = len(a) // 2
    print(json.dumps({
        "config": args.config, "steps": args.steps, "restart_at": args.restart_at,
        "relative_loss_difference_after_restart": {"mean": float(relative.mean()), "max": float(relative.max()),
                                                   "first_5_steps": relative[:5].round(4).tolist()},
        "mean_loss_last_half": {"uninterrupted": float(a[-tail:].mean()), "restarted": float(b[-tail:].mean())},
        "slot_files_bytes": {p.name: p.stat().st_size for p in sorted(slot.iterdir())},
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
