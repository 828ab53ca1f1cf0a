"""Relative camera pose metrics (RRA, RTA, mAA / AUC) over all pairs of views.

Conventions, as in PoseDiffusion / VGGT / the Fast3R release:
- cameras are camera-to-world 4x4 matrices P; for each pair i < j the relative pose is inv(P_i) @ P_j;
- rotation error: geodesic angle of R_pred^T R_gt (degrees, in [0, 180]);
- translation error: angle between the relative translation directions, sign-invariant
  min(theta, 180 - theta) (degrees, in [0, 90]); a zero-length translation on either side gives 90,
  as the reference code's normalisation with an epsilon does;
- every reported rate or area is a PERCENT in [0, 100], and its key ends in `_pct`.

Two areas under the accuracy curve are in use and both are reported, under names that say which:
- `mAA30_fast3r_31bin_pct`: the Fast3R code, `mean(cumsum(torch.histc(err, bins=31, min=0, max=30)) / n)`;
- `AUC30_vggt_30bin_pct`: PoseDiffusion / VGGT, `mean(cumsum(np.histogram(err, bins=arange(0, 31))) / n)`;
where err = max(rotation error, translation error) per pair. They differ by the bin layout only
(31 bins of width 30/31 against 30 one-degree bins).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

THRESHOLDS_DEG = (5, 15, 30)
AUC_MAX_DEG = 30


@dataclass
class PairErrors:
    """Per-pair errors in degrees for the pairs (first[k], second[k]), first < second."""

    rotation_deg: np.ndarray  # (P,)
    translation_deg: np.ndarray  # (P,)
    first: np.ndarray  # (P,) int
    second: np.ndarray  # (P,) int

    @property
    def max_deg(self) -> np.ndarray:
        """(P,) max(rotation, translation) error, the quantity the mAA / AUC integrate."""
        return np.maximum(self.rotation_deg, self.translation_deg)


def _as_poses(poses: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    if isinstance(poses, torch.Tensor):
        poses = poses.detach().cpu().to(torch.float64).numpy()
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"{what} must be (N, 4, 4) camera-to-world matrices, got shape {poses.shape}")
    if not np.isfinite(poses).all():
        raise ValueError(f"{what} contains non-finite values")
    return poses


def rotation_angle_deg(rotation_a: np.ndarray, rotation_b: np.ndarray) -> np.ndarray:
    """Geodesic angle (degrees) of R_a^T R_b for stacks (P, 3, 3); accurate near 0 and 180."""
    relative = np.einsum("pji,pjk->pik", rotation_a, rotation_b)  # R_a^T R_b, (P, 3, 3)
    cos_twice = np.trace(relative, axis1=1, axis2=2) - 1.0  # 2 cos(theta)
    skew = np.stack(
        [
            relative[:, 2, 1] - relative[:, 1, 2],
            relative[:, 0, 2] - relative[:, 2, 0],
            relative[:, 1, 0] - relative[:, 0, 1],
        ],
        axis=-1,
    )
    sin_twice = np.linalg.norm(skew, axis=-1)  # 2 sin(theta)
    return np.degrees(np.arctan2(sin_twice, cos_twice))


def translation_angle_deg(direction_a: np.ndarray, direction_b: np.ndarray) -> np.ndarray:
    """Sign-invariant angle (degrees, in [0, 90]) between vectors (P, 3); 90 where either is zero."""
    norm_a = np.linalg.norm(direction_a, axis=-1)
    norm_b = np.linalg.norm(direction_b, axis=-1)
    degenerate = (norm_a <= 1e-15) | (norm_b <= 1e-15)
    cross = np.linalg.norm(np.cross(direction_a, direction_b), axis=-1)
    dot = np.abs(np.einsum("pk,pk->p", direction_a, direction_b))
    angle = np.degrees(np.arctan2(cross, dot))  # |dot| makes it min(theta, 180 - theta)
    return np.where(degenerate, 90.0, angle)


def relative_pose_errors(
    c2w_pred: np.ndarray | torch.Tensor, c2w_gt: np.ndarray | torch.Tensor
) -> PairErrors:
    """Rotation and translation errors of the relative poses inv(P_i) @ P_j for all pairs i < j."""
    pred = _as_poses(c2w_pred, "c2w_pred")
    gt = _as_poses(c2w_gt, "c2w_gt")
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(f"c2w_pred has {pred.shape[0]} cameras but c2w_gt has {gt.shape[0]}")
    if pred.shape[0] < 2:
        raise ValueError(f"pose metrics need at least 2 cameras, got {pred.shape[0]}")
    first, second = np.triu_indices(pred.shape[0], k=1)

    def relative(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rot_i, rot_j = poses[first, :3, :3], poses[second, :3, :3]
        rotation = np.einsum("pji,pjk->pik", rot_i, rot_j)  # R_i^T R_j
        translation = np.einsum("pji,pj->pi", rot_i, poses[second, :3, 3] - poses[first, :3, 3])
        return rotation, translation

    rot_pred, trans_pred = relative(pred)
    rot_gt, trans_gt = relative(gt)
    return PairErrors(
        rotation_deg=rotation_angle_deg(rot_pred, rot_gt),
        translation_deg=translation_angle_deg(trans_pred, trans_gt),
        first=first,
        second=second,
    )


def histc(values: np.ndarray, bins: int, min_value: float, max_value: float) -> np.ndarray:
    """NumPy replica of `torch.histc`: equal-width bins over [min, max]; a value equal to max goes in
    the last bin; values outside [min, max] (and NaN) are ignored. Bin of x: floor((x - min) * bins /
    (max - min)), computed in the input's float precision (float32 stays float32, as in torch)."""
    values = np.asarray(values).ravel()
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    dtype = values.dtype.type
    inside = (values >= min_value) & (values <= max_value)
    offset = values[inside] - dtype(min_value)
    position = (offset * dtype(bins) / dtype(max_value - min_value)).astype(np.int64)
    position = np.minimum(position, bins - 1)
    return np.bincount(position, minlength=bins).astype(np.float64)


def mAA_fast3r_31bin(max_errors_deg: np.ndarray, max_threshold: int = AUC_MAX_DEG) -> float:
    """Fast3R release: mean(cumsum(histc(err, bins=max+1, min=0, max=max)) / n), a fraction in [0, 1]."""
    errors = np.asarray(max_errors_deg, dtype=np.float64).ravel()
    if errors.size == 0:
        raise ValueError("mAA needs at least one pair")
    histogram = histc(errors, bins=max_threshold + 1, min_value=0.0, max_value=float(max_threshold))
    return float(np.mean(np.cumsum(histogram / errors.size)))


def AUC_vggt_30bin(max_errors_deg: np.ndarray, max_threshold: int = AUC_MAX_DEG) -> float:
    """PoseDiffusion / VGGT: mean(cumsum(histogram(err, bins=arange(max+1))) / n), a fraction in [0, 1]."""
    errors = np.asarray(max_errors_deg, dtype=np.float64).ravel()
    if errors.size == 0:
        raise ValueError("AUC needs at least one pair")
    histogram, _ = np.histogram(errors, bins=np.arange(max_threshold + 1))
    return float(np.mean(np.cumsum(histogram / errors.size)))


def metrics_from_errors(rotation_deg: np.ndarray, translation_deg: np.ndarray) -> dict[str, float]:
    """All pose metrics (percent) of a set of pairs; pool pairs of many samples by concatenating."""
    rotation_deg = np.asarray(rotation_deg, dtype=np.float64).ravel()
    translation_deg = np.asarray(translation_deg, dtype=np.float64).ravel()
    if rotation_deg.shape != translation_deg.shape:
        raise ValueError(f"{rotation_deg.size} rotation errors but {translation_deg.size} translation errors")
    if rotation_deg.size == 0:
        raise ValueError("pose metrics need at least one pair")
    max_errors = np.maximum(rotation_deg, translation_deg)
    metrics: dict[str, float] = {}
    for threshold in THRESHOLDS_DEG:
        metrics[f"RRA@{threshold}_pct"] = 100.0 * float(np.mean(rotation_deg < threshold))
    for threshold in THRESHOLDS_DEG:
        metrics[f"RTA@{threshold}_pct"] = 100.0 * float(np.mean(translation_deg < threshold))
    metrics["mAA30_fast3r_31bin_pct"] = 100.0 * mAA_fast3r_31bin(max_errors)
    metrics["AUC30_vggt_30bin_pct"] = 100.0 * AUC_vggt_30bin(max_errors)
    metrics["rotation_error_mean_deg"] = float(np.mean(rotation_deg))
    metrics["rotation_error_median_deg"] = float(np.median(rotation_deg))
    metrics["translation_error_mean_deg"] = float(np.mean(translation_deg))
    metrics["translation_error_median_deg"] = float(np.median(translation_deg))
    metrics["num_pairs"] = float(rotation_deg.size)
    return metrics


def pooled_metrics(errors: list[PairErrors]) -> dict[str, float]:
    """`metrics_from_errors` of the pairs of several samples (scenes) pooled."""
    return metrics_from_errors(np.concatenate([e.rotation_deg for e in errors]),
                               np.concatenate([e.translation_deg for e in errors]))  # fmt: skip


INTERVAL_METRICS = ("RRA@15_pct", "RTA@15_pct", "mAA30_fast3r_31bin_pct")  # the metrics given 95% intervals


def _interval(drawn: list[float]) -> list[float]:
    """The central 95% of bootstrap draws."""
    return [float(np.percentile(drawn, 2.5)), float(np.percentile(drawn, 97.5))]


def interval_over_samples(
    rotation_deg: list[np.ndarray], translation_deg: list[np.ndarray], draws: int = 1000, seed: int = 0
) -> dict[str, list[float]]:
    """95% intervals of RRA@15, RTA@15 and mAA(30) (percent) of pooled pairs when the samples (scenes)
    are drawn again with replacement: how much the pooled figures owe to which samples were drawn.
    One array of pair errors per sample; {metric: [low, high]}."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {key: [] for key in INTERVAL_METRICS}
    for _ in range(draws):
        picked = rng.integers(0, len(rotation_deg), size=len(rotation_deg))
        metrics = metrics_from_errors(np.concatenate([rotation_deg[i] for i in picked]),
                                      np.concatenate([translation_deg[i] for i in picked]))  # fmt: skip
        for key, drawn in values.items():
            drawn.append(metrics[key])
    return {key: _interval(drawn) for key, drawn in values.items()}


def paired_difference(
    first: list[PairErrors], second: list[PairErrors], draws: int = 1000, seed: int = 0
) -> dict[str, dict[str, float | list[float]]]:
    """How much `second` beats `first` on the same samples (scenes): for RRA@15, RTA@15 and mAA(30) of the
    pooled pairs, {"first", "second", "difference" (second - first), "ci95" of the difference when the
    samples are drawn again with replacement, the same draw for both}. Pairing removes what the two
    share (which scenes are hard), so the interval of the difference is much narrower than either
    figure's own interval."""
    if len(first) != len(second) or any(a.rotation_deg.shape != b.rotation_deg.shape for a, b in zip(first, second)):
        raise ValueError("paired_difference needs the same samples, with the same pairs, for both")
    rng = np.random.default_rng(seed)
    a, b = pooled_metrics(first), pooled_metrics(second)
    drawn: dict[str, list[float]] = {key: [] for key in INTERVAL_METRICS}
    for _ in range(draws):
        picked = rng.integers(0, len(first), size=len(first))
        da, db = pooled_metrics([first[i] for i in picked]), pooled_metrics([second[i] for i in picked])
        for key in INTERVAL_METRICS:
            drawn[key].append(db[key] - da[key])
    return {key: {"first": a[key], "second": b[key], "difference": b[key] - a[key], "ci95": _interval(drawn[key])}
            for key in INTERVAL_METRICS}  # fmt: skip


def pose_metrics(c2w_pred: np.ndarray | torch.Tensor, c2w_gt: np.ndarray | torch.Tensor) -> dict[str, float]:
    """RRA@5/15/30, RTA@5/15/30, both mAA(30) variants (all percent) and error summaries over all
    N(N-1)/2 pairs of the (N, 4, 4) camera-to-world predictions and ground truth."""
    errors = relative_pose_errors(c2w_pred, c2w_gt)
    return metrics_from_errors(errors.rotation_deg, errors.translation_deg)


def identity_baseline_errors(c2w_gt: np.ndarray | torch.Tensor) -> PairErrors:
    """Pair errors of the identity-pose baseline on the same cameras: every camera predicted as the
    identity (view 0's rotation, no translation). Its rotation error is each pair's true relative
    rotation angle; its translation error is 90 degrees (a zero translation has no direction)."""
    gt = _as_poses(c2w_gt, "c2w_gt")
    return relative_pose_errors(np.broadcast_to(np.eye(4), (gt.shape[0], 4, 4)), gt)


def identity_baseline_metrics(c2w_gt: np.ndarray | torch.Tensor) -> dict[str, float]:
    """`pose_metrics` of the identity-pose baseline (see `identity_baseline_errors`) on `c2w_gt`."""
    errors = identity_baseline_errors(c2w_gt)
    return metrics_from_errors(errors.rotation_deg, errors.translation_deg)
