"""What one run produced, made from the model's outputs: cameras, depth, the budgeted point cloud and the
viewer's sample, on the pointmaps' device; the per-view arrays then travel to the host in the background.

    model outputs -> cameras_and_points -> Reconstruction (read by the exports)
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .geometry import Cameras, cameras_from_pointmaps
from .geometry.pointcloud import SelectedPoints, budget, confident_pixels, gather_points, uniform_sample, voxel_average
from .io.frames import ExportFrame
from .io.images import LoadedImage
from .progress import RunProgress

VIEWER_POINTS = 2_000_000
_BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fast3r-background")  # copies to host


@dataclass
class Cloud:
    """The exported point cloud: (M, 3) float32 points, (M, 3) uint8 colours, (M,) confidence and view."""

    points: np.ndarray
    colors: np.ndarray
    confidence: np.ndarray
    view_index: np.ndarray


VIEW_ARRAYS = ("confidence", "depth", "pointmaps", "local_pointmaps", "local_confidence", "points")


@dataclass
class Reconstruction:
    """Everything one run produced, per view in input order (host numpy arrays).

    pointmaps:  global pointmaps (H, W, 3) in view 0's camera frame, as the model predicted them
    points:     the points to use: local pointmaps aligned into the global frame (method "align"),
                else the global pointmaps
    confidence: (H, W) global-head confidence; depth: (H, W) z-depth in the global frame's units
    local_pointmaps, local_confidence: the local head's, each view in its own camera frame
    cameras:    poses and intrinsics in pixels of the model's images
    cloud:      the exported point cloud (confidence filter, voxels, point budget)
    viewer_sample: arrays for viewer.npz (a uniform sample of all valid pixels)
    The per-view arrays may still be on their way from the GPU (Futures): reading one waits for it.
    """

    images: list[LoadedImage]
    views: dict[str, list[np.ndarray] | Future]  # VIEW_ARRAYS, each a list or on its way to the host
    cameras: Cameras
    image_ids: np.ndarray
    cloud: Cloud
    viewer_sample: dict[str, np.ndarray]
    timings: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    peak_gpu_bytes: int | None = None

    def view_array(self, name: str) -> list[np.ndarray]:
        """One of VIEW_ARRAYS, once it is on the host."""
        if name not in self.views:
            raise ValueError(f"the per-view {name} were not kept: reconstruct(..., keep_arrays=True) keeps them")
        if isinstance(self.views[name], Future):
            self.views[name] = self.views[name].result()
        return self.views[name]

    def wait_for_host(self) -> None:
        """Every kept per-view array on the host (and any transfer error raised)."""
        for name in self.views:
            self.view_array(name)

    pointmaps = property(lambda self: self.view_array("pointmaps"))
    confidence = property(lambda self: self.view_array("confidence"))
    local_pointmaps = property(lambda self: self.view_array("local_pointmaps"))
    local_confidence = property(lambda self: self.view_array("local_confidence"))
    points = property(lambda self: self.view_array("points"))
    depth = property(lambda self: self.view_array("depth"))

    @property
    def names(self) -> list[str]:
        return [image.name for image in self.images]

    def model_frames(self) -> list[ExportFrame]:
        """Cameras in pixels of the images the model saw."""
        return [
            ExportFrame(image.name, image.rgb.shape[1], image.rgb.shape[0], self.cameras.K[i], self.cameras.c2w[i])
            for i, image in enumerate(self.images)
        ]

    def frames(self) -> list[ExportFrame]:
        """Cameras of the original photos (video frames: the model's images, which are what is saved)."""
        frames = self.model_frames()
        for i, image in enumerate(self.images):
            if image.from_photo:
                width, height = image.transform.original_size
                K = image.transform.K_to_original(self.cameras.K[i])
                frames[i] = ExportFrame(image.name, width, height, K, self.cameras.c2w[i])
        return frames

    def point_cloud(self, conf_percentile: float = 20.0, voxel_size: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(M, 3) float32 points and (M, 3) uint8 colours of every view's confident pixels (each view's
        least confident `conf_percentile` percent dropped), optionally averaged per voxel. No budget."""
        selected = select_cloud(
            [torch.from_numpy(p) for p in self.points], [torch.from_numpy(c) for c in self.confidence],
            [torch.from_numpy(image.rgb) for image in self.images], conf_percentile, voxel_size, None,
        )
        return selected.points.numpy(), selected.colors.numpy()


def select_cloud(
    points: Sequence[torch.Tensor],
    confidence: Sequence[torch.Tensor],
    colors: Sequence[torch.Tensor],
    conf_percentile: float,
    voxel_size: float | None,
    max_points: int | None,
) -> SelectedPoints:
    """Confident pixels of every view -> optional voxel average -> optional point budget (tensors' device)."""
    selected = gather_points(points, confidence, colors, confident_pixels(points, confidence, conf_percentile))
    if voxel_size:
        selected = voxel_average(selected, voxel_size)
    return budget(selected, max_points) if max_points else selected


def _to_host(views: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Per-view float32 arrays on the host, one transfer per image size (views into one stacked array)."""
    host: list[np.ndarray | None] = [None] * len(views)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, view in enumerate(views):
        by_shape.setdefault(tuple(view.shape), []).append(index)
    for indices in by_shape.values():
        stacked = torch.stack([views[i] for i in indices]).float().cpu().numpy()
        for row, index in enumerate(indices):
            host[index] = stacked[row]
    return host


def _viewer_sample(global_points, aligned, confidence, colors, count: int) -> dict[str, np.ndarray]:
    """A uniform sample of every view's valid pixels with both estimates, for viewer.npz."""
    flat = lambda views, width: torch.cat([v.reshape(-1, width) for v in views])  # noqa: E731
    points_global, points_local = flat(global_points, 3), flat(aligned, 3)
    conf, rgb = flat(confidence, 1)[:, 0], flat(colors, 3)
    view = torch.cat([torch.full((v[..., 0].numel(),), i, dtype=torch.int32, device=v.device) for i, v in enumerate(aligned)])
    valid = torch.isfinite(points_global).all(1) & torch.isfinite(points_local).all(1) & torch.isfinite(conf)
    rows = torch.nonzero(valid)[:, 0]
    rows = rows[uniform_sample(count, int(rows.shape[0]), rows.device)]
    host = lambda t, dtype: t[rows].cpu().numpy().astype(dtype)  # noqa: E731
    return {
        "points_global": host(points_global, np.float32), "points_local": host(points_local, np.float32),
        "colors": host(rgb, np.uint8), "confidence": host(conf, np.float32), "view_index": host(view, np.int32),
    }


def cameras_and_points(
    images: list[LoadedImage],
    outputs: list[dict[str, torch.Tensor]],
    ids: np.ndarray,
    method: str,
    focals: np.ndarray | None,
    conf_percentile: float,
    voxel_size: float | None,
    max_points: int | None,
    progress: RunProgress | None = None,
    keep: Sequence[str] = VIEW_ARRAYS,
) -> Reconstruction:
    """Cameras, depth, the budgeted cloud and the viewer sample where the pointmaps are; the per-view arrays
    named in `keep` then travel to the host in the background (the others are dropped). `progress` shows
    (and times) "cameras" and "point cloud"."""
    progress = progress or RunProgress(("cameras", "point cloud"), enabled=False)
    progress.start("cameras")
    pointmaps = [o["pts3d_in_other_view"][0] for o in outputs]
    confidence = [o["conf"][0] for o in outputs]
    local = [o["pts3d_local"][0] for o in outputs]
    local_conf = [o["conf_local"][0] for o in outputs]
    cameras = cameras_from_pointmaps(
        pointmaps, confidence, local_pointmaps=local, local_confidence=local_conf, method=method, focal=focals,
        progress=False,
    )
    if cameras.aligned_points is not None:
        points = list(cameras.aligned_points)
        depth = [float(scale) * view[..., 2] for scale, view in zip(cameras.scale, local)]
    else:
        points = pointmaps
        depth = []
        for c2w, view in zip(cameras.c2w, pointmaps):
            w2c = torch.as_tensor(np.linalg.inv(c2w), dtype=view.dtype, device=view.device)
            depth.append((view @ w2c[:3, :3].T + w2c[:3, 3])[..., 2])
    cameras.aligned_points = None  # kept as `points`, sent to the host below
    device = pointmaps[0].device
    _step(progress, "point cloud", device)
    colors = [torch.from_numpy(image.rgb).to(device) for image in images]
    selected = select_cloud(points, confidence, colors, conf_percentile, voxel_size, max_points)
    cloud = Cloud(*(t.cpu().numpy() for t in (selected.points, selected.colors, selected.confidence, selected.view_index)))
    viewer = _viewer_sample(pointmaps, points, confidence, colors, VIEWER_POINTS)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    progress.finish()
    timings = progress.timings

    def to_host(views: list[torch.Tensor]) -> list[np.ndarray]:  # gigabytes at 1000 views
        start = time.perf_counter()
        host = _to_host(views)
        timings["to host (during export)"] = timings.get("to host (during export)", 0.0) + time.perf_counter() - start
        return host

    device_views = {
        "confidence": confidence, "depth": depth, "pointmaps": pointmaps, "local_pointmaps": local,
        "local_confidence": local_conf, "points": points,
    }  # fmt: skip
    # in this order, one after another, while the exports are written (the preview needs the first two)
    views = {name: _BACKGROUND.submit(to_host, device_views[name]) for name in VIEW_ARRAYS if name in keep}
    return Reconstruction(images, views, cameras, ids, cloud, viewer)


def _step(progress: RunProgress, stage: str, device: torch.device) -> None:
    """Start `stage` once the device's queued work is done, so each step's time is its own."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    progress.start(stage)
