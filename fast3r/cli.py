"""The `fast3r` command: demo, reconstruct, view, train, train-curves, eval, convert."""
from __future__ import annotations

import argparse
import math
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

from . import interrupt

# Only the standard library above: `main` takes over Ctrl-C before torch and the rest load.


def _number(kind: type[int] | type[float], text: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {text}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def in_range(
    kind: type[int] | type[float], low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], int | float]:
    """An argparse type: a number of `kind` between `low` and `high`, each bound open or closed,
    refused as `argument --opt: must be > 0, got 0`."""
    if high == math.inf:
        rule = f"> {low}" if low_open else f">= {low}"
    else:
        rule = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def parse(text: str) -> int | float:
        value = _number(kind, text)
        if value < low or (low_open and value == low) or value > high or (high_open and value == high):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


positive_float = in_range(float, 0, low_open=True)
positive_int = in_range(int, 0, low_open=True)


def add_reconstruct_parser(subparsers) -> None:
    from .model import DTYPES
    from .pipeline import DEFAULT_MAX_POINTS, EXPORTS

    parser = subparsers.add_parser(
        "reconstruct",
        help="cameras, depth and a point cloud from photos or a video",
        description="Reconstruct a scene from a folder, glob, list of images, or a video.",
    )
    parser.add_argument("inputs", nargs="+", help="image files, folders, glob patterns or a video")
    parser.add_argument("-o", "--output", required=True, help="output directory")
    parser.add_argument(
        "--weights",
        default=None,
        help="directory or Hugging Face hub id (default: the published jedyang97/Fast3R_ViT_Large_512, licensed "
        "non-commercial, downloaded once); 'small': the bundled demo model for synthetic scenes",
    )
    parser.add_argument("--size", type=int, choices=[512, 224], default=None, help="default: the weights' size")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--gpus", type=positive_int, default=1,
                        help="one joint pass over this many GPUs of this machine (views and tokens split across them; "
                        "for several machines run under torchrun and call fast3r.parallel.predict_multi_gpu)")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto")
    parser.add_argument("--max-views", type=in_range(int, 2), default=None, help="keep at most this many views, evenly spread")
    parser.add_argument("--focal", type=focal_spec, default=None, metavar="PIXELS|exif|FILE",
                        help="known focal length in pixels of the original photos, 'exif' (35 mm equivalent from each "
                        "photo's EXIF; missing ones estimated), or a file of 'NAME PIXELS' lines or a JSON object "
                        "(default: estimated from the pointmaps)")
    parser.add_argument("--conf-percentile", type=in_range(float, 0, 100, high_open=True), default=20.0, help="drop each view's least confident N%% of points")
    parser.add_argument("--voxel-size", type=positive_float, default=None, help="average points per voxel of this size")
    parser.add_argument("--max-points", type=in_range(int, 0), default=DEFAULT_MAX_POINTS,
                        help=f"point budget of the exported cloud: the most confident point per voxel of a grid sized "
                        f"to keep at most this many (default {DEFAULT_MAX_POINTS:,}); 0 keeps every confident point")
    parser.add_argument("--camera-method", choices=["auto", "align", "pnp"], default="auto")
    parser.add_argument("--export", nargs="+", choices=list(EXPORTS), default=None,
                        help="default: all but the full-density 'depth' and 'npz' (gigabytes at 1000 views)")
    parser.add_argument("--copy-images", action="store_true",
                        help="copy the photos into OUT/images (default: symbolic links to them)")
    parser.add_argument("--exact-decode", action="store_true",
                        help="decode JPEGs at full resolution, the release's pixels exactly (default: reduced-scale "
                        "decoding, about one grey level apart and ~4x faster for large photos)")
    parser.add_argument("--video-fps", type=positive_float, default=None, help="frames per second of video to sample")
    parser.add_argument("--max-frames", type=positive_int, default=None, help="at most this many video frames, evenly spread")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable inputs with a warning")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    parser.add_argument("--quiet", action="store_true", help="no progress display; only the summary")
    parser.set_defaults(handler=run_reconstruct)


def focal_spec(text: str) -> float | str:
    """--focal: a positive number of pixels, 'exif', or an existing file."""
    if text == "exif":
        return text
    try:
        float(text)
    except ValueError:
        if not Path(text).is_file():
            raise argparse.ArgumentTypeError(f"must be a number of pixels, 'exif' or a file; no file {text}") from None
        return text
    return positive_float(text)


def run_reconstruct(args: argparse.Namespace) -> None:
    from .pipeline import reconstruct

    start = time.perf_counter()
    result = reconstruct(
        args.inputs,
        args.output,
        weights=args.weights,
        size=args.size,
        device=args.device,
        gpus=args.gpus,
        keep_arrays=False,  # the summary needs none; the exports say which they read
        dtype=args.dtype,
        max_views=args.max_views,
        camera_method=args.camera_method,
        focal=args.focal,
        conf_percentile=args.conf_percentile,
        voxel_size=args.voxel_size,
        max_points=args.max_points or None,
        exports=args.export,
        copy_images=args.copy_images,
        exact_decode=args.exact_decode,
        overwrite=args.overwrite,
        skip_bad=args.skip_bad,
        video_fps=args.video_fps,
        max_frames=args.max_frames,
        progress=not args.quiet,
    )
    sizes = sorted({f"{img.rgb.shape[1]}x{img.rgb.shape[0]}" for img in result.images})
    print(f"fast3r: {len(result.images)} views at {', '.join(sizes)}, cameras by '{result.cameras.method}' "
          f"(focal: {result.cameras.focal_source})")
    for stage, seconds in result.timings.items():
        print(f"  {stage:18s} {seconds:8.2f} s")
    print(f"  {'total':18s} {time.perf_counter() - start:8.2f} s")
    if result.peak_gpu_bytes is not None:
        print(f"  peak GPU memory    {result.peak_gpu_bytes / 2**30:8.2f} GiB")
    print(f"  points exported: {len(result.cloud.points):,}")
    print(f"  written to {args.output}: " + ", ".join(p.name for p in result.files))


def add_convert_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert a reference torch checkpoint to config.json + model.safetensors"
    )
    parser.add_argument("checkpoint", help="a .pth/.ckpt state dict (read with torch.load(weights_only=True))")
    parser.add_argument("config", help="the checkpoint's config.json (published layout)")
    parser.add_argument("output", help="directory to write")
    parser.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> None:
    import json

    from .model import Fast3RConfig
    from .model.pretrained import convert_torch_checkpoint

    config = Fast3RConfig.from_published(json.loads(Path(args.config).read_text()))
    convert_torch_checkpoint(args.checkpoint, config, args.output)
    print(f"wrote {args.output}/config.json and model.safetensors")


def build_parser() -> argparse.ArgumentParser:
    from .demo import add_demo_parser
    from .eval.command import add_eval_parser
    from .train.command import add_crossview_parser, add_curves_parser, add_train_parser
    from .viz.command import add_view_parser

    parser = argparse.ArgumentParser(prog="fast3r", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_demo_parser(subparsers)
    add_reconstruct_parser(subparsers)
    add_view_parser(subparsers)
    add_train_parser(subparsers)
    add_crossview_parser(subparsers)
    add_curves_parser(subparsers)
    add_eval_parser(subparsers)
    add_convert_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; Ctrl-C at any moment ends it with exit code 130 and one line."""
    previous_sigint = interrupt.install()  # first, before the heavy imports below
    try:
        return _run(argv)
    finally:
        if not interrupt.interrupted():
            interrupt.restore(previous_sigint)


def _run(argv: list[str] | None) -> int:
    command = None
    try:
        with warnings.catch_warnings():
            _one_line_warnings()
            args = build_parser().parse_args(argv)
            command = args.command
            code = args.handler(args)
        interrupt.check_interrupted()  # a Ctrl-C that something swallowed still ends the run here
    except BaseException as err:
        return _exit_code(err, command)
    return code if isinstance(code, int) else 0


def _one_line_warnings() -> None:
    """Warnings as `fast3r: warning: message` (no file or source line); `python -W` still decides which show."""
    if not sys.warnoptions:
        warnings.simplefilter("default")
        for noise in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=noise)  # libraries' noise, hidden as Python hides it

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"fast3r: warning: {' '.join(str(message).split())}", file=file or sys.stderr)

    warnings.showwarning = show


def _exit_code(err: BaseException, command: str | None) -> int:
    """130 and one line after Ctrl-C (whatever it turned into); 1 and one line for bad input; else re-raise."""
    if isinstance(err, KeyboardInterrupt) or interrupt.interrupted():
        interrupt.restore(signal.SIG_IGN)  # a second Ctrl-C while exiting prints nothing more
        print("fast3r: interrupted", file=sys.stderr)
        return 130
    if isinstance(err, _user_errors()):
        print(f"fast3r {command}: error: {err}" if command else f"fast3r: error: {err}", file=sys.stderr)
        return 1
    raise err


def _user_errors() -> tuple[type[BaseException], ...]:
    """Bad input, told in one line. Warnings count when `python -W error` makes them errors."""
    pipeline = sys.modules.get("fast3r.pipeline")  # not imported: no ReconstructError can have been raised
    return (ValueError, OSError, Warning) + ((pipeline.ReconstructError,) if pipeline else ())


if __name__ == "__main__":
    sys.exit(main())
