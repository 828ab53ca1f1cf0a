"""Camera poses by PnP-RANSAC on a global pointmap and its pixel grid (the Fast3R release's path)."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PnPConfig:
    """Settings of the PnP path; defaults are the release's, except the pixel subsampling.

    iterations / reprojection_error: RANSAC iterations and inlier threshold in pixels.
    max_points: pixels handed to RANSAC are taken on a regular grid with stride
        ceil(sqrt(H * W / max_points)) in both directions, so at most about `max_points` of them
        (512x384 -> stride 2, 49152 pixels). The release uses every pixel; on noisy pointmaps with
        outliers the subsampled poses are as accurate as the full ones (mean errors within 0.02 degree
        of each other, either way) for 5-15x less time (benchmarks/bench_cameras.py, method
        "pnp-full"). None uses every pixel.
    sweep_focals: focal lengths tried by the focal sweep, geomspace(S/2, 3S), S = max(H, W).
    """

    iterations: int = 100
    reprojection_error: float = 5.0
    max_points: int | None = 50_000
    sweep_focals: int = 100


@dataclass(frozen=True)
class PnPResult:
    """c2w: (4, 4) float64 camera-to-world; inliers: RANSAC inlier count; reprojection_error: mean over
    the inliers, pixels; success: False -> identity."""

    c2w: np.ndarray
    inliers: int
    reprojection_error: float
    success: bool


def intrinsics(focal: float, height: int, width: int) -> np.ndarray:
    """(3, 3) float64 K = [[f, 0, W/2], [0, f, H/2], [0, 0, 1]]."""
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def pnp_correspondences(
    pointmap: np.ndarray, config: PnPConfig = PnPConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """3D-2D pairs from a global pointmap (H, W, 3): finite points on the subsampling grid.

    Returns object points (M, 3) float64 and pixels (M, 2) float64 at integer coordinates.
    """
    height, width = pointmap.shape[:2]
    stride = 1
    if config.max_points is not None and height * width > config.max_points:
        stride = math.ceil(math.sqrt(height * width / config.max_points))
    sampled = np.asarray(pointmap[::stride, ::stride], dtype=np.float64)  # (h, w, 3)
    rows = np.arange(0, height, stride, dtype=np.float64)
    cols = np.arange(0, width, stride, dtype=np.float64)
    pixels = np.stack(np.meshgrid(cols, rows, indexing="xy"), axis=-1)  # (h, w, 2) as (u, v)
    keep = np.isfinite(sampled).all(axis=-1)
    return sampled[keep], pixels[keep]


def solve_pnp(
    object_points: np.ndarray, pixels: np.ndarray, K: np.ndarray, config: PnPConfig = PnPConfig()
) -> PnPResult:
    """solvePnPRansac with SQPNP; world-to-camera result inverted to camera-to-world.

    Returns the identity with success False (and a warning) when OpenCV fails or too few points exist.
    """
    if len(object_points) >= 6:
        try:
            found, rvec, tvec, inliers = cv2.solvePnPRansac(
                object_points,
                pixels,
                K,
                None,
                iterationsCount=config.iterations,
                reprojectionError=config.reprojection_error,
                flags=cv2.SOLVEPNP_SQPNP,
            )
        except cv2.error as error:
            warnings.warn(f"solvePnPRansac raised {str(error).strip().splitlines()[-1]}; using the identity pose")
            found = False
        if found and inliers is not None and np.isfinite(rvec).all() and np.isfinite(tvec).all():
            rotation, _ = cv2.Rodrigues(rvec)
            chosen = inliers[:, 0]
            projected, _ = cv2.projectPoints(object_points[chosen], rvec, tvec, K, None)
            error = float(np.linalg.norm(projected[:, 0] - pixels[chosen], axis=1).mean())
            c2w = np.eye(4)
            c2w[:3, :3] = rotation.T
            c2w[:3, 3] = -rotation.T @ tvec.reshape(3)
            return PnPResult(c2w=c2w, inliers=len(chosen), reprojection_error=error, success=True)
    warnings.warn(f"PnP found no pose from {len(object_points)} points; using the identity pose")
    return PnPResult(c2w=np.eye(4), inliers=0, reprojection_error=float("inf"), success=False)


def pose_from_pnp(pointmap: np.ndarray, focal: float, config: PnPConfig = PnPConfig()) -> PnPResult:
    """Camera-to-world pose of one view from its global pointmap (H, W, 3) and a known focal."""
    height, width = pointmap.shape[:2]
    object_points, pixels = pnp_correspondences(pointmap, config)
    return solve_pnp(object_points, pixels, intrinsics(focal, height, width), config)


def pose_and_focal_from_pnp_sweep(
    pointmap: np.ndarray, config: PnPConfig = PnPConfig()
) -> tuple[PnPResult, float]:
    """Focal sweep: PnP at each focal of geomspace(S/2, 3S), S = max(H, W); keeps the most inliers.

    Ties (common on small images, where the 5 px threshold admits every point over a range of focals)
    go to the smallest mean reprojection error over the inliers.
    """
    height, width = pointmap.shape[:2]
    size = max(height, width)
    object_points, pixels = pnp_correspondences(pointmap, config)
    best, best_focal = None, float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for focal in np.geomspace(size / 2.0, 3.0 * size, config.sweep_focals):
            result = solve_pnp(object_points, pixels, intrinsics(float(focal), height, width), config)
            rank = (result.inliers, -result.reprojection_error)  # most inliers, then smallest error
            if result.success and (best is None or rank > (best.inliers, -best.reprojection_error)):
                best, best_focal = result, float(focal)
    if best is None:
        warnings.warn("PnP focal sweep found no pose at any focal; using the identity pose")
        return PnPResult(c2w=np.eye(4), inliers=0, reprojection_error=float("inf"), success=False), float(size)
    return best, best_focal
