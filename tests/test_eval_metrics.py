import json

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation
from scipy.stats import chi

from fast3r.eval import neighbors
from fast3r.eval.neighbors import NearestNeighbors, estimate_normals, nearest_neighbor
from fast3r.eval.pose import (
    AUC_vggt_30bin,
    PairErrors,
    histc,
    identity_baseline_metrics,
    interval_over_samples,
    mAA_fast3r_31bin,
    metrics_from_errors,
    paired_difference,
    pose_metrics,
    relative_pose_errors,
)
from fast3r.eval.recon import reconstruction_metrics


def random_poses(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (count, 1, 1))
    poses[:, :3, :3] = Rotation.random(count, random_state=seed).as_matrix()
    poses[:, :3, 3] = rng.normal(size=(count, 3))
    return poses


def rotate_in_camera_frame(pose: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    rotated = pose.copy()
    rotated[:3, :3] = pose[:3, :3] @ Rotation.from_rotvec(np.radians(degrees) * axis).as_matrix()
    return rotated


def load_templering(shared_data) -> np.ndarray:
    frames = json.loads((shared_data / "templering" / "cameras_opencv.json").read_text())["frames"]
    return np.array([frame["c2w"] for frame in frames], dtype=np.float64)


def load_dining_points(shared_data) -> np.ndarray:
    import cv2

    frame = json.loads((shared_data / "rgbd_dining" / "cameras_opencv.json").read_text())["frames"][0]
    raw = cv2.imread(str(shared_data / "rgbd_dining" / frame["depth"]), cv2.IMREAD_UNCHANGED)
    depth = raw.astype(np.float64) / frame["depth_scale"]
    K = np.array(frame["K"])
    v, u = np.nonzero(depth > 0)
    z = depth[v, u]
    points = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], axis=-1)
    c2w = np.array(frame["c2w"])
    return points @ c2w[:3, :3].T + c2w[:3, 3]


# ---------------------------------------------------------------------------------------------
# Pose metrics


def test_identical_cameras_score_perfectly_for_numpy_and_torch():
    poses = random_poses(6)
    for given in (poses, torch.from_numpy(poses).float()):
        metrics = pose_metrics(given, poses)
        assert metrics["num_pairs"] == 15
        for key in ("RRA@5_pct", "RTA@5_pct", "mAA30_fast3r_31bin_pct", "AUC30_vggt_30bin_pct"):
            assert metrics[key] == pytest.approx(100.0)
        assert metrics["rotation_error_mean_deg"] < 1e-4
        assert metrics["translation_error_mean_deg"] < 1e-3


def test_one_camera_rotated_by_k_degrees_gives_k_on_its_pairs_only():
    poses = random_poses(5, seed=1)
    moved = 2
    pred = poses.copy()
    pred[moved] = rotate_in_camera_frame(poses[moved], np.array([0.0, 1.0, 0.0]), 12.0)
    errors = relative_pose_errors(pred, poses)
    involves = (errors.first == moved) | (errors.second == moved)
    np.testing.assert_allclose(errors.rotation_deg[involves], 12.0, atol=1e-9)
    np.testing.assert_allclose(errors.rotation_deg[~involves], 0.0, atol=1e-9)
    # the camera centre did not move: pairs where it is the second camera keep their translation
    np.testing.assert_allclose(errors.translation_deg[errors.second == moved], 0.0, atol=1e-6)
    # where it is the first camera, its frame turned: independent check with scipy
    for k in np.nonzero(errors.first == moved)[0]:
        j = errors.second[k]
        t_gt = poses[moved, :3, :3].T @ (poses[j, :3, 3] - poses[moved, :3, 3])
        t_pred = Rotation.from_rotvec(np.radians(12.0) * np.array([0, 1.0, 0])).as_matrix().T @ t_gt
        cos = abs(t_gt @ t_pred) / np.linalg.norm(t_gt) / np.linalg.norm(t_pred)
        assert errors.translation_deg[k] == pytest.approx(np.degrees(np.arccos(min(cos, 1.0))), abs=1e-6)
    metrics = metrics_from_errors(errors.rotation_deg, errors.translation_deg)
    assert metrics["RRA@5_pct"] == pytest.approx(100 * 6 / 10)  # 4 of 10 pairs involve the camera
    assert metrics["RRA@15_pct"] == pytest.approx(100.0)


def test_translation_error_is_sign_invariant():
    base = np.eye(4)
    other = np.eye(4)
    other[:3, 3] = [1.0, 0.0, 0.0]
    flipped = np.eye(4)
    flipped[:3, 3] = [-1.0, 0.0, 0.0]
    errors = relative_pose_errors(np.stack([base, flipped]), np.stack([base, other]))
    assert errors.translation_deg[0] == pytest.approx(0.0, abs=1e-9)
    # 170 degrees apart counts as 10
    tilted = np.eye(4)
    tilted[:3, 3] = [np.cos(np.radians(170)), np.sin(np.radians(170)), 0.0]
    errors = relative_pose_errors(np.stack([base, tilted]), np.stack([base, other]))
    assert errors.translation_deg[0] == pytest.approx(10.0, abs=1e-9)
    # a zero translation on one side counts as 90 degrees, as the reference code's epsilon gives
    errors = relative_pose_errors(np.stack([base, base]), np.stack([base, other]))
    assert errors.translation_deg[0] == pytest.approx(90.0)


def test_errors_match_scipy_on_random_perturbations():
    gt = random_poses(8, seed=3)
    rng = np.random.default_rng(4)
    pred = gt.copy()
    pred[:, :3, :3] = Rotation.from_rotvec(rng.normal(scale=0.2, size=(8, 3))).as_matrix() @ gt[:, :3, :3]
    pred[:, :3, 3] += rng.normal(scale=0.3, size=(8, 3))
    errors = relative_pose_errors(pred, gt)
    for k, (i, j) in enumerate(zip(errors.first, errors.second)):
        rel_pred = np.linalg.inv(pred[i]) @ pred[j]
        rel_gt = np.linalg.inv(gt[i]) @ gt[j]
        angle = Rotation.from_matrix(rel_pred[:3, :3].T @ rel_gt[:3, :3]).magnitude()
        assert errors.rotation_deg[k] == pytest.approx(np.degrees(angle), abs=1e-7)
        a, b = rel_pred[:3, 3], rel_gt[:3, 3]
        theta = np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))
        assert errors.translation_deg[k] == pytest.approx(min(theta, 180 - theta), abs=1e-6)


@pytest.mark.parametrize(
    "errors, fast3r, vggt",
    [
        ([0.0, 0.0], 1.0, 1.0),
        ([0.5], 1.0, 1.0),
        ([10.0], 21 / 31, 20 / 30),  # histc bin floor(10 * 31 / 30) = 10; numpy bin 10
        ([29.5], 1 / 31, 1 / 30),  # histc bin 30 (the last); numpy bin 29 (the last)
        ([30.0], 1 / 31, 1 / 30),  # == max: last bin in both
        ([30.5], 0.0, 0.0),  # beyond the range: ignored, counts as a failure
        ([0.0, 10.0, 30.0, 45.0], 53 / 124, 51 / 120),
    ],
)
def test_both_mAA_variants_on_hand_computed_cases(errors, fast3r, vggt):
    assert mAA_fast3r_31bin(np.array(errors)) == pytest.approx(fast3r)
    assert AUC_vggt_30bin(np.array(errors)) == pytest.approx(vggt)


def test_histc_replica_matches_torch_on_bin_edges_in_both_precisions():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(-2, 35, 5000), np.arange(31) * 30 / 31, np.arange(31.0), [30.0, np.nan]])
    for dtype in (np.float64, np.float32):
        cast = values.astype(dtype)
        expected = torch.histc(torch.from_numpy(cast), bins=31, min=0, max=30).numpy()
        np.testing.assert_array_equal(histc(cast, 31, 0.0, 30.0), expected)


def test_identity_baseline_is_perfect_on_unrotated_cameras_and_known_on_rotated_ones():
    world = random_poses(1, seed=3)[0]  # a common world frame must not matter
    shifted = np.tile(np.eye(4), (4, 1, 1))
    shifted[:, :3, 3] = np.random.default_rng(0).normal(size=(4, 3))
    metrics = identity_baseline_metrics(world @ shifted)
    assert metrics["RRA@5_pct"] == 100.0 and metrics["rotation_error_mean_deg"] < 1e-6
    assert metrics["RTA@30_pct"] == 0.0  # an identity translation has no direction
    yawed = np.tile(np.eye(4), (4, 1, 1))
    yawed[:, :3, :3] = Rotation.from_euler("z", [[0], [10], [20], [45]], degrees=True).as_matrix()
    metrics = identity_baseline_metrics(torch.from_numpy(world @ yawed))  # pairs: 10 20 45 10 35 25 degrees
    assert metrics["RRA@5_pct"] == 0.0
    assert metrics["RRA@15_pct"] == pytest.approx(100 * 2 / 6)
    assert metrics["RRA@30_pct"] == pytest.approx(100 * 4 / 6)
    assert metrics["rotation_error_median_deg"] == pytest.approx(22.5)


def test_interval_over_samples_spans_the_spread_between_samples():
    good, bad = (np.full(6, 3.0), np.full(6, 4.0)), (np.full(6, 90.0), np.full(6, 60.0))
    same = interval_over_samples(*zip(*[good] * 10))
    assert same["RRA@15_pct"] == same["RTA@15_pct"] == [100.0, 100.0]
    mixed = [good] * 10 + [bad] * 10  # half the samples fail
    interval = interval_over_samples(*zip(*mixed))
    for key in ("RRA@15_pct", "RTA@15_pct"):
        low, high = interval[key]
        assert 20.0 < low < 50.0 < high < 80.0, (key, low, high)  # about 50 +- 22 for 20 samples
    assert interval == interval_over_samples(*zip(*mixed)), "seeded: the same samples give the same interval"
    pooled = metrics_from_errors(*(np.concatenate(part) for part in zip(*mixed)))
    low, high = interval["mAA30_fast3r_31bin_pct"]
    assert low < pooled["mAA30_fast3r_31bin_pct"] < high


def test_paired_difference_cancels_what_the_samples_share():
    rng = np.random.default_rng(0)
    # 40 scenes, half easy and half hard; the second model's errors are the first's, 20% smaller.
    levels = np.concatenate([rng.uniform(0, 30, 20), rng.uniform(60, 120, 20)])
    pairs = np.arange(6)
    first = [PairErrors(*(np.clip(level + rng.uniform(-10, 10, 6), 0, None) for _ in range(2)), pairs, pairs) for level in levels]
    second = [PairErrors(e.rotation_deg * 0.8, e.translation_deg * 0.8, pairs, pairs) for e in first]
    same = paired_difference(first, first)
    assert all(row["difference"] == 0.0 and row["ci95"] == [0.0, 0.0] for row in same.values())
    better = paired_difference(first, second)
    own = interval_over_samples([e.rotation_deg for e in first], [e.translation_deg for e in first])
    for key, row in better.items():
        assert row["difference"] == pytest.approx(row["second"] - row["first"]) and row["difference"] > 0, key
        assert 0.0 < row["ci95"][0] <= row["difference"] <= row["ci95"][1], key  # better on every draw
        # Pairing cancels which scenes were drawn: the difference is surer than either model's figure.
        assert row["ci95"][1] - row["ci95"][0] < (own[key][1] - own[key][0]) / 2, key
    with pytest.raises(ValueError, match="same samples"):
        paired_difference(first, second[:-1])


def test_pose_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="4, 4"):
        pose_metrics(np.zeros((3, 3, 3)), np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        pose_metrics(np.eye(4)[None], np.eye(4)[None])
    with pytest.raises(ValueError, match="cameras"):
        pose_metrics(random_poses(3), random_poses(4))


def test_templering_ground_truth_scores_perfectly_and_rotation_shows_up(shared_data):
    gt = load_templering(shared_data)
    assert len(gt) == 47
    # any similarity of the world leaves relative poses' angles unchanged
    world = np.eye(4)
    world[:3, :3] = 2.5 * Rotation.from_euler("xyz", [10, -40, 75], degrees=True).as_matrix()
    world[:3, 3] = [0.3, -1.0, 2.0]
    moved = world @ gt
    moved[:, :3, :3] /= 2.5
    errors = relative_pose_errors(moved, gt)
    assert errors.rotation_deg.max() < 1e-5
    # views 0 and 29 stand at the same spot (1e-16 m apart): no translation direction, scored 90
    coincident = (errors.first == 0) & (errors.second == 29)
    assert errors.translation_deg[coincident] == pytest.approx([90.0])
    assert errors.translation_deg[~coincident].max() < 1e-4
    metrics = pose_metrics(moved, gt)
    assert metrics["mAA30_fast3r_31bin_pct"] == pytest.approx(100.0 * 1080 / 1081)
    assert metrics["AUC30_vggt_30bin_pct"] == pytest.approx(100.0 * 1080 / 1081)
    pred = gt.copy()
    pred[5] = rotate_in_camera_frame(gt[5], np.array([1.0, 0.0, 0.0]), 7.0)
    errors = relative_pose_errors(pred, gt)
    involves = (errors.first == 5) | (errors.second == 5)
    np.testing.assert_allclose(errors.rotation_deg[involves], 7.0, atol=1e-6)
    assert np.abs(errors.rotation_deg[~involves]).max() < 1e-5
    assert pose_metrics(pred, gt)["RRA@5_pct"] == pytest.approx(100 * (1 - 46 / 1081))


# ---------------------------------------------------------------------------------------------
# Nearest neighbours and normals


@pytest.mark.parametrize("chunk_points", [65_536, 700])  # one search, or many in parallel threads
def test_nearest_neighbours_are_exact_against_ckdtree_even_far_from_the_origin(monkeypatch, chunk_points):
    monkeypatch.setattr(neighbors, "CHUNK_POINTS", chunk_points)
    rng = np.random.default_rng(0)
    reference = rng.uniform(0, 1, size=(5000, 3)) + 1000.0  # float32 alone would lose ~1e-4
    query = rng.uniform(0, 1, size=(3000, 3)) + 1000.0
    distances, indices = NearestNeighbors(reference).query(query, k=4)
    expected_d, expected_i = cKDTree(reference).query(query, k=4)
    np.testing.assert_allclose(distances, expected_d, rtol=0, atol=1e-12)
    assert np.mean(indices == expected_i) > 0.999
    single_d, single_i = nearest_neighbor(query, reference)
    np.testing.assert_allclose(single_d, expected_d[:, 0], atol=1e-12)
    with pytest.raises(ValueError, match="non-finite"):
        nearest_neighbor(np.array([[np.nan, 0, 0]]), reference)


def test_pca_normals_of_a_sphere_are_radial_and_independent_of_chunking(monkeypatch):
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(4000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    normals = estimate_normals(2.0 * directions)
    assert np.median(np.abs(np.sum(normals * directions, axis=1))) > 0.99
    monkeypatch.setattr(neighbors, "CHUNK_POINTS", 300)
    chunked = estimate_normals(2.0 * directions)
    np.testing.assert_allclose(np.abs(np.sum(chunked * normals, axis=1)), 1.0, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Reconstruction metrics


def test_identical_clouds_are_perfect_and_match_ckdtree_otherwise():
    rng = np.random.default_rng(2)
    gt = rng.normal(size=(3000, 3))
    perfect = reconstruction_metrics(gt, gt)
    assert perfect["accuracy_mean"] == 0.0 and perfect["completion_mean"] == 0.0
    assert perfect["normal_consistency_mean"] == pytest.approx(1.0)
    pred = rng.normal(size=(2000, 3)) * 1.1
    metrics = reconstruction_metrics(pred, gt)
    accuracy = cKDTree(gt).query(pred)[0]
    completion = cKDTree(pred).query(gt)[0]
    assert metrics["accuracy_mean"] == pytest.approx(accuracy.mean(), rel=1e-12)
    assert metrics["accuracy_median"] == pytest.approx(np.median(accuracy), rel=1e-12)
    assert metrics["completion_mean"] == pytest.approx(completion.mean(), rel=1e-12)
    assert metrics["completion_median"] == pytest.approx(np.median(completion), rel=1e-12)


def test_normal_consistency_uses_the_given_normals_in_both_directions():
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 30), np.linspace(0, 1, 30), indexing="ij"), -1).reshape(-1, 2)
    plane = np.concatenate([grid, np.zeros((len(grid), 1))], axis=1)
    up = np.tile([0.0, 0.0, 1.0], (len(plane), 1))
    tilted = np.tile([0.0, np.sin(np.radians(60)), np.cos(np.radians(60))], (len(plane), 1))
    metrics = reconstruction_metrics(plane, plane, pred_normals=tilted, gt_normals=up)
    assert metrics["nc_accuracy_mean"] == pytest.approx(0.5)
    assert metrics["nc_completion_mean"] == pytest.approx(0.5)
    assert reconstruction_metrics(plane, plane)["normal_consistency_mean"] == pytest.approx(1.0)


def test_gaussian_noise_gives_the_chi3_mean_and_median(shared_data):
    gt = load_dining_points(shared_data)[::3]  # ~100k points, a few mm apart
    sigma = 1e-4  # far below the point spacing: each noisy point stays nearest its own
    rng = np.random.default_rng(5)
    pred = gt + rng.normal(scale=sigma, size=gt.shape)
    metrics = reconstruction_metrics(pred, gt)
    assert metrics["accuracy_mean"] == pytest.approx(sigma * np.sqrt(8 / np.pi), rel=0.01)
    assert metrics["accuracy_median"] == pytest.approx(sigma * chi(3).median(), rel=0.01)
    assert metrics["completion_mean"] == pytest.approx(sigma * np.sqrt(8 / np.pi), rel=0.01)


def test_sim3_moved_prediction_is_aligned_back(shared_data):
    gt = load_dining_points(shared_data)[::15]
    rotation = Rotation.from_euler("zyx", [30, -20, 45], degrees=True).as_matrix()
    pred = 0.37 * gt @ rotation.T + np.array([1.0, -2.0, 0.5])
    weights = np.random.default_rng(0).uniform(0.1, 1.0, len(gt))
    for alignment in ("sim3_correspondences", "sim3_icp"):
        metrics = reconstruction_metrics(pred, gt, alignment=alignment, weights=weights)
        assert metrics["accuracy_mean"] < 1e-9 and metrics["completion_mean"] < 1e-9, alignment
        assert metrics["alignment_scale"] == pytest.approx(1 / 0.37)
    unaligned = reconstruction_metrics(pred, gt, alignment="none")
    assert unaligned["accuracy_mean"] > 0.5


def test_scale_then_icp_recovers_a_small_rigid_offset(shared_data):
    gt = load_dining_points(shared_data)[::15]
    small = Rotation.from_euler("xyz", [1.0, -0.5, 0.8], degrees=True).as_matrix()
    pred = 3.0 * (gt @ small.T + np.array([0.01, -0.005, 0.008]))
    before = reconstruction_metrics(pred / 3.0, gt)
    metrics = reconstruction_metrics(pred, gt, alignment="scale_icp", icp_threshold=0.1, icp_iterations=50)
    assert metrics["alignment_scale"] == pytest.approx(1 / 3.0, rel=0.02)
    assert metrics["icp_fitness"] > 0.99
    assert metrics["accuracy_mean"] < 0.1 * before["accuracy_mean"]


def test_reconstruction_metrics_reject_bad_input():
    points = np.zeros((10, 3))
    with pytest.raises(ValueError, match="unknown alignment"):
        reconstruction_metrics(points, points, alignment="procrustes")
    with pytest.raises(ValueError, match="corresponding"):
        reconstruction_metrics(np.ones((5, 3)), np.ones((6, 3)), alignment="sim3_correspondences")
    with pytest.raises(ValueError, match="non-finite"):
        reconstruction_metrics(np.full((5, 3), np.inf), points)
    with pytest.raises(ValueError, match="last axis"):
        reconstruction_metrics(np.zeros((5, 2)), points)
