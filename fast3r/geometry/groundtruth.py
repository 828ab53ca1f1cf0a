"""Ground-truth pointmaps in Fast3R's convention, from depth and known cameras: what the camera
estimators must invert. Also builders for the real RGB-D and stereo sets used to check them."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass
class PointmapsFromDepth:
    """local: per view (H, W, 3) float32 points in that view's camera frame; global_: per view (H, W, 3)
    float32 in view 0's camera frame (NaN where the depth is unknown); c2w: (N, 4, 4) float64
    camera-to-view-0; K: (N, 3, 3) float64. Stacked (N, H, W, 3) arrays when all views share one size,
    else lists."""

    local: np.ndarray | list[np.ndarray]
    global_: np.ndarray | list[np.ndarray]
    c2w: np.ndarray
    K: np.ndarray


def unproject_depth(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W) z-depth and (3, 3) K -> (H, W, 3) float64 camera-frame points, NaN where depth is not a
    finite positive number. Pixel centres at integer coordinates (OpenCV)."""
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2 or np.shape(K) != (3, 3):
        raise ValueError(f"unproject_depth needs depth (H, W) and K (3, 3), got {depth.shape} and {np.shape(K)}")
    height, width = depth.shape
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    points = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], axis=-1)
    valid = np.isfinite(depth) & (depth > 0)
    return np.where(valid[..., None], points, np.nan)


def pointmaps_from_depth(
    depths: Sequence[np.ndarray], intrinsics: Sequence[np.ndarray], c2w: Sequence[np.ndarray]
) -> PointmapsFromDepth:
    """Local and global (view 0's frame) pointmaps of N views from depth (H, W), K (3, 3), c2w (4, 4) each."""
    if not len(depths) == len(intrinsics) == len(c2w) or len(depths) == 0:
        raise ValueError(f"need one depth, K and c2w per view, got {len(depths)}, {len(intrinsics)} and {len(c2w)}")
    poses = np.asarray(c2w, dtype=np.float64)
    relative = np.linalg.inv(poses[0])[None] @ poses  # (N, 4, 4) camera-to-view-0
    local, global_ = [], []
    for depth, K, pose in zip(depths, intrinsics, relative):
        points = unproject_depth(depth, np.asarray(K, dtype=np.float64))
        local.append(points.astype(np.float32))
        global_.append((points @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32))
    K = np.asarray(intrinsics, dtype=np.float64)
    if len({points.shape for points in local}) == 1:
        return PointmapsFromDepth(np.stack(local), np.stack(global_), relative, K)
    return PointmapsFromDepth(local, global_, relative, K)


def centred_crop(K: np.ndarray, height: int, width: int) -> tuple[slice, slice]:
    """The largest crop (rows, cols) whose centre (W/2, H/2) lies within half a pixel of K's principal
    point, as Fast3R's cameras assume."""

    def axis(centre: float, size: int) -> slice:
        start = max(0, math.ceil(2.0 * centre - size))
        length = min(size - start, round(2.0 * (centre - start)))
        if length <= 0:
            raise ValueError(f"principal point {centre} lies outside the image (size {size})")
        return slice(start, start + length)

    return axis(float(K[1, 2]), height), axis(float(K[0, 2]), width)


def crop_intrinsics(K: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """K of the crop image[rows, cols]."""
    cropped = np.array(K, dtype=np.float64)
    cropped[0, 2] -= cols.start or 0
    cropped[1, 2] -= rows.start or 0
    return cropped


def splat_depth(
    depth: np.ndarray, K_source: np.ndarray, K_target: np.ndarray, target_from_source: np.ndarray,
    target_size: tuple[int, int],
) -> np.ndarray:
    """Forward-warp a depth map into another camera: each source pixel lands on the nearest target pixel,
    the nearest surface wins. Returns (H, W) float64 target z-depth, 0 where nothing lands."""
    points = unproject_depth(depth, K_source).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1)] @ target_from_source[:3, :3].T + target_from_source[:3, 3]
    points = points[points[:, 2] > 0]
    u = np.round(K_target[0, 0] * points[:, 0] / points[:, 2] + K_target[0, 2]).astype(np.int64)
    v = np.round(K_target[1, 1] * points[:, 1] / points[:, 2] + K_target[1, 2]).astype(np.int64)
    height, width = target_size
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    target = np.full((height, width), np.inf)
    np.minimum.at(target, (v[inside], u[inside]), points[inside, 2])
    return np.where(np.isfinite(target), target, 0.0)


def rgbd_folder_pointmaps(folder: str | Path, *, centre_principal_point: bool = True) -> PointmapsFromDepth:
    """Pointmaps of every frame of a `cameras_opencv.json` folder with depth (see shared/data/README.md).

    With `centre_principal_point`, each frame is cropped (`centred_crop`) so its principal point sits at
    the image centre, as Fast3R's cameras assume. Depth in metres = raw / depth_scale; 0 = unknown.
    """
    folder = Path(folder)
    index = folder / "cameras_opencv.json"
    try:
        frames = json.loads(index.read_text())["frames"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{index}: cannot read the frames ({error})") from error
    depths, intrinsics = [], []
    for frame in frames:
        if not frame.get("depth"):
            raise ValueError(f"{index}: frame {frame.get('file')!r} has no depth")
        raw = cv2.imread(str(folder / frame["depth"]), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise ValueError(f"{folder / frame['depth']}: cannot read the depth image")
        K = np.asarray(frame["K"], dtype=np.float64)
        rows, cols = centred_crop(K, *raw.shape) if centre_principal_point else (slice(None), slice(None))
        depths.append(raw[rows, cols] / float(frame["depth_scale"]))
        intrinsics.append(crop_intrinsics(K, rows, cols))
    return pointmaps_from_depth(depths, intrinsics, [frame["c2w"] for frame in frames])


def stereo_pair_pointmaps(
    disparity: np.ndarray, focal: float, baseline: float, doffs: float, principal_point: tuple[float, float]
) -> PointmapsFromDepth:
    """Two views of a rectified stereo pair in the Middlebury convention: left disparity d (NaN or inf where
    unknown), depth = focal * baseline / (d + doffs), the right camera at +baseline along x with principal
    point x shifted by doffs. The right view's depth is the left one splatted there; both views are cropped
    to centre their principal points (so the two may differ in width)."""
    height, width = disparity.shape
    depth_left = focal * baseline / (np.asarray(disparity, dtype=np.float64) + doffs)
    cx, cy = principal_point
    K_left = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
    K_right = K_left.copy()
    K_right[0, 2] += doffs
    right_c2w = np.eye(4)
    right_c2w[0, 3] = baseline
    depth_right = splat_depth(depth_left, K_left, K_right, np.linalg.inv(right_c2w), (height, width))
    depths, intrinsics = [], []
    for depth, K in ((depth_left, K_left), (depth_right, K_right)):
        rows, cols = centred_crop(K, height, width)
        depths.append(depth[rows, cols])
        intrinsics.append(crop_intrinsics(K, rows, cols))
    return pointmaps_from_depth(depths, intrinsics, [np.eye(4), right_c2w])
