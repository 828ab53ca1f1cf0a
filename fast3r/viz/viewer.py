"""Interactive 3D viewer in the browser (viser): the point cloud and every camera's frustum with its photo.

Binds 127.0.0.1 unless another host is asked for: the viewer has no authentication, so exposing it on a
network (host="0.0.0.0") is the caller's explicit choice. The scene stays in the reconstruction's world
frame (viser frusta use OpenCV camera axes like the project); the viewer's up direction is set to minus
the cameras' mean y axis, so scenes photographed upright open upright.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from fast3r.io.frames import (
    ExportFrame,
    camera_colors,
    check_frames,
    default_frustum_scale,
    scene_bounds,
    scene_up_direction,
)
from fast3r.io.ply import validate_point_cloud

DEFAULT_MAX_POINTS = 1_000_000  # more makes browsers slow; a fixed-seed random subset is sent
THUMBNAIL_SIZE = 256  # longest side, pixels, of the photo shown in each frustum


def _import_viser():
    try:
        import viser
        import viser.transforms
    except ImportError as error:
        raise ImportError("the 3D viewer needs viser: pip install 'fast3r[viewer]'") from error
    return viser


def _thumbnail(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"viewer: image for {name!r} must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
    factor = THUMBNAIL_SIZE / max(image.shape[:2])
    if factor >= 1:
        return image
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def start_viewer(
    points: np.ndarray,
    colors: np.ndarray,
    frames: Sequence[ExportFrame],
    images: Sequence[np.ndarray] | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    max_points: int = DEFAULT_MAX_POINTS,
):
    """Start a viser server showing the scene and return it without blocking; call `.stop()` when done.

    points (M, 3), colors (M, 3) uint8; images: optional (H, W, 3) uint8 photo per frame (any size),
    shown as thumbnails inside the frusta. If `port` is taken, viser picks the next free one
    (`server.get_port()` tells which).
    """
    viser = _import_viser()
    points, colors = validate_point_cloud(points, colors, "viewer")
    frames = check_frames(frames, "viewer")
    if images is not None and len(images) != len(frames):
        raise ValueError(f"viewer: {len(frames)} frames but {len(images)} images")
    thumbnails = None
    if images is not None:
        thumbnails = [_thumbnail(image, frame.file_name) for image, frame in zip(images, frames)]
    if len(points) > max_points:
        keep = np.random.default_rng(0).choice(len(points), max_points, replace=False)
        points, colors = points[keep], colors[keep]
    lower, upper = scene_bounds(points, frames)
    point_size = max(float(np.linalg.norm(upper - lower)) / 1000, 1e-6)
    frustum_scale = default_frustum_scale(points, frames)

    server = viser.ViserServer(host=host, port=port, verbose=False)
    server.scene.set_up_direction(tuple(scene_up_direction(frames)))
    if len(points):
        server.scene.add_point_cloud("/points", points, colors, point_size=point_size, point_shape="square")
    for index, (frame, color) in enumerate(zip(frames, camera_colors(len(frames)))):
        server.scene.add_camera_frustum(
            f"/cameras/{index:04d}",
            fov=2 * np.arctan2(frame.height / 2, frame.K[1, 1]),
            aspect=frame.width / frame.height,
            scale=frustum_scale,
            thickness=frustum_scale / 50,
            color=tuple(int(c) for c in color),
            image=None if thumbnails is None else thumbnails[index],
            wxyz=viser.transforms.SO3.from_matrix(frame.c2w[:3, :3]).wxyz,
            position=frame.center,
        )
    return server


def serve(
    points: np.ndarray,
    colors: np.ndarray,
    frames: Sequence[ExportFrame],
    images: Sequence[np.ndarray] | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
) -> None:
    """Show the scene at http://host:port until interrupted (Ctrl-C), then stop the server."""
    server = start_viewer(points, colors, frames, images=images, host=host, port=port)
    print(f"fast3r viewer: http://{server.get_host()}:{server.get_port()}  (Ctrl-C to stop)", flush=True)
    try:
        server.sleep_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
