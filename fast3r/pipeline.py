"""The reconstruct pipeline: photos or a video in; cameras, depth and a point cloud out.

    images -> model -> predictions -> cameras -> exports
"""
from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .geometry import Cameras, cameras_from_pointmaps
from .io.atomic import atomic_path
from .io.frames import ExportFrame
from .io.images import LoadedImage, load_images
from .io.video import is_video_path
from .model import DTYPES, Fast3R, RunOptions

BUNDLED_WEIGHTS = Path(__file__).parent / "weights" / "fast3r-small-224"
EXPORTS = ("ply", "glb", "colmap", "nerfstudio", "cameras", "depth", "npz", "preview", "images")


class ReconstructError(RuntimeError):
    """A reconstruction that cannot run, with what to do about it."""


@dataclass
class Reconstruction:
    """Everything one run produced, per view in input order.

    pointmaps:  global pointmaps (H, W, 3) in view 0's camera frame, as the model predicted them
    points:     the points to use: local pointmaps aligned into the global frame (method "align"),
                else the global pointmaps
    confidence: (H, W) global-head confidence; depth: (H, W) z-depth in the global frame's units
    cameras:    poses and intrinsics in pixels of the model's images
    """

    images: list[LoadedImage]
    pointmaps: list[np.ndarray]
    confidence: list[np.ndarray]
    local_pointmaps: list[np.ndarray]
    local_confidence: list[np.ndarray]
    points: list[np.ndarray]
    depth: list[np.ndarray]
    cameras: Cameras
    image_ids: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

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
            if _has_original_file(image):
                width, height = image.transform.original_size
                K = image.transform.K_to_original(self.cameras.K[i])
                frames[i] = ExportFrame(image.name, width, height, K, self.cameras.c2w[i])
        return frames

    def point_cloud(self, conf_percentile: float = 20.0, voxel_size: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(M, 3) float32 points and (M, 3) uint8 colours, dropping each view's least confident
        `conf_percentile` percent of pixels; optionally averaged per voxel."""
        points, colors = [], []
        for view_points, conf, image in zip(self.points, self.confidence, self.images):
            finite = np.isfinite(view_points).all(-1)
            if not finite.any():
                continue
            keep = finite & (conf >= np.percentile(conf[finite], conf_percentile))
            points.append(view_points[keep])
            colors.append(image.rgb[keep])
        points = np.concatenate(points).astype(np.float32) if points else np.zeros((0, 3), np.float32)
        colors = np.concatenate(colors) if colors else np.zeros((0, 3), np.uint8)
        if voxel_size:
            from .io.ply import voxel_downsample

            points, colors = voxel_downsample(points, colors, voxel_size)
        return points, colors


def _has_original_file(image: LoadedImage) -> bool:
    return image.path is not None and not is_video_path(image.path)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(weights: str | os.PathLike | None, device: str, dtype: torch.dtype) -> Fast3R:
    """The model from a directory or hub id; the bundled small model when `weights` is None."""
    if weights is None:
        if not (BUNDLED_WEIGHTS / "config.json").is_file():
            raise ReconstructError(
                f"no bundled weights at {BUNDLED_WEIGHTS}; pass --weights DIR or a hub id "
                "(e.g. jedyang97/Fast3R_ViT_Large_512, licensed non-commercial)"
            )
        weights = BUNDLED_WEIGHTS
    return Fast3R.from_pretrained(str(weights), device=device, dtype=dtype)


def _unique_names(images: list[LoadedImage]) -> None:
    """Make view names unique (two folders may hold the same file name): 'a.jpg', 'a_1.jpg', ..."""
    seen: set[str] = set()
    for image in images:
        name, stem, suffix, count = image.name, Path(image.name).stem, Path(image.name).suffix, 0
        while name in seen:
            count += 1
            name = f"{stem}_{count}{suffix}"
        seen.add(name)
        image.name = name


def _evenly(images: list[LoadedImage], max_views: int) -> list[LoadedImage]:
    keep = np.unique(np.linspace(0, len(images) - 1, max_views).round().astype(int))
    warnings.warn(f"{len(images)} views found; keeping {len(keep)} evenly spread (max_views={max_views})", stacklevel=3)
    return [images[i] for i in keep]


def predict(
    model: Fast3R,
    images: Sequence[LoadedImage],
    image_ids: Sequence[float] | str | None = None,
    options: RunOptions | None = None,
) -> list[dict[str, np.ndarray]]:
    """Run the model on preprocessed images; per-view outputs as float32 numpy arrays (batch of one)."""
    param = next(model.parameters())
    views = [image.tensor[None].to(param.device, param.dtype) for image in images]
    options = options or RunOptions(output_device="cpu")
    try:
        with torch.no_grad():
            outputs = model(views, image_ids=image_ids, options=options)
    except torch.cuda.OutOfMemoryError as err:
        height, width = views[0].shape[-2:]
        raise ReconstructError(
            f"GPU out of memory with {len(views)} views at {width}x{height} in {param.dtype}: use fewer views "
            "(--max-views), smaller images (--size 224), or bf16 (--dtype bf16)"
        ) from err
    return [{key: value[0].float().cpu().numpy() for key, value in out.items()} for out in outputs]


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
    conf_percentile: float = 20.0,
    voxel_size: float | None = None,
    exports: Sequence[str] | None = None,
    overwrite: bool = False,
    skip_bad: bool = False,
    video_fps: float | None = None,
    max_frames: int | None = None,
    progress: bool = True,
) -> Reconstruction:
    """Reconstruct a scene from a folder, glob, list of images, or a video.

    size: 512 or 224 (default: the size the weights were trained at). dtype: "auto" (bf16 on CUDA,
    fp32 on CPU), "fp32", "bf16" or "fp16". camera_method: see `cameras_from_pointmaps`. With
    `output_dir`, writes the chosen `exports` (default: all of EXPORTS whose optional packages are
    installed) there; an existing non-empty directory is refused unless `overwrite`.
    """
    timings: dict[str, float] = {}
    out = Path(output_dir) if output_dir is not None else None
    chosen = _check_exports(exports)
    if out is not None and out.exists() and any(out.iterdir()) and not overwrite:
        raise ReconstructError(f"{out} exists and is not empty; pass --overwrite to write into it")

    device = device or default_device()
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    if dtype not in DTYPES:
        raise ReconstructError(f"dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")

    start = time.perf_counter()
    model = model if model is not None else load_model(weights, device, DTYPES[dtype])
    size = size or model.config.encoder.img_size
    timings["load model"] = time.perf_counter() - start

    start = time.perf_counter()
    images = load_images(inputs, size=size, skip_bad=skip_bad, video_fps=video_fps, max_frames=max_frames, progress=progress)
    if max_views is not None and len(images) > max_views:
        images = _evenly(images, max_views)
    if len(images) < 2:
        raise ReconstructError(f"need at least two views, got {len(images)} from {inputs!r}")
    _unique_names(images)
    timings["load images"] = time.perf_counter() - start

    start = time.perf_counter()
    ids = model.image_ids(len(images), image_ids).numpy()
    outputs = predict(model, images, image_ids=ids)
    timings["model"] = time.perf_counter() - start

    start = time.perf_counter()
    result = _cameras_and_depth(images, outputs, ids, camera_method, progress)
    timings["cameras"] = time.perf_counter() - start
    result.timings = timings

    if out is not None:
        start = time.perf_counter()
        result.files = export(result, out, chosen, conf_percentile=conf_percentile, voxel_size=voxel_size, progress=progress)
        timings["export"] = time.perf_counter() - start
    return result


def _cameras_and_depth(
    images: list[LoadedImage], outputs: list[dict[str, np.ndarray]], ids: np.ndarray, method: str, progress: bool
) -> Reconstruction:
    pointmaps = [o["pts3d_in_other_view"] for o in outputs]
    confidence = [o["conf"] for o in outputs]
    local = [o["pts3d_local"] for o in outputs]
    local_conf = [o["conf_local"] for o in outputs]
    cameras = cameras_from_pointmaps(
        pointmaps, confidence, local_pointmaps=local, local_confidence=local_conf, method=method, progress=progress
    )
    if cameras.aligned_points is not None:
        points = [np.asarray(p, dtype=np.float32) for p in cameras.aligned_points]
        depth = [(scale * view[..., 2]).astype(np.float32) for scale, view in zip(cameras.scale, local)]
    else:
        points = pointmaps
        depth = []
        for c2w, view in zip(cameras.c2w, pointmaps):
            w2c = np.linalg.inv(c2w)
            depth.append((view @ w2c[:3, :3].T + w2c[:3, 3])[..., 2].astype(np.float32))
    return Reconstruction(images, pointmaps, confidence, local, local_conf, points, depth, cameras, ids)


def _check_exports(exports: Sequence[str] | None) -> list[str]:
    if exports is None:
        available = []
        for name in EXPORTS:
            missing = _missing_package(name)
            if missing:
                warnings.warn(f"skipping the {name} export: {missing}", stacklevel=3)
            else:
                available.append(name)
        return available
    unknown = [e for e in exports if e not in EXPORTS]
    if unknown:
        raise ReconstructError(f"unknown export(s) {unknown}; choose from {', '.join(EXPORTS)}")
    for name in exports:
        missing = _missing_package(name)
        if missing:
            raise ReconstructError(f"the {name} export needs {missing}")
    return list(dict.fromkeys(exports))


def _missing_package(export_name: str) -> str | None:
    import importlib.util

    needs = {"glb": "trimesh", "colmap": "pycolmap"}.get(export_name)
    if needs and importlib.util.find_spec(needs) is None:
        return f"{needs} (pip install 'fast3r[export]')"
    return None


def export(
    result: Reconstruction,
    out: Path,
    exports: Sequence[str],
    conf_percentile: float = 20.0,
    voxel_size: float | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write the chosen exports under `out`; every file is written under a temporary name and renamed."""
    from .io import cameras_json, colmap, depth, glb, nerfstudio, ply
    from .viz import preview

    out.mkdir(parents=True, exist_ok=True)
    points, colors = result.point_cloud(conf_percentile, voxel_size)
    frames = result.frames()
    writers = {
        "ply": lambda: ply.write_ply(out / "points.ply", points, colors),
        "glb": lambda: glb.write_glb(out / "scene.glb", points, colors, frames),
        "colmap": lambda: colmap.write_colmap(out / "sparse" / "0", frames, points, colors),
        "nerfstudio": lambda: nerfstudio.write_transforms_json(
            out / "transforms.json", frames, ply_file_path="points.ply" if "ply" in exports else None
        ),
        "cameras": lambda: cameras_json.write_cameras_json(out / "cameras.json", frames, result.model_frames()),
        "depth": lambda: depth.write_depth_maps(out / "depth", result.names, result.depth, result.confidence),
        "npz": lambda: _write_npz(out / "predictions.npz", result),
        "preview": lambda: preview.render_preview(points, colors, frames, out / "preview.png"),
        "images": lambda: _write_images(out / "images", result.images),
    }
    targets = {
        "ply": "points.ply", "glb": "scene.glb", "colmap": "sparse", "nerfstudio": "transforms.json",
        "cameras": "cameras.json", "depth": "depth", "npz": "predictions.npz", "preview": "preview.png",
        "images": "images",
    }  # fmt: skip
    written = []
    for name in tqdm(exports, desc="Writing", unit="file", disable=not progress):
        writers[name]()
        written.append(out / targets[name])
    return written


def _write_npz(path: Path, result: Reconstruction) -> None:
    frames = result.frames()
    arrays: dict[str, np.ndarray] = {
        "names": np.array(result.names),
        "image_ids": result.image_ids,
        "c2w": result.cameras.c2w,
        "K": result.cameras.K,
        "K_original": np.stack([f.K for f in frames]),
        "original_sizes": np.array([(f.width, f.height) for f in frames]),
    }
    per_view = {
        "images": [image.rgb for image in result.images],
        "pts3d": result.pointmaps,
        "conf": result.confidence,
        "pts3d_local": result.local_pointmaps,
        "conf_local": result.local_confidence,
        "points_aligned": result.points,
        "depth": result.depth,
    }
    same_size = len({image.rgb.shape for image in result.images}) == 1
    for key, values in per_view.items():
        if same_size:
            arrays[key] = np.stack(values)
        else:  # mixed orientations: one array per view
            arrays.update({f"{key}_{i:05d}": value for i, value in enumerate(values)})
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def _write_images(directory: Path, images: Sequence[LoadedImage]) -> None:
    """The photos beside the COLMAP / Nerfstudio files, upright as the cameras see them: originals
    copied, photos with an EXIF rotation saved rotated, video frames saved as PNG."""
    from PIL import Image, ImageOps

    directory.mkdir(parents=True, exist_ok=True)
    for image in images:
        with atomic_path(directory / image.name) as tmp:
            if not _has_original_file(image):
                Image.fromarray(image.rgb).save(tmp, format="PNG")
                continue
            with Image.open(image.path) as photo:
                if photo.getexif().get(0x0112, 1) == 1:  # EXIF orientation: upright already
                    shutil.copyfile(image.path, tmp)
                else:
                    ImageOps.exif_transpose(photo).save(tmp, format=photo.format, quality=95)
