"""Focal length of a pinhole camera from a pointmap in that camera's own frame."""
from __future__ import annotations

import numpy as np
import torch

from fast3r.geometry.masks import finite_points, masked_percentile


def pixel_grid(height: int, width: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 2) float64 pixel coordinates (u, v) at integer positions (OpenCV pixel centres)."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64, device=device),
        torch.arange(width, dtype=torch.float64, device=device),
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def estimate_focal_batched(
    points: torch.Tensor,
    confidence: torch.Tensor | None = None,
    *,
    min_conf_percentile: float = 10.0,
    iterations: int = 100,
) -> torch.Tensor:
    """Per view focal length in pixels, principal point at (W/2, H/2), as the Fast3R release estimates it.

    points: (B, H, W, 3) in each view's own camera frame (OpenCV axes). confidence: (B, H, W) or None.
    Uses the points that are finite, in front of the camera (z > 0) and whose confidence is at or above
    the view's `min_conf_percentile`. Minimises sum |uv - f * xy/z| (uv: pixel minus principal point):
    the least-squares start f = mean(<xy/z, uv>) / mean(<xy/z, xy/z>), then `iterations` Weiszfeld
    (iteratively reweighted) steps with weights 1 / max(residual, 1e-8).
    Returns (B,) float64; NaN for a view with no usable point.
    """
    if points.ndim != 4 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, H, W, 3), got {tuple(points.shape)}")
    batch, height, width, _ = points.shape
    if confidence is not None and confidence.shape != points.shape[:3]:
        raise ValueError(f"confidence must be (B, H, W) = {tuple(points.shape[:3])}, got {tuple(confidence.shape)}")
    flat = points.reshape(batch, -1, 3)  # (B, HW, 3)
    usable = finite_points(flat) & (flat[..., 2] > 0)  # (B, HW)
    if confidence is not None:
        conf = confidence.reshape(batch, -1)
        usable = usable & torch.isfinite(conf)
        threshold = masked_percentile(conf, usable, min_conf_percentile)  # (B,)
        usable = usable & (conf >= threshold[:, None])
    flat = torch.where(usable[..., None], flat, torch.ones_like(flat)).to(torch.float64)
    xy_over_z = flat[..., :2] / flat[..., 2:3]  # (B, HW, 2)
    principal = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64, device=points.device)
    pixels = (pixel_grid(height, width, device=points.device) - principal).reshape(1, -1, 2)  # (1, HW, 2)

    weight = usable.to(torch.float64)  # (B, HW)
    dot_xy_uv = weight * (xy_over_z * pixels).sum(dim=-1)  # (B, HW), zero where unusable
    dot_xy_xy = weight * xy_over_z.square().sum(dim=-1)
    dot_uv_uv = weight * pixels.square().sum(dim=-1)
    focal = dot_xy_uv.sum(dim=1) / dot_xy_xy.sum(dim=1)  # (B,)
    for _ in range(iterations):
        # |uv - f xy/z|^2 expanded, so each step reads three numbers per pixel
        f = focal[:, None]
        squared = dot_uv_uv - 2.0 * f * dot_xy_uv + f.square() * dot_xy_xy
        reweight = squared.clamp(min=1e-16).rsqrt()  # 1 / max(residual, 1e-8)
        focal = (reweight * dot_xy_uv).sum(dim=1) / (reweight * dot_xy_xy).sum(dim=1)
    return torch.where(usable.any(dim=1) & torch.isfinite(focal), focal, torch.full_like(focal, float("nan")))


def estimate_focal(
    pointmap: np.ndarray,
    confidence: np.ndarray | None = None,
    *,
    min_conf_percentile: float = 10.0,
    iterations: int = 100,
) -> float:
    """NumPy form of `estimate_focal_batched` for one view: pointmap (H, W, 3), confidence (H, W)."""
    pointmap = np.asarray(pointmap)
    if pointmap.ndim != 3 or pointmap.shape[-1] != 3:
        raise ValueError(f"pointmap must be (H, W, 3), got {pointmap.shape}")
    conf = None if confidence is None else torch.from_numpy(np.asarray(confidence))[None]
    focal = estimate_focal_batched(
        torch.from_numpy(pointmap)[None], conf, min_conf_percentile=min_conf_percentile, iterations=iterations
    )
    return float(focal[0])
