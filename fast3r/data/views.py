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


def visible_share(view: View, other: View, tolerance: float = 0.05) -> float:
    """Share of `view`'s known points that `other` sees: in front of it, inside its image, and not hidden
    (its depth at that pixel within `tolerance`, relative, of the point's, plus 2 cm). Needs both depths."""
    points = view.points_world()[view.valid].astype(np.float64)
    if not len(points):
        return 0.0
    world_to_camera = np.linalg.inv(other.c2w)
    camera = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    camera = camera[camera[:, 2] > 1e-6]
    pixels = camera @ other.K.T
    u = np.floor(pixels[:, 0] / pixels[:, 2] + 0.5).astype(int)  # pixel centres at integer coordinates
    v = np.floor(pixels[:, 1] / pixels[:, 2] + 0.5).astype(int)
    inside = (u >= 0) & (u < other.width) & (v >= 0) & (v < other.height)
    z = camera[inside, 2]
    unhidden = np.abs(other.depth[v[inside], u[inside]] - z) < tolerance * z + 0.02
    return float(unhidden.sum() / len(points))
