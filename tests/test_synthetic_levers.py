"""Opt-in scene levers (issue 14): clutter, natural textures, lighting. Off by default, the scenes are
those rendered before the levers existed (within float32 rounding)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fast3r.data.synthetic import SceneConfig, build_scene, intrinsics_from_fov, look_at, render_scene, render_views, sample_trajectory
from fast3r.data.synthetic.cameras import CAMERA_MARGIN
from fast3r.data.synthetic.natural import NATURAL_COLOUR_AXES, NUM_BANDS, natural_albedo, pink_noise_bands, sample_natural_textures

# Tiny default renders (images, depths, poses, intrinsics) made by the code before the levers.
DEFAULT_RENDERS = Path(__file__).parent / "data" / "default_renders.npz"


def test_default_scenes_render_as_before_the_levers() -> None:
    """Within float32 rounding, which depends on the CPU's vector width; a changed scene moves far more."""
    with np.load(DEFAULT_RENDERS) as before:
        for kind, trajectory in (("room", "random"), ("orbit", "orbit")):
            for index, view in enumerate(render_scene(7, 2, 24, 32, trajectory, config=SceneConfig(kind=kind))):
                key = f"{kind}_{index}"
                np.testing.assert_allclose(view.c2w, before[f"{key}_c2w"], atol=1e-9)
                np.testing.assert_allclose(view.K, before[f"{key}_K"], atol=1e-9)
                np.testing.assert_allclose(view.depth, before[f"{key}_depth"], rtol=5e-5)
                assert np.abs(view.image.astype(int) - before[f"{key}_image"]).max() <= 1


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


def _spectrum_slope(image: np.ndarray, low: float, high: float) -> float:
    """Log-log slope of the radially averaged power spectrum of a square (N, N) image over the integer
    frequencies in [low, high] cycles per image."""
    size = image.shape[0]
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(size) * size, np.fft.fftfreq(size) * size, indexing="ij"))
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2
    rings = np.arange(np.ceil(low), np.floor(high) + 1)
    means = [power[np.abs(frequency - ring) < 0.5].mean() for ring in rings]
    return float(np.polyfit(np.log(rings), np.log(means), 1)[0])


def test_pink_noise_tile_has_a_one_over_f_amplitude_spectrum_split_into_octaves() -> None:
    bands = pink_noise_bands(np.random.default_rng(0)).reshape(256, 256, NUM_BANDS, 3)
    total = bands.sum(axis=2)
    np.testing.assert_allclose(total.std(axis=(0, 1)), 1.0, rtol=1e-5)
    for channel in range(3):
        assert _spectrum_slope(total[..., channel], 2, 100) == pytest.approx(-2.0, abs=0.1)
    # Band 3 holds 8-16 cycles per tile only.
    band_power = np.abs(np.fft.fft2(bands[..., 3, 0])) ** 2
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(256) * 256, np.fft.fftfreq(256) * 256, indexing="ij"))
    assert band_power[(frequency < 8) | (frequency >= 16)].sum() < 1e-9 * band_power.sum()


def test_rendered_natural_texture_keeps_the_spectrum_slope() -> None:
    """A wall seen head-on (constant shading) shows the texture's 1/f spectrum through the renderer's
    lookup, rotation, stretch and detail fading."""
    config = SceneConfig(kind="room", num_objects=(0, 0), num_posters=(0, 0), natural_textures=1.0)
    slopes = []
    for seed in range(3):
        scene = build_scene(seed, config)
        eye = np.array([scene.room[0] - 0.4, scene.room[1] / 2, scene.room[2] / 2])
        c2w = look_at(eye, eye - np.array([1.0, 0.0, 0.0]))[None]
        image, _ = render_views(scene, intrinsics_from_fov(40.0, 128, 128), c2w, 128, 128)
        luminance = image[0].astype(np.float64).mean(axis=2)
        slopes.append(_spectrum_slope(luminance * np.outer(np.hanning(128), np.hanning(128)), 3, 30))
    assert -2.55 < np.mean(slopes) < -1.7, slopes  # procedural textures: about -3


def test_natural_texture_colours_follow_the_photos() -> None:
    """The colours' mean and principal axis of variation match scikit-image's bundled photos."""
    photos = pytest.importorskip("skimage.data")
    images = [photos.astronaut(), photos.chelsea(), photos.coffee(), photos.rocket(), photos.stereo_motorcycle()[0]]
    pixels = np.concatenate([image.reshape(-1, 3) for image in images]).astype(np.float64) / 255
    natural = sample_natural_textures(np.random.default_rng(0), count=400, share=1.0)
    rng = np.random.default_rng(1)
    material = torch.as_tensor(np.repeat(np.arange(400), 200))
    uv = torch.as_tensor(rng.uniform(-5, 5, size=(len(material), 2)), dtype=torch.float32)
    colours = natural_albedo(natural.to_torch("cpu"), material, uv, None).numpy().astype(np.float64)
    np.testing.assert_allclose(colours.mean(axis=0), pixels.mean(axis=0), atol=0.06)
    within = (colours.reshape(400, 200, 3) - colours.reshape(400, 200, 3).mean(axis=1, keepdims=True)).reshape(-1, 3)
    values, vectors = np.linalg.eigh(np.cov(within.T))
    assert values[-1] / values.sum() == pytest.approx(0.9, abs=0.05)  # the photos' blocks: 0.91 on a grey-ish axis
    assert abs(vectors[:, -1] @ NATURAL_COLOUR_AXES[0]) > 0.99
    assert abs(vectors[:, -1] @ np.ones(3) / np.sqrt(3)) > 0.98


def test_natural_textures_replace_only_the_chosen_materials() -> None:
    plain = build_scene(2, SceneConfig(kind="orbit"))
    mixed = build_scene(2, SceneConfig(kind="orbit", natural_textures=0.5))
    assert 0 < mixed.natural.used.sum() < len(mixed.natural.used)
    (image_plain, depth_plain), (image_mixed, depth_mixed) = _same_cameras(plain, mixed)
    np.testing.assert_array_equal(depth_plain, depth_mixed)
    assert (image_plain != image_mixed).any(axis=-1).mean() > 0.05


def _ball_on_ground(**config) -> tuple:
    """A scene of one ball (centre, radius) above an empty ground disc, and a camera's view from above."""
    empty = SceneConfig(kind="orbit", num_objects=(0, 0), num_background=(0, 0), ground_radius=5.0, **config)
    centre, radius = np.array([0.0, 0.0, 0.7]), 0.5
    light = np.array([0.0, 1.0, 0.8]) / np.linalg.norm([0.0, 1.0, 0.8])  # behind the ball: the camera sees both sides
    scene = replace(build_scene(0, empty), spheres=np.array([[*centre, radius]]), sphere_materials=np.array([0]), light_direction=light)
    c2w = look_at(np.array([0.5, -2.0, 4.0]), np.zeros(3))[None]
    return scene, centre, radius, c2w, intrinsics_from_fov(80.0, 64, 64)


def _world_points(depth: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    v, u = np.mgrid[0 : depth.shape[0], 0 : depth.shape[1]].astype(np.float64)
    camera = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1) * depth[..., None]
    return camera @ c2w[:3, :3].T + c2w[:3, 3]


def test_shadows_darken_exactly_the_ground_the_ball_hides_from_the_light() -> None:
    scene, centre, radius, c2w, K = _ball_on_ground(shadows=True)
    shadowed, depth = render_views(scene, K, c2w, 64, 64)
    lit, _ = render_views(replace(scene, shadows=False), K, c2w, 64, 64)
    points = _world_points(depth[0], K, c2w[0])
    ground = (depth[0] > 0) & (np.abs(points[..., 2]) < 1e-3)
    along = (centre - points) @ scene.light_direction  # closest approach of the ray to the light
    miss = np.linalg.norm(points + along[..., None] * scene.light_direction - centre, axis=-1)
    expected = ground & (along > 0) & (miss < radius)
    darker = shadowed[0].astype(int).sum(axis=-1) < lit[0].astype(int).sum(axis=-1)
    assert (shadowed <= lit).all() and expected.mean() > 0.02
    assert (darker[ground] == expected[ground]).mean() > 0.97


def test_ambient_range_sets_how_dark_faces_turned_from_the_light_are() -> None:
    scene, centre, radius, c2w, K = _ball_on_ground(ambient=(0.25, 0.25))
    assert (scene.ambient, scene.diffuse) == (0.25, 0.75)
    shaded, depth = render_views(scene, K, c2w, 64, 64)
    flat, _ = render_views(replace(scene, ambient=1.0, diffuse=0.0), K, c2w, 64, 64)
    points = _world_points(depth[0], K, c2w[0])
    on_ball = (depth[0] > 0) & (np.abs(np.linalg.norm(points - centre, axis=-1) - radius) < 1e-3)
    cosine = ((points - centre) / radius) @ scene.light_direction
    bright = on_ball & (flat[0].min(axis=-1) > 60)
    ratio = shaded[0][bright].astype(float) / flat[0][bright]
    expected = 0.25 + 0.75 * np.clip(cosine[bright], 0, None)
    assert bright.sum() > 50 and (cosine[bright] < 0).any() and (cosine[bright] > 0.5).any()
    np.testing.assert_allclose(ratio, expected[:, None] * np.ones(3), atol=0.03)


def test_varied_views_give_room_orbits_their_own_heights_and_aim_points() -> None:
    room = build_scene(4, SceneConfig(kind="room"))
    for trajectory in ("orbit", "arc"):
        _, plain = sample_trajectory(room, np.random.default_rng(2), 8, trajectory)
        kept, varied = sample_trajectory(room, np.random.default_rng(2), 8, trajectory, varied_share=1.0)
        assert np.ptp(plain[:, 2, 3]) == 0.0  # an orbit keeps one height
        assert np.ptp(varied[:, 2, 3]) > 0.3 and np.all((varied[:, 2, 3] >= 1.0) & (varied[:, 2, 3] <= 2.0))
        # Own aim points at own heights: the views' pitches (degrees) spread far more.
        def pitch_spread(c2w):
            return np.std(np.degrees(np.arcsin(c2w[:, 2, 2])))  # z of each optical axis
        assert pitch_spread(varied) > 2 * pitch_spread(plain)
        assert kept.is_free(varied[:, :3, 3], CAMERA_MARGIN).all()
    # Other trajectories and object scenes draw nothing for it: the same cameras as without the lever.
    objects = build_scene(4, SceneConfig(kind="orbit"))
    for scene, trajectory in ((room, "walk"), (room, "random"), (objects, "orbit")):
        _, plain = sample_trajectory(scene, np.random.default_rng(2), 8, trajectory)
        _, varied = sample_trajectory(scene, np.random.default_rng(2), 8, trajectory, varied_share=1.0)
        np.testing.assert_array_equal(plain, varied)
    # A share of the scenes: about that share of room orbits are varied.
    heights = [np.ptp(sample_trajectory(room, np.random.default_rng(seed), 4, "orbit", varied_share=0.5)[1][:, 2, 3])
               for seed in range(40)]  # fmt: skip
    assert 10 <= sum(h > 0 for h in heights) <= 30
    with pytest.raises(ValueError, match="varied_views"):
        SceneConfig(varied_views=1.5)
