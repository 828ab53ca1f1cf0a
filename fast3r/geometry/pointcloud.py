"""Point clouds from per-view pointmaps, on the pointmaps' device: confidence filter, voxels, a point budget.

At 1000 views the pointmaps hold ~160 M points; tools that read point clouds (viewers, Gaussian-splatting
trainers starting from points3D) want a few million. `select_points` keeps each view's confident pixels
(the release's filter), then, over the budget, the most confident point of each voxel of a grid sized so
that at most `max_points` remain. On a GPU this takes well under a second at 1000 views.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from fast3r.geometry.masks import finite_points, masked_percentile

_MAX_CELLS_PER_AXIS = 1 << 21  # three 21-bit cell indices pack into one int64 key
_PREFILTER_FACTOR = 4  # over the budget, the voxel search starts from the 4x max_points most confident


@dataclass
class SelectedPoints:
    """points (M, 3) float32, colors (M, 3) uint8, confidence (M,) float32, view_index (M,) int64."""

    points: torch.Tensor
    colors: torch.Tensor
    confidence: torch.Tensor
    view_index: torch.Tensor

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def take(self, rows: torch.Tensor) -> "SelectedPoints":
        return SelectedPoints(self.points[rows], self.colors[rows], self.confidence[rows], self.view_index[rows])


def confident_pixels(
    points: Sequence[torch.Tensor], confidence: Sequence[torch.Tensor], conf_percentile: float
) -> list[torch.Tensor]:
    """Per view (H, W) bool: finite points whose confidence is at or above the view's `conf_percentile`
    (numpy's linear percentile over its finite points). Views of one size are done in one batch."""
    masks: list[torch.Tensor | None] = [None] * len(points)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for index, view in enumerate(points):
        by_size.setdefault(tuple(view.shape), []).append(index)
    for indices in by_size.values():
        group_points = torch.stack([points[i] for i in indices])  # (B, H, W, 3)
        group_conf = torch.stack([confidence[i] for i in indices]).float()  # (B, H, W)
        valid = finite_points(group_points) & torch.isfinite(group_conf)
        batch = len(indices)
        threshold = masked_percentile(group_conf.reshape(batch, -1), valid.reshape(batch, -1), conf_percentile)
        keep = valid & (group_conf >= threshold[:, None, None])  # NaN threshold (no valid pixel): none
        for row, index in enumerate(indices):
            masks[index] = keep[row]
    return masks


def gather_points(
    points: Sequence[torch.Tensor],
    confidence: Sequence[torch.Tensor],
    colors: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
) -> SelectedPoints:
    """The masked pixels of every view, view after view, row-major within a view."""
    device = points[0].device
    parts = [
        (view[mask].float(), color.to(device)[mask], conf[mask].float(), torch.full((int(mask.sum()),), i, device=device))
        for i, (view, conf, color, mask) in enumerate(zip(points, confidence, colors, masks))
    ]
    return SelectedPoints(*(torch.cat([part[k] for part in parts]) for k in range(4)))


def _grid_offsets(points: torch.Tensor) -> torch.Tensor:
    """(M, 3) float64 offsets of the points from the cloud's minimum corner, where the voxel grid starts."""
    points = points.double()
    return points - points.min(dim=0).values


def _voxel_keys(offsets: torch.Tensor, voxel_size: float) -> torch.Tensor:
    """(M,) int64 voxel key per point (offsets from `_grid_offsets`); raises if the grid would be too fine
    for the cloud's extent."""
    cells = torch.floor(offsets / voxel_size).long()  # (M, 3)
    if (cells.max(dim=0).values + 1 > _MAX_CELLS_PER_AXIS).any():
        raise ValueError(f"voxel size {voxel_size} is too small for the cloud's extent")
    return (cells[:, 0] << 42) | (cells[:, 1] << 21) | cells[:, 2]


def voxel_average(selected: SelectedPoints, voxel_size: float) -> SelectedPoints:
    """Average points and colours per voxel (as fast3r.io.ply.voxel_downsample); confidence: the voxel's
    maximum; view_index: that of its most confident point. Rows ordered by voxel key."""
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be a positive number, got {voxel_size}")
    if len(selected) == 0:
        return selected
    keys = _voxel_keys(_grid_offsets(selected.points), voxel_size)
    _, voxel, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    num = int(counts.shape[0])

    def mean(values: torch.Tensor) -> torch.Tensor:
        sums = torch.zeros((num, 3), dtype=torch.float64, device=values.device)
        return sums.index_add_(0, voxel, values.double()) / counts[:, None]

    best = _best_per_voxel(voxel, selected.confidence, num)
    return SelectedPoints(
        mean(selected.points).float(),
        mean(selected.colors).round().clamp(0, 255).to(torch.uint8),
        selected.confidence[best],
        selected.view_index[best],
    )


def _best_per_voxel(voxel: torch.Tensor, confidence: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """(V,) row of the most confident point in each voxel (the first such row on ties)."""
    order = torch.argsort(confidence, descending=True, stable=True)
    first = torch.full((num_voxels,), confidence.shape[0], dtype=torch.long, device=confidence.device)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.shape[0], device=order.device)
    best_rank = first.scatter_reduce(0, voxel, rank, reduce="amin")
    return order[best_rank]


def budget(selected: SelectedPoints, max_points: int) -> SelectedPoints:
    """At most `max_points` points, spread over the scene: the most confident point of each voxel of the
    finest grid (searched by bisection) with no more than `max_points` occupied voxels. Rows keep their
    input order."""
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    if len(selected) <= max_points:
        return selected
    if len(selected) > _PREFILTER_FACTOR * max_points:
        top = torch.argsort(selected.confidence, descending=True)[: _PREFILTER_FACTOR * max_points]
        selected = selected.take(torch.sort(top).values)
    extent = float((selected.points.max(dim=0).values - selected.points.min(dim=0).values).max())
    if not extent > 0:  # every point in one place
        return selected.take(torch.arange(max_points, device=selected.points.device))
    low, high = extent / (_MAX_CELLS_PER_AXIS - 1), extent * 1.01  # fine: too many voxels; coarse: one
    best_size = high
    offsets = _grid_offsets(selected.points)
    for _ in range(24):
        size = (low * high) ** 0.5
        occupied = int(torch.unique(_voxel_keys(offsets, size)).shape[0])
        if occupied <= max_points:
            high = best_size = size
        else:
            low = size
        if high / low < 1.02:
            break
    _, voxel = torch.unique(_voxel_keys(offsets, best_size), return_inverse=True)
    rows = _best_per_voxel(voxel, selected.confidence, int(voxel.max()) + 1)
    return selected.take(torch.sort(rows).values)


def uniform_sample(count: int, total: int, device: torch.device | str, seed: int = 0) -> torch.Tensor:
    """Sorted indices of min(count, total) items drawn uniformly without replacement, reproducibly."""
    if total <= count:
        return torch.arange(total, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.sort(torch.randperm(total, generator=generator, device=device)[:count]).values
