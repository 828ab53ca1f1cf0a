"""Score saved weights on training's held-out synthetic scenes (`fast3r.train.heldout`), per trajectory.

    python benchmarks/heldout_eval.py fast3r/weights/fast3r-small-224 --views 8 --scenes 12 \
        --trajectories arc walk handheld --out heldout.json

The same scenes and camera method as the held-out check at the end of `fast3r train`; fp32 on the CPU,
bf16 autocast on CUDA. Prints RRA@15 / RTA@15 / mAA(30) in percent for all scenes and per trajectory, with
[95% intervals] over resamplings of the scenes, the mean point errors of the global and local heads
(normalised distances, as in the loss), each beside the identity-pose baseline on the same scenes (every
camera predicted as view 0's). `--by-overlap` adds rows for the pairs binned by how much of one view the
other sees (`fast3r.train.heldout.OVERLAP_BINS`): do the failures lie where the views share nothing?
Above 8 views, rows "pairs of 8 spread views" score only the pairs of 8 views spread over the N (overall
and per scene kind), spaced as an 8-view scene's views are on every trajectory.
"""
from __future__ import annotations

import argparse
import json

import torch

from fast3r.data.synthetic import TRAJECTORIES
from fast3r.io.atomic import write_text_atomic
from fast3r.model import Fast3R
from fast3r.train.heldout import SPREAD_VIEWS, HeldoutConfig, evaluate_heldout

COLUMNS = ("RRA@15_pct", "RTA@15_pct", "mAA30_fast3r_31bin_pct")


def table_header(name_column: str) -> tuple[str, str]:
    """The two header lines of `format_table`, the second column named `name_column`."""
    return (f"| views | {name_column} | RRA@15 | RTA@15 | mAA(30) | point error, global / local head "
            "| identity poses: RRA@15 | RTA@15 | mAA(30) |", "|---" * 9 + "|")  # fmt: skip


def format_table(results: dict, view_counts: list[int]) -> str:
    """A Markdown table: per view count and trajectory, the model's figures with their 95% intervals over
    scene resamplings, and the identity baseline's figures."""
    lines = list(table_header("trajectory"))
    for views in map(str, view_counts):
        metrics = results.get(views)
        if metrics is None:
            continue
        for name, row in [("all", metrics), *metrics["by_trajectory"].items()]:
            lines.append(table_row(views, name, row))
            for overlap, part in row.get("by_overlap", {}).items():
                lines.append(table_row(views, f"{name}, overlap {overlap} ({part['pairs']} pairs)", part))
        spread = metrics.get(f"spread_{SPREAD_VIEWS}_views")  # only above SPREAD_VIEWS views
        if spread is not None:
            for name, row in [("all", spread), *spread["by_scene_kind"].items()]:
                lines.append(table_row(views, f"{name}, pairs of {SPREAD_VIEWS} spread views", row))
    return "\n".join(lines)


def table_row(views: str, name: str, row: dict) -> str:
    """One row of `format_table` (also `heldout_variants.py`'s): figures [95% intervals], point errors, identity."""
    intervals = row["ci95_over_scenes"]
    model = [f"{row[key]:.1f} [{intervals[key][0]:.1f}, {intervals[key][1]:.1f}]" for key in COLUMNS]
    if "point_error_global" in row:
        local = "-" if row["point_error_local"] is None else f"{row['point_error_local']:.3f}"
        points = [f"{row['point_error_global']:.3f} / {local}"]
    else:  # pairs binned by overlap: the point errors are per scene
        points = ["-"]
    baseline = [f"{row['identity_baseline'][key]:.1f}" for key in COLUMNS]
    return f"| {views} | {name} | " + " | ".join(model + points + baseline) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="model directory or Hugging Face hub id")
    parser.add_argument("--views", type=int, nargs="+", default=[8], help="view counts to evaluate")
    parser.add_argument("--scenes", type=int, default=12, help="scenes per view count")
    parser.add_argument("--trajectories", nargs="+", default=list(TRAJECTORIES), choices=TRAJECTORIES)
    parser.add_argument("--image-ids", default="spread", choices=("spread", "sequential", "random"))
    parser.add_argument("--by-overlap", action="store_true", help="also score pairs binned by view overlap")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = Fast3R.from_pretrained(args.weights).float().to(device)
    config = HeldoutConfig(view_counts=args.views, scenes=args.scenes, trajectories=args.trajectories,
                           image_ids=args.image_ids, render_device=device.type,
                           by_overlap=args.by_overlap)  # fmt: skip
    results = evaluate_heldout(model, config, device, bf16=device.type == "cuda")
    print(format_table(results, args.views))
    if args.out:
        write_text_atomic(args.out, json.dumps({"weights": args.weights, **results}, indent=2))


if __name__ == "__main__":
    main()
