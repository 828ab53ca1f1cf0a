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
    """(B, 4, 4) rigid transforms applied to points (B, H, W, 3), in float64 then back to float32."""
    rotation = world_to_camera[:, None, None, :3, :3]  # (B, 1, 1, 3, 3)
    translation = world_to_camera[:, None, None, :3, 3]  # (B, 1, 1, 3)
    moved = (rotation @ points.double()[..., None])[..., 0] + translation
    return moved.float()


def _mean_distance(points: Sequence[torch.Tensor], valid: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B,) mean distance to the origin over the valid pixels of the given views; 1 where none is valid."""
    total = sum(torch.where(mask, pts.norm(dim=-1), 0.0).flatten(1).sum(1) for pts, mask in zip(points, valid))
    count = sum(mask.flatten(1).sum(1) for mask in valid)
    mean = total / count.clamp_min(1)
    return torch.where(count > 0, mean, torch.ones_like(mean)).clamp_min(MIN_NORM)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over the True entries of `mask` (0 when there are none), without a host sync."""
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp_min(1)


def _confidence_term(
    pred: torch.Tensor, truth: torch.Tensor, conf: torch.Tensor, valid: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(conf-weighted term, plain distance) averaged over the valid pixels of a view (0 when none)."""
    distance = (pred - truth).norm(dim=-1)  # (B, H, W)
    term = conf * distance - alpha * torch.log(conf)
    return _masked_mean(term, valid), _masked_mean(distance.detach(), valid)


def pointmap_loss(
    preds: Sequence[dict[str, torch.Tensor]],
    targets: Sequence[ViewTarget | dict[str, torch.Tensor]],
    alpha: float = DEFAULT_ALPHA,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The release's loss for one batch of N views.

    preds: the model's per-view outputs (`pts3d_in_other_view`, `conf`, `pts3d_local`, `conf_local`).
    targets: per view, a ViewTarget or a collated dict with `pts3d` (world), `valid`, `camera_pose` (c2w).
    Returns the total (a scalar to minimise) and detached components: `global`, `local` (mean terms of
    each head), `dist_global`, `dist_local` (mean normalised distances, without confidence) and
    `conf_global`, `conf_local` (mean confidence over valid pixels).
    """
    if len(preds) != len(targets) or not preds:
        raise ValueError(f"{len(preds)} predicted views for {len(targets)} target views")
    targets = [t if isinstance(t, ViewTarget) else ViewTarget.from_batch(t) for t in targets]
    has_local = "pts3d_local" in preds[0]
    world_to_view0 = torch.linalg.inv(targets[0].camera_pose.double())  # (B, 4, 4)
    # Non-finite truth counts as invalid, and invalid truth is zeroed so it cannot leak NaN gradients.
    valid = [t.valid & torch.isfinite(t.pts3d).all(dim=-1) for t in targets]
    world = [torch.where(mask[..., None], t.pts3d, 0.0) for t, mask in zip(targets, valid)]

    # Global head: every view's truth in view 0's camera frame, one scale per batch item over all views.
    truth_global = [_transform(world_to_view0, pts) for pts in world]
    pred_global = [p["pts3d_in_other_view"] for p in preds]
    truth_scale = _mean_distance(truth_global, valid)[:, None, None, None]  # (B, 1, 1, 1)
    pred_scale = _mean_distance(pred_global, valid)[:, None, None, None]
    terms, distances, confs = {"global": [], "local": []}, {"global": [], "local": []}, {"global": [], "local": []}
    for pred, truth, pred_view, mask in zip(pred_global, truth_global, preds, valid):
        term, distance = _confidence_term(pred / pred_scale, truth / truth_scale, pred_view["conf"], mask, alpha)
        terms["global"].append(term)
        distances["global"].append(distance)
        confs["global"].append(_masked_mean(pred_view["conf"].detach(), mask))

    # Local head: each view's truth in its own camera frame, one scale per view and batch item.
    if has_local:
        for pred_view, target, pts, mask in zip(preds, targets, world, valid):
            truth = _transform(torch.linalg.inv(target.camera_pose.double()), pts)
            pred = pred_view["pts3d_local"]
            truth_scale = _mean_distance([truth], [mask])[:, None, None, None]
            pred_scale = _mean_distance([pred], [mask])[:, None, None, None]
            term, distance = _confidence_term(pred / pred_scale, truth / truth_scale, pred_view["conf_local"], mask, alpha)
            terms["local"].append(term)
            distances["local"].append(distance)
            confs["local"].append(_masked_mean(pred_view["conf_local"].detach(), mask))

    all_terms = terms["global"] + terms["local"]
    total = torch.stack(all_terms).mean()
    components: dict[str, torch.Tensor] = {}
    for head in ("global", "local"):
        if terms[head]:
            components[head] = torch.stack(terms[head]).detach().mean()
            components[f"dist_{head}"] = torch.stack(distances[head]).mean()
            components[f"conf_{head}"] = torch.stack(confs[head]).mean()
    return total, components
