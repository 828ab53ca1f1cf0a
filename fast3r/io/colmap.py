"""COLMAP sparse models (cameras.bin, images.bin, points3D.bin, plus rigs.bin and frames.bin) through pycolmap.

What is written:
- one PINHOLE camera per distinct (width, height, fx, fy, cx, cy), at the ORIGINAL photo resolution;
  COLMAP puts pixel centres at +0.5, so its principal point is the OpenCV one plus 0.5;
- one image per frame, named by its original file name, with its world-to-camera pose, each in a
  trivial rig and frame (the COLMAP 3.12+ data model, which pycolmap 4 writes);
- the points with colours and optional errors but EMPTY tracks, and images without 2D keypoints: Fast3R
  gives no feature matches, so no observation is invented. COLMAP, pycolmap, Nerfstudio and gsplat-style
  loaders read such models; tools that need tracks (bundle adjustment) must re-triangulate.
The model is written into a temporary folder beside `sparse_dir` and renamed onto it when complete.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from fast3r.io.frames import ExportFrame, check_frames
from fast3r.io.ply import validate_point_cloud

COLMAP_PIXEL_OFFSET = 0.5  # COLMAP principal point = OpenCV principal point + 0.5
_MODEL_FILES = {"cameras", "images", "points3D", "rigs", "frames"}
_PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE")


def _import_pycolmap():
    try:
        import pycolmap
    except ImportError as error:
        raise ImportError("COLMAP export needs pycolmap: pip install 'fast3r[export]'") from error
    if not hasattr(pycolmap.Reconstruction, "add_camera_with_trivial_rig"):
        raise ImportError(f"COLMAP export needs pycolmap 3.12 or newer (found {pycolmap.__version__})")
    return pycolmap


def _current_umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _replaceable(directory: Path) -> bool:
    """True where `directory` holds nothing but a COLMAP model (so replacing it loses nothing else)."""
    return all(
        entry.is_file() and entry.stem in _MODEL_FILES and entry.suffix in (".bin", ".txt")
        for entry in directory.iterdir()
    )


def _check_point_errors(point_errors: np.ndarray | None, num_points: int, where: str) -> np.ndarray | None:
    if point_errors is None:
        return None
    point_errors = np.asarray(point_errors, dtype=np.float64)
    if point_errors.shape != (num_points,) or not np.isfinite(point_errors).all() or (point_errors < 0).any():
        raise ValueError(f"{where}: point_errors must be finite, non-negative and of shape ({num_points},)")
    return point_errors


def write_colmap(
    sparse_dir: str | os.PathLike,
    frames: Sequence[ExportFrame],
    points: np.ndarray,
    colors: np.ndarray,
    point_errors: np.ndarray | None = None,
) -> None:
    """Write a binary COLMAP model of `frames` and points (M, 3) / colors (M, 3) uint8 into `sparse_dir`.

    point_errors: optional (M,) per-point error in pixels; COLMAP's "unknown" (-1) where not given.
    An existing `sparse_dir` is replaced only if it holds nothing but COLMAP model files.
    """
    pycolmap = _import_pycolmap()
    sparse_dir = Path(sparse_dir)
    frames = check_frames(frames, str(sparse_dir))
    points, colors = validate_point_cloud(points, colors, str(sparse_dir))
    point_errors = _check_point_errors(point_errors, len(points), str(sparse_dir))
    if sparse_dir.exists() and not (sparse_dir.is_dir() and _replaceable(sparse_dir)):
        raise FileExistsError(f"{sparse_dir} exists and holds more than a COLMAP model; refusing to replace it")

    reconstruction = pycolmap.Reconstruction()
    camera_ids: dict[tuple[float, ...], int] = {}
    for image_id, frame in enumerate(frames, start=1):
        params = (
            frame.K[0, 0],
            frame.K[1, 1],
            frame.K[0, 2] + COLMAP_PIXEL_OFFSET,
            frame.K[1, 2] + COLMAP_PIXEL_OFFSET,
        )
        key = (frame.width, frame.height, *params)
        if key not in camera_ids:
            camera_ids[key] = len(camera_ids) + 1
            camera = pycolmap.Camera(
                camera_id=camera_ids[key], model="PINHOLE", width=frame.width, height=frame.height, params=params
            )
            reconstruction.add_camera_with_trivial_rig(camera)
        image = pycolmap.Image(name=frame.file_name, camera_id=camera_ids[key], image_id=image_id)
        w2c = frame.w2c
        cam_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3])
        reconstruction.add_image_with_trivial_frame(image, cam_from_world)

    sparse_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{sparse_dir.name}.", suffix=".tmp", dir=sparse_dir.parent))
    try:
        os.chmod(staging, 0o777 & ~_current_umask())  # mkdtemp makes it owner-only
        reconstruction.write_binary(str(staging))  # cameras, images, rigs, frames; no points yet
        _write_points3d_bin(staging / "points3D.bin", points, colors, point_errors)
        if sparse_dir.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{sparse_dir.name}.", suffix=".old", dir=sparse_dir.parent))
            os.replace(sparse_dir, previous)
            os.replace(staging, sparse_dir)
            shutil.rmtree(previous)
        else:
            os.replace(staging, sparse_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


# points3D.bin: a uint64 count, then per point id, xyz, rgb, error and track length (0: Fast3R has no tracks)
_POINT3D_RECORD = np.dtype(
    [("id", "<u8"), ("xyz", "<f8", 3), ("rgb", "u1", 3), ("error", "<f8"), ("track_length", "<u8")]
)


def _write_points3d_bin(path: Path, points: np.ndarray, colors: np.ndarray, point_errors: np.ndarray | None) -> None:
    """COLMAP's binary points in one write: pycolmap adds points one call at a time (~0.3 M points/s,
    minutes for a few million), numpy packs the same records at memory speed."""
    records = np.empty(len(points), dtype=_POINT3D_RECORD)
    records["id"] = np.arange(1, len(points) + 1)
    records["xyz"] = points
    records["rgb"] = colors
    records["error"] = -1.0 if point_errors is None else point_errors
    records["track_length"] = 0
    with open(path, "wb") as handle:
        handle.write(np.uint64(len(points)).tobytes())
        records.tofile(handle)


def read_colmap(sparse_dir: str | os.PathLike) -> list[ExportFrame]:
    """Read the registered images of a COLMAP model (binary or text) as ExportFrames, in image-id order.

    Only undistorted pinhole cameras (PINHOLE, SIMPLE_PINHOLE) are accepted; the principal point is moved
    back to OpenCV's convention (minus 0.5).
    """
    pycolmap = _import_pycolmap()
    sparse_dir = Path(sparse_dir)
    if not (sparse_dir / "cameras.bin").is_file() and not (sparse_dir / "cameras.txt").is_file():
        raise FileNotFoundError(f"{sparse_dir}: no COLMAP model (cameras.bin or cameras.txt) found")
    reconstruction = pycolmap.Reconstruction()
    reconstruction.read(str(sparse_dir))
    frames = []
    for image_id in sorted(reconstruction.images):
        image = reconstruction.images[image_id]
        camera = reconstruction.cameras[image.camera_id]
        if camera.model_name not in _PINHOLE_MODELS:
            raise ValueError(
                f"{sparse_dir}: image {image.name!r} uses camera model {camera.model_name}; "
                f"only {', '.join(_PINHOLE_MODELS)} can be read"
            )
        if not image.has_pose:
            raise ValueError(f"{sparse_dir}: image {image.name!r} has no pose")
        K = np.array(camera.calibration_matrix(), dtype=np.float64)
        K[:2, 2] -= COLMAP_PIXEL_OFFSET
        w2c = np.eye(4)
        w2c[:3] = image.cam_from_world().matrix()
        frames.append(
            ExportFrame(
                file_name=image.name, width=camera.width, height=camera.height, K=K, c2w=np.linalg.inv(w2c)
            )
        )
    return frames
