"""Opt-in scene levers (issue 14): clutter, natural textures, lighting. Off by default, the scenes are
exactly those rendered before the levers existed."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fast3r.data.synthetic import SceneConfig, build_scene, intrinsics_from_fov, render_scene, render_views, sample_trajectory

# sha256 of tiny default renders (images, depths, poses, intrinsics) by the code before the levers.
DEFAULT_RENDERS_SHA256 = "460df3a24879d07c5a56e21e551a657bd267022b21914bde8663870dacbc69cd"


def test_default_scenes_render_exactly_as_before_the_levers() -> None:
    digest = hashlib.sha256()
    for kind, trajectory in (("room", "random"), ("orbit", "orbit")):
        for view in render_scene(7, 2, 24, 32, trajectory, config=SceneConfig(kind=kind)):
            for array in (view.image, view.depth, view.c2w, view.K):
                digest.update(array.tobytes())
    assert digest.hexdigest() == DEFAULT_RENDERS_SHA256


def _same_cameras(plain, other, num_views=6, height=48, width=64):
    """Renders of two scenes from the cameras of a trajectory sampled in the first."""
    _, c2w = sample_trajectory(plain, np.random.default_rng(1), num_views, "orbit")
    K = intrinsics_from_fov(70.0, height, width)
    return render_views(plain, K, c2w, height, width), render_views(other, K, c2w, height, width)


@pytest.mark.parametrize("kind", ["room", "orbit"])
def test_clutter_adds_small_objects_that_occlude_in_several_views(kind: str) -> None:
    plain = build_scene(5, SceneConfig(kind=kind))
    cluttered = build_scene(5, SceneConfig(kind=kind, clutter=(12, 12)))
    boxes, spheres = len(plain.boxes), len(plain.spheres)
    assert len(cluttered.boxes) + len(cluttered.spheres) == boxes + spheres + 12
    np.testing.assert_array_equal(cluttered.boxes[:boxes], plain.boxes)  # the rest of the scene is kept
    np.testing.assert_array_equal(cluttered.spheres[:spheres], plain.spheres)
    np.testing.assert_array_equal(cluttered.box_materials[:boxes], plain.box_materials)
    assert len(set(cluttered.box_materials) | set(cluttered.sphere_materials)) == len(cluttered.boxes) + len(cluttered.spheres)
    # Every item rests on the floor or on a furniture top, and is small.
    bottoms = np.concatenate([cluttered.boxes[boxes:, 2] - cluttered.boxes[boxes:, 5], cluttered.spheres[spheres:, 2] - cluttered.spheres[spheres:, 3]])
    tops = np.concatenate([[0.0], plain.boxes[:, 2] + plain.boxes[:, 5]])
    assert np.abs(bottoms[:, None] - tops[None]).min(axis=1).max() < 1e-9
    assert cluttered.boxes[boxes:, 3:5].max() <= 0.2 and cluttered.spheres[spheres:, 3].max() <= 0.2
    (_, depth_plain), (_, depth_cluttered) = _same_cameras(plain, cluttered)
    # float32 casts over more primitives may round differently (1e-6 relative): compare with a tolerance.
    changed = ~np.isclose(depth_cluttered, depth_plain, rtol=1e-5, atol=0)
    assert ((depth_cluttered < depth_plain) | (depth_plain == 0))[changed].all(), "clutter only hides what lies behind it"
    assert changed.mean() > 0.005 and changed.reshape(len(changed), -1).any(axis=1).sum() >= 3
