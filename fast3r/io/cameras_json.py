"""cameras.json: every view's intrinsics and pose in the project's own conventions, for people and scripts.

Layout:
{
  "convention": "...",
  "views": [
    {"file": "IMG_0001.jpg", "width": 4032, "height": 3024, "K": [[...]], "c2w": [[...]],
     "model_width": 512, "model_height": 384, "model_K": [[...]]},   # model_* only when given
    ...
  ]
}
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from fast3r.io.atomic import write_text_atomic
from fast3r.io.frames import ExportFrame, check_frames

CONVENTION = (
    "OpenCV camera axes (x right, y down, z forward); c2w is the 4x4 camera-to-world matrix; K in pixels with "
    "pixel centres at integer coordinates; K, width, height refer to the original photo, model_K, model_width, "
    "model_height to the resized, cropped image the network saw"
)


def write_cameras_json(
    path: str | os.PathLike, frames: Sequence[ExportFrame], model_frames: Sequence[ExportFrame] | None = None
) -> None:
    """Write one entry per view; `model_frames` (same order and file names) adds the model image's K and size."""
    frames = check_frames(frames, str(path))
    if model_frames is not None:
        model_frames = check_frames(model_frames, str(path))
        if [f.file_name for f in model_frames] != [f.file_name for f in frames]:
            raise ValueError(f"{path}: model_frames must list the same file names as frames, in the same order")
    views = []
    for index, frame in enumerate(frames):
        view = {
            "file": frame.file_name,
            "width": frame.width,
            "height": frame.height,
            "K": frame.K.tolist(),
            "c2w": frame.c2w.tolist(),
        }
        if model_frames is not None:
            model_frame = model_frames[index]
            view.update(model_width=model_frame.width, model_height=model_frame.height, model_K=model_frame.K.tolist())
        views.append(view)
    write_text_atomic(path, json.dumps({"convention": CONVENTION, "views": views}, indent=2) + "\n")


def read_cameras_json(path: str | os.PathLike) -> tuple[list[ExportFrame], list[ExportFrame] | None]:
    """Read a cameras.json back: (frames, model_frames or None when the file has no model_* entries)."""
    try:
        views = json.loads(Path(path).read_text(encoding="utf-8"))["views"]
        frames = [ExportFrame(v["file"], v["width"], v["height"], v["K"], v["c2w"]) for v in views]
        has_model = bool(views) and all("model_K" in v for v in views)
        model_frames = (
            [ExportFrame(v["file"], v["model_width"], v["model_height"], v["model_K"], v["c2w"]) for v in views]
            if has_model
            else None
        )
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a valid cameras.json ({type(error).__name__}: {error})") from error
    return frames, model_frames
