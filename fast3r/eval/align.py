"""Aligning predicted point clouds to ground truth before reconstruction metrics.

Three building blocks, combined by `reconstruction_metrics`:
- `fit_sim3`: weighted Umeyama Sim(3) on known correspondences (the Fast3R release's alignment),
  from `fast3r.geometry.umeyama`;
- `fit_scale`: weighted least-squares scale through the origin, `s = sum(w p.g) / sum(w p.p)`, for
  clouds already expressed in the same camera frame (view 0's);
- `icp_point_to_point`: rigid point-to-point ICP with a distance threshold (Open3D's
  `registration_icp` with `TransformationEstimationPointToPoint`, as Spann3R / CUT3R / pi3 use it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fast3r.eval.neighbors import NearestNeighbors
from fast3r.geometry.umeyama import umeyama


@dataclass
class Similarity:
    """x -> scale * R @ x + t."""

    scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))  # (3, 3)
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) -> (..., 3)."""
        return self.scale * points @ self.rotation.T + self.translation

    def then(self, other: "Similarity") -> "Similarity":
        """The similarity that applies self first, then other."""
        return Similarity(
            scale=other.scale * self.scale,
            rotation=other.rotation @ self.rotation,
            translation=other.scale * other.rotation @ self.translation + other.translation,
        )


def _check_correspondences(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None) -> None:
    if source.shape != target.shape:
        raise ValueError(
            "this alignment needs corresponding points: predicted and ground-truth sets of one shape, "
            f"got {source.shape} and {target.shape}"
        )
    if weights is not None and weights.shape != source.shape[:1]:
        raise ValueError(f"weights must be ({source.shape[0]},), got {weights.shape}")


def fit_sim3(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """Weighted Sim(3) with target ≈ s R source + t over corresponding (M, 3) points."""
    _check_correspondences(source, target, weights)
    scale, rotation, translation = umeyama(source, target, weights, with_scale=True)
    return Similarity(scale=scale, rotation=rotation, translation=translation)


def fit_scale(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """Weighted least-squares scale through the origin, target ≈ s * source."""
    _check_correspondences(source, target, weights)
    weight = np.ones(source.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    denominator = float(np.sum(weight * np.einsum("mk,mk->m", source, source)))
    if denominator <= 0:
        raise ValueError("cannot fit a scale: the predicted points all lie at the origin")
    return Similarity(scale=float(np.sum(weight * np.einsum("mk,mk->m", source, target))) / denominator)


@dataclass
class IcpResult:
    transform: Similarity  # rigid (scale 1), maps the source onto the target
    fitness: float  # fraction of source points with a target point within the threshold
    inlier_rmse: float
    iterations: int


def icp_point_to_point(
    source: np.ndarray,
    target: np.ndarray,
    *,
    threshold: float,
    max_iterations: int = 30,
    relative_fitness: float = 1e-6,
    relative_rmse: float = 1e-6,
    target_index: NearestNeighbors | None = None,
) -> IcpResult:
    """Rigid ICP from identity: match each moved source point to its nearest target point, keep
    matches closer than `threshold`, refit the rigid transform on them; stop after `max_iterations`
    or when fitness and inlier RMSE change by less than the given amounts (Open3D's criteria)."""
    if threshold <= 0:
        raise ValueError(f"ICP threshold must be positive, got {threshold}")
    index = target_index if target_index is not None else NearestNeighbors(target)
    transform = Similarity()

    def evaluate(current: Similarity) -> tuple[np.ndarray, np.ndarray, float, float]:
        distances, indices = index.query(current.apply(source), k=1)
        inliers = distances[:, 0] < threshold
        fitness = float(inliers.mean())
        rmse = float(np.sqrt(np.mean(distances[inliers, 0] ** 2))) if inliers.any() else 0.0
        return inliers, indices[:, 0], fitness, rmse

    inliers, matches, fitness, rmse = evaluate(transform)
    iterations = 0
    while iterations < max_iterations and inliers.sum() >= 3:
        iterations += 1
        # refitting from the original source equals composing an update, since rigid fits are
        # invariant to a rigid motion applied to the source first
        _, rotation, translation = umeyama(source[inliers], index.reference[matches[inliers]], with_scale=False)
        candidate = Similarity(rotation=rotation, translation=translation)
        new_inliers, new_matches, new_fitness, new_rmse = evaluate(candidate)
        converged = abs(new_fitness - fitness) < relative_fitness and abs(new_rmse - rmse) < relative_rmse
        transform, inliers, matches, fitness, rmse = candidate, new_inliers, new_matches, new_fitness, new_rmse
        if converged:
            break
    return IcpResult(transform=transform, fitness=fitness, inlier_rmse=rmse, iterations=iterations)
