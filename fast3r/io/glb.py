"""A coloured point cloud and the camera frusta as one binary glTF (.glb) file, through trimesh.

Coordinates: glTF viewers expect y up and look along -z, while the reconstruction's world is OpenCV-like
(usually view 0's camera: y down, z forward). The GLB stores every position as
`OPENCV_TO_GLTF @ x_world`, a 180 degree turn about x (y and z negated), so a scene photographed upright
opens upright in glTF viewers with view 0 looking into the screen. No other scaling or shift is applied.
Frusta are LINES primitives (one node per camera, named `camera_0000`, ...) coloured along a rainbow
ramp in capture order; the point cloud is a POINTS primitive named `points` with per-vertex colours.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from fast3r.io.atomic import write_bytes_atomic
from fast3r.io.frames import ExportFrame, camera_colors, check_frames, default_frustum_scale, frustum_segments
from fast3r.io.ply import validate_point_cloud

OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0])


def _import_trimesh():
    try:
        import trimesh
    except ImportError as error:
        raise ImportError("GLB export needs trimesh: pip install 'fast3r[export]'") from error
    return trimesh


def write_glb(
    path: str | os.PathLike,
    points: np.ndarray,
    colors: np.ndarray,
    frames: Sequence[ExportFrame],
    frustum_scale: float | None = None,
) -> None:
    """Write points (M, 3) with colors (M, 3) uint8 and one frustum per frame to a .glb file.

    frustum_scale: depth of each drawn frustum in world units; default 5% of the scene's diagonal.
    """
    trimesh = _import_trimesh()
    points, colors = validate_point_cloud(points, colors, str(path))
    frames = check_frames(frames, str(path))
    if frustum_scale is None:
        frustum_scale = default_frustum_scale(points, frames)
    elif not np.isfinite(frustum_scale) or frustum_scale <= 0:
        raise ValueError(f"{path}: frustum_scale must be a positive number, got {frustum_scale}")
    if len(points) == 0 and not frames:
        raise ValueError(f"{path}: nothing to export (no points and no cameras)")

    scene = trimesh.Scene()
    if len(points):
        rgba = np.concatenate([colors, np.full((len(colors), 1), 255, dtype=np.uint8)], axis=1)
        scene.add_geometry(trimesh.PointCloud(points @ OPENCV_TO_GLTF.T, colors=rgba), geom_name="points")
    segments = frustum_segments(frames, frustum_scale) @ OPENCV_TO_GLTF.T  # (N, 8, 2, 3)
    for index, (camera_segments, color) in enumerate(zip(segments, camera_colors(len(frames)))):
        lines = [trimesh.path.entities.Line([2 * k, 2 * k + 1]) for k in range(len(camera_segments))]
        frustum = trimesh.path.Path3D(
            entities=lines,
            vertices=camera_segments.reshape(-1, 3),
            colors=np.tile(np.append(color, 255), (len(lines), 1)).astype(np.uint8),
            process=False,
        )
        scene.add_geometry(frustum, geom_name=f"camera_{index:04d}")
    write_bytes_atomic(path, scene.export(file_type="glb"))
