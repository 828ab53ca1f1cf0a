"""Per-view depth maps as exact .npy files and viewable 16-bit PNGs.

For an image named "IMG_0001.jpg" the folder gets:
- IMG_0001.npy       float32 (H, W) depth exactly as given (0 where unknown);
- IMG_0001.png       uint16 (H, W): depth / png_scale rounded, 0 = no depth (non-finite or <= 0);
- IMG_0001_conf.npy  float32 (H, W) confidence, when confidences are given.
PNG scale: ONE scale for the whole call, so PNGs of different views are comparable:
`png_scale = (largest valid depth over all maps) / 65535`, stored in depth_scale.json beside them
(depth = png_value * png_scale). Fast3R depth is up to an unknown global scale, so a fixed unit such as
millimetres would be meaningless. The rounding error is at most png_scale / 2, except that valid depths
below png_scale / 2 are stored as 1 (read back as png_scale) so that "valid" survives quantisation.
"""
from __future__ import annotations

import io
import json
import os
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Sequence

import cv2
import numpy as np

from fast3r.io.atomic import write_bytes_atomic, write_text_atomic

PNG_MAX = 65535
SCALE_FILE = "depth_scale.json"


def _output_stem(name: str) -> PurePosixPath:
    """Relative output path without suffix for an image name ("a/IMG_1.jpg" -> "a/IMG_1")."""
    path = PurePosixPath(str(name).replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"depth map name {name!r} must be a relative image name inside the output folder")
    return path.with_suffix("")


def _valid_depth(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_depth_maps(
    out_dir: str | os.PathLike,
    names: Sequence[str],
    depths: Sequence[np.ndarray],
    confidences: Sequence[np.ndarray] | None = None,
) -> Path:
    """Write each (H, W) depth as .npy and 16-bit .png (see module doc); returns the depth_scale.json path."""
    out_dir = Path(out_dir)
    names = list(names)
    depths = [np.asarray(depth, dtype=np.float32) for depth in depths]
    if len(depths) != len(names):
        raise ValueError(f"{out_dir}: {len(names)} names but {len(depths)} depth maps")
    if confidences is not None:
        confidences = [np.asarray(confidence, dtype=np.float32) for confidence in confidences]
        if len(confidences) != len(names):
            raise ValueError(f"{out_dir}: {len(names)} names but {len(confidences)} confidence maps")
    stems = [_output_stem(name) for name in names]
    repeated = [str(stem) for stem, count in Counter(stems).items() if count > 1]
    if repeated:
        raise ValueError(f"{out_dir}: image names give the same depth file names: {repeated[:5]}")
    for index, (name, depth) in enumerate(zip(names, depths)):
        if depth.ndim != 2:
            raise ValueError(f"{out_dir}: depth map for {name!r} must be (H, W), got shape {depth.shape}")
        if confidences is not None and confidences[index].shape != depth.shape:
            raise ValueError(
                f"{out_dir}: confidence for {name!r} has shape {confidences[index].shape}, depth {depth.shape}"
            )

    max_depth = max((float(d[_valid_depth(d)].max()) for d in depths if _valid_depth(d).any()), default=0.0)
    png_scale = max_depth / PNG_MAX if max_depth > 0 else 1.0
    files = {}
    for index, (name, stem, depth) in enumerate(zip(names, stems, depths)):
        valid = _valid_depth(depth)
        exact = np.where(valid, depth, 0.0).astype(np.float32)
        quantised = np.zeros(depth.shape, dtype=np.uint16)
        quantised[valid] = np.clip(np.round(depth[valid] / png_scale), 1, PNG_MAX).astype(np.uint16)
        ok, png = cv2.imencode(".png", quantised)
        if not ok:
            raise RuntimeError(f"{out_dir}: OpenCV could not encode the depth PNG for {name!r}")
        entry = {"npy": f"{stem}.npy", "png": f"{stem}.png"}
        write_bytes_atomic(out_dir / entry["npy"], _npy_bytes(exact))
        write_bytes_atomic(out_dir / entry["png"], png.tobytes())
        if confidences is not None:
            entry["confidence"] = f"{stem}_conf.npy"
            write_bytes_atomic(out_dir / entry["confidence"], _npy_bytes(confidences[index]))
        files[name] = entry
    scale_path = out_dir / SCALE_FILE
    description = "depth = png_value * png_scale; png_value 0 means no depth; .npy files hold exact float32 depth"
    write_text_atomic(
        scale_path, json.dumps({"png_scale": png_scale, "meaning": description, "files": files}, indent=2) + "\n"
    )
    return scale_path


def read_depth_png(out_dir: str | os.PathLike, name: str) -> np.ndarray:
    """(H, W) float32 depth of image `name` decoded from its 16-bit PNG and depth_scale.json (0 = no depth)."""
    out_dir = Path(out_dir)
    scale_path = out_dir / SCALE_FILE
    if not scale_path.is_file():
        raise FileNotFoundError(f"{scale_path} not found: write_depth_maps writes it beside the PNGs")
    png_scale = float(json.loads(scale_path.read_text(encoding="utf-8"))["png_scale"])
    png_path = out_dir / f"{_output_stem(name)}.png"
    quantised = cv2.imread(str(png_path), cv2.IMREAD_UNCHANGED)
    if quantised is None or quantised.dtype != np.uint16 or quantised.ndim != 2:
        raise ValueError(f"{png_path}: missing or not a single-channel 16-bit PNG")
    return quantised.astype(np.float32) * np.float32(png_scale)
