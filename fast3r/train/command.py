"""`fast3r train CONFIG [--resume | --from-slot DIR] [--out DIR] [--set key=value ...]`, `fast3r
train-crossview CONFIG` and `fast3r train-curves`."""
from __future__ import annotations

import argparse
import json
import sys

TRAIN_HELP = "train Fast3R from a TOML config (torchrun for several GPUs)"
TRAIN_EPILOG = """examples:
  fast3r train configs/small_synthetic_224.toml --out runs/demo
  fast3r train configs/small_synthetic_224.toml --out runs/demo --resume
  fast3r train configs/small_synthetic_224.toml --out runs/b --from-slot runs/a_slot --set slot_out=runs/b_slot
  fast3r train configs/tiny_cpu.toml --set steps=20 --set data.batch_size=2
  torchrun --nproc_per_node=8 -m fast3r.cli train configs/release_vitl512.toml --set distributed=fsdp2
"""


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `train` sub-command; its handler is `run_train`."""
    parser = subparsers.add_parser(
        "train", help=TRAIN_HELP, description=TRAIN_HELP, epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="training config (.toml); see configs/")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output folder")
    parser.add_argument(
        "--from-slot", metavar="DIR",
        help="continue a run from a compact slot checkpoint (see slot_out) in a fresh output folder",
    )
    parser.add_argument("--out", help="output folder (overrides out_dir in the config)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a setting, e.g. --set steps=100 --set data.batch_size=4 (values are TOML)",
    )
    parser.set_defaults(handler=run_train)
    return parser


def run_train(args: argparse.Namespace) -> int:
    """Load the config, train, print a one-line JSON summary. Bad settings raise ValueError."""
    from .trainer import train

    _print_summary(train(_config(args), resume=args.resume, from_slot=args.from_slot))
    return 0


def _config(args: argparse.Namespace):
    """The config file with the --set overrides and --out applied."""
    from .config import load_train_config

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"out_dir={json.dumps(args.out)}")
    return load_train_config(args.config, overrides)


def _print_summary(result) -> None:
    summary = {
        "out_dir": str(result.out_dir),
        "steps": result.steps_done,
        "stopped_early": result.stopped_early,
        "final_loss": result.final_loss,
        "train_seconds": round(result.seconds, 1),
    }
    print(json.dumps(summary))


CROSSVIEW_HELP = "pretrain a model's encoder by cross-view completion (CroCo) before training"


def add_crossview_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `train-crossview CONFIG [--out DIR] [--set ...]` (handler `run_crossview`)."""
    parser = subparsers.add_parser(
        "train-crossview", help=CROSSVIEW_HELP, description=CROSSVIEW_HELP,
        epilog="then train with --set model.init_encoder=DIR (see fast3r.train.crossview)",
    )
    parser.add_argument("config", help="training config (.toml): model, data, optim, steps and [crossview]")
    parser.add_argument("--out", help="output folder (overrides out_dir in the config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set crossview.mask_ratio=0.75 (values are TOML)")
    parser.set_defaults(handler=run_crossview)
    return parser


def run_crossview(args: argparse.Namespace) -> int:
    from .crossview import train_crossview

    _print_summary(train_crossview(_config(args)))
    return 0


def add_curves_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `train-curves LOG.csv [LOG.csv ...] --png OUT.png` (handler `run_curves`)."""
    parser = subparsers.add_parser("train-curves", help="plot training loss curves from train_log.csv files")
    parser.add_argument("logs", nargs="+", help="train_log.csv files, optionally LABEL=PATH")
    parser.add_argument("--png", required=True, help="output image")
    parser.set_defaults(handler=run_curves)
    return parser


def run_curves(args: argparse.Namespace) -> int:
    """Plot the logs; without matplotlib, say so (the CSV logs hold the same numbers) and return 1."""
    from .curves import CurvesUnavailable, plot_training_curves

    logs = dict(item.split("=", 1) if "=" in item else (item, item) for item in args.logs)
    try:
        plot_training_curves(logs, args.png)
    except CurvesUnavailable as err:
        print(f"fast3r train-curves: {err}", file=sys.stderr)
        return 1
    print(args.png)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m fast3r.train ...`: the same commands without the main CLI."""
    parser = argparse.ArgumentParser(prog="python -m fast3r.train")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_parser(subparsers)
    add_crossview_parser(subparsers)
    add_curves_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, OSError) as err:  # bad settings or files: a readable message, no traceback
        print(f"fast3r {args.command}: error: {err}", file=sys.stderr)
        return 1
