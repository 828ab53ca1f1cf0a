"""Render the bundled example: eight overlapping views of one synthetic room, with their true cameras.

    python scripts/make_example.py                 # writes examples/room/view_000.png ... and cameras.json

cameras.json uses the project's layout (fast3r.io.cameras_json): per view file, width, height, K, c2w,
in OpenCV conventions and metres. The PNGs are committed; rerun this only to change the example.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image

from fast3r.data.synthetic import TRAJECTORIES, SceneConfig, render_scene
from fast3r.io.atomic import write_bytes_atomic
from fast3r.io.cameras_json import write_cameras_json
from fast3r.io.frames import ExportFrame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("examples/room"), help="output folder")
    parser.add_argument("--seed", type=int, default=2, help="scene seed")
    parser.add_argument("--trajectory", choices=TRAJECTORIES, default="walk")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    args = parser.parse_args()

    views = render_scene(args.seed, args.views, args.height, args.width, args.trajectory, config=SceneConfig(kind="room"))
    frames, total_bytes = [], 0
    for index, view in enumerate(views):
        file_name = f"view_{index:03d}.png"
        buffer = io.BytesIO()
        Image.fromarray(view.image).save(buffer, format="PNG", optimize=True)
        write_bytes_atomic(args.out / file_name, buffer.getvalue())
        total_bytes += len(buffer.getvalue())
        frames.append(ExportFrame(file_name, view.width, view.height, view.K, view.c2w))
    write_cameras_json(args.out / "cameras.json", frames)
    print(f"wrote {len(views)} views ({total_bytes / 1e3:.0f} kB of PNG) and cameras.json to {args.out}")


if __name__ == "__main__":
    main()
