"""Evaluation: camera pose and reconstruction metrics, benchmark readers and the `fast3r eval` runner."""
from fast3r.eval.pose import PairErrors, metrics_from_errors, pose_metrics, relative_pose_errors
from fast3r.eval.recon import ALIGNMENTS, reconstruction_metrics

__all__ = [
    "ALIGNMENTS",
    "PairErrors",
    "metrics_from_errors",
    "pose_metrics",
    "reconstruction_metrics",
    "relative_pose_errors",
]
