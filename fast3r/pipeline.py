"""The reconstruct pipeline: photos or a video in; cameras, depth and a point cloud out.

    images (decoded on all cores) -> model (encoder chunks start while later photos decode; fusion; heads)
      -> cameras, depth and the point budget on the model's device -> host arrays -> exports (concurrent)
"""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .export import EXPORTS, ExportError, choose_exports, import_packages, view_arrays_read, write_exports
from .geometry import Cameras, cameras_from_pointmaps
from .geometry.pointcloud import SelectedPoints, budget, confident_pixels, gather_points, uniform_sample, voxel_average
from .interrupt import check_interrupted
from .io.frames import ExportFrame
from .io.images import LoadedImage
from .io.intrinsics import focals_for_views
from .io.loader import LoadOptions
from .io.outdir import OutputFolder
from .model import DTYPES, Fast3R, Fast3RConfig
from .model.pretrained import BUNDLED_WEIGHTS, PUBLISHED_WEIGHTS, read_config, resolve_source, weights_source
from .predict import PredictError, plan_inputs, run_model, run_model_multi_gpu
from .progress import RunProgress

DEFAULT_MAX_POINTS = 2_000_000
VIEWER_POINTS = 2_000_000
_BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fast3r-background")  # copies to host
STAGES = ("load model", "images + encoder", "start GPUs", "fusion + heads", "cameras", "point cloud", "export")

__all__ = ["BUNDLED_WEIGHTS", "EXPORTS", "Reconstruction", "ReconstructError", "reconstruct", "load_model"]


class ReconstructError(RuntimeError):
    """A reconstruction that cannot run, with what to do about it."""


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


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(weights: str | os.PathLike | None, device: str, dtype: torch.dtype) -> Fast3R:
    """The model from a directory or hub id (see `weights_source`)."""
    return Fast3R.from_pretrained(weights_source(weights), device=device, dtype=dtype)


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
    progress = progress or RunProgress(STAGES, enabled=False)
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


def _check_options(conf_percentile: float, voxel_size: float | None, max_points: int | None, max_views: int | None) -> None:
    if not 0 <= conf_percentile < 100:
        raise ReconstructError(f"--conf-percentile must be in [0, 100), got {conf_percentile}")
    if voxel_size is not None and not voxel_size > 0:
        raise ReconstructError(f"--voxel-size must be > 0, got {voxel_size}")
    if max_points is not None and max_points < 1:
        raise ReconstructError(f"--max-points must be at least 1, got {max_points}")
    if max_views is not None and max_views < 2:
        raise ReconstructError(f"--max-views must be at least 2, got {max_views}")


def reconstruct(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike | None = None,
    *,
    weights: str | os.PathLike | None = None,
    model: Fast3R | None = None,
    size: int | None = None,
    device: str | None = None,
    dtype: str = "auto",
    max_views: int | None = None,
    image_ids: Sequence[float] | str | None = None,
    camera_method: str = "auto",
    focal: float | str | os.PathLike | None = None,
    conf_percentile: float = 20.0,
    voxel_size: float | None = None,
    max_points: int | None = DEFAULT_MAX_POINTS,
    exports: Sequence[str] | None = None,
    copy_images: bool = False,
    overwrite: bool = False,
    skip_bad: bool = False,
    exact_decode: bool = False,
    video_fps: float | None = None,
    max_frames: int | None = None,
    gpus: int = 1,
    keep_arrays: bool = True,
    before_commit: Callable[[Reconstruction, Path], None] | None = None,
    progress: bool = True,
) -> Reconstruction:
    """Reconstruct a scene from a folder, glob, list of images, or a video.

    weights: a folder or hub id; None: the published ViT-L/512 (non-commercial licence), "small": the
    bundled demo model for synthetic scenes. size: 512 or 224 (default: the size the weights were trained
    at). dtype: "auto" (bf16 on CUDA, fp32 on CPU), "fp32", "bf16" or "fp16". camera_method: see
    `cameras_from_pointmaps`. focal: known focal length in pixels of the original photos, "exif" (35 mm
    equivalent from each photo's EXIF), or a per-image file; None estimates it. max_points: the exported
    cloud's budget (None: every confident point). With `output_dir`, writes the chosen `exports` (default:
    all but the full-density depth and npz) into a staging folder swapped in when complete; an existing
    non-empty folder is refused unless `overwrite`, which replaces it. gpus: one joint pass over this many
    GPUs of this machine (context parallel; device "cpu": as many gloo processes, for tests).
    keep_arrays: False keeps only the per-view arrays the exports read (the command's choice: at 1000 views
    the others are gigabytes of host memory and seconds of copying). before_commit(result, folder): writes
    more files into the run's staging folder, swapped in with the rest (nothing if it raises).
    """
    _check_options(conf_percentile, voxel_size, max_points, max_views)
    if gpus < 1 or (gpus > 1 and model is not None):
        raise ReconstructError("--gpus must be at least 1 (and with several GPUs pass weights, not a model)")
    try:
        chosen = choose_exports(exports)
    except ExportError as err:
        raise ReconstructError(str(err)) from err
    device = device or default_device()
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    if dtype not in DTYPES:
        raise ReconstructError(f"--dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")
    if gpus > 1 and device.startswith("cuda") and torch.cuda.device_count() < gpus:
        raise ReconstructError(f"--gpus {gpus}: this machine has {torch.cuda.device_count()} GPU(s)")
    paths, max_views_after = plan_inputs(inputs, max_views)
    folder = OutputFolder(output_dir, overwrite) if output_dir is not None else None
    staging = folder.open() if folder is not None else None
    shown = RunProgress(STAGES, enabled=progress)
    if folder is not None:
        # while the model runs; a daemon: after Ctrl-C inside an import, the exit must not wait on it
        threading.Thread(target=import_packages, args=(chosen,), name="fast3r-imports", daemon=True).start()
    try:
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(device)
        shown.start("load model")
        if gpus > 1:  # every rank loads the weights itself
            source = resolve_source(weights_source(weights))  # once here: the ranks read this folder
            config = read_config(source)
        else:
            model = model if model is not None else load_model(weights, device, DTYPES[dtype])
            config = model.config
        size = size or config.encoder.img_size
        load = LoadOptions(size=size, exact=exact_decode, skip_bad=skip_bad, video_fps=video_fps, max_frames=max_frames)
        if gpus > 1:
            images, outputs, ids = run_model_multi_gpu(
                str(source), config, paths, load, max_views_after, image_ids, gpus, device.split(":")[0], DTYPES[dtype], shown
            )
        else:
            images, outputs, ids = run_model(model, paths, load, max_views_after, image_ids, shown)
        check_interrupted()
        focals = focals_for_views(focal, images)
        keep = VIEW_ARRAYS if keep_arrays else view_arrays_read(chosen if folder is not None else ())
        result = cameras_and_points(
            images, outputs, ids, camera_method, focals, conf_percentile, voxel_size, max_points, shown, keep
        )
        result.timings = shown.timings  # filled in as the stages end
        del outputs
        if device.startswith("cuda"):
            result.peak_gpu_bytes = torch.cuda.max_memory_allocated(device)
        check_interrupted()
        if folder is not None:
            shown.start("export", total=len(chosen), unit="file")
            write_exports(result, staging, chosen, copy_images=copy_images, on_file=shown.advance)
        result.wait_for_host()  # every kept array on the host (and any transfer error raised)
        check_interrupted()
        shown.finish()
        if folder is not None:
            if before_commit is not None:
                before_commit(result, staging)
            options = {
                "size": size, "dtype": dtype, "device": device, "gpus": gpus, "camera_method": camera_method,
                "focal": None if focal is None else str(focal), "conf_percentile": conf_percentile,
                "voxel_size": voxel_size, "max_points": max_points, "max_views": max_views,
                "exact_decode": exact_decode, "copy_images": copy_images,
            }  # fmt: skip
            folder.commit(_run_info(inputs, weights, config, options, chosen, result))
            result.files = [Path(output_dir) / EXPORTS[name] for name in chosen]
    except PredictError as err:
        raise ReconstructError(str(err)) from err
    except torch.cuda.OutOfMemoryError as err:
        raise ReconstructError(
            f"GPU out of memory at {len(paths)} inputs: use fewer views (--max-views), smaller images (--size 224), "
            "or bf16 (--dtype bf16)"
        ) from err
    finally:
        shown.close()
        if folder is not None:
            folder.abort()  # after a commit: only releases the lock
    return result


def _run_info(inputs, weights, config: Fast3RConfig, options: dict, exports: list[str], result: Reconstruction) -> dict:
    from . import __version__

    listed = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    return {
        "fast3r_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": [str(Path(entry).resolve()) if Path(entry).exists() else str(entry) for entry in listed],
        "views": result.names,
        "weights": str(weights) if weights is not None else PUBLISHED_WEIGHTS,
        "model": asdict(config),
        "options": options,
        "exports": {name: EXPORTS[name] for name in exports},
        "points_exported": int(len(result.cloud.points)),
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
    }
