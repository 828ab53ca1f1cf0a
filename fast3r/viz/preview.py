"""A still picture of a reconstruction: points splatted from two virtual cameras, input cameras drawn.

Left panel: oblique view from behind and above the input cameras, looking 35 degrees down onto the scene.
Right panel: bird's-eye view straight down, with the cameras' mean viewing direction pointing up the image.
"Up" is minus the cameras' mean y axis (OpenCV y points down). numpy and OpenCV only.
"""
from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np

from fast3r.io.atomic import write_bytes_atomic
from fast3r.io.frames import (
    ExportFrame,
    camera_colors,
    check_frames,
    default_frustum_scale,
    frustum_segments,
    scene_bounds,
    scene_up_direction,
)
from fast3r.io.ply import validate_point_cloud

BACKGROUND = (32, 32, 32)
_FIELD_OF_VIEW_DEG = 50.0
_OBLIQUE_TILT_DEG = 35.0
_MAX_SPLATTED_POINTS = 2_000_000
_NEAR = 1e-6


def _look_at(eye: np.ndarray, forward: np.ndarray, image_up: np.ndarray) -> np.ndarray:
    """(4, 4) world-to-camera (OpenCV axes) of a camera at `eye` looking along `forward`."""
    z_axis = forward / np.linalg.norm(forward)
    y_axis = -(image_up - np.dot(image_up, z_axis) * z_axis)
    y_axis /= np.linalg.norm(y_axis)
    x_axis = np.cross(y_axis, z_axis)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([x_axis, y_axis, z_axis])
    w2c[:3, 3] = -w2c[:3, :3] @ eye
    return w2c


def _horizontal_forward(frames: Sequence[ExportFrame], up: np.ndarray) -> np.ndarray:
    """Unit mean viewing direction of the cameras in the plane orthogonal to `up` (any such direction if none)."""
    candidates = [np.mean([f.c2w[:3, 2] for f in frames], axis=0)] if frames else []
    candidates += [np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])]
    for direction in candidates:
        horizontal = direction - np.dot(direction, up) * up
        if np.linalg.norm(horizontal) > 1e-6:
            return horizontal / np.linalg.norm(horizontal)
    raise AssertionError("unreachable: two orthogonal candidates cannot both be parallel to up")


def _virtual_cameras(points: np.ndarray, frames: Sequence[ExportFrame]) -> list[tuple[str, np.ndarray]]:
    """[(label, w2c (4, 4))] for the oblique and the bird's-eye view, framing the robust scene bounds."""
    lower, upper = scene_bounds(points, frames)
    center = (lower + upper) / 2
    radius = max(float(np.linalg.norm(upper - lower)) / 2, 1e-6)
    distance = 1.1 * radius / np.tan(np.radians(_FIELD_OF_VIEW_DEG) / 2)
    up = scene_up_direction(frames)
    forward = _horizontal_forward(frames, up)
    tilt = np.radians(_OBLIQUE_TILT_DEG)
    oblique_direction = np.cos(tilt) * forward - np.sin(tilt) * up
    return [
        ("oblique", _look_at(center - distance * oblique_direction, oblique_direction, up)),
        ("top", _look_at(center + distance * up, -up, forward)),
    ]


def _project(world: np.ndarray, w2c: np.ndarray, focal: float, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (M, 2) and depths (M,) of world points (M, 3) in a virtual camera of `size` (W, H)."""
    camera = world @ w2c[:3, :3].T + w2c[:3, 3]
    depth = camera[:, 2]
    safe_depth = np.where(depth > _NEAR, depth, _NEAR)
    pixels = focal * camera[:, :2] / safe_depth[:, None] + np.array([size[0] / 2, size[1] / 2])
    return pixels, depth


def _splat(
    canvas: np.ndarray, points: np.ndarray, colors: np.ndarray, w2c: np.ndarray, focal: float, point_px: int
) -> None:
    """Draw points as point_px-wide squares, nearest point winning each pixel (z-buffer by sorting)."""
    height, width = canvas.shape[:2]
    pixels, depth = _project(points, w2c, focal, (width, height))
    base = np.floor(pixels).astype(np.int64)  # (M, 2)
    in_front = depth > _NEAR
    offsets = [(dx, dy) for dx in range(point_px) for dy in range(point_px)]
    columns = np.concatenate([base[in_front, 0] + dx for dx, _ in offsets])
    rows = np.concatenate([base[in_front, 1] + dy for _, dy in offsets])
    depths = np.tile(depth[in_front], len(offsets))
    point_index = np.tile(np.flatnonzero(in_front), len(offsets))
    inside = (columns >= 0) & (columns < width) & (rows >= 0) & (rows < height)
    pixel_index = rows[inside] * width + columns[inside]
    order = np.lexsort((depths[inside], pixel_index))  # by pixel, nearest first
    pixel_sorted = pixel_index[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = pixel_sorted[1:] != pixel_sorted[:-1]
    winners = point_index[inside][order][first]
    canvas.reshape(-1, 3)[pixel_sorted[first]] = colors[winners]


def _draw_cameras(
    canvas: np.ndarray, segments: np.ndarray, colors: np.ndarray, w2c: np.ndarray, focal: float
) -> None:
    """Draw frustum segments (N, 8, 2, 3) in colors (N, 3); segments with an end behind the camera are skipped."""
    height, width = canvas.shape[:2]
    for camera_segments, color in zip(segments, colors):
        pixels, depth = _project(camera_segments.reshape(-1, 3), w2c, focal, (width, height))
        for k in range(0, len(pixels), 2):
            if depth[k] > _NEAR and depth[k + 1] > _NEAR:
                start = tuple(int(v) for v in np.clip(pixels[k].round(), -1e5, 1e5))
                end = tuple(int(v) for v in np.clip(pixels[k + 1].round(), -1e5, 1e5))
                cv2.line(canvas, start, end, tuple(int(c) for c in color), 1, cv2.LINE_AA)


def render_preview(
    points: np.ndarray,
    colors: np.ndarray,
    frames: Sequence[ExportFrame],
    path_png: str | os.PathLike,
    panel_size: tuple[int, int] = (800, 600),
) -> np.ndarray:
    """Render points (M, 3) / colors (M, 3) uint8 and camera frusta to `path_png`; returns the RGB image.

    panel_size: (width, height) of each of the two panels; the picture is (height, 2 * width, 3).
    """
    points, colors = validate_point_cloud(points, colors, str(path_png))
    frames = check_frames(frames, str(path_png))
    if len(points) == 0 and not frames:
        raise ValueError(f"{path_png}: nothing to draw (no points and no cameras)")
    panel_width, panel_height = panel_size
    if panel_width < 16 or panel_height < 16:
        raise ValueError(f"{path_png}: panel_size must be at least 16x16, got {panel_size}")
    num_points = len(points)
    if num_points > _MAX_SPLATTED_POINTS:
        keep = np.random.default_rng(0).choice(len(points), _MAX_SPLATTED_POINTS, replace=False)
        points, colors = points[keep], colors[keep]
    focal = panel_height / (2 * np.tan(np.radians(_FIELD_OF_VIEW_DEG) / 2))
    point_px = 2 if len(points) < panel_width * panel_height else 1
    segments = frustum_segments(frames, default_frustum_scale(points, frames))
    frustum_colors = camera_colors(len(frames))
    panels = []
    for label, w2c in _virtual_cameras(points, frames):
        canvas = np.empty((panel_height, panel_width, 3), dtype=np.uint8)
        canvas[:] = BACKGROUND
        if len(points):
            _splat(canvas, points.astype(np.float64), colors, w2c, focal, point_px)
        _draw_cameras(canvas, segments, frustum_colors, w2c, focal)
        caption = f"{label}: {num_points} points, {len(frames)} cameras"
        cv2.putText(canvas, caption, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(canvas)
    picture = np.concatenate(panels, axis=1)  # (H, 2W, 3) RGB
    ok, png = cv2.imencode(".png", picture[:, :, ::-1])
    if not ok:
        raise RuntimeError(f"{path_png}: OpenCV could not encode the preview")
    write_bytes_atomic(path_png, png.tobytes())
    return picture
