"""The release's confidence-weighted, scale-normalised pointmap loss, checked against hand computations."""
import math

import pytest
import torch

from fast3r.train.loss import ViewTarget, pointmap_loss


def _rotation_z(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _c2w(angle: float, translation: tuple[float, float, float]) -> torch.Tensor:
    pose = torch.eye(4)
    pose[:3, :3] = _rotation_z(angle)
    pose[:3, 3] = torch.tensor(translation)
    return pose


def _to_world(c2w: torch.Tensor, camera_points: torch.Tensor) -> torch.Tensor:
    return camera_points @ c2w[:3, :3].T + c2w[:3, 3]


def _scene(num_views: int = 3, batch: int = 2, size: int = 4, seed: int = 0):
    """Camera-frame points, poses and world points of a random scene: (targets, local truth, global truth)."""
    generator = torch.Generator().manual_seed(seed)
    poses = [_c2w(0.3 * v, (0.5 * v, -0.2 * v, 0.1)) for v in range(num_views)]
    local = [torch.rand(batch, size, size, 3, generator=generator) + torch.tensor([0.0, 0.0, 1.0]) for _ in poses]
    world = [_to_world(pose, pts) for pose, pts in zip(poses, local)]
    view0_from_world = torch.linalg.inv(poses[0])
    global_truth = [_to_world(view0_from_world, pts) for pts in world]
    targets = [
        ViewTarget(pts3d=w, valid=torch.ones(batch, size, size, dtype=torch.bool), camera_pose=pose.expand(batch, 4, 4))
        for w, pose in zip(world, poses)
    ]
    return targets, local, global_truth


def _preds(global_points, local_points, conf=1.0, conf_local=1.0):
    return [
        {
            "pts3d_in_other_view": g.clone().requires_grad_(True),
            "conf": torch.full(g.shape[:-1], conf),
            "pts3d_local": l.clone().requires_grad_(True),
            "conf_local": torch.full(l.shape[:-1], conf_local),
        }
        for g, l in zip(global_points, local_points)
    ]


def test_perfect_prediction_with_unit_confidence_gives_zero():
    targets, local, global_truth = _scene()
    loss, parts = pointmap_loss(_preds(global_truth, local), targets)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    assert parts["dist_global"].item() == pytest.approx(0.0, abs=1e-5)


def test_confidence_penalty_is_alpha_log_conf():
    targets, local, global_truth = _scene()
    loss, _ = pointmap_loss(_preds(global_truth, local, conf=3.0, conf_local=3.0), targets, alpha=0.2)
    assert loss.item() == pytest.approx(-0.2 * math.log(3.0), abs=1e-5)


def test_scale_invariance_of_the_prediction():
    targets, local, global_truth = _scene()
    noisy_global = [g + 0.05 * torch.randn_like(g) for g in global_truth]
    noisy_local = [l * 1.3 + 0.05 * torch.randn_like(l) for l in local]
    loss, parts = pointmap_loss(_preds(noisy_global, noisy_local, 1.5, 2.0), targets)
    scaled, scaled_parts = pointmap_loss(_preds([3 * g for g in noisy_global], [3 * l for l in noisy_local], 1.5, 2.0), targets)
    assert parts["dist_global"].item() > 0.01 and parts["dist_local"].item() > 0.01
    assert scaled.item() == pytest.approx(loss.item(), rel=1e-5)
    assert scaled_parts["dist_local"].item() == pytest.approx(parts["dist_local"].item(), rel=1e-5)


def test_two_pixel_value_by_hand():
    # One view, one batch item, two pixels. Camera rotated and moved: the loss must use camera frames.
    pose = _c2w(0.7, (1.0, 2.0, -0.5))
    camera = torch.tensor([[[[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]]]])  # (1, 1, 2, 3): mean distance 2
    target = ViewTarget(_to_world(pose, camera), torch.ones(1, 1, 2, dtype=torch.bool), pose[None])
    predicted = torch.tensor([[[[0.0, 0.0, 2.0], [0.0, 0.0, 2.0]]]])  # mean distance 2 -> (0,0,1) twice
    conf = torch.tensor([[[1.0, 2.0]]])
    preds = [{"pts3d_in_other_view": predicted, "conf": conf, "pts3d_local": predicted, "conf_local": conf}]
    loss, parts = pointmap_loss(preds, [target], alpha=0.2)
    # normalised truth (0,0,0.5), (0,0,1.5); prediction (0,0,1) twice: distances 0.5, 0.5
    per_pixel = [1.0 * 0.5 - 0.2 * math.log(1.0), 2.0 * 0.5 - 0.2 * math.log(2.0)]
    expected = sum(per_pixel) / 2  # same for both heads
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert parts["global"].item() == pytest.approx(expected, abs=1e-6)
    assert parts["local"].item() == pytest.approx(expected, abs=1e-6)
    assert parts["dist_global"].item() == pytest.approx(0.5, abs=1e-6)


def test_invalid_pixels_are_ignored_even_when_not_finite():
    targets, local, global_truth = _scene(batch=1)
    preds = _preds([g + 0.1 for g in global_truth], [l * 0.9 for l in local], 1.7, 1.2)
    reference, _ = pointmap_loss(preds, targets)
    for target in targets:
        target.valid[0, 0, :2] = False
    masked, _ = pointmap_loss(preds, targets)
    # Changing prediction and truth on the invalid pixels (even to NaN truth) changes nothing.
    broken_targets = [ViewTarget(t.pts3d.clone(), t.valid, t.camera_pose) for t in targets]
    for target in broken_targets:
        target.pts3d[0, 0, :2] = float("nan")
    broken_preds = _preds([g + 0.1 for g in global_truth], [l * 0.9 for l in local], 1.7, 1.2)
    for pred in broken_preds:
        with torch.no_grad():
            pred["pts3d_in_other_view"][0, 0, :2] = 100.0
            pred["pts3d_local"][0, 0, :2] = -50.0
    again, _ = pointmap_loss(broken_preds, broken_targets)
    assert masked.item() != pytest.approx(reference.item(), abs=1e-6)
    assert again.item() == pytest.approx(masked.item(), rel=1e-6)
    again.backward()
    for pred in broken_preds:
        grad = pred["pts3d_in_other_view"].grad
        assert torch.isfinite(grad).all()
        assert grad[0, 0, :2].abs().max() == 0  # no gradient reaches invalid pixels


def test_global_normalisation_spans_all_views():
    targets, local, global_truth = _scene(num_views=2)
    noisy = [g + 0.05 * torch.randn_like(g) for g in global_truth]
    _, parts = pointmap_loss(_preds(noisy, local), targets)
    # Scale view 1's predictions only. Normalised per view, every term would be unchanged (each is scale
    # invariant); normalised over all views, the shared scale moves both views' global terms.
    _, rescaled = pointmap_loss(_preds([noisy[0], 2.0 * noisy[1]], [local[0], 2.0 * local[1]]), targets)
    assert rescaled["global"].item() != pytest.approx(parts["global"].item(), abs=1e-3)
    assert rescaled["local"].item() == pytest.approx(parts["local"].item(), abs=1e-6)
    # Scaling every view together leaves the global term unchanged.
    _, together = pointmap_loss(_preds([2.0 * n for n in noisy], local), targets)
    assert together["global"].item() == pytest.approx(parts["global"].item(), rel=1e-5)


def test_batch_items_are_normalised_separately():
    targets, local, global_truth = _scene(batch=2)
    noisy = [g + 0.05 for g in global_truth]
    base, _ = pointmap_loss(_preds(noisy, local), targets)
    scale = torch.tensor([1.0, 5.0])[:, None, None, None]  # item 1 predicted 5x larger
    scaled, _ = pointmap_loss(_preds([n * scale for n in noisy], [l * scale for l in local]), targets)
    # float32 sums whose order follows the CPU's vector width: 1.4e-6 apart here; a normalisation shared
    # across items would move the loss by far more than 1e-4
    assert scaled.item() == pytest.approx(base.item(), rel=1e-4)


def test_accepts_collated_dicts_and_checks_view_counts():
    targets, local, global_truth = _scene()
    dicts = [{"pts3d": t.pts3d, "valid": t.valid, "camera_pose": t.camera_pose} for t in targets]
    loss, _ = pointmap_loss(_preds(global_truth, local), dicts)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="views"):
        pointmap_loss(_preds(global_truth, local)[:2], dicts)
    with pytest.raises(KeyError, match="camera_pose"):
        pointmap_loss(_preds(global_truth, local), [{"pts3d": t.pts3d, "valid": t.valid} for t in targets])
    small = _scene(num_views=1, size=2)[0][0]
    with pytest.raises(ValueError, match="views of one size"):
        pointmap_loss(_preds(global_truth, local), [*targets[:2], small])


@pytest.mark.parametrize("transforms, views", [(3, 3), (1, 3), (3, 1)])
def test_rigid_transforms_broadcast_over_views(transforms, views):
    """`_transform` applies each view's (or the one shared) world-to-camera transform to every pixel."""
    from fast3r.train.loss import _transform

    generator = torch.Generator().manual_seed(2)
    world_to_camera = torch.stack(
        [torch.stack([torch.linalg.inv(_c2w(0.3 * b + 0.7 * n, (b, -n, 2.0))) for n in range(transforms)]) for b in range(2)]
    ).double()  # (2, transforms, 4, 4)
    points = torch.randn(2, views, 3, 4, 3, generator=generator) * 10
    moved = _transform(world_to_camera, points)
    assert moved.shape == (2, max(transforms, views), 3, 4, 3) and moved.dtype == torch.float32
    for b in range(2):
        for n in range(max(transforms, views)):
            pose = world_to_camera[b, min(n, transforms - 1)]
            flat = points[b, min(n, views - 1)].reshape(-1, 3).double()
            expected = flat @ pose[:3, :3].T + pose[:3, 3]
            torch.testing.assert_close(moved[b, n].reshape(-1, 3), expected.float(), rtol=1e-6, atol=1e-5)
