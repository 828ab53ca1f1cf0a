"""Read any COLMAP reconstruction into `View`s: the sparse model (.bin or .txt), its images, optional depth.

Layout (COLMAP's own):

    root/images/...                      the registered images, by their names in images.bin / images.txt
    root/sparse/0/{cameras,images,points3D}.{bin,txt}   (or root/sparse/, or root/ itself)
    root/stereo/depth_maps/<name>.geometric.bin          optional depth maps (pass depth_dir)

Conventions: COLMAP stores world-to-camera rotations as quaternions (w, x, y, z) with OpenCV camera axes,
and puts pixel centres at +0.5 (the top-left pixel's centre is (0.5, 0.5)); the returned K uses OpenCV's
integer pixel centres, so cx = cx_colmap - 0.5 and cy = cy_colmap - 0.5.

Only pinhole cameras become Views directly. SIMPLE_RADIAL / RADIAL / OPENCV / FULL_OPENCV cameras with
non-zero distortion are rejected with a message by default (distortion="reject"), undistorted to the same
pinhole K with OpenCV (distortion="undistort"), or used as if pinhole (distortion="ignore"). Fisheye and
other models are rejected: run `colmap image_undistorter` first. pycolmap is not needed.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from .views import View

# COLMAP model id -> (name, number of parameters); the order of src/colmap/sensor/models.h.
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
_MODEL_IDS = {name: model_id for model_id, (name, _) in CAMERA_MODELS.items()}
DISTORTION_MODES = ("reject", "undistort", "ignore")
DEPTH_SUFFIXES = (".geometric.bin", ".photometric.bin")  # appended to the image name
DEPTH_EXTENSIONS = (".npy", ".png")  # replace the image name's extension


@dataclass
class ColmapCamera:
    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # (num_params,) float64 in COLMAP's order for `model`

    def pinhole(self) -> tuple[np.ndarray, np.ndarray]:
        """(K (3, 3) in OpenCV pixel convention, distortion coefficients in OpenCV's order)."""
        p = self.params
        if self.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
            fx = fy = p[0]
            cx, cy, extra = p[1], p[2], p[3:]
            distortion = np.array([*extra, 0.0, 0.0, 0.0, 0.0][:4]) if len(extra) else np.zeros(0)
        elif self.model in ("PINHOLE", "OPENCV", "FULL_OPENCV"):
            fx, fy, cx, cy = p[:4]
            distortion = p[4:].copy()  # OPENCV: k1 k2 p1 p2; FULL_OPENCV: k1 k2 p1 p2 k3 k4 k5 k6, as OpenCV
        else:
            raise ValueError(
                f"camera {self.camera_id} uses the {self.model} model, which is not a pinhole camera with "
                "OpenCV distortion; undistort the reconstruction first (colmap image_undistorter)"
            )
        K = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
        return K, distortion


@dataclass
class ColmapImage:
    image_id: int
    qvec: np.ndarray  # (4,) world-to-camera rotation quaternion (w, x, y, z)
    tvec: np.ndarray  # (3,) world-to-camera translation
    camera_id: int
    name: str

    def camera_to_world(self) -> np.ndarray:
        """(4, 4) float64 camera-to-world in OpenCV axes."""
        rotation = quaternion_to_rotation(self.qvec)
        c2w = np.eye(4)
        c2w[:3, :3] = rotation.T
        c2w[:3, 3] = -rotation.T @ self.tvec
        return c2w


@dataclass
class ColmapPoints:
    ids: np.ndarray  # (P,) int64
    xyz: np.ndarray  # (P, 3) float64
    rgb: np.ndarray  # (P, 3) uint8
    error: np.ndarray  # (P,) float64 mean reprojection error


@dataclass
class ColmapModel:
    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: ColmapPoints | None


def quaternion_to_rotation(qvec: np.ndarray) -> np.ndarray:
    """(3, 3) rotation of a unit quaternion (w, x, y, z); the quaternion is normalised first."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


class _BinaryReader:
    """Little-endian struct reads over a file's bytes, with errors naming the file."""

    def __init__(self, path: Path) -> None:
        self.path, self.data, self.offset = path, path.read_bytes(), 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise ValueError(f"{self.path}: truncated COLMAP binary file (needed {size} bytes at offset {self.offset})")
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def read_string(self) -> str:
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise ValueError(f"{self.path}: truncated COLMAP binary file (unterminated image name)")
        text = self.data[self.offset : end].decode("utf-8")
        self.offset = end + 1
        return text

    def skip(self, num_bytes: int) -> None:
        if self.offset + num_bytes > len(self.data):
            raise ValueError(f"{self.path}: truncated COLMAP binary file")
        self.offset += num_bytes


def _model_info(path: Path, model: int | str) -> tuple[str, int]:
    model_id = _MODEL_IDS.get(model, model) if isinstance(model, str) else model
    if model_id not in CAMERA_MODELS:
        raise ValueError(f"{path}: unknown COLMAP camera model {model!r}")
    return CAMERA_MODELS[model_id]


def _read_cameras_bin(path: Path) -> dict[int, ColmapCamera]:
    reader, cameras = _BinaryReader(path), {}
    (count,) = reader.read("Q")
    for _ in range(count):
        camera_id, model_id, width, height = reader.read("iiQQ")
        name, num_params = _model_info(path, model_id)
        params = np.array(reader.read("d" * num_params))
        cameras[camera_id] = ColmapCamera(camera_id, name, int(width), int(height), params)
    return cameras


def _read_images_bin(path: Path) -> dict[int, ColmapImage]:
    reader, images = _BinaryReader(path), {}
    (count,) = reader.read("Q")
    for _ in range(count):
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = reader.read("idddddddi")
        name = reader.read_string()
        (num_points,) = reader.read("Q")
        reader.skip(num_points * 24)  # x, y (double) and point3D id (int64) per 2D point
        images[image_id] = ColmapImage(image_id, np.array([qw, qx, qy, qz]), np.array([tx, ty, tz]), camera_id, name)
    return images


def _read_points_bin(path: Path) -> ColmapPoints:
    reader = _BinaryReader(path)
    (count,) = reader.read("Q")
    ids, xyz, rgb, error = np.empty(count, np.int64), np.empty((count, 3)), np.empty((count, 3), np.uint8), np.empty(count)
    for i in range(count):
        point_id, x, y, z, red, green, blue, error[i], track_length = reader.read("QdddBBBdQ")
        ids[i], xyz[i], rgb[i] = point_id, (x, y, z), (red, green, blue)
        reader.skip(track_length * 8)  # image id and 2D point index (int32 each) per track element
    return ColmapPoints(ids, xyz, rgb, error)


def _data_lines(path: Path) -> list[str]:
    """Lines of a COLMAP text file without comments; blank lines kept (images.txt needs them)."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]


def _parse_numbers(path: Path, line_number: int, items: list[str], kind: type) -> list:
    try:
        return [kind(item) for item in items]
    except ValueError:
        raise ValueError(f"{path}: cannot parse line {line_number}: {' '.join(items)!r}") from None


def _read_cameras_txt(path: Path) -> dict[int, ColmapCamera]:
    cameras = {}
    for number, line in enumerate(_data_lines(path), start=1):
        if not line:
            continue
        items = line.split()
        name, num_params = _model_info(path, items[1])
        if len(items) != 4 + num_params:
            raise ValueError(f"{path}: camera line {line!r} needs {num_params} parameters for {name}")
        camera_id, width, height = _parse_numbers(path, number, [items[0], items[2], items[3]], int)
        cameras[camera_id] = ColmapCamera(camera_id, name, width, height, np.array(_parse_numbers(path, number, items[4:], float)))
    return cameras


def _read_images_txt(path: Path) -> dict[int, ColmapImage]:
    lines, images, number = _data_lines(path), {}, 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if not line:
            continue
        items = line.split(maxsplit=9)
        if len(items) < 10:
            raise ValueError(f"{path}: image line {line!r} needs IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        image_id, camera_id = _parse_numbers(path, number, [items[0], items[8]], int)
        pose = _parse_numbers(path, number, items[1:8], float)
        images[image_id] = ColmapImage(image_id, np.array(pose[:4]), np.array(pose[4:]), camera_id, items[9])
        number += 1  # the following line lists the image's 2D points (possibly empty)
    return images


def _read_points_txt(path: Path) -> ColmapPoints:
    rows = [line.split() for line in _data_lines(path) if line]
    ids = np.array([int(row[0]) for row in rows], dtype=np.int64)
    values = np.array([[float(x) for x in row[1:8]] for row in rows]).reshape(-1, 7)
    return ColmapPoints(ids, values[:, :3], values[:, 3:6].astype(np.uint8), values[:, 6])


def find_sparse_dir(root: str | Path) -> Path:
    """The folder holding cameras/images files: root/sparse/0, root/sparse or root itself."""
    root = Path(root)
    for candidate in (root / "sparse" / "0", root / "sparse", root):
        if any((candidate / f"cameras{ext}").is_file() for ext in (".bin", ".txt")):
            return candidate
    raise FileNotFoundError(f"{root}: no COLMAP model (cameras.bin or cameras.txt) in sparse/0, sparse or the folder itself")


def read_model(sparse_dir: str | Path, with_points: bool = True) -> ColmapModel:
    """Parse cameras, images and (optionally) points3D from a sparse model folder; .bin preferred over .txt."""
    sparse_dir = Path(sparse_dir)
    readers = {
        "cameras": (_read_cameras_bin, _read_cameras_txt),
        "images": (_read_images_bin, _read_images_txt),
        "points3D": (_read_points_bin, _read_points_txt),
    }
    parsed = {}
    for name, (read_bin, read_txt) in readers.items():
        if name == "points3D" and not with_points:
            parsed[name] = None
        elif (sparse_dir / f"{name}.bin").is_file():
            parsed[name] = read_bin(sparse_dir / f"{name}.bin")
        elif (sparse_dir / f"{name}.txt").is_file():
            parsed[name] = read_txt(sparse_dir / f"{name}.txt")
        elif name == "points3D":
            parsed[name] = None
        else:
            raise FileNotFoundError(f"{sparse_dir}: missing {name}.bin / {name}.txt")
    return ColmapModel(parsed["cameras"], parsed["images"], parsed["points3D"])


def read_depth_map(path: str | Path) -> np.ndarray:
    """(H, W) float32 depth map in COLMAP's format: ASCII "width&height&channels&", then float32 row-major."""
    path = Path(path)
    data = path.read_bytes()
    header_end, found = 0, 0
    while found < 3:
        header_end = data.find(b"&", header_end) + 1
        if header_end == 0:
            raise ValueError(f"{path}: not a COLMAP depth map (missing 'width&height&channels&' header)")
        found += 1
    try:
        width, height, channels = (int(x) for x in data[: header_end - 1].split(b"&"))
    except ValueError:
        raise ValueError(f"{path}: malformed COLMAP depth map header {data[:header_end]!r}") from None
    values = np.frombuffer(data, dtype="<f4", offset=header_end)
    if values.size != width * height * channels or channels != 1:
        raise ValueError(f"{path}: expected {width}x{height}x1 floats after the header, found {values.size} values")
    return values.reshape(height, width).astype(np.float32)


def _read_depth(depth_dir: Path, image_name: str, depth_scale: float) -> np.ndarray | None:
    """Depth for an image from depth_dir (COLMAP .bin, .npy or 16-bit .png), divided by depth_scale."""
    for suffix in DEPTH_SUFFIXES:
        path = depth_dir / (image_name + suffix)
        if path.is_file():
            return read_depth_map(path) / np.float32(depth_scale)
    for extension in DEPTH_EXTENSIONS:
        path = (depth_dir / image_name).with_suffix(extension)
        if path.is_file():
            raw = np.load(path) if extension == ".npy" else np.asarray(Image.open(path))
            if raw.ndim != 2:
                raise ValueError(f"{path}: a depth map must be a single-channel (H, W) array, got shape {raw.shape}")
            return (raw.astype(np.float64) / depth_scale).astype(np.float32)
    return None


def _scaled_intrinsics(K: np.ndarray, camera: ColmapCamera, image_path: Path, width: int, height: int) -> np.ndarray:
    """K for an image stored at another size than the camera's (e.g. a downscaled images_2 folder)."""
    if (width, height) == (camera.width, camera.height):
        return K
    scale_x, scale_y = width / camera.width, height / camera.height
    if abs(scale_x - scale_y) > 0.01 * max(scale_x, scale_y):
        raise ValueError(
            f"{image_path}: image is {width}x{height} but camera {camera.camera_id} is {camera.width}x{camera.height} "
            "with another aspect ratio (cropped?)"
        )
    scaled = K.copy()  # scale in COLMAP's continuous coordinates, where pixel edges sit at integers
    scaled[0, 0], scaled[0, 2] = K[0, 0] * scale_x, (K[0, 2] + 0.5) * scale_x - 0.5
    scaled[1, 1], scaled[1, 2] = K[1, 1] * scale_y, (K[1, 2] + 0.5) * scale_y - 0.5
    return scaled


def load_colmap_views(
    root: str | Path,
    sparse_dir: str | Path | None = None,
    images_dir: str | Path | None = None,
    depth_dir: str | Path | None = None,
    depth_scale: float = 1.0,
    distortion: str = "reject",
) -> list[View]:
    """Every registered image of a COLMAP reconstruction as a `View`, sorted by image name.

    root: the reconstruction folder; sparse_dir defaults to `find_sparse_dir(root)`, images_dir to
    root/images. depth_dir: optional folder of depth maps named after the images (`<name>.geometric.bin`,
    `<name>.photometric.bin`, `<stem>.npy` or 16-bit `<stem>.png`); depth = stored value / depth_scale;
    images without one get depth None. distortion: "reject", "undistort" or "ignore" (module docstring).
    """
    if distortion not in DISTORTION_MODES:
        raise ValueError(f"distortion must be one of {DISTORTION_MODES}, got {distortion!r}")
    if depth_scale <= 0:
        raise ValueError(f"depth_scale must be positive, got {depth_scale}")
    root = Path(root)
    sparse_dir = Path(sparse_dir) if sparse_dir is not None else find_sparse_dir(root)
    images_dir = Path(images_dir) if images_dir is not None else root / "images"
    model = read_model(sparse_dir, with_points=False)
    views = []
    for image in tqdm(sorted(model.images.values(), key=lambda item: item.name), desc="COLMAP images", leave=False):
        if image.camera_id not in model.cameras:
            raise ValueError(f"{sparse_dir}: image {image.name!r} refers to missing camera {image.camera_id}")
        camera = model.cameras[image.camera_id]
        K, coefficients = camera.pinhole()
        if distortion == "reject" and np.any(coefficients != 0):
            raise ValueError(
                f"{sparse_dir}: camera {camera.camera_id} ({camera.model}) has lens distortion {coefficients.tolist()}; "
                "undistort the images first (colmap image_undistorter), or pass distortion='undistort' or 'ignore'"
            )
        image_path = images_dir / image.name
        if not image_path.is_file():
            raise FileNotFoundError(f"{image_path}: image {image.name!r} of {sparse_dir} not found")
        with Image.open(image_path) as handle:
            pixels = np.asarray(handle.convert("RGB"))
        height, width = pixels.shape[:2]
        K = _scaled_intrinsics(K, camera, image_path, width, height)
        depth = _read_depth(Path(depth_dir), image.name, depth_scale) if depth_dir is not None else None
        if depth is not None and depth.shape != (height, width):
            raise ValueError(f"{depth_dir}: depth map of {image.name!r} is {depth.shape[1]}x{depth.shape[0]}, image is {width}x{height}")
        if distortion == "undistort" and np.any(coefficients != 0):
            map_x, map_y = cv2.initUndistortRectifyMap(K, coefficients, None, K, (width, height), cv2.CV_32FC1)
            pixels = cv2.remap(pixels, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            if depth is not None:
                depth = cv2.remap(depth, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        views.append(View(image=np.ascontiguousarray(pixels), K=K, c2w=image.camera_to_world(), depth=depth, name=image.name))
    return views
