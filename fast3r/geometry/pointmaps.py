"""Pointmaps in Fast3R's convention from depth and known cameras: the ground truth the estimators invert."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class PointmapsFromDepth:
    """local: per view (H, W, 3) float32 points in that view's camera frame; global_: per view (H, W, 3)
    float32 in view 0's camera frame (NaN where the depth is unknown); c2w: (N, 4, 4) float64
    camera-to-view-0. Stacked (N, H, W, 3) arrays when all views share one size, else lists."""

    local: np.ndarray | list[np.ndarray]
    global_: np.ndarray | list[np.ndarray]
    c2w: np.ndarray


def unproject_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W) z-depth and (3, 3) K -> (H, W, 3) float64 camera-frame points, NaN where depth is not > 0.

    Pixel centres at integer coordinates (OpenCV)."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2 or np.shape(K) != (3, 3):
        raise ValueError(f"unproject_depth needs depth (H, W) and K (3, 3), got {depth.shape} and {np.shape(K)}")
    height, width = depth.shape
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0] * depth
    y = (v - K[1, 2]) / K[1, 1] * depth
    points = np.stack([x, y, depth], axis=-1)
    valid = np.isfinite(depth) & (depth > 0)
    return np.where(valid[..., None], points, np.nan)


def pointmaps_from_depth(
    depths: Sequence[np.ndarray], intrinsics: Sequence[np.ndarray], c2w: Sequence[np.ndarray]
) -> PointmapsFromDepth:
    """Local and global (view 0's frame) pointmaps of N views from depth (H, W), K (3, 3), c2w (4, 4) each."""
    if not len(depths) == len(intrinsics) == len(c2w) or len(depths) == 0:
        raise ValueError(
            f"need one depth, K and c2w per view, got {len(depths)}, {len(intrinsics)} and {len(c2w)}"
        )
    poses = np.asarray(c2w, dtype=np.float64)
    relative = np.linalg.inv(poses[0])[None] @ poses  # (N, 4, 4) camera-to-view-0
    local, global_ = [], []
    for depth, K, pose in zip(depths, intrinsics, relative):
        points = unproject_depth(depth, np.asarray(K, dtype=np.float64))
        local.append(points.astype(np.float32))
        global_.append((points @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32))
    if len({points.shape for points in local}) == 1:
        return PointmapsFromDepth(np.stack(local), np.stack(global_), relative)
    return PointmapsFromDepth(local, global_, relative)
