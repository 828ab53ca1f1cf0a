"""Cameras (poses and intrinsics) from Fast3R's predicted pointmaps: the public entry point."""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from fast3r.geometry.align import align_local_to_global
from fast3r.geometry.focal import estimate_focal_batched
from fast3r.geometry.pnp import PnPConfig, PnPResult, intrinsics, pose_and_focal_from_pnp_sweep, pose_from_pnp

ArrayLike = np.ndarray | torch.Tensor
PointmapInput = ArrayLike | Sequence[ArrayLike]
Method = Literal["auto", "align", "pnp"]

# pixels per batched step. On a GPU this bounds the float64 temporaries to a few hundred MB; on a CPU
# a step that fits the caches (one or two views) runs the focal's 100 Weiszfeld passes ~8x faster.
PIXELS_PER_CHUNK = {"cpu": 1 << 18, "cuda": 1 << 23}


@dataclass
class Cameras:
    """Cameras of N views in the global frame of the pointmaps (view 0's camera frame), OpenCV axes.

    c2w: (N, 4, 4) float64 camera-to-world. K: (N, 3, 3) float64 in pixels of the model's images,
    principal point (W/2, H/2). focal: (N,) float64 pixels. image_sizes: (N, 2) int (H, W).
    method: "align" or "pnp", the path that made the poses. focal_source: "given", "pnp-sweep",
    "local" (per view, from its local pointmap), "local-median" (the median of those, shared) or
    "global-view0" (from view 0's global pointmap, shared, as the release does).
    num_points: (N,) pixels fitted by the alignment, or RANSAC inliers of PnP.
    success: (N,) False where a view fell back to the identity pose.
    scale: (N,) local-to-global scale of the alignment (None for PnP).
    aligned_points: local pointmaps moved into the global frame, the input's kind and device: an
    (N, H, W, 3) array or tensor, or a list for mixed sizes (None for PnP or when not asked for).
    """

    c2w: np.ndarray
    K: np.ndarray
    focal: np.ndarray
    image_sizes: np.ndarray
    method: str
    focal_source: str
    num_points: np.ndarray
    success: np.ndarray
    scale: np.ndarray | None = None
    aligned_points: ArrayLike | list[ArrayLike] | None = None

    def __len__(self) -> int:
        return len(self.c2w)


@dataclass
class _ViewGroup:
    """Views of one image size, stacked: indices into the input order; tensors (B, H, W, ...)."""

    indices: list[int]
    global_points: torch.Tensor
    confidence: torch.Tensor
    local_points: torch.Tensor | None
    local_confidence: torch.Tensor | None

    @property
    def size(self) -> tuple[int, int]:
        return int(self.global_points.shape[1]), int(self.global_points.shape[2])

    def chunks(self) -> list[slice]:
        """Slices of views whose pixels together stay under the device's PIXELS_PER_CHUNK (one view at least)."""
        height, width = self.size
        budget = PIXELS_PER_CHUNK.get(self.global_points.device.type, PIXELS_PER_CHUNK["cuda"])
        step = max(1, budget // (height * width))
        return [slice(start, start + step) for start in range(0, len(self.indices), step)]


def _as_tensor(value: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    elif isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value))
    else:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(value).__name__}")
    if not tensor.is_floating_point():
        tensor = tensor.float()
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


def _check_shapes(points: torch.Tensor, conf: torch.Tensor | None, what: str, conf_name: str) -> None:
    if points.ndim != 4 or points.shape[-1] != 3:
        raise ValueError(f"{what} must be (N, H, W, 3) (or a list of (H, W, 3)), got shape {tuple(points.shape)}")
    if points.shape[0] == 0:
        raise ValueError(f"{what} holds no views")
    if conf is not None and conf.shape != points.shape[:3]:
        raise ValueError(f"{conf_name} must be (N, H, W) = {tuple(points.shape[:3])}, got {tuple(conf.shape)}")


def _view_list(values: Sequence[ArrayLike] | None, count: int, name: str, shapes: list[tuple[int, ...]]):
    """Per-view tensors of a list input, each checked against its expected shape; None stays None."""
    if values is None:
        return None
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{name} must be a list like pointmaps when pointmaps is a list")
    if len(values) != count:
        raise ValueError(f"{name} lists {len(values)} views, expected {count}")
    views = [_as_tensor(view, f"{name}[{index}]") for index, view in enumerate(values)]
    for index, (view, shape) in enumerate(zip(views, shapes)):
        if tuple(view.shape) != shape:
            raise ValueError(f"{name}[{index}] must be {shape}, got shape {tuple(view.shape)}")
    return views


def _group_list(
    pointmaps: Sequence[ArrayLike],
    confidence: Sequence[ArrayLike] | None,
    local_pointmaps: Sequence[ArrayLike] | None,
    local_confidence: Sequence[ArrayLike] | None,
) -> list[_ViewGroup]:
    """Views given one by one (sizes may differ), gathered into groups of one size."""
    if len(pointmaps) == 0:
        raise ValueError("pointmaps holds no views")
    global_views = [_as_tensor(view, f"pointmaps[{index}]") for index, view in enumerate(pointmaps)]
    for index, view in enumerate(global_views):
        if view.ndim != 3 or view.shape[-1] != 3:
            raise ValueError(f"pointmaps[{index}] must be (H, W, 3), got shape {tuple(view.shape)}")
    count = len(global_views)
    sizes = [tuple(view.shape[:2]) for view in global_views]
    conf_views = _view_list(confidence, count, "confidence", sizes)
    local_views = _view_list(local_pointmaps, count, "local_pointmaps", [(*size, 3) for size in sizes])
    local_conf_views = _view_list(local_confidence, count, "local_confidence", sizes)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for index, size in enumerate(sizes):
        by_size.setdefault(size, []).append(index)

    def stack(views: list[torch.Tensor] | None, indices: list[int]) -> torch.Tensor | None:
        return None if views is None else torch.stack([views[index] for index in indices])

    groups = []
    for indices in by_size.values():
        global_points = stack(global_views, indices)
        conf = stack(conf_views, indices)
        if conf is None:
            conf = torch.ones(global_points.shape[:3], device=global_points.device)
        groups.append(
            _ViewGroup(indices, global_points, conf, stack(local_views, indices), stack(local_conf_views, indices))
        )
    return groups


def _group_stacked(
    pointmaps: ArrayLike, confidence: ArrayLike | None, local_pointmaps: ArrayLike | None,
    local_confidence: ArrayLike | None,
) -> list[_ViewGroup]:
    """Views given as (N, H, W, ...) arrays: one group."""
    global_points = _as_tensor(pointmaps, "pointmaps")
    conf = None if confidence is None else _as_tensor(confidence, "confidence")
    _check_shapes(global_points, conf, "pointmaps", "confidence")
    local_points = None if local_pointmaps is None else _as_tensor(local_pointmaps, "local_pointmaps")
    local_conf = None if local_confidence is None else _as_tensor(local_confidence, "local_confidence")
    if local_points is not None:
        _check_shapes(local_points, local_conf, "local_pointmaps", "local_confidence")
        if local_points.shape != global_points.shape:
            raise ValueError(
                f"local_pointmaps {tuple(local_points.shape)} must match pointmaps {tuple(global_points.shape)}"
            )
    if conf is None:
        conf = torch.ones(global_points.shape[:3], device=global_points.device)
    indices = list(range(int(global_points.shape[0])))
    return [_ViewGroup(indices, global_points, conf, local_points, local_conf)]


def _focal_per_view(groups: list[_ViewGroup], count: int, percentile: float, progress: bool) -> np.ndarray:
    """(N,) Weiszfeld focal of every view from its local pointmap, with the local confidence (else global)."""
    focals = np.full(count, np.nan)
    work = [(group, part) for group in groups for part in group.chunks()]
    for group, part in tqdm(work, desc="focal", disable=not progress or len(work) < 2, leave=False):
        conf = group.local_confidence if group.local_confidence is not None else group.confidence
        estimate = estimate_focal_batched(group.local_points[part], conf[part], min_conf_percentile=percentile)
        focals[np.asarray(group.indices[part])] = estimate.cpu().numpy()
    return focals


def _view0_global_focal(groups: list[_ViewGroup], percentile: float) -> float:
    group = next(group for group in groups if group.indices[0] == 0)
    focal = estimate_focal_batched(group.global_points[:1], group.confidence[:1], min_conf_percentile=percentile)
    return float(focal[0])


def _checked_focals(focal: float | Sequence[float] | ArrayLike, count: int) -> np.ndarray:
    values = np.asarray(focal.cpu() if isinstance(focal, torch.Tensor) else focal, dtype=np.float64)
    if values.ndim == 0:
        values = np.full(count, float(values))
    if values.shape != (count,):
        raise ValueError(f"focal must be one number or {count} numbers (one per view), got shape {values.shape}")
    known = ~np.isnan(values)
    if not (np.isfinite(values[known]).all() and (values[known] > 0).all()):
        raise ValueError(f"focal must be finite and positive (NaN: estimate that view's), got {values}")
    return values


def _fill_missing_focals(focals: np.ndarray, image_sizes: np.ndarray) -> np.ndarray:
    """Replace focals that could not be estimated (no usable points, or a non-positive fit): by the
    median of the others, or, when none could, by max(H, W) (a 53-degree field of view)."""
    missing = ~np.isfinite(focals) | (focals <= 0)
    if missing.all():
        warnings.warn("no view gave a usable focal length; assuming focal = max(H, W) pixels")
        return image_sizes.max(axis=1).astype(np.float64)
    if missing.any():
        warnings.warn(f"views {np.flatnonzero(missing).tolist()} gave no usable focal length; using the median focal")
        focals = np.where(missing, np.median(focals[~missing]), focals)
    return focals


def _pnp_poses(
    groups: list[_ViewGroup],
    count: int,
    focals: np.ndarray | None,
    shared_sweep: bool,
    config: PnPConfig,
    workers: int,
    progress: bool,
) -> tuple[list[PnPResult], np.ndarray]:
    """PnP per view, in threads (OpenCV releases the GIL). focals None: sweep per view (or view 0 only)."""
    global_maps: dict[int, torch.Tensor] = {}
    for group in groups:
        for row, index in enumerate(group.indices):
            global_maps[index] = group.global_points[row]
    found_focals = np.full(count, np.nan) if focals is None else focals.copy()
    if focals is None and shared_sweep:
        _, found_focals[:] = pose_and_focal_from_pnp_sweep(global_maps[0].cpu().numpy(), config)

    def solve(index: int) -> PnPResult:
        pointmap = global_maps[index].cpu().numpy()
        if np.isnan(found_focals[index]):
            result, found_focals[index] = pose_and_focal_from_pnp_sweep(pointmap, config)
            return result
        return pose_from_pnp(pointmap, float(found_focals[index]), config)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        solved = pool.map(solve, range(count))
        results = list(tqdm(solved, total=count, desc="PnP", disable=not progress or count < 2, leave=False))
    return results, found_focals


def cameras_from_pointmaps(
    pointmaps: PointmapInput,
    confidence: PointmapInput | None,
    *,
    local_pointmaps: PointmapInput | None = None,
    local_confidence: PointmapInput | None = None,
    method: Method = "auto",
    shared_focal: bool = False,
    focal: float | Sequence[float] | ArrayLike | None = None,
    conf_percentile: float = 50.0,
    focal_conf_percentile: float = 10.0,
    focal_sweep: bool = False,
    pnp: PnPConfig = PnPConfig(),
    return_aligned_points: bool = True,
    workers: int | None = None,
    progress: bool = True,
) -> Cameras:
    """Camera poses and intrinsics of every view from Fast3R's pointmaps.

    pointmaps: global pointmaps (N, H, W, 3), all in view 0's camera frame; confidence: (N, H, W) of the
    global head (None: all equal). local_pointmaps / local_confidence: the local head's, each view in its
    own camera frame. NumPy arrays or torch tensors (the work runs on the tensors' device), or lists of
    per-view (H, W, 3) / (H, W) arrays when sizes differ (mixed orientations). Non-finite points are ignored.

    method:
      "align": per view, Umeyama Sim(3) from the local pointmap onto the global one on the pixels whose
        global confidence is at or above that view's `conf_percentile` (all valid pixels when fewer than 3
        pass), each weighted by its global confidence times its local confidence (`local_confidence`, when
        given); identity below 3 weighted pixels. Its rotation and translation are the camera-to-world
        pose. Batched torch.
      "pnp": the release's path: solvePnPRansac (SQPNP, `pnp.iterations`, `pnp.reprojection_error` px) on
        the global pointmap and its pixel grid, pixels subsampled to `pnp.max_points`; identity on failure.
      "auto": "align" when local pointmaps are given, else "pnp".
    Focal (principal point always (W/2, H/2)):
      `focal` given (one number or N; NaN for views whose focal is unknown) -> used as is where known. Else, for "pnp" with `focal_sweep` -> per view, the
      focal of geomspace(S/2, 3S) with most PnP inliers (view 0's for all when `shared_focal`). Else, with
      local pointmaps -> Weiszfeld per view on its local pointmap (points with local confidence, or global
      when absent, at or above `focal_conf_percentile`); `shared_focal` takes their median. Else ->
      Weiszfeld on view 0's global pointmap (its own camera frame), shared by all views, as the release.
    workers: PnP threads (default: CPU count, at most 32). progress: tqdm bars for long loops.
    Raises ValueError on bad shapes, an unknown method, "align" without local pointmaps, or bad focals.
    """
    if method not in ("auto", "align", "pnp"):
        raise ValueError(f"method must be 'auto', 'align' or 'pnp', got {method!r}")
    if local_pointmaps is None and local_confidence is not None:
        raise ValueError("local_confidence given without local_pointmaps")
    as_list = isinstance(pointmaps, (list, tuple))
    group_views = _group_list if as_list else _group_stacked
    groups = group_views(pointmaps, confidence, local_pointmaps, local_confidence)
    count = sum(len(group.indices) for group in groups)
    has_local = groups[0].local_points is not None
    if method == "auto":
        method = "align" if has_local else "pnp"
    if method == "align" and not has_local:
        raise ValueError("method 'align' needs local_pointmaps (the local head's output)")
    sizes = np.zeros((count, 2), dtype=np.int64)
    for group in groups:
        sizes[group.indices] = group.size

    given = None if focal is None else _checked_focals(focal, count)
    if given is not None and not np.isnan(given).any():
        focals, focal_source = given, "given"
    elif method == "pnp" and focal_sweep:
        focals, focal_source = (None if given is None else given.copy()), "pnp-sweep"  # NaN: swept
    elif has_local:
        focals = _fill_missing_focals(_focal_per_view(groups, count, focal_conf_percentile, progress), sizes)
        focal_source = "local"
        if shared_focal:
            focals, focal_source = np.full(count, float(np.median(focals))), "local-median"
    else:
        view0_focal = _view0_global_focal(groups, focal_conf_percentile)
        focals = _fill_missing_focals(np.array([view0_focal]), sizes[:1]).repeat(count)
        focal_source = "global-view0"
    if given is not None and np.isnan(given).any():  # some views known, the others estimated
        focals = np.where(np.isnan(given), focals, given)
        focal_source = f"given+{focal_source}"

    c2w = np.tile(np.eye(4), (count, 1, 1))
    num_points = np.zeros(count, dtype=np.int64)
    success = np.zeros(count, dtype=bool)
    scale = None
    aligned_points = None
    if method == "align":
        scale = np.ones(count)
        aligned_chunks: list[tuple[np.ndarray, torch.Tensor]] = []
        work = [(group, part) for group in groups for part in group.chunks()]
        for group, part in tqdm(work, desc="align", disable=not progress or len(work) < 2, leave=False):
            result = align_local_to_global(
                group.local_points[part],
                group.global_points[part],
                group.confidence[part],
                local_confidence=None if group.local_confidence is None else group.local_confidence[part],
                conf_percentile=conf_percentile,
                return_aligned=return_aligned_points,
            )
            indices = np.asarray(group.indices[part])
            c2w[indices] = result.c2w.cpu().numpy()
            scale[indices] = result.scale.cpu().numpy()
            num_points[indices] = result.num_points.cpu().numpy()
            if result.aligned_points is not None:
                aligned_chunks.append((indices, result.aligned_points))
        success = num_points >= 3
        if return_aligned_points:
            aligned_points = _restore_kind(aligned_chunks, count, pointmaps, as_list)
    else:
        results, focals = _pnp_poses(
            groups, count, focals, shared_focal, pnp, workers or min(32, os.cpu_count() or 1), progress
        )
        for index, result in enumerate(results):
            c2w[index], num_points[index], success[index] = result.c2w, result.inliers, result.success

    K = np.stack([intrinsics(float(focal), int(height), int(width)) for focal, (height, width) in zip(focals, sizes)])
    return Cameras(
        c2w=c2w,
        K=K,
        focal=np.asarray(focals, dtype=np.float64),
        image_sizes=sizes,
        method=method,
        focal_source=focal_source,
        num_points=num_points,
        success=success,
        scale=scale,
        aligned_points=aligned_points,
    )


def _restore_kind(
    chunks: list[tuple[np.ndarray, torch.Tensor]], count: int, original: PointmapInput, as_list: bool
) -> ArrayLike | list[ArrayLike]:
    """Aligned points, computed in chunks of views, back into the caller's kind: list or stacked, numpy
    or torch. A stacked input has one group whose chunks come in view order."""
    reference = original[0] if as_list else original
    to_numpy = isinstance(reference, np.ndarray)
    if not as_list:
        stacked = torch.cat([points for _, points in chunks])
        return stacked.cpu().numpy() if to_numpy else stacked
    views: list[ArrayLike | None] = [None] * count
    for indices, points in chunks:
        for row, index in enumerate(indices):
            views[index] = points[row].cpu().numpy() if to_numpy else points[row]
    return views


def depth_from_local(local_pointmaps: PointmapInput) -> ArrayLike | list[ArrayLike]:
    """Depth maps (N, H, W) (or a list of (H, W)): the z of local pointmaps, which are in each view's frame."""
    if isinstance(local_pointmaps, (list, tuple)):
        return [depth_from_local(view[None])[0] for view in local_pointmaps]
    if local_pointmaps.ndim != 4 or local_pointmaps.shape[-1] != 3:
        raise ValueError(f"local_pointmaps must be (N, H, W, 3), got shape {tuple(local_pointmaps.shape)}")
    return local_pointmaps[..., 2]
