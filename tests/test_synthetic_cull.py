import numpy as np
import pytest
import torch

from fast3r.data.synthetic import SceneConfig, build_scene, intrinsics_from_fov, look_at, render_views, sample_trajectory
from fast3r.data.synthetic import render
from fast3r.data.synthetic.cull import can_shadow, in_frustum
from fast3r.data.synthetic.intersect import box_bounds, cylinder_bounds


def _ray_hits_sphere(origins: np.ndarray, directions: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(R, P) bool: the ray origin + t * direction, t > 0, passes through the sphere."""
    relative = centres[None] - origins[:, None]  # (R, P, 3)
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    along = (relative * unit[:, None]).sum(-1)
    closest = (relative * relative).sum(-1) - along**2
    return (closest <= radii[None] ** 2) & ((along > 0) | ((relative * relative).sum(-1) <= radii[None] ** 2))


def test_bounding_spheres_hold_their_primitives() -> None:
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.normal(size=(20, 3)), rng.uniform(0.1, 1.0, (20, 3)), rng.uniform(-3, 3, (20, 1))], axis=1)
    centres, radii = box_bounds(torch.tensor(boxes))
    for box, centre, radius in zip(boxes, centres.numpy(), radii.numpy()):
        cos, sin = np.cos(box[6]), np.sin(box[6])
        for signs in np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1).T:
            local = signs * box[3:6]
            corner = box[:3] + [cos * local[0] - sin * local[1], sin * local[0] + cos * local[1], local[2]]
            assert np.linalg.norm(corner - centre) <= radius + 1e-9
    cylinders = np.array([[1.0, 2.0, 0.5, 0.2, 2.2], [-1.0, 0.0, 1.5, 0.0, 0.1]])
    centres, radii = cylinder_bounds(torch.tensor(cylinders))
    for (x, y, r, bottom, top), centre, radius in zip(cylinders, centres.numpy(), radii.numpy()):
        for z in (bottom, top):  # the rims are the farthest points
            rim = np.array([x + r, y, z])
            assert np.linalg.norm(rim - centre) == pytest.approx(radius)


def test_in_frustum_keeps_every_sphere_a_ray_of_the_band_hits_and_drops_others() -> None:
    rng = np.random.default_rng(1)
    c2w = look_at(np.array([0.5, -1.0, 1.2]), np.array([2.0, 3.0, 0.8]), roll=0.2)
    centres, radii = rng.uniform(-6, 6, size=(1000, 3)), rng.uniform(0.05, 0.8, size=1000)
    x_range, y_range = (-0.9, 0.7), (0.1, 0.3)  # a band below the image centre
    kept = in_frustum(torch.tensor(centres, dtype=torch.float32), torch.tensor(radii, dtype=torch.float32),
                      torch.tensor(c2w), x_range, y_range).numpy()
    camera_dirs = np.stack([rng.uniform(*x_range, 20000), rng.uniform(*y_range, 20000), np.ones(20000)], axis=1)
    camera_dirs[:4, :2] = [[x, y] for x in x_range for y in y_range]  # the band's corners too
    directions = camera_dirs @ c2w[:3, :3].T
    hit = _ray_hits_sphere(np.broadcast_to(c2w[:3, 3], directions.shape), directions, centres, radii).any(axis=0)
    assert hit.sum() > 20 and (kept | ~hit).all()  # every sphere some ray hits is kept
    assert kept.sum() < 0.5 * len(kept)  # and most of the scene around the band is not
    behind = ((centres - c2w[:3, 3]) @ c2w[:3, 2]) < -radii - 0.01
    assert not (kept & behind).any()


def test_can_shadow_keeps_every_sphere_between_a_point_and_the_light() -> None:
    rng = np.random.default_rng(2)
    light = np.array([0.3, -0.4, 0.8])
    light /= np.linalg.norm(light)
    points = np.concatenate([rng.uniform(0, 1.5, size=(3000, 2)), rng.uniform(0, 0.3, size=(3000, 1))], axis=1)
    centres = np.concatenate([rng.uniform(-3, 5, size=(300, 2)), rng.uniform(-1, 3, size=(300, 1))], axis=1)
    radii = rng.uniform(0.05, 0.4, size=300)
    kept = can_shadow(torch.tensor(centres, dtype=torch.float32), torch.tensor(radii, dtype=torch.float32),
                      torch.tensor(points, dtype=torch.float32), torch.tensor(light, dtype=torch.float32)).numpy()
    blocks = _ray_hits_sphere(points, np.broadcast_to(light, points.shape), centres, radii).any(axis=0)
    assert blocks.sum() > 10 and (kept | ~blocks).all()
    assert kept.sum() < 0.6 * len(kept)
    below = centres @ light + radii < (points @ light).min()
    assert below.any() and not (kept & below).any()


@pytest.mark.parametrize("kind", ["room", "orbit"])
def test_culling_changes_no_pixel(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cluttered, shadowed scenes from a wide-baseline trajectory, rendered in bands of rows (culled per
    band) and with every primitive tested against every ray."""
    scene = build_scene(11, SceneConfig(kind=kind, clutter=(8, 8), shadows=True))
    scene, c2w = sample_trajectory(scene, np.random.default_rng(3), 4, "random")
    K = intrinsics_from_fov(90.0, 48, 64)
    monkeypatch.setitem(render.RAY_BLOCKS, "cpu", (640, False))  # bands of 10 rows
    culled_image, culled_depth = render_views(scene, K, c2w, 48, 64)
    monkeypatch.setattr(render, "in_frustum", lambda centres, *args: torch.ones(len(centres), dtype=torch.bool))
    monkeypatch.setattr(render, "can_shadow", lambda centres, *args: torch.ones(len(centres), dtype=torch.bool))
    full_image, full_depth = render_views(scene, K, c2w, 48, 64)
    assert (full_depth > 0).mean() > 0.5
    # float32: a primitive batch of another size may round differently (1 ulp in a sine); a pixel of
    # another primitive differs by far more
    np.testing.assert_allclose(culled_depth, full_depth, rtol=5e-5)
    assert np.abs(culled_image.astype(int) - full_image).max() <= 1
