"""Write a reconstruction's exports into a folder, the independent ones at the same time.

    Reconstruction -> points.ply, scene.glb, sparse/0/, transforms.json, cameras.json, preview.png,
                      images/, viewer.npz (default); depth/, predictions.npz (full density, on request)
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from fast3r.interrupt import interrupts_deferred
from fast3r.io.atomic import atomic_path
from fast3r.io.images import LoadedImage

if TYPE_CHECKING:
    from fast3r.reconstruction import Reconstruction

# name -> file or folder it writes
EXPORTS = {
    "ply": "points.ply",
    "glb": "scene.glb",
    "colmap": "sparse",
    "nerfstudio": "transforms.json",
    "cameras": "cameras.json",
    "preview": "preview.png",
    "images": "images",
    "viewer": "viewer.npz",
    "depth": "depth",
    "npz": "predictions.npz",
}
FULL_DENSITY_EXPORTS = ("depth", "npz")  # gigabytes at 1000 views: written when asked for
# the per-view host arrays (Reconstruction.view_array) each export reads
_VIEW_ARRAYS_READ = {
    "preview": ("confidence", "depth"),
    "depth": ("confidence", "depth"),
    "npz": ("confidence", "depth", "pointmaps", "local_pointmaps", "local_confidence", "points"),
}
_NEEDS = {"glb": "trimesh", "colmap": "pycolmap"}
PREVIEW_GRID_VIEWS = 8


class ExportError(ValueError):
    """An export that cannot be written as asked (unknown name, missing package)."""


def choose_exports(exports: Sequence[str] | None) -> list[str]:
    """The exports to write: as asked (checked), or by default every one but the full-density ones whose
    package is installed (a warning names each skipped one)."""
    if exports is None:
        chosen = []
        for name in EXPORTS:
            missing = _missing_package(name)
            if missing:
                warnings.warn(f"skipping the {name} export: needs {missing}", stacklevel=3)
            elif name not in FULL_DENSITY_EXPORTS:
                chosen.append(name)
        return chosen
    unknown = [name for name in exports if name not in EXPORTS]
    if unknown:
        raise ExportError(f"--export: unknown {', '.join(unknown)}; choose from {', '.join(EXPORTS)}")
    for name in exports:
        missing = _missing_package(name)
        if missing:
            raise ExportError(f"--export {name} needs {missing}")
    return list(dict.fromkeys(exports))


def view_arrays_read(exports: Sequence[str]) -> set[str]:
    """Names of the per-view host arrays the chosen exports read."""
    return {name for export in exports for name in _VIEW_ARRAYS_READ.get(export, ())}


def import_packages(exports: Sequence[str]) -> None:
    """Import the packages the chosen exports write with (trimesh takes ~1 s), e.g. in a background thread
    while the model runs, so the export stage does not wait for them."""
    for name in exports:
        if name in _NEEDS:
            importlib.import_module(_NEEDS[name])


def _missing_package(name: str) -> str | None:
    needs = _NEEDS.get(name)
    if needs and importlib.util.find_spec(needs) is None:
        return f"{needs} (pip install 'fast3r[export]')"
    return None


def write_exports(
    result: "Reconstruction",
    out: Path,
    exports: Sequence[str],
    copy_images: bool = False,
    on_file: Callable[[], None] | None = None,
) -> list[Path]:
    """Write `exports` of `result` under `out`, independent ones concurrently; returns the paths written.
    Points come from `result.cloud` (already confidence-filtered and within the point budget)."""
    from fast3r.io import cameras_json, colmap, depth, glb, nerfstudio, ply
    from fast3r.viz import preview, viewer_data

    out.mkdir(parents=True, exist_ok=True)
    points, colors = result.cloud.points, result.cloud.colors
    frames = result.frames()
    writers: dict[str, Callable[[], object]] = {
        "ply": lambda: ply.write_ply(out / EXPORTS["ply"], points, colors),
        "glb": lambda: glb.write_glb(out / EXPORTS["glb"], points, colors, frames),
        "colmap": lambda: colmap.write_colmap(out / EXPORTS["colmap"] / "0", frames, points, colors),
        "nerfstudio": lambda: nerfstudio.write_transforms_json(
            out / EXPORTS["nerfstudio"], frames, ply_file_path=EXPORTS["ply"] if "ply" in exports else None
        ),
        "cameras": lambda: cameras_json.write_cameras_json(out / EXPORTS["cameras"], frames, result.model_frames()),
        "preview": lambda: preview.render_preview(
            points, colors, frames, out / EXPORTS["preview"], views=_preview_views(result), total_views=len(frames)
        ),
        "images": lambda: write_images(out / EXPORTS["images"], result.images, copy=copy_images),
        "viewer": lambda: viewer_data.write_viewer_data(out / EXPORTS["viewer"], **result.viewer_sample),
        "depth": lambda: depth.write_depth_maps(out / EXPORTS["depth"], result.names, result.depth, result.confidence),
        "npz": lambda: write_predictions(out / EXPORTS["npz"], result),
    }
    pool = ThreadPoolExecutor(max_workers=max(1, len(exports)), thread_name_prefix="fast3r-export")
    futures = []
    try:
        # Ctrl-C is held back while the writers start: landing inside ThreadPoolExecutor.submit, it can leave
        # a started thread that shutdown() does not know of, still writing after the folder is removed
        with interrupts_deferred():
            futures.extend(pool.submit(writers[name]) for name in exports)
        for future in futures:
            future.result()  # the first failure (or Ctrl-C) propagates, once every writer has stopped
            if on_file is not None:
                on_file()
    except BaseException:
        for future in futures:
            future.cancel()
        with interrupts_deferred():  # a second Ctrl-C must not let the folder go while writers still write
            pool.shutdown(wait=True)
        raise
    pool.shutdown()
    return [out / EXPORTS[name] for name in exports]


def _preview_views(result: "Reconstruction") -> list:
    from fast3r.viz.preview import PreviewView

    return [
        PreviewView(image.name, image.rgb, depth, conf)
        for image, depth, conf in zip(result.images[:PREVIEW_GRID_VIEWS], result.depth, result.confidence)
    ]


def write_predictions(path: Path, result: "Reconstruction") -> None:
    """predictions.npz, compact: every per-pixel array in float16 (confidence kept float32), uncompressed
    so it writes at disk speed; cameras in float64. Mixed image sizes: one array per view (`key_00012`)."""
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
        "images": ([image.rgb for image in result.images], np.uint8),
        "pts3d": (result.pointmaps, np.float16),
        "conf": (result.confidence, np.float32),
        "pts3d_local": (result.local_pointmaps, np.float16),
        "conf_local": (result.local_confidence, np.float32),
        "points_aligned": (result.points, np.float16),
        "depth": (result.depth, np.float16),
    }
    same_size = len({image.rgb.shape for image in result.images}) == 1
    for key, (values, dtype) in per_view.items():
        if same_size:
            arrays[key] = np.stack(values).astype(dtype, copy=False)
        else:
            arrays.update({f"{key}_{i:05d}": value.astype(dtype, copy=False) for i, value in enumerate(values)})
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def write_images(directory: Path, images: Sequence[LoadedImage], copy: bool = False) -> None:
    """The photos beside the COLMAP / Nerfstudio files, upright as the cameras see them. Photos that need
    no rotation are linked (absolute symbolic links: no gigabytes of copies at 1000 photos) or, with
    `copy`, copied; photos with an EXIF rotation are saved rotated; video frames are saved as PNG."""
    from PIL import Image, ImageOps

    directory.mkdir(parents=True, exist_ok=True)

    def write(image: LoadedImage) -> None:
        target = directory / image.name
        if not image.from_photo:
            with atomic_path(target) as tmp:
                Image.fromarray(image.rgb).save(tmp, format="PNG")
            return
        with Image.open(image.path) as photo:
            upright = photo.getexif().get(0x0112, 1) == 1
            if not upright:
                with atomic_path(target) as tmp:
                    ImageOps.exif_transpose(photo).save(tmp, format=photo.format, quality=95)
                return
        if copy:
            with atomic_path(target) as tmp:
                shutil.copyfile(image.path, tmp)
        else:
            os.symlink(Path(image.path).resolve(), target)

    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(write, images))
