"""7-Scenes, Neural RGB-D (NRGBD) and DTU in the preprocessed layouts Spann3R evaluates on.

Each scene is read whole, keeping every `stride`-th frame in file order (Spann3R's `kf_every`):

    setting      7-Scenes  NRGBD  DTU
    "spann3r"        20      40     5     (Fast3R / Spann3R sparse setting)
    "pi3_dense"      40     100     5     (as the protocols note lists pi3's setting)

7-Scenes (SimpleRecon's preprocessing, units metres):
    ROOT/{scene}/TestSplit.txt                      lines like "sequence2" -> sequence seq-02
    ROOT/{scene}/seq-XX/frame-000000.color.png      RGB, resized to the depth's size when they differ
    ROOT/{scene}/seq-XX/frame-000000.depth.proj.png uint16 mm (65535 invalid), registered to RGB
    ROOT/{scene}/seq-XX/frame-000000.pose.txt       4x4 camera-to-world (OpenCV axes)
    intrinsics fx = fy = 525, cx = 320, cy = 240 (SimpleRecon's).
NRGBD (the Neural RGB-D release, units metres):
    ROOT/{scene}/images/img{i}.png, ROOT/{scene}/depth/depth{i}.png (uint16 mm),
    ROOT/{scene}/poses.txt                          4x4 camera-to-world per frame, OpenGL axes
                                                    (converted by negating the y and z columns);
                                                    frames whose pose has "nan" are left out
    intrinsics fx = fy = 554.2562584220408, cx = 320, cy = 240.
DTU (Spann3R's release with rendered depth, units millimetres):
    ROOT/{scan}/images/00000000.jpg, depths/00000000.npy (float), binary_masks/00000000.png,
    ROOT/{scan}/cams/00000000_cam.txt               MVSNet format: "extrinsic" + 4x4 world-to-camera,
                                                    "intrinsic" + 3x3, then depth range numbers
    depth kept where the mask (eroded by a 10x10 square, as Spann3R does) is set.
Depths of 7-Scenes and NRGBD above 10 m or below 1 mm are treated as unknown (Spann3R's rule).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fast3r.data.views import View
from fast3r.io.images import read_image

STRIDES = {
    "spann3r": {"7scenes": 20, "nrgbd": 40, "dtu": 5},
    "pi3_dense": {"7scenes": 40, "nrgbd": 100, "dtu": 5},
}
SEVEN_SCENES_K = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])
NRGBD_K = np.array([[554.2562584220408, 0.0, 320.0], [0.0, 554.2562584220408, 240.0], [0.0, 0.0, 1.0]])
MAX_DEPTH_M = 10.0
MIN_DEPTH_M = 1e-3
DTU_MASK_EROSION = 10


@dataclass
class SceneFrames:
    """A scene and the frame identifiers kept from it (file stems or indices, as the layout names them)."""

    dataset: str
    scene: str
    frames: list[str]

    @property
    def sample_id(self) -> str:
        return f"{self.dataset}/{self.scene}"


def stride_for(dataset: str, setting: str = "spann3r") -> int:
    if setting not in STRIDES:
        raise ValueError(f"unknown frame setting {setting!r}; choose one of {', '.join(STRIDES)}")
    return STRIDES[setting][dataset]


def _read_depth_mm(path: Path) -> np.ndarray:
    """(H, W) float32 metres from a uint16 millimetre PNG; 65535 and out-of-range values become 0."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise ValueError(f"{path}: not a readable single-channel depth PNG")
    depth = np.where(raw == 65535, 0, raw).astype(np.float32) / 1000.0
    return np.where((depth > MAX_DEPTH_M) | (depth < MIN_DEPTH_M), 0.0, depth).astype(np.float32)


def _image_matching(path: Path, shape: tuple[int, int]) -> np.ndarray:
    image = np.asarray(read_image(path))
    if image.shape[:2] != shape:
        image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return image


def _read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        matrix = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read a {shape[0]}x{shape[1]} matrix ({err})") from err
    if matrix.shape != shape:
        raise ValueError(f"{path}: expected a {shape[0]}x{shape[1]} matrix, got shape {matrix.shape}")
    return matrix


# ----------------------------------------------------------------------------------------------
# 7-Scenes


def seven_scenes_sequences(root: str | Path, split: str = "test") -> list[str]:
    """'scene/seq-XX' for every sequence listed in each scene's TestSplit.txt / TrainSplit.txt."""
    split_file = {"train": "TrainSplit.txt", "test": "TestSplit.txt"}[split]
    sequences = []
    for scene in sorted(path for path in Path(root).iterdir() if (path / split_file).is_file()):
        for line in (scene / split_file).read_text(encoding="utf-8").split():
            digits = "".join(character for character in line if character.isdigit())
            if digits:
                sequences.append(f"{scene.name}/seq-{int(digits):02d}")
    if not sequences:
        raise ValueError(f"{root}: no 7-Scenes scene with a {split_file}")
    return sequences


def select_seven_scenes(root: str | Path, stride: int, split: str = "test") -> list[SceneFrames]:
    selected = []
    for sequence in seven_scenes_sequences(root, split):
        folder = Path(root) / sequence
        stems = sorted(path.name[: -len(".color.png")] for path in folder.glob("frame-*.color.png"))
        if not stems:
            raise ValueError(f"{folder}: no frame-*.color.png files")
        selected.append(SceneFrames("7scenes", sequence, stems[::stride]))
    return selected


def load_seven_scenes(root: str | Path, scene: SceneFrames) -> list[View]:
    folder = Path(root) / scene.scene
    views = []
    for stem in scene.frames:
        depth = _read_depth_mm(folder / f"{stem}.depth.proj.png")
        image = _image_matching(folder / f"{stem}.color.png", depth.shape)
        c2w = _read_matrix(folder / f"{stem}.pose.txt", (4, 4))
        views.append(View(image=image, K=SEVEN_SCENES_K.copy(), c2w=c2w, depth=depth, name=f"{stem}.color.png"))
    return views


# ----------------------------------------------------------------------------------------------
# NRGBD


def read_nrgbd_poses(path: Path) -> list[np.ndarray | None]:
    """Camera-to-world 4x4 per frame in OpenCV axes; None for frames whose pose is 'nan'."""
    if not path.is_file():
        raise ValueError(f"{path}: poses file not found")
    rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(rows) % 4:
        raise ValueError(f"{path}: {len(rows)} non-empty lines is not a whole number of 4x4 matrices")
    poses: list[np.ndarray | None] = []
    for start in range(0, len(rows), 4):
        try:
            matrix = np.array(rows[start : start + 4], dtype=np.float64)
        except ValueError as err:
            raise ValueError(f"{path}: matrix {start // 4} is not numeric ({err})") from err
        if matrix.shape != (4, 4):
            raise ValueError(f"{path}: matrix {start // 4} is not 4x4")
        if not np.isfinite(matrix).all():
            poses.append(None)
            continue
        matrix[:, 1:3] *= -1.0  # OpenGL (y up, z back) -> OpenCV (y down, z forward)
        poses.append(matrix)
    return poses


def select_nrgbd(root: str | Path, stride: int) -> list[SceneFrames]:
    selected = []
    for scene in sorted(path for path in Path(root).iterdir() if (path / "poses.txt").is_file()):
        indices = sorted(
            int(match.group(1))
            for match in (re.fullmatch(r"img(\d+)\.png", path.name) for path in (scene / "images").glob("img*.png"))
            if match
        )
        poses = read_nrgbd_poses(scene / "poses.txt")
        kept = [index for index in indices[::stride] if index < len(poses) and poses[index] is not None]
        selected.append(SceneFrames("nrgbd", scene.name, [str(index) for index in kept]))
    if not selected:
        raise ValueError(f"{root}: no NRGBD scene (a folder with poses.txt)")
    return selected


def load_nrgbd(root: str | Path, scene: SceneFrames) -> list[View]:
    folder = Path(root) / scene.scene
    poses = read_nrgbd_poses(folder / "poses.txt")
    views = []
    for index in scene.frames:
        pose = poses[int(index)]
        if pose is None:
            raise ValueError(f"{folder / 'poses.txt'}: frame {index} has no valid pose")
        depth = _read_depth_mm(folder / "depth" / f"depth{index}.png")
        image = _image_matching(folder / "images" / f"img{index}.png", depth.shape)
        views.append(View(image=image, K=NRGBD_K.copy(), c2w=pose, depth=depth, name=f"img{index}.png"))
    return views


# ----------------------------------------------------------------------------------------------
# DTU


def read_mvsnet_cam(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(K 3x3, world-to-camera 4x4) from an MVSNet-format camera file."""
    if not path.is_file():
        raise ValueError(f"{path}: camera file not found")
    words = path.read_text(encoding="utf-8").split()
    try:
        extrinsic_at, intrinsic_at = words.index("extrinsic"), words.index("intrinsic")
        w2c = np.array(words[extrinsic_at + 1 : extrinsic_at + 17], dtype=np.float64).reshape(4, 4)
        K = np.array(words[intrinsic_at + 1 : intrinsic_at + 10], dtype=np.float64).reshape(3, 3)
    except ValueError as err:
        raise ValueError(f"{path}: not an MVSNet camera file ({err})") from err
    return K, w2c


def select_dtu(root: str | Path, stride: int) -> list[SceneFrames]:
    selected = []
    for scan in sorted(path for path in Path(root).iterdir() if (path / "cams").is_dir()):
        stems = sorted(path.stem for path in (scan / "images").glob("*.jpg"))
        if not stems:
            raise ValueError(f"{scan / 'images'}: no .jpg images")
        selected.append(SceneFrames("dtu", scan.name, stems[::stride]))
    if not selected:
        raise ValueError(f"{root}: no DTU scan (a folder with cams/)")
    return selected


def load_dtu(root: str | Path, scene: SceneFrames) -> list[View]:
    folder = Path(root) / scene.scene
    kernel = np.ones((DTU_MASK_EROSION, DTU_MASK_EROSION), np.uint8)
    views = []
    for stem in scene.frames:
        depth_path = folder / "depths" / f"{stem}.npy"
        if not depth_path.is_file():
            raise ValueError(f"{depth_path}: depth file not found")
        depth = np.nan_to_num(np.load(depth_path).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        mask_raw = cv2.imread(str(folder / "binary_masks" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        if mask_raw is None:
            raise ValueError(f"{folder / 'binary_masks' / f'{stem}.png'}: mask not found or unreadable")
        mask = (mask_raw.astype(np.float32) / 255.0 > 0.5).astype(np.uint8)
        mask = cv2.resize(mask, (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_NEAREST)
        depth = np.where(cv2.erode(mask, kernel, iterations=1) > 0, depth, 0.0).astype(np.float32)
        image = np.asarray(read_image(folder / "images" / f"{stem}.jpg"))
        if image.shape[:2] != depth.shape:
            raise ValueError(f"{depth_path}: depth is {depth.shape} but the image is {image.shape[:2]}")
        K, w2c = read_mvsnet_cam(folder / "cams" / f"{stem}_cam.txt")
        views.append(View(image=image, K=K, c2w=np.linalg.inv(w2c), depth=depth, name=f"{stem}.jpg"))
    return views
