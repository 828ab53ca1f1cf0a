"""`fast3r view OUT`: open a `fast3r reconstruct` folder in the browser viewer (fast3r.viz.viewer).

Reads viewer.npz when the folder has it (confidence slider, global / local-aligned points), else
points.ply (the confidence-filtered cloud, no slider); cameras.json; and the photos under images/.
"""
from __future__ import annotations

import argparse
from pathlib import Path

VIEWER_DATA, POINTS, CAMERAS, IMAGES = "viewer.npz", "points.ply", "cameras.json", "images"
LOCAL_ALIGNED, GLOBAL = "local pointmaps aligned", "global head"


def add_view_parser(subparsers: argparse._SubParsersAction) -> None:
    from fast3r.cli import in_range

    parser = subparsers.add_parser("view", help="open a reconstruction in the 3D viewer in the browser (viser)")
    parser.add_argument(
        "output", help=f"a folder written by `fast3r reconstruct` or `fast3r demo` ({CAMERAS}, {VIEWER_DATA} or {POINTS})"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=in_range(int, 1, 65535), default=8080, help="default 8080; the next free one if taken")
    parser.set_defaults(handler=run_view)


def load_scene(folder: str | Path):
    """The `ViewerScene` of a reconstruction folder; a missing file is a FileNotFoundError saying what to run."""
    import numpy as np

    from fast3r.io.cameras_json import read_cameras_json
    from fast3r.io.ply import read_ply
    from fast3r.viz.viewer import ViewerScene
    from fast3r.viz.viewer_data import read_viewer_data

    folder = Path(folder)
    if not (folder / CAMERAS).is_file() or not ((folder / VIEWER_DATA).is_file() or (folder / POINTS).is_file()):
        raise FileNotFoundError(
            f"{folder} needs {CAMERAS} and {VIEWER_DATA} or {POINTS}; run `fast3r reconstruct ... -o {folder}`"
        )
    frames, _ = read_cameras_json(folder / CAMERAS)
    paths = [folder / IMAGES / frame.file_name for frame in frames]
    images = [_thumbnail(path) for path in paths] if all(p.is_file() for p in paths) else None
    if (folder / VIEWER_DATA).is_file():
        data = read_viewer_data(folder / VIEWER_DATA)
        estimates = {LOCAL_ALIGNED: data.points_local, GLOBAL: data.points_global}
        return ViewerScene(estimates, data.colors, frames, data.confidence, data.view_index, images)
    cloud = read_ply(folder / POINTS)
    colors = cloud.colors if cloud.colors is not None else np.full((len(cloud.points), 3), 200, np.uint8)
    return ViewerScene({POINTS: cloud.points}, colors, frames, images=images)


def _thumbnail(path: Path):
    """(H, W, 3) uint8 RGB of the photo at `path`, at most THUMBNAIL_SIZE on its long side (JPEGs decoded
    at reduced scale, so a thousand photos load in seconds)."""
    import numpy as np
    from PIL import Image, ImageOps

    from fast3r.viz.viewer import THUMBNAIL_SIZE

    with Image.open(path) as photo:
        photo.draft("RGB", (THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        image = ImageOps.exif_transpose(photo).convert("RGB")
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return np.asarray(image)


def run_view(args: argparse.Namespace) -> None:
    from fast3r.viz.viewer import serve

    serve(load_scene(args.output), host=args.host, port=args.port, screenshot_dir=args.output)
