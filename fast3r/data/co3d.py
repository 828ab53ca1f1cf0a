"""CO3D v2 readers for the camera-pose benchmarks: the native release and DUSt3R's preprocessed copy.

Native layout (the CO3D v2 release; the reader follows its public description and annotation types):

    ROOT/{category}/frame_annotations.jgz      gzip JSON list, one record per frame:
        {"sequence_name", "frame_number", "image": {"path", "size": [H, W]},
         "depth": {"path", "scale_adjustment", "mask_path"},
         "viewpoint": {"R", "T", "focal_length", "principal_point", "intrinsics_format"}}
    ROOT/{category}/sequence_annotations.jgz   gzip JSON list: {"sequence_name", "viewpoint_quality_score", ...}
    ROOT/{category}/set_lists/set_lists_fewview_dev.json   {"train"|"val"|"test": [[seq, frame_number, path]]}
    ROOT/{category}/{sequence}/images/frame000001.jpg, depths/frame000001.jpg.geometric.png, depth_masks/...
    (paths inside the annotations are relative to ROOT)

Cameras are PyTorch3D `PerspectiveCameras` in NDC. PyTorch3D multiplies row vectors:
X_cam = X_world @ R + T, with camera axes x left, y up, z forward. Hence, in column form,
X_cam = R^T X_world + T, and OpenCV axes (x right, y down) flip the first two rows:
    w2c_opencv = [F R^T | F T],  F = diag(-1, -1, 1);   c2w = inv(w2c_opencv).
Intrinsics: NDC units are `s` pixels, s = min(H, W) / 2 for "ndc_isotropic" (CO3D v2) or (W/2, H/2)
per axis for "ndc_norm_image_bounds" (CO3D v1); NDC +x is the image's left. So f_px = f_ndc * s and,
in PyTorch3D's pixel frame (image corner at 0, pixel centres at +0.5), c = (W/2, H/2) - p_ndc * s.
OpenCV puts pixel centres at integers, so we subtract 0.5: c_opencv = (W/2, H/2) - p_ndc * s - 0.5.
(PyTorch3D's own `opencv_from_cameras_projection`, used by DUSt3R's preprocessing, omits the 0.5.)
Depth PNGs hold float16 bit patterns in 16-bit pixels; metres-like units = value * scale_adjustment,
zeroed where the depth mask is 0.

VGGT / PoseDiffusion selection (`select_co3d_vggt`): per category in the 41 seen categories' order,
the "test" entries of set_lists_fewview_dev.json, sequences with viewpoint_quality_score > 0.5, in
sorted order; sequences with fewer than 50 listed frames, or with a translation whose components sum
above 1e5, are skipped; from each remaining one, 10 frames by ONE numpy RandomState(0) stream shared
by all sequences (`np.random.choice(n, 10, replace=False)` after `np.random.seed(0)`), kept in the
drawn order, frames indexed in set-list order. Evaluating a subset of categories changes the draws.

DUSt3R preprocessed layout (`datasets_preprocess/preprocess_co3d.py` of DUSt3R, as Fast3R trains on it):

    ROOT/selected_seqs_{split}.json             {category: {sequence: [frame numbers]}}
      (or, when absent, ROOT/{category}/selected_seqs_{split}.json: {sequence: [frame numbers]})
    ROOT/{category}/{sequence}/images/frame{N:06d}.jpg
    ROOT/{category}/{sequence}/images/frame{N:06d}.npz   camera_pose (4x4 c2w, OpenCV),
                                                         camera_intrinsics (3x3 px), maximum_depth
    ROOT/{category}/{sequence}/depths/frame{N:06d}.jpg.geometric.png   uint16, depth = v / 65535 * maximum_depth
    ROOT/{category}/{sequence}/masks/frame{N:06d}.png    object mask; depth kept where mask / 255 > 0.1

Intrinsics of that layout are used as stored (DUSt3R and Fast3R do the same).

Fast3R-paper selection (`select_co3d_fast3r`): the release draws 100 samples from its multi-view
CO3D test set with `np.random.default_rng(777).permutation` over (sequence, view-combination)
indices whose combinations come from an unseeded `random.sample`, plus a per-view jitter — not
reproducible exactly. We keep its spirit, reproducibly: rng = np.random.default_rng(seed=777);
sequences (file order of selected_seqs) are visited in the order rng.permutation(num_sequences),
cycled until `num_samples`; for each, `num_views` frames are drawn from its frame list with
rng.choice(..., replace=False), kept in the drawn order (view 0 is the first drawn).
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fast3r.data.views import View
from fast3r.io.images import read_image

SEEN_CATEGORIES_41 = (
    "apple", "backpack", "banana", "baseballbat", "baseballglove", "bench", "bicycle", "bottle", "bowl",
    "broccoli", "cake", "car", "carrot", "cellphone", "chair", "cup", "donut", "hairdryer", "handbag",
    "hydrant", "keyboard", "laptop", "microwave", "motorcycle", "mouse", "orange", "parkingmeter", "pizza",
    "plant", "stopsign", "teddybear", "toaster", "toilet", "toybus", "toyplane", "toytrain", "toytruck",
    "tv", "umbrella", "vase", "wineglass",
)  # fmt: skip

FLIP_XY = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Co3dSample:
    """A chosen set of frames of one sequence; `frames` are frame numbers in view order."""

    category: str
    sequence: str
    frames: list[int]
    records: list[dict] | None = None  # native CO3D: the frames' annotation records, in view order

    @property
    def sample_id(self) -> str:
        return f"{self.category}/{self.sequence}/" + "-".join(str(frame) for frame in self.frames)


# ----------------------------------------------------------------------------------------------
# Camera conversion


def pytorch3d_ndc_to_opencv(
    R: np.ndarray,
    T: np.ndarray,
    focal_length: np.ndarray,
    principal_point: np.ndarray,
    image_size_hw: tuple[int, int],
    intrinsics_format: str = "ndc_isotropic",
) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch3D NDC camera (row-vector R, T) -> OpenCV intrinsics K (3, 3) and c2w (4, 4), float64."""
    height, width = image_size_hw
    R = np.asarray(R, dtype=np.float64).reshape(3, 3)
    T = np.asarray(T, dtype=np.float64).reshape(3)
    if intrinsics_format == "ndc_isotropic":
        scale = np.full(2, min(height, width) / 2.0)
    elif intrinsics_format == "ndc_norm_image_bounds":
        scale = np.array([width / 2.0, height / 2.0])
    else:
        raise ValueError(f"unknown CO3D intrinsics_format {intrinsics_format!r}")
    focal_px = np.asarray(focal_length, dtype=np.float64).reshape(2) * scale
    centre_px = np.array([width / 2.0, height / 2.0]) - np.asarray(principal_point, dtype=np.float64) * scale - 0.5
    K = np.array([[focal_px[0], 0.0, centre_px[0]], [0.0, focal_px[1], centre_px[1]], [0.0, 0.0, 1.0]])
    w2c = np.eye(4)
    w2c[:3, :3] = FLIP_XY @ R.T
    w2c[:3, 3] = FLIP_XY @ T
    return K, np.linalg.inv(w2c)


def read_co3d_depth(path: Path, scale_adjustment: float = 1.0) -> np.ndarray:
    """(H, W) float32 depth from a CO3D depth PNG (float16 bit patterns stored as 16-bit pixels)."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
        raise ValueError(f"{path}: not a readable 16-bit single-channel depth PNG")
    depth = raw.view(np.float16).astype(np.float32) * np.float32(scale_adjustment)
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)


def _read_mask(path: Path) -> np.ndarray:
    """(H, W) float32 in [0, 1] from an 8- or 16-bit greyscale mask PNG."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"{path}: mask not found or unreadable")
    if raw.ndim == 3:
        raw = raw[..., 0]
    return raw.astype(np.float32) / float(np.iinfo(raw.dtype).max)


# ----------------------------------------------------------------------------------------------
# Native CO3D v2


def _read_jgz(path: Path) -> list:
    if not path.is_file():
        raise ValueError(f"{path}: CO3D annotation file not found")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a gzip-compressed JSON file ({err})") from err


def _read_json(path: Path):
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from err


class Co3dCategory:
    """The annotations of one category of the native CO3D v2 release."""

    def __init__(self, root: str | Path, category: str):
        self.root = Path(root)
        self.category = category
        directory = self.root / category
        frames = _read_jgz(directory / "frame_annotations.jgz")
        self.frames: dict[tuple[str, int], dict] = {
            (record["sequence_name"], int(record["frame_number"])): record for record in frames
        }
        sequences = _read_jgz(directory / "sequence_annotations.jgz")
        self.viewpoint_quality = {
            record["sequence_name"]: float(record.get("viewpoint_quality_score") or 0.0) for record in sequences
        }

    def set_list(self, name: str = "set_lists_fewview_dev.json", subset: str = "test") -> dict[str, list[int]]:
        """{sequence: [frame numbers]} of one subset of a set-list file, in file order."""
        path = self.root / self.category / "set_lists" / name
        lists = _read_json(path)
        if subset not in lists:
            raise ValueError(f"{path}: no subset {subset!r} (has {', '.join(lists)})")
        sequences: dict[str, list[int]] = {}
        for entry in lists[subset]:
            sequences.setdefault(entry[0], []).append(int(entry[1]))
        return sequences

    def record(self, sequence: str, frame_number: int) -> dict:
        key = (sequence, int(frame_number))
        if key not in self.frames:
            raise ValueError(f"{self.category}: no frame annotation for sequence {sequence} frame {frame_number}")
        return self.frames[key]


def co3d_native_view(root: str | Path, record: dict, *, with_depth: bool = False) -> View:
    """One View from a native CO3D frame annotation record (paths relative to `root`)."""
    root = Path(root)
    image = np.asarray(read_image(root / record["image"]["path"]))
    height, width = image.shape[:2]
    annotated_hw = tuple(int(v) for v in record["image"].get("size", (height, width)))
    if annotated_hw != (height, width):
        raise ValueError(
            f"{record['image']['path']}: image is {height}x{width} but annotated as "
            f"{annotated_hw[0]}x{annotated_hw[1]} (H x W)"
        )
    viewpoint = record["viewpoint"]
    K, c2w = pytorch3d_ndc_to_opencv(
        viewpoint["R"], viewpoint["T"], viewpoint["focal_length"], viewpoint["principal_point"],
        (height, width), viewpoint.get("intrinsics_format", "ndc_norm_image_bounds"),
    )  # fmt: skip
    depth = None
    if with_depth:
        depth_info = record["depth"]
        depth = read_co3d_depth(root / depth_info["path"], float(depth_info.get("scale_adjustment", 1.0)))
        if depth_info.get("mask_path"):
            depth = np.where(_read_mask(root / depth_info["mask_path"]) > 0.5, depth, 0.0)
        if depth.shape != (height, width):  # CO3D depths can be smaller than the images
            depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)
    return View(image=image, K=K, c2w=c2w, depth=depth, name=Path(record["image"]["path"]).name)


@dataclass
class VggtSelection:
    """The VGGT / PoseDiffusion CO3D test protocol's knobs (defaults are the published ones)."""

    set_list: str = "set_lists_fewview_dev.json"
    subset: str = "test"
    min_quality: float = 0.5
    min_frames: int = 50
    num_frames: int = 10
    seed: int = 0
    max_translation_sum: float = 1e5


def select_co3d_vggt(
    root: str | Path, categories: tuple[str, ...] = SEEN_CATEGORIES_41, selection: VggtSelection = VggtSelection()
) -> list[Co3dSample]:
    """Frames of every kept test sequence of `categories` under the VGGT protocol (module docstring)."""
    rng = np.random.RandomState(selection.seed)
    samples: list[Co3dSample] = []
    for category in categories:
        annotations = Co3dCategory(root, category)
        listed = annotations.set_list(selection.set_list, selection.subset)
        for sequence in sorted(listed):
            if annotations.viewpoint_quality.get(sequence, 0.0) <= selection.min_quality:
                continue
            frames = listed[sequence]
            if len(frames) < selection.min_frames:
                continue
            records = [annotations.record(sequence, frame) for frame in frames]
            if max(sum(record["viewpoint"]["T"]) for record in records) > selection.max_translation_sum:
                continue
            chosen = rng.choice(len(frames), selection.num_frames, replace=False)
            samples.append(
                Co3dSample(category, sequence, [frames[i] for i in chosen], records=[records[i] for i in chosen])
            )
    return samples


def load_co3d_native(root: str | Path, sample: Co3dSample, *, with_depth: bool = False) -> list[View]:
    if sample.records is None:
        raise ValueError(f"{sample.sample_id}: no annotation records; select samples with select_co3d_vggt")
    return [co3d_native_view(root, record, with_depth=with_depth) for record in sample.records]


# ----------------------------------------------------------------------------------------------
# DUSt3R's preprocessed CO3D


def read_selected_sequences(root: str | Path, split: str = "test") -> dict[str, dict[str, list[int]]]:
    """{category: {sequence: [frame numbers]}} from selected_seqs_{split}.json (root, else per category)."""
    root = Path(root)
    combined = root / f"selected_seqs_{split}.json"
    if combined.is_file():
        selected = _read_json(combined)
    else:
        per_category = sorted(root.glob(f"*/selected_seqs_{split}.json"))
        if not per_category:
            raise ValueError(f"{root}: no selected_seqs_{split}.json (DUSt3R's preprocessed CO3D layout expected)")
        selected = {path.parent.name: _read_json(path) for path in per_category}
    return {
        category: {sequence: [int(frame) for frame in frames] for sequence, frames in sequences.items()}
        for category, sequences in selected.items()
    }


def select_co3d_fast3r(
    root: str | Path, num_views: int, *, split: str = "test", num_samples: int = 100, seed: int = 777
) -> list[Co3dSample]:
    """`num_samples` samples of `num_views` frames each (see the module docstring for the sampler)."""
    pools = [
        (category, sequence, frames)
        for category, sequences in read_selected_sequences(root, split).items()
        for sequence, frames in sequences.items()
        if len(frames) >= num_views
    ]
    if not pools:
        raise ValueError(f"{root}: no sequence of split {split!r} has {num_views} frames")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pools))
    samples = []
    for index in range(num_samples):
        category, sequence, frames = pools[order[index % len(pools)]]
        chosen = rng.choice(len(frames), num_views, replace=False)
        samples.append(Co3dSample(category, sequence, [frames[i] for i in chosen]))
    return samples


def load_co3d_dust3r_view(root: str | Path, category: str, sequence: str, frame: int, *, mask_background: bool = True) -> View:
    directory = Path(root) / category / sequence
    image_path = directory / "images" / f"frame{frame:06d}.jpg"
    meta_path = image_path.with_suffix(".npz")
    if not meta_path.is_file():
        raise ValueError(f"{meta_path}: camera file not found")
    with np.load(meta_path) as meta:
        missing = {"camera_pose", "camera_intrinsics", "maximum_depth"} - set(meta.files)
        if missing:
            raise ValueError(f"{meta_path}: missing {', '.join(sorted(missing))}")
        c2w = meta["camera_pose"].astype(np.float64)
        K = meta["camera_intrinsics"].astype(np.float64)
        maximum_depth = float(np.nan_to_num(meta["maximum_depth"]))
    image = np.asarray(read_image(image_path))
    depth_path = directory / "depths" / f"frame{frame:06d}.jpg.geometric.png"
    raw = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise ValueError(f"{depth_path}: not a readable single-channel depth PNG")
    depth = raw.astype(np.float32) / 65535.0 * maximum_depth
    if mask_background:
        depth = np.where(_read_mask(directory / "masks" / f"frame{frame:06d}.png") > 0.1, depth, 0.0)
    if depth.shape != image.shape[:2]:
        raise ValueError(f"{depth_path}: depth is {depth.shape} but the image is {image.shape[:2]}")
    return View(image=image, K=K, c2w=c2w, depth=depth.astype(np.float32), name=image_path.name)


def load_co3d_dust3r(root: str | Path, sample: Co3dSample, *, mask_background: bool = True) -> list[View]:
    return [
        load_co3d_dust3r_view(root, sample.category, sample.sequence, frame, mask_background=mask_background)
        for frame in sample.frames
    ]
