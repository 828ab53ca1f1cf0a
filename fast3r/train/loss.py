"""The release's training loss: confidence-weighted, scale-normalised 3D regression on both heads.

Per view and head: mean over valid pixels of `conf * ||p_pred - p_gt|| - alpha * log(conf)`.
  global head: truth moved into view 0's camera frame; prediction and truth each divided by their own
    mean point distance over the valid pixels of ALL views of a batch item;
  local head: truth in each view's own camera frame; prediction and truth normalised per view.
The total is the mean of the 2N terms (N views, two heads).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

DEFAULT_ALPHA = 0.2
MIN_NORM = 1e-8


@dataclass(frozen=True)
class ViewTarget:
    """Ground truth of one view for a batch: world points (B, H, W, 3), valid (B, H, W) bool, c2w (B, 4, 4)."""

    pts3d: torch.Tensor
    valid: torch.Tensor
    camera_pose: torch.Tensor

    @classmethod
    def from_batch(cls, view: dict[str, torch.Tensor]) -> "ViewTarget":
        """From a collated per-view dict with keys `pts3d`, `valid`, `camera_pose`."""
        missing = [key for key in ("pts3d", "valid", "camera_pose") if key not in view]
        if missing:
            raise KeyError(f"a training view needs the keys {missing} for the loss")
        return cls(view["pts3d"], view["valid"].bool(), view["camera_pose"])


def _transform(world_to_camera: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Rigid transforms (B, N, 4, 4) applied to points (B, N, H, W, 3) (either N may be 1), in float64
    then back to float32."""
    batch = torch.broadcast_shapes(world_to_camera.shape[:2], points.shape[:2])  # (B, N)
    rotation = world_to_camera[..., :3, :3].expand(*batch, 3, 3)  # (B, N, 3, 3)
    points = points.expand(*batch, *points.shape[2:])  # (B, N, H, W, 3)
    translation = world_to_camera[..., None, None, :3, 3]  # (B, N, 1, 1, 3)
    # One batched matrix product per (B, N) view rather than a 3x3 product per pixel (which ran as
    # cuBLAS GEMV kernels taking 10% of a training step of the small model on an H200: BENCHMARKS.md).
    moved = torch.einsum("bnij,bnhwj->bnhwi", rotation, points.double()) + translation
    return moved.float()


def _mean_distance(points: torch.Tensor, valid: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Mean distance to the origin of points (B, N, H, W, 3) over the valid pixels (B, N, H, W) along
    `dims`, kept as size-1 dims and broadcastable to the points; 1 where none is valid."""
    total = torch.where(valid, points.norm(dim=-1), 0.0).sum(dims, keepdim=True)
    count = valid.sum(dims, keepdim=True)
    mean = torch.where(count > 0, total / count.clamp_min(1), 1.0).clamp_min(MIN_NORM)
    return mean[..., None]


def _view_means(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N,) mean of values (B, N, H, W) over each view's True mask entries (0 where none), without a host sync."""
    dims = (0, 2, 3)
    return torch.where(mask, values, 0.0).sum(dims) / mask.sum(dims).clamp_min(1)


def _head_terms(
    pred: torch.Tensor, truth: torch.Tensor, conf: torch.Tensor, valid: torch.Tensor, scale_dims: tuple[int, ...], alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per view (N,): the conf-weighted term, the plain normalised distance and the mean confidence over
    the valid pixels. pred, truth (B, N, H, W, 3) are each divided by their mean distance along scale_dims."""
    pred = pred / _mean_distance(pred, valid, scale_dims)
    truth = truth / _mean_distance(truth, valid, scale_dims)
    distance = (pred - truth).norm(dim=-1)  # (B, N, H, W)
    term = conf * distance - alpha * torch.log(conf)
    return _view_means(term, valid), _view_means(distance.detach(), valid), _view_means(conf.detach(), valid)


def pointmap_loss(
    preds: Sequence[dict[str, torch.Tensor]],
    targets: Sequence[ViewTarget | dict[str, torch.Tensor]],
    alpha: float = DEFAULT_ALPHA,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The release's loss for one batch of N views of one size.

    preds: the model's per-view outputs (`pts3d_in_other_view`, `conf`, `pts3d_local`, `conf_local`).
    targets: per view, a ViewTarget or a collated dict with `pts3d` (world), `valid`, `camera_pose` (c2w).
    Returns the total (a scalar to minimise) and detached components: `global`, `local` (mean terms of
    each head), `dist_global`, `dist_local` (mean normalised distances, without confidence) and
    `conf_global`, `conf_local` (mean confidence over valid pixels).
    All views are computed at once (a few dozen kernels, not a few per view: small models train
    launch-bound on a GPU).
    """
    if len(preds) != len(targets) or not preds:
        raise ValueError(f"{len(preds)} predicted views for {len(targets)} target views")
    targets = [t if isinstance(t, ViewTarget) else ViewTarget.from_batch(t) for t in targets]
    sizes = {tuple(t.pts3d.shape) for t in targets}
    if len(sizes) > 1:
        raise ValueError(f"the loss takes views of one size; this batch has {sorted(sizes)}")
    points = torch.stack([t.pts3d for t in targets], dim=1)  # (B, N, H, W, 3) world
    # Non-finite truth counts as invalid, and invalid truth is zeroed so it cannot leak NaN gradients.
    valid = torch.stack([t.valid for t in targets], dim=1) & torch.isfinite(points).all(dim=-1)  # (B, N, H, W)
    world = torch.where(valid[..., None], points, 0.0)
    world_to_camera = torch.linalg.inv(torch.stack([t.camera_pose for t in targets], dim=1).double())  # (B, N, 4, 4)

    def stacked(key: str) -> torch.Tensor:
        return torch.stack([p[key] for p in preds], dim=1)

    # Global head: every view's truth in view 0's camera frame, one scale per batch item over all views.
    heads = {"global": (stacked("pts3d_in_other_view"), _transform(world_to_camera[:, :1], world), stacked("conf"), (1, 2, 3))}
    if "pts3d_local" in preds[0]:
        # Local head: each view's truth in its own camera frame, one scale per view and batch item.
        heads["local"] = (stacked("pts3d_local"), _transform(world_to_camera, world), stacked("conf_local"), (2, 3))
    terms, components = [], {}
    for head, (pred, truth, conf, scale_dims) in heads.items():
        term, distance, mean_conf = _head_terms(pred, truth, conf, valid, scale_dims, alpha)
        terms.append(term)
        components.update({head: term.detach().mean(), f"dist_{head}": distance.mean(), f"conf_{head}": mean_conf.mean()})
    return torch.cat(terms).mean(), components
