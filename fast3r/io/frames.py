"""The camera record every export takes, and the camera drawing shared by the exporters and viewers.

An `ExportFrame` describes one ORIGINAL photo: its file name, its size, its intrinsics in pixels of that
photo and its camera-to-world pose. Conventions are the project's: OpenCV camera axes (x right, y down,
z forward) and pixel centres at integer coordinates. Exporters whose formats differ convert on writing.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

_ROTATION_TOLERANCE = 1e-4
_SCENE_SAMPLE = 200_000  # points sampled when estimating the scene extent


@dataclass
class ExportFrame:
    """One original photo and its camera.

    file_name: the photo's original file name (relative, e.g. "IMG_0001.jpg")
    width, height: size of the ORIGINAL photo in pixels
    K: (3, 3) pinhole intrinsics (no skew) in pixels of the original photo, OpenCV pixel centres at
       integer coordinates
    c2w: (4, 4) camera-to-world, OpenCV axes, rotation part orthonormal
    """

    file_name: str
    width: int
    height: int
    K: np.ndarray
    c2w: np.ndarray

    def __post_init__(self) -> None:
        where = f"ExportFrame {self.file_name!r}"
        if not isinstance(self.file_name, str) or not self.file_name:
            raise ValueError(f"{where}: file_name must be a non-empty string")
        if int(self.width) != self.width or int(self.height) != self.height or self.width <= 0 or self.height <= 0:
            raise ValueError(f"{where}: width and height must be positive integers, got {self.width}x{self.height}")
        self.width, self.height = int(self.width), int(self.height)
        self.K = np.array(self.K, dtype=np.float64)
        self.c2w = np.array(self.c2w, dtype=np.float64)
        if self.K.shape != (3, 3) or not np.isfinite(self.K).all():
            raise ValueError(f"{where}: K must be a finite (3, 3) matrix, got shape {self.K.shape}")
        pinhole = self.K[0, 1] == 0 and self.K[1, 0] == 0 and np.allclose(self.K[2], [0.0, 0.0, 1.0])
        if self.K[0, 0] <= 0 or self.K[1, 1] <= 0 or not pinhole:
            raise ValueError(
                f"{where}: K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got {self.K.tolist()}"
            )
        if self.c2w.shape != (4, 4) or not np.isfinite(self.c2w).all():
            raise ValueError(f"{where}: c2w must be a finite (4, 4) matrix, got shape {self.c2w.shape}")
        if not np.allclose(self.c2w[3], [0.0, 0.0, 0.0, 1.0]):
            raise ValueError(f"{where}: c2w last row must be [0, 0, 0, 1], got {self.c2w[3].tolist()}")
        rotation = self.c2w[:3, :3]
        if (
            np.abs(rotation.T @ rotation - np.eye(3)).max() > _ROTATION_TOLERANCE
            or np.linalg.det(rotation) <= 0
        ):
            raise ValueError(f"{where}: c2w rotation is not a proper rotation (orthonormal, det +1)")

    @property
    def w2c(self) -> np.ndarray:
        """(4, 4) world-to-camera, the exact rigid inverse of c2w."""
        rotation, center = self.c2w[:3, :3], self.c2w[:3, 3]
        w2c = np.eye(4)
        w2c[:3, :3] = rotation.T
        w2c[:3, 3] = -rotation.T @ center
        return w2c

    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates."""
        return self.c2w[:3, 3].copy()

    def frustum_corners(self, depth: float) -> np.ndarray:
        """(4, 3) world points of the image corners (outer pixel edges) at z-depth `depth`.

        Order: top-left, top-right, bottom-right, bottom-left.
        """
        u = np.array([-0.5, self.width - 0.5, self.width - 0.5, -0.5])
        v = np.array([-0.5, -0.5, self.height - 0.5, self.height - 0.5])
        x = (u - self.K[0, 2]) / self.K[0, 0]
        y = (v - self.K[1, 2]) / self.K[1, 1]
        corners_camera = np.stack([x, y, np.ones(4)], axis=1) * depth  # (4, 3)
        return corners_camera @ self.c2w[:3, :3].T + self.c2w[:3, 3]


def check_frames(frames: Sequence[ExportFrame], where: str) -> list[ExportFrame]:
    """Return `frames` as a list after checking they are ExportFrames with unique file names."""
    frames = list(frames)
    for index, frame in enumerate(frames):
        if not isinstance(frame, ExportFrame):
            raise TypeError(f"{where}: frames[{index}] is {type(frame).__name__}, expected ExportFrame")
    repeated = [name for name, count in Counter(f.file_name for f in frames).items() if count > 1]
    if repeated:
        raise ValueError(f"{where}: file names must be unique, repeated: {repeated[:5]}")
    return frames


def frustum_segments(frames: Sequence[ExportFrame], depth: float) -> np.ndarray:
    """(num_frames, 8, 2, 3) line segments of each camera pyramid: 4 apex-to-corner edges, 4 image edges."""
    segments = np.empty((len(frames), 8, 2, 3))
    for index, frame in enumerate(frames):
        corners = frame.frustum_corners(depth)  # (4, 3)
        segments[index, :4, 0] = frame.center
        segments[index, :4, 1] = corners
        segments[index, 4:, 0] = corners
        segments[index, 4:, 1] = np.roll(corners, -1, axis=0)
    return segments


def camera_colors(num_cameras: int) -> np.ndarray:
    """(num_cameras, 3) uint8 RGB colours running through a rainbow ramp in capture order.

    The ramp skips the darkest ends of the Turbo colormap so frusta stand out on dark backgrounds.
    """
    if num_cameras == 0:
        return np.zeros((0, 3), dtype=np.uint8)
    ramp = np.linspace(30, 225, num_cameras).round().astype(np.uint8)[:, None]  # (N, 1)
    bgr = cv2.applyColorMap(ramp, cv2.COLORMAP_TURBO)[:, 0]  # (N, 3)
    return np.ascontiguousarray(bgr[:, ::-1])


def _sample_rows(points: np.ndarray, max_rows: int) -> np.ndarray:
    step = max(1, len(points) // max_rows)
    return points[::step]


def scene_bounds(points: np.ndarray, frames: Sequence[ExportFrame]) -> tuple[np.ndarray, np.ndarray]:
    """Robust (3,) lower and upper corners: the 2nd-98th percentile box of the points, grown to hold the cameras."""
    parts = []
    if len(points):
        parts.append(np.percentile(_sample_rows(np.asarray(points, dtype=np.float64), _SCENE_SAMPLE), [2, 98], axis=0))
    if len(frames):
        centers = np.stack([frame.center for frame in frames])
        parts.append(np.stack([centers.min(axis=0), centers.max(axis=0)]))
    if not parts:
        return np.zeros(3), np.zeros(3)
    stacked = np.concatenate(parts)  # (2 * parts, 3)
    return stacked.min(axis=0), stacked.max(axis=0)


def default_frustum_scale(points: np.ndarray, frames: Sequence[ExportFrame]) -> float:
    """Frustum depth for drawing: 5% of the diagonal of `scene_bounds`, or 1.0 for a degenerate scene."""
    lower, upper = scene_bounds(points, frames)
    diagonal = float(np.linalg.norm(upper - lower))
    return 0.05 * diagonal if diagonal > 0 else 1.0


def scene_up_direction(frames: Sequence[ExportFrame]) -> np.ndarray:
    """(3,) unit world vector pointing 'up' for the cameras: minus their mean y axis (OpenCV y is down).

    Falls back to world -y when there are no cameras or their y axes cancel out.
    """
    if frames:
        mean_down = np.mean([frame.c2w[:3, 1] for frame in frames], axis=0)
        norm = np.linalg.norm(mean_down)
        if norm > 1e-6:
            return -mean_down / norm
    return np.array([0.0, -1.0, 0.0])
