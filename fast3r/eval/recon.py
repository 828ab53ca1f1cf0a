"""Point-cloud reconstruction metrics: accuracy, completion and normal consistency.

- accuracy: distance from each predicted point to its nearest ground-truth point (mean, median);
- completion: distance from each ground-truth point to its nearest predicted point (mean, median);
- normal consistency: |n_pred . n_gt| over the nearest-neighbour matches of the accuracy direction
  (`nc_accuracy`) and of the completion direction (`nc_completion`); NC is their average.
  Normals not given are fitted to each cloud's 30 nearest neighbours (Open3D's default).
Distances are in the ground truth's units (metres for 7-Scenes and NRGBD, millimetres for DTU).

Alignment of the prediction before scoring (`alignment=`):
- "none": the prediction is scored as given;
- "sim3_correspondences": one weighted Sim(3) (Umeyama) on known pixel correspondences, no ICP —
  the Fast3R release's protocol;
- "scale_icp": least-squares scale through the origin on correspondences (both clouds in view 0's
  camera frame), then rigid point-to-point ICP — the Spann3R / CUT3R / pi3 family;
- "sim3_icp": Sim(3) on correspondences, then rigid ICP.
The correspondence-based steps need `pred_points` and `gt_points` of one shape (row k of each is
the same pixel); `weights` (M,) weigh those rows.
"""
from __future__ import annotations

import numpy as np
import torch

from fast3r.eval.align import Similarity, fit_scale, fit_sim3, icp_point_to_point
from fast3r.eval.neighbors import NearestNeighbors, estimate_normals

ALIGNMENTS = ("none", "sim3_correspondences", "scale_icp", "sim3_icp")


def _flat_points(points: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().to(torch.float64).numpy()
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1] != 3:
        raise ValueError(f"{what} must have a last axis of 3, got shape {points.shape}")
    points = points.reshape(-1, 3)
    if points.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    if not np.isfinite(points).all():
        raise ValueError(f"{what} contains non-finite points; mask them out first")
    return points


def align_prediction(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    alignment: str,
    weights: np.ndarray | None,
    icp_threshold: float,
    icp_iterations: int,
    gt_index: NearestNeighbors,
) -> tuple[Similarity, dict[str, float]]:
    """The similarity that moves `pred` onto `gt` under the named protocol, and ICP diagnostics."""
    if alignment not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
    if alignment == "none":
        return Similarity(), {}
    initial = fit_scale(pred, gt, weights) if alignment == "scale_icp" else fit_sim3(pred, gt, weights)
    if alignment == "sim3_correspondences":
        return initial, {}
    icp = icp_point_to_point(
        initial.apply(pred), gt, threshold=icp_threshold, max_iterations=icp_iterations, target_index=gt_index
    )
    info = {"icp_fitness": icp.fitness, "icp_inlier_rmse": icp.inlier_rmse, "icp_iterations": float(icp.iterations)}
    return initial.then(icp.transform), info


def reconstruction_metrics(
    pred_points: np.ndarray | torch.Tensor,
    gt_points: np.ndarray | torch.Tensor,
    *,
    pred_normals: np.ndarray | None = None,
    gt_normals: np.ndarray | None = None,
    alignment: str = "none",
    weights: np.ndarray | None = None,
    icp_threshold: float = 0.1,
    icp_iterations: int = 30,
    normal_neighbors: int = 30,
) -> dict[str, float]:
    """Accuracy / completion (mean, median), normal consistency and alignment diagnostics.

    pred_points (..., 3) and gt_points (..., 3): valid points only (flattened here).
    pred_normals / gt_normals: (..., 3) unit normals of the same layout, or None to fit them.
    """
    pred = _flat_points(pred_points, "pred_points")
    gt = _flat_points(gt_points, "gt_points")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    gt_index = NearestNeighbors(gt)
    transform, info = align_prediction(
        pred,
        gt,
        alignment=alignment,
        weights=weights,
        icp_threshold=icp_threshold,
        icp_iterations=icp_iterations,
        gt_index=gt_index,
    )
    aligned = transform.apply(pred)

    if pred_normals is None:
        pred_n = estimate_normals(aligned, normal_neighbors)
    else:
        pred_n = _flat_points(pred_normals, "pred_normals") @ transform.rotation.T
        if pred_n.shape != pred.shape:
            raise ValueError(f"pred_normals {pred_n.shape} do not match pred_points {pred.shape}")
    gt_n = estimate_normals(gt, normal_neighbors) if gt_normals is None else _flat_points(gt_normals, "gt_normals")
    if gt_n.shape != gt.shape:
        raise ValueError(f"gt_normals {gt_n.shape} do not match gt_points {gt.shape}")

    accuracy, to_gt = gt_index.query(aligned, k=1)  # (P, 1)
    completion, to_pred = NearestNeighbors(aligned).query(gt, k=1)  # (G, 1)
    nc_accuracy = np.abs(np.einsum("pk,pk->p", pred_n, gt_n[to_gt[:, 0]]))
    nc_completion = np.abs(np.einsum("gk,gk->g", gt_n, pred_n[to_pred[:, 0]]))

    metrics = {
        "accuracy_mean": float(accuracy.mean()),
        "accuracy_median": float(np.median(accuracy)),
        "completion_mean": float(completion.mean()),
        "completion_median": float(np.median(completion)),
        "nc_accuracy_mean": float(nc_accuracy.mean()),
        "nc_accuracy_median": float(np.median(nc_accuracy)),
        "nc_completion_mean": float(nc_completion.mean()),
        "nc_completion_median": float(np.median(nc_completion)),
        "num_pred_points": float(pred.shape[0]),
        "num_gt_points": float(gt.shape[0]),
        "alignment_scale": float(transform.scale),
    }
    metrics["normal_consistency_mean"] = 0.5 * (metrics["nc_accuracy_mean"] + metrics["nc_completion_mean"])
    metrics["normal_consistency_median"] = 0.5 * (metrics["nc_accuracy_median"] + metrics["nc_completion_median"])
    metrics.update(info)
    return metrics
