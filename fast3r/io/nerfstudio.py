"""Nerfstudio / Instant-NGP style transforms.json.

Conventions of the written file:
- transform_matrix is camera-to-world in OpenGL/Blender camera axes (x right, y up, looking along -z):
  `c2w_opencv @ diag(1, -1, -1, 1)`. The WORLD axes are left as they are, so poses and the point cloud
  named by `ply_file_path` share one world frame. Nerfstudio's `applied_transform` (written by
  ns-process-data when it turns COLMAP's world into its own) is therefore not written: none was applied.
- Intrinsics per frame at the ORIGINAL photo size (fl_x, fl_y, cx, cy, w, h). Nerfstudio casts rays
  through pixel centres at +0.5 (like COLMAP), so cx, cy are the OpenCV principal point plus 0.5.
  When every frame has the same intrinsics they are repeated at the top level for tools that read only those.
- camera_model "OPENCV" with zero distortion (k1, k2, p1, p2 = 0).
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from fast3r.io.atomic import write_text_atomic
from fast3r.io.frames import ExportFrame, check_frames

OPENCV_TO_OPENGL_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])
NERFSTUDIO_PIXEL_OFFSET = 0.5
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def _frame_intrinsics(frame: ExportFrame) -> dict[str, float | int]:
    return {
        "fl_x": float(frame.K[0, 0]),
        "fl_y": float(frame.K[1, 1]),
        "cx": float(frame.K[0, 2]) + NERFSTUDIO_PIXEL_OFFSET,
        "cy": float(frame.K[1, 2]) + NERFSTUDIO_PIXEL_OFFSET,
        "w": frame.width,
        "h": frame.height,
    }


def write_transforms_json(
    path: str | os.PathLike,
    frames: Sequence[ExportFrame],
    image_dir_prefix: str = "images/",
    ply_file_path: str | None = None,
) -> None:
    """Write `frames` as a Nerfstudio transforms.json; file_path = image_dir_prefix + file_name.

    ply_file_path: the point cloud's path relative to the JSON's folder (e.g. "points.ply"), if any.
    """
    frames = check_frames(frames, str(path))
    if not frames:
        raise ValueError(f"{path}: no frames to write")
    per_frame = []
    for frame in frames:
        entry: dict = {"file_path": f"{image_dir_prefix}{frame.file_name}"}
        entry.update(_frame_intrinsics(frame))
        entry["transform_matrix"] = (frame.c2w @ OPENCV_TO_OPENGL_CAMERA).tolist()
        per_frame.append(entry)

    meta: dict = {"camera_model": "OPENCV", "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
    shared = {key: per_frame[0][key] for key in _INTRINSIC_KEYS}
    if all(all(entry[key] == shared[key] for key in _INTRINSIC_KEYS) for entry in per_frame):
        meta.update(shared)
    if ply_file_path is not None:
        meta["ply_file_path"] = ply_file_path
    meta["frames"] = per_frame
    write_text_atomic(path, json.dumps(meta, indent=2) + "\n")
