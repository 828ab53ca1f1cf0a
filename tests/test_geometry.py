"""Cameras from pointmaps: pointmaps built from known cameras must give those cameras back."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from fast3r.data.synthetic import render_scene
from fast3r.geometry import (
    Cameras,
    PnPConfig,
    align_local_to_global,
    cameras_from_pointmaps,
    depth_from_local,
    estimate_focal,
    estimate_focal_batched,
    pointmaps_from_depth,
    pose_from_pnp,
)
from fast3r.geometry.groundtruth import centred_crop, rgbd_folder_pointmaps, stereo_pair_pointmaps

MAX_ROTATION_DEG = 0.5
MAX_TRANSLATION_DEG = 1.0
MAX_FOCAL_RELATIVE = 0.01


# ---------------------------------------------------------------- helpers


def rotation_error_deg(predicted: np.ndarray, truth: np.ndarray) -> float:
    relative = predicted[:3, :3].T @ truth[:3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0))))


def direction_error_deg(predicted: np.ndarray, truth: np.ndarray) -> float:
    cosine = predicted @ truth / (np.linalg.norm(predicted) * np.linalg.norm(truth))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def assert_cameras_match(cameras: Cameras, c2w: np.ndarray, focal: np.ndarray | float,
                         focal_tolerance: float = MAX_FOCAL_RELATIVE, origin_tolerance: float = 0.01) -> None:
    """Rotations, camera-centre directions (from view 0's centre, the origin) and focals within bounds;
    a camera at the origin must stay within `origin_tolerance` of the scene's size from it."""
    assert cameras.c2w.shape == c2w.shape and cameras.c2w.dtype == np.float64
    scene_size = max(np.linalg.norm(c2w[:, :3, 3], axis=1).max(), 1e-12)
    for index in range(len(c2w)):
        assert rotation_error_deg(cameras.c2w[index], c2w[index]) < MAX_ROTATION_DEG, f"view {index} rotation"
        if np.linalg.norm(c2w[index, :3, 3]) > 1e-6 * scene_size:
            error = direction_error_deg(cameras.c2w[index, :3, 3], c2w[index, :3, 3])
            assert error < MAX_TRANSLATION_DEG, f"view {index} translation direction off by {error:.3f} deg"
        else:
            assert np.linalg.norm(cameras.c2w[index, :3, 3]) < origin_tolerance * scene_size, f"view {index} should sit at 0"
    np.testing.assert_allclose(cameras.focal, np.broadcast_to(focal, cameras.focal.shape), rtol=focal_tolerance)
    np.testing.assert_allclose(cameras.K[:, 0, 0], cameras.focal)
    np.testing.assert_allclose(cameras.K[:, 0, 2], cameras.image_sizes[:, 1] / 2.0)
    np.testing.assert_allclose(cameras.K[:, 1, 2], cameras.image_sizes[:, 0] / 2.0)


@dataclass
class Scene:
    """Exact pointmaps of a rendered synthetic scene: (N, H, W, 3) float32 tensors, view 0's frame."""

    global_points: torch.Tensor | list[torch.Tensor]
    local_points: torch.Tensor | list[torch.Tensor]
    c2w: np.ndarray  # (N, 4, 4) camera-to-view-0
    K: np.ndarray  # (N, 3, 3)


def synthetic_scene(num_views: int, height: int, width: int, seed: int, trajectory: str = "random") -> Scene:
    views = render_scene(seed=seed, num_views=num_views, height=height, width=width, trajectory=trajectory)
    return scene_from_views(views)


def scene_from_views(views) -> Scene:
    truth = pointmaps_from_depth([v.depth for v in views], [v.K for v in views], [v.c2w for v in views])
    as_tensors = (lambda points: torch.from_numpy(points)) if isinstance(truth.local, np.ndarray) else (
        lambda points: [torch.from_numpy(view) for view in points]
    )
    return Scene(as_tensors(truth.global_), as_tensors(truth.local), truth.c2w, np.stack([v.K for v in views]))


@pytest.fixture(scope="module")
def scene() -> Scene:
    return synthetic_scene(6, 72, 96, seed=11)


# ---------------------------------------------------------------- focal


def test_focal_ignores_low_confidence_points_and_resists_outliers(scene):
    local = scene.local_points[0].numpy().copy()  # (H, W, 3)
    truth = scene.K[0, 0, 0]
    assert estimate_focal(local) == pytest.approx(truth, rel=1e-6)
    rng = np.random.default_rng(5)
    confidence = 1.0 + rng.random(local.shape[:2])
    junk = rng.random(local.shape[:2]) < 0.05
    local[junk] *= np.array([3.0, 0.2, 1.0])  # 5% garbage, all below the 10th confidence percentile
    confidence[junk] = 0.5
    assert estimate_focal(local, confidence) == pytest.approx(truth, rel=1e-6)
    # with no confidence to sort them out, the least-squares start is pulled off, the L1 steps are not
    least_squares = estimate_focal(local, iterations=0)
    weiszfeld = estimate_focal(local)
    assert abs(weiszfeld - truth) < 0.2 * abs(least_squares - truth)
    assert weiszfeld == pytest.approx(truth, rel=MAX_FOCAL_RELATIVE)


def test_focal_batched_per_view_and_nan_for_empty_view(scene):
    points = scene.local_points.clone()
    points[2] = float("nan")
    focals = estimate_focal_batched(points).numpy()
    np.testing.assert_allclose(np.delete(focals, 2), np.delete(scene.K[:, 0, 0], 2), rtol=1e-6)
    assert np.isnan(focals[2])


# ---------------------------------------------------------------- synthetic scenes


@pytest.mark.parametrize("method", ["align", "pnp"])
def test_synthetic_scene_cameras_recovered(scene, method):
    confidence = torch.rand(scene.global_points.shape[:3], generator=torch.Generator().manual_seed(0)) + 1.0
    cameras = cameras_from_pointmaps(
        scene.global_points, confidence, local_pointmaps=scene.local_points, method=method
    )
    assert cameras.method == method and cameras.focal_source == "local"
    assert cameras.success.all()
    assert_cameras_match(cameras, scene.c2w, scene.K[:, 0, 0])
    if method == "pnp":  # exact points: every pixel is an inlier
        assert cameras.aligned_points is None
        np.testing.assert_array_equal(cameras.num_points, 72 * 96)
    else:  # the pixels at or above the median confidence, weighted by it
        assert (np.abs(cameras.num_points - 0.5 * 72 * 96) <= 2).all()


def test_arbitrary_scales_of_the_two_heads(scene):
    global_scale, local_scales = 7.3, torch.tensor([0.4, 1.0, 2.0, 0.9, 3.1, 0.6])
    global_points = scene.global_points * global_scale
    local_points = scene.local_points * local_scales[:, None, None, None]
    confidence = torch.ones(global_points.shape[:3])
    expected_c2w = scene.c2w.copy()
    expected_c2w[:, :3, 3] *= global_scale
    for method in ("align", "pnp"):
        cameras = cameras_from_pointmaps(global_points, confidence, local_pointmaps=local_points, method=method)
        assert_cameras_match(cameras, expected_c2w, scene.K[:, 0, 0])
        np.testing.assert_allclose(cameras.c2w[:, :3, 3], expected_c2w[:, :3, 3], atol=1e-4 * global_scale)
    aligned = cameras_from_pointmaps(global_points, confidence, local_pointmaps=local_points)
    assert aligned.method == "align"
    np.testing.assert_allclose(aligned.scale, global_scale / local_scales.numpy(), rtol=1e-5)
    torch.testing.assert_close(aligned.aligned_points, global_points, atol=1e-3, rtol=1e-4)


def test_pnp_without_local_pointmaps_uses_view0_focal_for_all(scene):
    cameras = cameras_from_pointmaps(scene.global_points.numpy(), None)
    assert cameras.method == "pnp" and cameras.focal_source == "global-view0"
    assert_cameras_match(cameras, scene.c2w, scene.K[0, 0, 0])


def test_shared_focal_is_one_value_for_all_views():
    views = synthetic_scene(4, 72, 96, seed=12, trajectory="orbit")
    truth = views.K[0, 0, 0]
    confidence = torch.ones(views.global_points.shape[:3])
    for method in ("align", "pnp"):
        cameras = cameras_from_pointmaps(
            views.global_points, confidence, local_pointmaps=views.local_points, method=method, shared_focal=True
        )
        assert cameras.focal_source == "local-median"
        assert np.unique(cameras.focal).size == 1
        assert_cameras_match(cameras, views.c2w, truth)
    given = cameras_from_pointmaps(views.global_points, confidence, focal=[truth, 81.0, 82.0, 83.0])
    assert given.focal_source == "given"
    np.testing.assert_array_equal(given.focal, [truth, 81.0, 82.0, 83.0])


def test_focal_sweep_finds_focal_on_its_grid(scene):
    pointmaps = scene.global_points[:3, ::2, ::2].contiguous()  # 36x48: the focal halves
    truth = scene.K[0, 0, 0] / 2.0
    cameras = cameras_from_pointmaps(pointmaps, None, method="pnp", focal_sweep=True)
    assert cameras.focal_source == "pnp-sweep"
    # the grid geomspace(S/2, 3S, 100) has steps of 1.8%, so the best focal lies within 1% of the truth;
    # PnP makes up for the focal's rest by moving view 0 along its axis, about as much in relative terms
    assert_cameras_match(cameras, scene.c2w[:3], truth, focal_tolerance=0.01, origin_tolerance=0.03)


def test_numpy_and_torch_inputs_agree(scene):
    confidence = torch.ones(scene.global_points.shape[:3], dtype=torch.float64)
    from_torch = cameras_from_pointmaps(scene.global_points, confidence, local_pointmaps=scene.local_points)
    from_numpy = cameras_from_pointmaps(
        scene.global_points.numpy(), confidence.numpy(), local_pointmaps=scene.local_points.numpy()
    )
    np.testing.assert_allclose(from_torch.c2w, from_numpy.c2w, atol=1e-9)
    np.testing.assert_allclose(from_torch.focal, from_numpy.focal)
    assert isinstance(from_torch.aligned_points, torch.Tensor)
    assert isinstance(from_numpy.aligned_points, np.ndarray)
    assert from_numpy.aligned_points.shape == scene.global_points.shape


def test_noise_and_outliers_stay_within_bounds():
    views = synthetic_scene(6, 96, 128, seed=13, trajectory="walk")
    generator = torch.Generator().manual_seed(1)
    depth = views.local_points[..., 2:3]
    noisy_global = views.global_points + 0.002 * depth * torch.randn(views.global_points.shape, generator=generator)
    noisy_local = views.local_points + 0.002 * depth * torch.randn(views.local_points.shape, generator=generator)
    confidence = torch.ones(noisy_global.shape[:3])
    cameras = cameras_from_pointmaps(noisy_global, confidence, local_pointmaps=noisy_local, method="align")
    assert_cameras_match(cameras, views.c2w, views.K[:, 0, 0])
    # PnP's RANSAC also rides out 20% gross outliers in the global pointmap
    outliers = torch.rand(noisy_global.shape[:3], generator=generator) < 0.2
    wild = noisy_global + 3.0 * torch.randn(noisy_global.shape, generator=generator)
    corrupted = torch.where(outliers[..., None], wild, noisy_global)
    cameras = cameras_from_pointmaps(corrupted, confidence, local_pointmaps=noisy_local, method="pnp")
    assert_cameras_match(cameras, views.c2w, views.K[:, 0, 0])


def test_mixed_sizes_list_input():
    # one scene and trajectory seen in landscape and in portrait (the seed fixes both): alternate them
    landscape = render_scene(seed=14, num_views=5, height=48, width=64, trajectory="orbit")
    portrait = render_scene(seed=14, num_views=5, height=64, width=48, trajectory="orbit")
    views = scene_from_views([landscape[0], portrait[1], landscape[2], portrait[3], portrait[4]])
    sizes = [(48, 64), (64, 48), (48, 64), (64, 48), (64, 48)]
    confidence = [torch.ones(size) for size in sizes]
    for method in ("align", "pnp"):
        cameras = cameras_from_pointmaps(views.global_points, confidence, local_pointmaps=views.local_points, method=method)
        np.testing.assert_array_equal(cameras.image_sizes, sizes)
        assert_cameras_match(cameras, views.c2w, views.K[:, 0, 0])
    assert [tuple(points.shape) for points in cameras_from_pointmaps(
        [points.numpy() for points in views.global_points], None,
        local_pointmaps=[points.numpy() for points in views.local_points],
    ).aligned_points] == [(*size, 3) for size in sizes]


def test_unusable_view_falls_back_to_identity_with_warning(scene):
    global_points = scene.global_points.clone()
    global_points[3] = float("nan")
    with pytest.warns(UserWarning, match="identity"):
        cameras = cameras_from_pointmaps(global_points, None, method="pnp", focal=scene.K[:, 0, 0])
    assert not cameras.success[3] and cameras.success[[0, 1, 2, 4, 5]].all()
    np.testing.assert_array_equal(cameras.c2w[3], np.eye(4))
    aligned = cameras_from_pointmaps(global_points, None, local_pointmaps=scene.local_points)
    assert not aligned.success[3]
    np.testing.assert_array_equal(aligned.c2w[3], np.eye(4))


def test_align_keeps_only_pixels_at_or_above_the_percentile(scene):
    global_points = scene.global_points.clone()
    confidence = torch.ones(global_points.shape[:3])
    confidence[:, :20] = 0.5  # 28% of pixels: below the 50th percentile
    global_points[:, :20] += 5.0  # and badly wrong there
    result = align_local_to_global(scene.local_points, global_points, confidence, conf_percentile=50.0)
    assert (result.num_points == 52 * 96).all()
    for index in range(len(scene.c2w)):
        assert rotation_error_deg(result.c2w[index].numpy(), scene.c2w[index]) < 1e-3


def test_align_weighs_pixels_by_both_heads_confidences(scene):
    """Wrong global points that the global head trusts but the local head does not: the local confidence
    must take them out of the fit (and without it they must spoil it, or the test shows nothing)."""
    global_points = scene.global_points.clone()
    global_points[:, :20] = global_points[:, :20] * 1.5 + 2.0  # 28% of pixels badly wrong
    confidence = torch.ones(global_points.shape[:3])
    local_confidence = torch.ones(global_points.shape[:3])
    local_confidence[:, :20] = 1e-9
    weighted = align_local_to_global(scene.local_points, global_points, confidence, local_confidence=local_confidence)
    global_only = align_local_to_global(scene.local_points, global_points, confidence)  # all tie at the median
    assert (weighted.num_points == 72 * 96).all()
    for index in range(len(scene.c2w)):
        assert rotation_error_deg(weighted.c2w[index].numpy(), scene.c2w[index]) < 1e-3
        assert rotation_error_deg(global_only.c2w[index].numpy(), scene.c2w[index]) > 0.5


def test_pose_from_pnp_on_one_view(scene):
    result = pose_from_pnp(scene.global_points[2].numpy(), float(scene.K[2, 0, 0]), PnPConfig(max_points=1000))
    assert result.success and result.inliers > 500
    assert rotation_error_deg(result.c2w, scene.c2w[2]) < 1e-3


def test_depth_from_local(scene):
    depth = depth_from_local(scene.local_points.numpy())
    np.testing.assert_array_equal(depth, scene.local_points[..., 2].numpy())
    assert [d.shape for d in depth_from_local([scene.local_points[0], scene.local_points[1, :10]])] == [
        (72, 96), (10, 96)
    ]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pointmaps=np.zeros((2, 8, 8))), r"\(N, H, W, 3\)"),
        (dict(pointmaps=np.zeros((0, 8, 8, 3))), "no views"),
        (dict(confidence=np.ones((2, 8, 9))), "confidence must be"),
        (dict(local_pointmaps=np.zeros((2, 8, 9, 3))), "local_pointmaps"),
        (dict(method="magic"), "method must be"),
        (dict(method="align"), "needs local_pointmaps"),
        (dict(focal=[1.0, 2.0, 3.0]), "focal must be one number or 2"),
        (dict(focal=-5.0), "finite and positive"),
        (dict(pointmaps=[np.zeros((8, 8, 3)), np.zeros((8, 8))]), r"pointmaps\[1\] must be \(H, W, 3\)"),
        (dict(pointmaps=[np.zeros((8, 8, 3))], confidence=[np.ones((8, 7))]), r"confidence\[0\] must be"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, message):
    arguments = dict(pointmaps=np.ones((2, 8, 8, 3)), confidence=None)
    arguments.update(kwargs)
    pointmaps = arguments.pop("pointmaps")
    confidence = arguments.pop("confidence")
    with pytest.raises(ValueError, match=message):
        cameras_from_pointmaps(pointmaps, confidence, **arguments)


# ---------------------------------------------------------------- real data


def test_centred_crop_matches_the_data_readme():
    K = np.array([[518.0, 0.0, 325.5], [0.0, 519.0, 253.5], [0.0, 0.0, 1.0]])
    assert centred_crop(K, 480, 640) == (slice(27, 480), slice(11, 640))


def test_rgbd_dining_cameras_recovered(shared_data: Path):
    """Kinect frames: global pointmaps from depth and the dataset's poses, moved into view 0's frame."""
    truth = rgbd_folder_pointmaps(shared_data / "rgbd_dining")
    assert truth.global_.shape[1:3] == (453, 629)
    confidence = np.random.default_rng(0).random(truth.global_.shape[:3]).astype(np.float32)
    for method in ("align", "pnp"):
        cameras = cameras_from_pointmaps(truth.global_, confidence, local_pointmaps=truth.local, method=method)
        assert_cameras_match(cameras, truth.c2w, (truth.K[:, 0, 0] + truth.K[:, 1, 1]) / 2.0)


def test_motorcycle_stereo_pair_recovered():
    """Middlebury Motorcycle: left depth from disparity, the right view's splatted; two crop widths."""
    skimage_data = pytest.importorskip("skimage.data")
    _, _, disparity = skimage_data.stereo_motorcycle()
    # skimage's calibration of its 741x500 images
    truth = stereo_pair_pointmaps(disparity, 994.978, 0.193, 31.086, (311.193, 254.877))
    assert [points.shape for points in truth.global_] == [(490, 622, 3), (490, 685, 3)]
    confidence = [np.ones(points.shape[:2], np.float32) for points in truth.global_]
    for method in ("align", "pnp"):
        cameras = cameras_from_pointmaps(truth.global_, confidence, local_pointmaps=truth.local, method=method)
        assert_cameras_match(cameras, truth.c2w, 994.978)
