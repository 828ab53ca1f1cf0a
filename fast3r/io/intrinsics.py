"""Known focal lengths: one number, a per-image file, or the photos' EXIF (35 mm equivalent).

`--focal` values are in pixels of the original photos; the model's cameras are in pixels of its resized,
cropped images, so each is mapped through the image's recorded transform (`focal_in_model_pixels`).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from PIL import Image

from fast3r.io.images import ImageTransform, LoadedImage

_FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # what "35 mm equivalent" focal lengths refer to
_EXIF_IFD = 0x8769
_FOCAL_LENGTH, _FOCAL_35MM = 0x920A, 0xA405
_PLANE_X_RESOLUTION, _PLANE_RESOLUTION_UNIT = 0xA20E, 0xA210
_MM_PER_RESOLUTION_UNIT = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # inch, cm, mm, micrometre


def exif_focal_pixels(path: str | os.PathLike) -> float | None:
    """Focal length in pixels of the upright photo from its EXIF, or None when the EXIF does not say.

    FocalLengthIn35mmFilm scales the diagonal: f_px = f35 * hypot(W, H) / 43.27 mm. Without it,
    FocalLength (mm) times FocalPlaneXResolution (pixels per unit) gives it directly.
    """
    with Image.open(path) as image:
        width, height = image.size
        exif = image.getexif().get_ifd(_EXIF_IFD)
    focal_35mm = exif.get(_FOCAL_35MM)
    if focal_35mm:
        return float(focal_35mm) * math.hypot(width, height) / _FULL_FRAME_DIAGONAL_MM
    focal_mm, plane_resolution = exif.get(_FOCAL_LENGTH), exif.get(_PLANE_X_RESOLUTION)
    unit_mm = _MM_PER_RESOLUTION_UNIT.get(exif.get(_PLANE_RESOLUTION_UNIT, 2))
    if focal_mm and plane_resolution and unit_mm:
        return float(focal_mm) * float(plane_resolution) / unit_mm
    return None


def read_focal_file(path: str | os.PathLike) -> dict[str, float]:
    """Per-image focal lengths in pixels: a JSON object {"name.jpg": 3100.5, ...} or text lines
    `name.jpg 3100.5` (blank lines and # comments skipped). Raises ValueError naming the file and line."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            table = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(table, dict):
            raise ValueError(f"{path}: expected an object mapping image names to focal lengths in pixels")
        entries = list(table.items())
    else:
        entries = []
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: expected 'IMAGE_NAME FOCAL_PIXELS', got {line!r}")
            entries.append((parts[0], parts[1]))
    focals = {}
    for name, value in entries:
        try:
            focal = float(value)
        except (TypeError, ValueError):
            focal = math.nan
        if not (math.isfinite(focal) and focal > 0):
            raise ValueError(f"{path}: focal length of {name!r} must be a positive number of pixels, got {value!r}")
        focals[str(name)] = focal
    return focals


def focal_in_model_pixels(focal_original: float, transform: ImageTransform) -> float:
    """A focal length in pixels of the original photo -> pixels of the model's image (mean of x and y)."""
    scale_x = transform.resized_size[0] / transform.original_size[0]
    scale_y = transform.resized_size[1] / transform.original_size[1]
    return focal_original * 0.5 * (scale_x + scale_y)


def focals_for_views(focal: float | str | os.PathLike | None, images: Sequence[LoadedImage]) -> np.ndarray | None:
    """Known focal lengths in model pixels per view (NaN: estimate it), from one number of original-photo
    pixels, "exif", or a per-image file (JSON or 'name focal' lines); None: estimate all."""
    if focal is None:
        return None
    if isinstance(focal, (int, float)):
        if not focal > 0:
            raise ValueError(f"--focal must be a positive number of pixels, got {focal}")
        pixels = [float(focal)] * len(images)
    elif str(focal) == "exif":
        pixels = [exif_focal_pixels(image.path) if image.from_photo else None for image in images]
        missing = [image.name for image, value in zip(images, pixels) if value is None]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            warnings.warn(f"--focal exif: no focal length in the EXIF of {shown}; estimating theirs", stacklevel=3)
    else:
        table = read_focal_file(focal)
        pixels = [table.get(image.name) for image in images]
        missing = [image.name for image, value in zip(images, pixels) if value is None]
        if missing:
            raise ValueError(f"--focal {focal}: no focal length for {', '.join(missing[:5])}")
    return np.array([
        np.nan if value is None else focal_in_model_pixels(value, image.transform) if image.from_photo else value
        for image, value in zip(images, pixels)
    ])
