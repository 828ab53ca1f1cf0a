"""The reconstruct pipeline: photos or a video in; cameras, depth and a point cloud out.

    images (decoded on all cores) -> model (encoder chunks start while later photos decode; fusion; heads)
      -> cameras, depth and the point budget on the model's device -> host arrays -> exports (concurrent)
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import torch

from .export import EXPORTS, ExportError, choose_exports, import_packages, view_arrays_read, write_exports
from .interrupt import check_interrupted
from .io.intrinsics import focals_for_views
from .io.loader import LoadOptions
from .io.outdir import OutputFolder
from .model import DTYPES, Fast3R, Fast3RConfig
from .model.pretrained import BUNDLED_WEIGHTS, PUBLISHED_WEIGHTS, read_config, resolve_source, weights_source
from .predict import PredictError, plan_inputs, run_model, run_model_multi_gpu
from .progress import RunProgress
from .reconstruction import VIEW_ARRAYS, Reconstruction, cameras_and_points

DEFAULT_MAX_POINTS = 2_000_000
STAGES = ("load model", "images + encoder", "start GPUs", "fusion + heads", "cameras", "point cloud", "export")

__all__ = ["BUNDLED_WEIGHTS", "EXPORTS", "Reconstruction", "ReconstructError", "reconstruct", "load_model"]


class ReconstructError(RuntimeError):
    """A reconstruction that cannot run, with what to do about it."""


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(weights: str | os.PathLike | None, device: str, dtype: torch.dtype) -> Fast3R:
    """The model from a directory or hub id (see `weights_source`)."""
    return Fast3R.from_pretrained(weights_source(weights), device=device, dtype=dtype)


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
