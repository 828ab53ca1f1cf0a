"""Fast batched cameras: each view's local pointmap aligned to the global one by a Sim(3).

Local points live in the view's own camera frame, so the Sim(3) taking them onto the global pointmap
(view 0's frame) is the view's camera-to-world pose, with `scale` the ratio of the two heads' units.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fast3r.geometry.masks import finite_points, masked_percentile
from fast3r.geometry.umeyama import MIN_POINTS, umeyama_batched


@dataclass
class AlignResult:
    """c2w: (B, 4, 4) float64; scale: (B,) float64 local-to-global; num_points: (B,) points fitted (weight > 0);
    aligned_points: (B, H, W, 3) local points moved into the global frame, input dtype (or None)."""

    c2w: torch.Tensor
    scale: torch.Tensor
    num_points: torch.Tensor
    aligned_points: torch.Tensor | None


def alignment_mask(
    local_points: torch.Tensor, global_points: torch.Tensor, confidence: torch.Tensor, conf_percentile: float
) -> torch.Tensor:
    """(B, H, W) bool: pixels valid in both pointmaps whose global confidence is at or above the view's
    `conf_percentile`; all valid pixels where that leaves fewer than 3."""
    batch = local_points.shape[0]
    valid = finite_points(local_points) & finite_points(global_points) & torch.isfinite(confidence)
    flat_valid = valid.reshape(batch, -1)
    flat_conf = confidence.reshape(batch, -1)
    threshold = masked_percentile(flat_conf, flat_valid, conf_percentile)  # (B,)
    confident = flat_valid & (flat_conf >= threshold[:, None])
    too_few = confident.sum(dim=1) < MIN_POINTS
    return torch.where(too_few[:, None], flat_valid, confident).reshape(valid.shape)


def alignment_weights(
    mask: torch.Tensor, confidence: torch.Tensor, local_confidence: torch.Tensor | None
) -> torch.Tensor:
    """(B, H, W) float64: each masked pixel's global confidence times its local confidence (when given);
    0 off the mask and for negative or non-finite confidences."""

    def usable(conf: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(conf.to(torch.float64), nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0.0)

    weights = mask * usable(confidence)
    return weights if local_confidence is None else weights * usable(local_confidence)


def align_local_to_global(
    local_points: torch.Tensor,
    global_points: torch.Tensor,
    confidence: torch.Tensor,
    *,
    local_confidence: torch.Tensor | None = None,
    conf_percentile: float = 50.0,
    return_aligned: bool = True,
) -> AlignResult:
    """Per view weighted Umeyama Sim(3) from `local_points` onto `global_points`.

    local_points, global_points: (B, H, W, 3); confidence: (B, H, W) global-head confidence; local_confidence:
    (B, H, W) the local head's, or None. Each pixel valid in both pointmaps whose global confidence is at or
    above the view's `conf_percentile` weighs its global confidence times its local confidence. On learned
    pointmaps this beat fitting the top 15% of pixels unweighted by 2-4 points of mAA(30); the percentile
    keeps gross outliers that the confidence ranks low out of the fit (BENCHMARKS.md, cameras from
    pointmaps). Views with fewer than 3 weighted pixels get the identity. Runs on the tensors' device.
    """
    if local_points.shape != global_points.shape or local_points.ndim != 4 or local_points.shape[-1] != 3:
        raise ValueError(
            f"local and global pointmaps must both be (B, H, W, 3); got {tuple(local_points.shape)} "
            f"and {tuple(global_points.shape)}"
        )
    for name, conf in (("confidence", confidence), ("local_confidence", local_confidence)):
        if conf is not None and conf.shape != local_points.shape[:3]:
            raise ValueError(f"{name} must be (B, H, W) = {tuple(local_points.shape[:3])}, got {tuple(conf.shape)}")
    batch = local_points.shape[0]
    mask = alignment_mask(local_points, global_points, confidence, conf_percentile)  # (B, H, W)
    weights = alignment_weights(mask, confidence, local_confidence).reshape(batch, -1)  # (B, H*W)
    scale, rotation, translation = umeyama_batched(
        local_points.reshape(batch, -1, 3), global_points.reshape(batch, -1, 3), weights
    )
    c2w = torch.eye(4, dtype=torch.float64, device=local_points.device).repeat(batch, 1, 1)
    c2w[:, :3, :3] = rotation
    c2w[:, :3, 3] = translation
    aligned = None
    if return_aligned:
        linear = (scale[:, None, None] * rotation).to(local_points.dtype)  # (B, 3, 3)
        aligned = torch.einsum("bij,bhwj->bhwi", linear, local_points) + translation.to(local_points.dtype)[
            :, None, None
        ]
    return AlignResult(c2w=c2w, scale=scale, num_points=(weights > 0).sum(dim=1), aligned_points=aligned)
