"""Two saved models on the same held-out synthetic scenes (`fast3r.train.heldout_compare`): is the second better?

    python benchmarks/heldout_compare.py fast3r/weights/fast3r-small-224 runs/candidate --views 8 \
        --scenes 200 --trajectories orbit random --out compare.json

Each scene is rendered once and run through both models (fp32 on the CPU, bf16 autocast on CUDA). Prints,
for all scenes, per trajectory and per scene kind, RRA@15 / RTA@15 / mAA(30) of the first and second model
and their difference (second - first) with its 95% interval over resamplings of the scenes, each
resampling drawing the same scenes for both models; beside them the identity-pose baseline's RRA@15.
An interval that excludes 0 says the difference is not the luck of which scenes were drawn.
"""
from __future__ import annotations

import argparse
import json

import torch

from fast3r.data.synthetic import TRAJECTORIES
from fast3r.io.atomic import write_text_atomic
from fast3r.model import Fast3R
from fast3r.train.heldout import HeldoutConfig
from fast3r.train.heldout_compare import compare_heldout

COLUMNS = (("RRA@15", "RRA@15_pct"), ("RTA@15", "RTA@15_pct"), ("mAA(30)", "mAA30_fast3r_31bin_pct"))


def format_table(results: dict, view_counts: list[int]) -> str:
    """A Markdown table: per view count and scene group, each metric as "first -> second: difference
    [95% interval]", the scene count and the identity baseline's RRA@15."""
    header = "| views | scenes | " + " | ".join(f"{name}: first -> second, difference [95%]" for name, _ in COLUMNS)
    lines = [header + " | identity RRA@15 |", "|---" * (len(COLUMNS) + 3) + "|"]
    for views in map(str, view_counts):
        metrics = results.get(views)
        if metrics is None:
            continue
        groups = [("all", metrics), *metrics["by_trajectory"].items(),
                  *((f"kind: {kind}", group) for kind, group in metrics["by_scene_kind"].items())]
        for name, group in groups:
            cells = []
            for _, key in COLUMNS:
                row = group[key]
                low, high = row["ci95"]
                cells.append(f"{row['first']:.1f} -> {row['second']:.1f}: {row['difference']:+.1f} [{low:+.1f}, {high:+.1f}]")
            identity = group["identity_baseline"]["RRA@15_pct"]
            lines.append(f"| {views} | {name} ({group['scenes']}) | " + " | ".join(cells) + f" | {identity:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", help="model directory or Hugging Face hub id (the one to beat)")
    parser.add_argument("second", help="model directory or Hugging Face hub id (the candidate)")
    parser.add_argument("--views", type=int, nargs="+", default=[8], help="view counts to evaluate")
    parser.add_argument("--scenes", type=int, default=12, help="scenes per view count")
    parser.add_argument("--trajectories", nargs="+", default=list(TRAJECTORIES), choices=TRAJECTORIES)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    device = torch.device(args.device)
    first, second = (Fast3R.from_pretrained(weights).float().to(device) for weights in (args.first, args.second))
    config = HeldoutConfig(view_counts=args.views, scenes=args.scenes, trajectories=args.trajectories,
                           render_device=device.type)  # fmt: skip
    results = compare_heldout(first, second, config, device, bf16=device.type == "cuda")
    print(format_table(results, args.views))
    if args.out:
        payload = {"first": args.first, "second": args.second, **results}
        write_text_atomic(args.out, json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
