"""Coloured point clouds as PLY files, and voxel downsampling.

`write_ply` writes binary little-endian PLY with float32 x y z, optional float32 nx ny nz, and uchar
red green blue, the layout MeshLab, CloudCompare, Open3D, trimesh and Nerfstudio read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fast3r.io.atomic import atomic_path

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_MAX_VOXELS_PER_AXIS = 1 << 21  # three axes packed into one int64 key


class PlyPoints(NamedTuple):
    """What `read_ply` returns: points (M, 3) float32, colors (M, 3) uint8 or None, normals (M, 3) or None."""

    points: np.ndarray
    colors: np.ndarray | None
    normals: np.ndarray | None


def validate_point_cloud(points: np.ndarray, colors: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Check and return (points (M, 3) float32, colors (M, 3) uint8); `where` names the output in errors."""
    points = np.asarray(points)
    colors = np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3 or not np.issubdtype(points.dtype, np.number):
        raise ValueError(f"{where}: points must be a numeric (M, 3) array, got {points.dtype} {points.shape}")
    if colors.shape != points.shape:
        raise ValueError(f"{where}: colors must have the points' shape {points.shape}, got {colors.shape}")
    if colors.dtype != np.uint8:
        raise ValueError(f"{where}: colors must be uint8 RGB in 0..255, got {colors.dtype} (convert before exporting)")
    points = points.astype(np.float32)
    if not np.isfinite(points).all():
        bad = int((~np.isfinite(points).all(axis=1)).sum())
        raise ValueError(f"{where}: {bad} of {len(points)} points are NaN or infinite; filter them out first")
    return points, colors


def write_ply(
    path: str | os.PathLike, points: np.ndarray, colors: np.ndarray, normals: np.ndarray | None = None
) -> None:
    """Write a binary little-endian PLY: points (M, 3), colors (M, 3) uint8, optional normals (M, 3)."""
    points, colors = validate_point_cloud(points, colors, str(path))
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if normals is not None:
        normals = np.asarray(normals, dtype=np.float32)
        if normals.shape != points.shape or not np.isfinite(normals).all():
            raise ValueError(
                f"{path}: normals must be finite with the points' shape {points.shape}, got {normals.shape}"
            )
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=fields)
    vertices["x"], vertices["y"], vertices["z"] = points.T
    if normals is not None:
        vertices["nx"], vertices["ny"], vertices["nz"] = normals.T
    vertices["red"], vertices["green"], vertices["blue"] = colors.T
    type_names = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", "comment written by fast3r", f"element vertex {len(points)}"]
    header += [f"property {type_names[kind]} {name}" for name, kind in fields]
    header += ["end_header"]
    with atomic_path(path) as tmp, open(tmp, "wb") as stream:
        stream.write(("\n".join(header) + "\n").encode("ascii"))
        stream.write(vertices.tobytes())


def _parse_header(stream, path: Path) -> tuple[str, list[tuple[str, int, list[tuple[str, str]]]]]:
    """Return (format, elements) where elements are (name, count, [(property, numpy type) or (name, "list")])."""
    if stream.readline().strip() != b"ply":
        raise ValueError(f"{path}: not a PLY file (first line is not 'ply')")
    file_format = ""
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    while True:
        line = stream.readline()
        if not line:
            raise ValueError(f"{path}: PLY header has no end_header line")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            return file_format, elements
        if words[0] == "format":
            file_format = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            if words[1] == "list":
                elements[-1][2].append((words[-1], "list"))
            elif words[1] in _PLY_TYPES:
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise ValueError(f"{path}: unknown PLY property type {words[1]!r}")


def _colors_to_uint8(channels: np.ndarray) -> np.ndarray:
    if np.issubdtype(channels.dtype, np.floating):
        return (np.clip(channels, 0.0, 1.0) * 255).round().astype(np.uint8)
    return np.clip(channels, 0, 255).astype(np.uint8)


def read_ply(path: str | os.PathLike) -> PlyPoints:
    """Read the vertex element of a PLY file (binary either endianness, or ASCII)."""
    path = Path(path)
    with open(path, "rb") as stream:
        file_format, elements = _parse_header(stream, path)
        if not elements or elements[0][0] != "vertex":
            raise ValueError(f"{path}: the first PLY element must be 'vertex'")
        _, count, properties = elements[0]
        if any(kind == "list" for _, kind in properties):
            raise ValueError(f"{path}: list properties in the vertex element are not supported")
        names = [name for name, _ in properties]
        if not {"x", "y", "z"} <= set(names):
            raise ValueError(f"{path}: vertex element has no x, y, z properties")
        if file_format == "ascii":
            table = np.loadtxt(stream, dtype=np.float64, max_rows=count, ndmin=2)
            if table.shape != (count, len(names)):
                raise ValueError(f"{path}: expected {count} ASCII vertex rows of {len(names)} values")
            vertices = {name: table[:, i].astype(kind) for i, (name, kind) in enumerate(properties)}
        elif file_format in ("binary_little_endian", "binary_big_endian"):
            order = "<" if file_format == "binary_little_endian" else ">"
            dtype = np.dtype([(name, order + kind) for name, kind in properties])
            data = stream.read(dtype.itemsize * count)
            if len(data) != dtype.itemsize * count:
                raise ValueError(f"{path}: file is truncated ({len(data)} of {dtype.itemsize * count} vertex bytes)")
            table = np.frombuffer(data, dtype=dtype)
            vertices = {name: table[name] for name in names}
        else:
            raise ValueError(f"{path}: unknown PLY format {file_format!r}")

    def stack(keys: tuple[str, str, str]) -> np.ndarray | None:
        return np.stack([vertices[k] for k in keys], axis=1) if set(keys) <= set(names) else None

    points = stack(("x", "y", "z")).astype(np.float32)
    colors = stack(("red", "green", "blue"))
    normals = stack(("nx", "ny", "nz"))
    return PlyPoints(
        points=points,
        colors=None if colors is None else _colors_to_uint8(colors),
        normals=None if normals is None else normals.astype(np.float32),
    )


def voxel_downsample(points: np.ndarray, colors: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Average the points and colours falling in each cubic voxel of side `voxel_size`.

    Returns (points (V, 3) float32, colors (V, 3) uint8), one row per occupied voxel, ordered by voxel.
    """
    points, colors = validate_point_cloud(points, colors, "voxel_downsample")
    if not np.isfinite(voxel_size) or voxel_size <= 0:
        raise ValueError(f"voxel_downsample: voxel_size must be a positive number, got {voxel_size}")
    if len(points) == 0:
        return points, colors
    origin = points.min(axis=0).astype(np.float64)
    cells = np.floor((points - origin) / voxel_size).astype(np.int64)  # (M, 3)
    cells_per_axis = cells.max(axis=0) + 1
    if (cells_per_axis > _MAX_VOXELS_PER_AXIS).any():
        raise ValueError(
            f"voxel_downsample: voxel_size {voxel_size} is too small for the cloud's extent "
            f"({cells_per_axis.tolist()} voxels per axis, at most {_MAX_VOXELS_PER_AXIS})"
        )
    keys = (cells[:, 0] << 42) | (cells[:, 1] << 21) | cells[:, 2]  # (M,)
    _, voxel_of_point, points_per_voxel = np.unique(keys, return_inverse=True, return_counts=True)
    num_voxels = len(points_per_voxel)

    def mean_per_voxel(values: np.ndarray) -> np.ndarray:
        sums = [np.bincount(voxel_of_point, weights=values[:, axis], minlength=num_voxels) for axis in range(3)]
        return np.stack(sums, axis=1) / points_per_voxel[:, None]

    mean_points = mean_per_voxel(points.astype(np.float64)).astype(np.float32)
    mean_colors = np.clip(mean_per_voxel(colors.astype(np.float64)).round(), 0, 255).astype(np.uint8)
    return mean_points, mean_colors
