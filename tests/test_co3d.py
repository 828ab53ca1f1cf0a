import gzip
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from fast3r.data.co3d import (
    VggtSelection,
    load_co3d_dust3r,
    load_co3d_native,
    pytorch3d_ndc_to_opencv,
    read_co3d_depth,
    read_selected_sequences,
    select_co3d_fast3r,
    select_co3d_vggt,
)
from fast3r.data.views import View

FLIP = np.diag([-1.0, -1.0, 1.0])


def pytorch3d_camera_from_opencv(K, w2c, height, width):
    """The inverse of the documented conversion: OpenCV K, w2c -> PyTorch3D R, T, focal, principal point."""
    scale = min(height, width) / 2.0
    R = w2c[:3, :3].T @ FLIP  # w2c_R = F R^T
    T = FLIP @ w2c[:3, 3]
    focal = np.array([K[0, 0], K[1, 1]]) / scale
    principal = (np.array([width / 2.0, height / 2.0]) - 0.5 - np.array([K[0, 2], K[1, 2]])) / scale
    return R, T, focal, principal


def write_dust3r_co3d(root: Path, scenes: dict[str, dict[str, list[View]]], *, per_category: bool = False) -> None:
    """DUSt3R's preprocessed CO3D layout from views with depth; frame numbers are 10, 20, 30, ..."""
    selected = {}
    for category, sequences in scenes.items():
        selected[category] = {}
        for sequence, views in sequences.items():
            folder = root / category / sequence
            for sub in ("images", "depths", "masks"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            frames = [10 * (i + 1) for i in range(len(views))]
            selected[category][sequence] = frames
            for frame, view in zip(frames, views):
                Image.fromarray(view.image).save(folder / "images" / f"frame{frame:06d}.jpg", quality=95)
                maximum = float(view.depth.max())
                np.savez(folder / "images" / f"frame{frame:06d}.npz", camera_pose=view.c2w.astype(np.float32),
                         camera_intrinsics=view.K.astype(np.float32), maximum_depth=np.float32(maximum))  # fmt: skip
                scaled = np.round(view.depth / maximum * 65535).astype(np.uint16)
                cv2.imwrite(str(folder / "depths" / f"frame{frame:06d}.jpg.geometric.png"), scaled)
                cv2.imwrite(str(folder / "masks" / f"frame{frame:06d}.png"), np.full(view.depth.shape, 255, np.uint8))
        if per_category:
            (root / category / "selected_seqs_test.json").write_text(json.dumps(selected[category]))
    if not per_category:
        (root / "selected_seqs_test.json").write_text(json.dumps(selected))


def plane_view(seed: int, height: int = 12, width: int = 16) -> View:
    rng = np.random.default_rng(seed)
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    c2w[:3, 3] = rng.normal(size=3)
    depth = rng.uniform(1.0, 3.0, size=(height, width)).astype(np.float32)
    K = np.array([[20.0, 0, width / 2], [0, 20.0, height / 2], [0, 0, 1]])
    image = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    return View(image=image, K=K, c2w=c2w, depth=depth, name=f"view{seed}")


# ---------------------------------------------------------------------------------------------
# Camera conversion


@pytest.mark.parametrize("height, width", [(12, 16), (20, 9)])
def test_pytorch3d_ndc_camera_projects_like_the_opencv_one(height, width):
    rng = np.random.default_rng(0)
    R = Rotation.random(random_state=1).as_matrix()
    T = np.array([0.1, -0.2, 4.0])
    focal = np.array([1.8, 1.7])
    principal = np.array([0.05, -0.1])
    K, c2w = pytorch3d_ndc_to_opencv(R, T, focal, principal, (height, width), "ndc_isotropic")
    world = rng.normal(size=(50, 3))
    # PyTorch3D: row vectors, NDC with +x left and +y up, s = min(H, W) / 2 pixels per NDC unit,
    # image corner at pixel 0 (pixel centres at +0.5)
    camera = world @ R + T
    ndc = focal * camera[:, :2] / camera[:, 2:] + principal
    corner_pixels = np.array([width / 2.0, height / 2.0]) - ndc * (min(height, width) / 2.0)
    expected = corner_pixels - 0.5  # OpenCV: pixel centres at integers
    w2c = np.linalg.inv(c2w)
    opencv_camera = world @ w2c[:3, :3].T + w2c[:3, 3]
    projected = opencv_camera @ K.T
    np.testing.assert_allclose(projected[:, :2] / projected[:, 2:], expected, atol=1e-9)
    assert np.all(opencv_camera[:, 2] == pytest.approx(camera[:, 2]))  # depth keeps its sign and value


def test_ndc_norm_image_bounds_scales_each_axis_by_its_half_size():
    K, _ = pytorch3d_ndc_to_opencv(np.eye(3), np.zeros(3), [2.0, 2.0], [0.0, 0.0], (10, 20), "ndc_norm_image_bounds")
    np.testing.assert_allclose(K, [[20.0, 0, 9.5], [0, 10.0, 4.5], [0, 0, 1]])
    with pytest.raises(ValueError, match="intrinsics_format"):
        pytorch3d_ndc_to_opencv(np.eye(3), np.zeros(3), [1, 1], [0, 0], (10, 20), "screen")


def test_co3d_depth_png_holds_float16_bits(tmp_path):
    depth = np.array([[0.0, 1.5], [2.25, 7.0]], dtype=np.float16)
    path = tmp_path / "d.png"
    cv2.imwrite(str(path), depth.view(np.uint16))
    np.testing.assert_allclose(read_co3d_depth(path, 2.0), depth.astype(np.float32) * 2.0)
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.png"):
        read_co3d_depth(tmp_path / "bad.png")


# ---------------------------------------------------------------------------------------------
# Native layout and the VGGT selection


def write_native_category(root: Path, category: str, sequences: dict[str, tuple[int, float]], height=12, width=16):
    frame_records, sequence_records, test_list = [], [], []
    rng = np.random.default_rng(0)
    for sequence, (num_frames, quality) in sequences.items():
        sequence_records.append({"sequence_name": sequence, "category": category, "viewpoint_quality_score": quality})
        (root / category / sequence / "images").mkdir(parents=True)
        (root / category / sequence / "depths").mkdir(parents=True)
        for number in range(num_frames):
            image_path = f"{category}/{sequence}/images/frame{number + 1:06d}.jpg"
            depth_path = f"{category}/{sequence}/depths/frame{number + 1:06d}.jpg.geometric.png"
            Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / image_path)
            cv2.imwrite(str(root / depth_path), np.full((height, width), 2.5, np.float16).view(np.uint16))
            frame_records.append({
                "sequence_name": sequence, "frame_number": number,
                "image": {"path": image_path, "size": [height, width]},
                "depth": {"path": depth_path, "scale_adjustment": 2.0, "mask_path": None},
                "viewpoint": {"R": Rotation.random(random_state=number).as_matrix().tolist(),
                              "T": [0.0, 0.0, 3.0 + number], "focal_length": [2.0, 2.0],
                              "principal_point": [0.0, 0.0], "intrinsics_format": "ndc_isotropic"},
            })  # fmt: skip
            test_list.append([sequence, number, image_path])
    with gzip.open(root / category / "frame_annotations.jgz", "wt") as handle:
        json.dump(frame_records, handle)
    with gzip.open(root / category / "sequence_annotations.jgz", "wt") as handle:
        json.dump(sequence_records, handle)
    (root / category / "set_lists").mkdir()
    lists = {"train": [test_list[0]], "val": [], "test": test_list}
    (root / category / "set_lists" / "set_lists_fewview_dev.json").write_text(json.dumps(lists))


def test_vggt_selection_filters_and_draws_from_one_seeded_stream(tmp_path):
    write_native_category(tmp_path, "apple", {"b_good": (55, 0.9), "a_short": (40, 0.9), "c_lowq": (60, 0.3)})
    write_native_category(tmp_path, "bench", {"z_good": (52, 0.6)})
    samples = select_co3d_vggt(tmp_path, categories=("apple", "bench"))
    assert [(s.category, s.sequence) for s in samples] == [("apple", "b_good"), ("bench", "z_good")]
    stream = np.random.RandomState(0)
    assert samples[0].frames == stream.choice(55, 10, replace=False).tolist()
    assert samples[1].frames == stream.choice(52, 10, replace=False).tolist()
    views = load_co3d_native(tmp_path, samples[0], with_depth=True)
    assert len(views) == 10 and views[0].image.shape == (12, 16, 3)
    frame = samples[0].frames[0]
    K, c2w = pytorch3d_ndc_to_opencv(Rotation.random(random_state=frame).as_matrix(), [0, 0, 3.0 + frame],
                                     [2.0, 2.0], [0.0, 0.0], (12, 16))  # fmt: skip
    np.testing.assert_allclose(views[0].c2w, c2w)
    np.testing.assert_allclose(views[0].K, K)
    np.testing.assert_allclose(views[0].depth, 5.0)  # 2.5 stored as float16, times scale_adjustment 2
    looser = select_co3d_vggt(tmp_path, categories=("apple",), selection=VggtSelection(min_frames=40, num_frames=5))
    assert [s.sequence for s in looser] == ["a_short", "b_good"]


def test_native_reader_names_missing_files(tmp_path):
    with pytest.raises(ValueError, match="frame_annotations.jgz"):
        select_co3d_vggt(tmp_path, categories=("apple",))


# ---------------------------------------------------------------------------------------------
# DUSt3R's preprocessed layout and the Fast3R-paper selection


def test_dust3r_layout_round_trips_cameras_and_scaled_depth(tmp_path):
    views = [plane_view(seed) for seed in range(4)]
    write_dust3r_co3d(tmp_path, {"apple": {"seq1": views}})
    sample = select_co3d_fast3r(tmp_path, num_views=4, num_samples=1)[0]
    loaded = load_co3d_dust3r(tmp_path, sample)
    assert sorted(sample.frames) == [10, 20, 30, 40]
    for frame, view in zip(sample.frames, loaded):
        source = views[frame // 10 - 1]
        np.testing.assert_allclose(view.c2w, source.c2w, atol=1e-6)
        np.testing.assert_allclose(view.K, source.K, atol=1e-6)
        np.testing.assert_allclose(view.depth, source.depth, atol=source.depth.max() / 65535)


def test_dust3r_mask_removes_background_depth(tmp_path):
    view = plane_view(0)
    write_dust3r_co3d(tmp_path, {"apple": {"seq1": [view, plane_view(1)]}})
    mask = np.zeros(view.depth.shape, np.uint8)
    mask[:, :8] = 255
    cv2.imwrite(str(tmp_path / "apple/seq1/masks/frame000010.png"), mask)
    sample = select_co3d_fast3r(tmp_path, num_views=2, num_samples=1)[0]
    loaded = {v.name: v for v in load_co3d_dust3r(tmp_path, sample)}["frame000010.jpg"]
    assert np.all(loaded.depth[:, 8:] == 0) and np.all(loaded.depth[:, :8] > 0)
    unmasked = {v.name: v for v in load_co3d_dust3r(tmp_path, sample, mask_background=False)}["frame000010.jpg"]
    assert np.all(unmasked.depth > 0)


def test_fast3r_selection_is_seeded_cycles_sequences_and_uses_per_category_lists(tmp_path):
    scenes = {"apple": {"s1": [plane_view(i) for i in range(5)]}, "bench": {"s2": [plane_view(i) for i in range(6)]}}
    write_dust3r_co3d(tmp_path, scenes, per_category=True)
    assert read_selected_sequences(tmp_path) == {"apple": {"s1": [10, 20, 30, 40, 50]}, "bench": {"s2": [10, 20, 30, 40, 50, 60]}}
    samples = select_co3d_fast3r(tmp_path, num_views=3, num_samples=5)
    assert samples == select_co3d_fast3r(tmp_path, num_views=3, num_samples=5)
    rng = np.random.default_rng(777)
    order = rng.permutation(2)
    pools = [("apple", "s1", [10, 20, 30, 40, 50]), ("bench", "s2", [10, 20, 30, 40, 50, 60])]
    for index, sample in enumerate(samples):
        category, sequence, frames = pools[order[index % 2]]
        assert (sample.category, sample.sequence) == (category, sequence)
        assert sample.frames == [frames[i] for i in rng.choice(len(frames), 3, replace=False)]
    assert len({s.sample_id for s in samples}) == 5
    with pytest.raises(ValueError, match="has 9 frames"):
        select_co3d_fast3r(tmp_path, num_views=9)
