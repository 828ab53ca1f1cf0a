"""Masked per-view statistics shared by the camera estimators."""
from __future__ import annotations

import torch


def finite_points(points: torch.Tensor) -> torch.Tensor:
    """(..., 3) points -> (...) bool: all three coordinates are finite."""
    return torch.isfinite(points).all(dim=-1)


def masked_percentile(values: torch.Tensor, mask: torch.Tensor, percentile: float) -> torch.Tensor:
    """Per-row percentile of `values` over the entries where `mask` is true.

    values, mask: (B, M). Linear interpolation between order statistics, as `numpy.percentile`
    does by default. Rows with no masked entry give NaN.
    Returns (B,) in the dtype of `values`.
    """
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    values = values.float() if not values.is_floating_point() else values
    mask = mask & torch.isfinite(values)
    filled = torch.where(mask, values, torch.full_like(values, float("inf")))
    ordered, _ = torch.sort(filled, dim=1)  # (B, M), masked-out entries last
    counts = mask.sum(dim=1)  # (B,)
    position = (counts - 1).clamp(min=0).to(torch.float64) * (percentile / 100.0)
    lower = position.floor().long()
    upper = position.ceil().long()
    low_value = ordered.gather(1, lower[:, None])[:, 0].to(torch.float64)
    high_value = ordered.gather(1, upper[:, None])[:, 0].to(torch.float64)
    fraction = position - lower.to(torch.float64)
    result = low_value + (high_value - low_value) * fraction
    # inf * 0 would give NaN where both neighbours are equal and finite; they never are inf here
    result = torch.where(lower == upper, low_value, result)
    result = torch.where(counts > 0, result, torch.full_like(result, float("nan")))
    return result.to(values.dtype)
