"""The one record every data source produces: a posed view with optional depth."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class View:
    """One image with its camera, in OpenCV axes (x right, y down, z forward).

    image:  (H, W, 3) uint8 RGB
    K:      (3, 3) float64 intrinsics in pixels of `image`
    c2w:    (4, 4) float64 camera-to-world
    depth:  (H, W) float32 z-depth in the dataset's units, 0 where unknown; None if the source has none
    name:   a stable identifier (usually the image file name)
    """

    image: np.ndarray
    K: np.ndarray
    c2w: np.ndarray
    depth: np.ndarray | None = None
    name: str = ""

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def valid(self) -> np.ndarray:
        """(H, W) bool: pixels with a known, finite, positive depth."""
        if self.depth is None:
            return np.zeros(self.image.shape[:2], dtype=bool)
        return np.isfinite(self.depth) & (self.depth > 0)

    def points_camera(self) -> np.ndarray:
        """(H, W, 3) float32 points in this view's camera frame (zeros where depth is unknown)."""
        if self.depth is None:
            raise ValueError(f"view {self.name!r} has no depth")
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64)
        z = np.where(self.valid, self.depth, 0.0).astype(np.float64)
        x = (u - self.K[0, 2]) / self.K[0, 0] * z
        y = (v - self.K[1, 2]) / self.K[1, 1] * z
        return np.stack([x, y, z], axis=-1).astype(np.float32)

    def points_world(self) -> np.ndarray:
        """(H, W, 3) float32 points in world coordinates (zeros where depth is unknown)."""
        pts = self.points_camera().astype(np.float64)
        world = pts @ self.c2w[:3, :3].T + self.c2w[:3, 3]
        return np.where(self.valid[..., None], world, 0.0).astype(np.float32)
