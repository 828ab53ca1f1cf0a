"""`viewer.npz`: the per-point data the viewer's confidence slider and global / local toggle need.

points.ply holds the confidence-filtered cloud only; this file holds a uniform sample of ALL valid pixels
with both point estimates, so the viewer can filter by confidence and switch estimates in the browser.
Float32 coordinates (float16 loses millimetres at tens of metres), stored uncompressed: loading is a read.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from fast3r.io.atomic import atomic_path

_FIELDS = {
    "points_global": (np.float32, (3,)),
    "points_local": (np.float32, (3,)),
    "colors": (np.uint8, (3,)),
    "confidence": (np.float32, ()),
    "view_index": (np.int32, ()),
}


@dataclass
class ViewerData:
    """M points: the global head's estimate and the local one aligned into the same frame, with the
    colour, global-head confidence and source view of each."""

    points_global: np.ndarray  # (M, 3) float32
    points_local: np.ndarray  # (M, 3) float32
    colors: np.ndarray  # (M, 3) uint8
    confidence: np.ndarray  # (M,) float32
    view_index: np.ndarray  # (M,) int32

    def __post_init__(self) -> None:
        count = len(self.points_global)
        for name, (dtype, trailing) in _FIELDS.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != (count, *trailing):
                got = f"{getattr(value, 'dtype', type(value).__name__)} {getattr(value, 'shape', '')}"
                raise ValueError(f"viewer data: {name} must be {np.dtype(dtype).name} {(count, *trailing)}, got {got}")

    def __len__(self) -> int:
        return len(self.points_global)


def write_viewer_data(
    path: str | os.PathLike,
    *,
    points_global: np.ndarray,
    points_local: np.ndarray,
    colors: np.ndarray,
    confidence: np.ndarray,
    view_index: np.ndarray,
) -> None:
    """Write the arrays (checked as `ViewerData` checks them) to `path` as an uncompressed npz, atomically."""
    data = ViewerData(points_global, points_local, colors, confidence, view_index)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **{name: getattr(data, name) for name in _FIELDS})


def read_viewer_data(path: str | os.PathLike) -> ViewerData:
    """Read a file written by `write_viewer_data`; a missing or mistyped array is a ValueError naming it."""
    with np.load(path, allow_pickle=False) as arrays:
        missing = [name for name in _FIELDS if name not in arrays.files]
        if missing:
            raise ValueError(f"{path}: not a fast3r viewer file, missing {missing}")
        return ViewerData(**{name: arrays[name] for name in _FIELDS})
