"""Summaries of an evaluation's per-sample records: summary.json's aggregates and summary.md's table.

Pose: pairs pooled over all samples, per category and averaged over categories, each beside the
identity-pose baseline on the same pairs, and the pooled figures' 95% intervals over resampled samples.
Recon: means over samples.
"""
from __future__ import annotations

import numpy as np

from fast3r.eval.datasets import POSE
from fast3r.eval.pose import THRESHOLDS_DEG, interval_over_samples, metrics_from_errors

IDENTITY_NOTE = (
    "Identity poses (baseline): every camera predicted as view 0's, scored on the same pairs; "
    "a model that has learned relative pose beats it."
)


def _mean_metrics(metric_dicts: list[dict[str, float]]) -> dict[str, float]:
    keys = [key for key in metric_dicts[0] if all(key in metrics for metrics in metric_dicts)]
    return {key: float(np.mean([metrics[key] for metrics in metric_dicts])) for key in keys}


def summarize(task: str, records: list[dict]) -> dict:
    """Pose: pooled pairs (with their 95% interval over resampled samples), mean over samples and mean
    over categories (per category pooled), and the identity baseline's; recon: mean over samples (scenes)."""
    if not records:
        raise ValueError("no results to summarize")
    summary: dict = {"task": task, "num_samples": len(records)}
    summary["mean_over_samples"] = _mean_metrics([record["metrics"] for record in records])
    summary["mean_inference_seconds"] = float(np.mean([record["inference_seconds"] for record in records]))
    if task == POSE:
        summary.update(_pose_aggregates(records, "pairs"))
        summary["pooled_ci95_over_samples"] = interval_over_samples(
            [np.asarray(record["pairs"]["rotation_deg"]) for record in records],
            [np.asarray(record["pairs"]["translation_deg"]) for record in records],
        )
        summary["identity_baseline"] = _pose_aggregates(records, "identity_pairs")
    return summary


def _pose_aggregates(records: list[dict], pairs: str) -> dict:
    """Pooled, per-category and mean-over-categories metrics of the records' `pairs` errors."""

    def pooled(members: list[dict]) -> dict[str, float]:
        return metrics_from_errors(
            np.concatenate([record[pairs]["rotation_deg"] for record in members]),
            np.concatenate([record[pairs]["translation_deg"] for record in members]),
        )

    categories = sorted({record["category"] for record in records})
    per_category = {category: pooled([r for r in records if r["category"] == category]) for category in categories}
    return {"pooled": pooled(records), "per_category": per_category, "mean_over_categories": _mean_metrics(list(per_category.values()))}


def markdown_table(summary: dict, title: str) -> str:
    if summary["task"] == POSE:
        columns = (
            [f"RRA@{t}_pct" for t in THRESHOLDS_DEG]
            + [f"RTA@{t}_pct" for t in THRESHOLDS_DEG]
            + ["mAA30_fast3r_31bin_pct", "AUC30_vggt_30bin_pct"]
        )
        baseline = summary["identity_baseline"]
        rows = [("pooled pairs", summary["pooled"]), ("identity poses (baseline), pooled pairs", baseline["pooled"]),
                ("mean over categories", summary["mean_over_categories"]),
                ("identity poses (baseline), mean over categories", baseline["mean_over_categories"]),
                ("mean over samples", summary["mean_over_samples"])]  # fmt: skip
    else:
        columns = ["accuracy_mean", "accuracy_median", "completion_mean", "completion_median",
                   "normal_consistency_mean", "normal_consistency_median"]  # fmt: skip
        rows = [("mean over scenes", summary["mean_over_samples"])]
    lines = [
        f"# {title}",
        "",
        f"{summary['num_samples']} samples; mean inference {summary['mean_inference_seconds']:.3f} s per sample.",
        *(["", IDENTITY_NOTE] if summary["task"] == POSE else []),
        "",
        "| aggregation | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for label, metrics in rows:
        lines.append(f"| {label} | " + " | ".join(f"{metrics[column]:.4f}" for column in columns) + " |")
    if summary["task"] == POSE:
        names = {"RRA@15_pct": "RRA@15", "RTA@15_pct": "RTA@15", "mAA30_fast3r_31bin_pct": "mAA(30)"}
        intervals = summary["pooled_ci95_over_samples"]
        spans = ", ".join(f"{names[key]} [{low:.1f}, {high:.1f}]" for key, (low, high) in intervals.items())
        lines += ["", f"95% intervals of the pooled pairs over resampled samples: {spans}."]
    return "\n".join(lines) + "\n"
