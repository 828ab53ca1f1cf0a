"""`fast3r eval pose|recon ...`: the command-line front of `fast3r.eval.runner`.

Wire into fast3r/cli.py with:
    from fast3r.eval.command import add_eval_parser, run_eval
    add_eval_parser(subparsers)        # registers "eval"; its handler is in `args.handler`
"""
from __future__ import annotations

import argparse
import json

from fast3r.eval.datasets import DATASETS
from fast3r.eval.recon import ALIGNMENTS
from fast3r.eval.runner import POINT_SOURCES, RESULTS_NAME, TABLE_NAME, TASKS, EvalConfig, run_evaluation
from fast3r.model import DTYPES


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate camera poses or reconstructions on a benchmark",
        description=(
            "Run Fast3R over a benchmark and score it. Pose metrics: RRA/RTA@5/15/30 and both mAA(30) "
            "variants (Fast3R's 31-bin and VGGT's 30-bin), in percent. Recon metrics: accuracy, "
            "completion, normal consistency, in the dataset's units. Results are resumable."
        ),
    )
    parser.add_argument("task", choices=TASKS, help="pose: relative camera poses; recon: point clouds")
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="benchmark (see fast3r.eval.datasets)")
    parser.add_argument("--root", help="folder holding the dataset (not needed for 'synthetic')")
    parser.add_argument("--views", type=int, dest="num_views", help="views per sample (co3d_fast3r, synthetic; "
                        "for 7scenes/nrgbd/dtu: keep this many of the strided frames)")  # fmt: skip
    parser.add_argument("--weights", help="model directory or Hugging Face hub id (default: the published model; "
                        "'small': the bundled demo model for synthetic scenes)")
    parser.add_argument("--out", dest="out_dir", default="eval_out", help="output folder (default: eval_out)")
    parser.add_argument("--limit", type=int, help="evaluate only the first K samples")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="fp32", help="inference precision (default fp32)")
    parser.add_argument("--size", type=int, choices=(512, 224), default=None,
                        help="model image size (default: the size the weights were trained at, as reconstruct)")
    parser.add_argument("--alignment", choices=ALIGNMENTS, default="sim3_correspondences",
                        help="recon: how predictions are aligned to ground truth (default: Fast3R's Sim(3))")  # fmt: skip
    parser.add_argument("--points", choices=POINT_SOURCES, default="local_aligned",
                        help="recon: local pointmaps aligned to global (default) or the global pointmaps")  # fmt: skip
    parser.add_argument("--camera-method", choices=("auto", "align", "pnp"), default="auto",
                        help="how cameras are recovered from the pointmaps (default auto)")  # fmt: skip
    parser.add_argument("--setting", choices=("spann3r", "pi3_dense"), default="spann3r",
                        help="frame strides of 7scenes/nrgbd/dtu (default spann3r: 20/40/5)")  # fmt: skip
    parser.add_argument("--num-samples", type=int, help="co3d_fast3r / synthetic: number of samples (100 / 20)")
    parser.add_argument("--max-points", type=int, help="recon: score a random subset of this many pixels")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(handler=run_eval)
    return parser


def run_eval(args: argparse.Namespace) -> int:
    config = EvalConfig(
        task=args.task,
        dataset=args.dataset,
        root=args.root,
        num_views=args.num_views,
        weights=args.weights,
        size=args.size,
        dtype=args.dtype,
        alignment=args.alignment,
        points=args.points,
        camera_method=args.camera_method,
        setting=args.setting,
        num_samples=args.num_samples,
        max_points=args.max_points,
        out_dir=args.out_dir,
        limit=args.limit,
        device=args.device,
        progress=not args.no_progress,
    )
    summary = run_evaluation(config)
    headline = summary["pooled"] if config.task == "pose" else summary["mean_over_samples"]
    print(json.dumps({"dataset": config.dataset, "task": config.task, "num_samples": summary["num_samples"], **headline}, indent=2))
    print(f"per-sample results: {config.out_dir}/{RESULTS_NAME}; table: {config.out_dir}/{TABLE_NAME}")
    return 0
