"""The `fast3r` command: demo, reconstruct, view, train, train-curves, eval, convert."""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from .model import DTYPES
from .pipeline import EXPORTS, ReconstructError


def add_reconstruct_parser(subparsers) -> None:
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
        help="directory or Hugging Face hub id (default: the bundled small model; the published "
        "jedyang97/Fast3R_ViT_Large_512 is licensed non-commercial)",
    )
    parser.add_argument("--size", type=int, choices=[512, 224], default=None, help="default: the weights' size")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto")
    parser.add_argument("--max-views", type=int, default=None, help="keep at most this many views, evenly spread")
    parser.add_argument("--conf-percentile", type=float, default=20.0, help="drop each view's least confident N%% of points")
    parser.add_argument("--voxel-size", type=float, default=None, help="average points per voxel of this size")
    parser.add_argument("--camera-method", choices=["auto", "align", "pnp"], default="auto")
    parser.add_argument("--export", nargs="+", choices=EXPORTS, default=None, help="default: all available")
    parser.add_argument("--video-fps", type=float, default=None, help="frames per second of video to sample")
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many video frames, evenly spread")
    parser.add_argument("--skip-bad", action="store_true", help="skip unreadable inputs with a warning")
    parser.add_argument("--overwrite", action="store_true", help="write into an existing non-empty directory")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run_reconstruct)


def run_reconstruct(args: argparse.Namespace) -> None:
    from .pipeline import reconstruct

    start = time.perf_counter()
    result = reconstruct(
        args.inputs,
        args.output,
        weights=args.weights,
        size=args.size,
        device=args.device,
        dtype=args.dtype,
        max_views=args.max_views,
        camera_method=args.camera_method,
        conf_percentile=args.conf_percentile,
        voxel_size=args.voxel_size,
        exports=args.export,
        overwrite=args.overwrite,
        skip_bad=args.skip_bad,
        video_fps=args.video_fps,
        max_frames=args.max_frames,
        progress=not args.quiet,
    )
    points, _ = result.point_cloud(args.conf_percentile, args.voxel_size)
    sizes = sorted({f"{img.rgb.shape[1]}x{img.rgb.shape[0]}" for img in result.images})
    print(f"\nfast3r: {len(result.images)} views at {', '.join(sizes)}, cameras by '{result.cameras.method}'")
    for stage, seconds in result.timings.items():
        print(f"  {stage:12s} {seconds:8.2f} s")
    print(f"  {'total':12s} {time.perf_counter() - start:8.2f} s")
    print(f"  points kept: {len(points):,}")
    print("  written: " + ", ".join(str(p) for p in result.files))


def add_view_parser(subparsers) -> None:
    parser = subparsers.add_parser("view", help="open a reconstruction in the 3D viewer (viser)")
    parser.add_argument("output", help="a directory written by `fast3r reconstruct` (needs points.ply and cameras.json)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080)
    parser.set_defaults(handler=run_view)


def run_view(args: argparse.Namespace) -> None:
    from .io.cameras_json import read_cameras_json
    from .io.ply import read_ply
    from .viz.viewer import serve

    out = Path(args.output)
    for name in ("points.ply", "cameras.json"):
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name} is missing; run `fast3r reconstruct` with --export ply cameras")
    cloud = read_ply(out / "points.ply")
    frames, _ = read_cameras_json(out / "cameras.json")
    images = None
    if (out / "images").is_dir():
        import numpy as np
        from PIL import Image

        paths = [out / "images" / frame.file_name for frame in frames]
        if all(p.is_file() for p in paths):
            images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    serve(cloud.points, cloud.colors, frames, images=images, host=args.host, port=args.port)


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
    from .train.command import add_curves_parser, add_train_parser

    parser = argparse.ArgumentParser(prog="fast3r", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_demo_parser(subparsers)
    add_reconstruct_parser(subparsers)
    add_view_parser(subparsers)
    add_train_parser(subparsers)
    add_curves_parser(subparsers)
    add_eval_parser(subparsers)
    add_convert_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("default")
    try:
        code = args.handler(args)
    except KeyboardInterrupt:
        print("fast3r: interrupted; no partial files were left behind", file=sys.stderr)
        return 130
    except (ValueError, OSError, ReconstructError) as err:  # bad input: a readable message, no traceback
        print(f"fast3r {args.command}: error: {err}", file=sys.stderr)
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
