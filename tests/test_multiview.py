"""Training data: exact intrinsics under crop / resize, colour jitter, the dataset, collate and sampler."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fast3r.data.multiview import MultiViewBatchSampler, MultiViewDataset, SampleKey, collate_views
from fast3r.data.synthetic import WIDE_BASELINE, SyntheticSceneSource, build_scene, look_at, render_views
from fast3r.data.synthetic.scene import SceneConfig
from fast3r.data.transforms import TRAINING_AUGMENT, AugmentConfig, colour_jitter, crop_resize
from fast3r.data.views import View


def ramp_view(height: int = 200, width: int = 250) -> View:
    """A view whose float 'image' holds each pixel's own (u, v), on a plane at depth 2."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    K = np.array([[180.0, 0, 131.3], [0, 170.0, 96.8], [0, 0, 1]])
    c2w = np.eye(4)
    c2w[:3, :3] = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    c2w[:3, 3] = [0.3, -0.2, 1.0]
    return View(np.stack([u, v, np.zeros_like(u)], -1), K, c2w, np.full((height, width), 2.0, np.float32), "ramp")


@pytest.mark.parametrize(
    "height, width, zoom, offset",
    [(50, 60, 1.0, (0, 0)), (48, 64, 1.3, (0.5, -0.7)), (120, 100, 1.0, (0, 0)), (300, 320, 1.0, (0, 0)), (64, 64, 2.0, (1, 1))],
)
def test_crop_resize_keeps_intrinsics_exact(height: int, width: int, zoom: float, offset: tuple[float, float]) -> None:
    source = ramp_view()
    out = crop_resize(source, height, width, zoom, offset)
    assert out.image.shape == (height, width, 3) and out.depth.shape == (height, width)
    # Each output pixel's world point must project, through the source camera, to exactly the source
    # position its colour was resampled from (stored in the ramp image), away from the border.
    points = out.points_world()
    w2c = np.linalg.inv(source.c2w)
    camera = points @ w2c[:3, :3].T + w2c[:3, 3]
    projected = camera[..., :2] / camera[..., 2:] * np.diag(source.K)[:2] + source.K[:2, 2]
    inner = (slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(projected[inner], out.image[inner][..., :2], atol=1e-3)
    assert out.valid.all()
    if offset == (0, 0):
        assert (out.K[0, 2], out.K[1, 2]) == (width / 2, height / 2)
    assert out.K[0, 0] / out.K[1, 1] == pytest.approx(source.K[0, 0] / source.K[1, 1])


def test_cropped_depth_equals_rendering_at_the_new_intrinsics() -> None:
    scene = build_scene(7, SceneConfig(kind="orbit"))
    K = np.array([[140.0, 0, 125], [0, 140.0, 95], [0, 0, 1]])
    c2w = look_at(np.array([3.0, 0.5, 2.5]), np.array([0.0, 0.0, 0.3]))
    image, depth = render_views(scene, K, c2w[None], 190, 250)
    source = View(image[0], K, c2w, depth[0])
    # Zoom to a scale of exactly 1/3: output pixel (u, v) then sits on source pixel (5 + 3u, 5 + 3v).
    smallest_scale = crop_resize(source, 60, 80).K[0, 0] / K[0, 0]
    out = crop_resize(source, 60, 80, zoom=(1 / 3) / smallest_scale)
    assert out.K[0, 0] == pytest.approx(K[0, 0] / 3) and (out.K[0, 2], out.K[1, 2]) == (40.0, 30.0)
    _, direct_depth = render_views(scene, out.K, c2w[None], 60, 80)
    np.testing.assert_array_equal(out.valid, direct_depth[0] > 0)
    np.testing.assert_allclose(out.depth, direct_depth[0], rtol=1e-5)
    np.testing.assert_allclose(out.depth, depth[0][5::3, 5::3][:60, :80])


def test_crop_resize_refuses_bad_requests() -> None:
    view = ramp_view(20, 30)
    with pytest.raises(ValueError, match="zoom must be >= 1"):
        crop_resize(view, 10, 10, zoom=0.5)
    view.K[0, 2] = -3.0
    with pytest.raises(ValueError, match="principal point .* outside the image"):
        crop_resize(view, 10, 10)


def test_colour_jitter() -> None:
    image = np.random.default_rng(0).random((8, 9, 3)).astype(np.float32)
    np.testing.assert_allclose(colour_jitter(image, np.random.default_rng(1), AugmentConfig()), image, atol=1e-6)
    jittered = colour_jitter(image, np.random.default_rng(1), TRAINING_AUGMENT)
    assert jittered.dtype == np.float32 and 0 <= jittered.min() and jittered.max() <= 1
    assert np.abs(jittered - image).mean() > 0.01
    np.testing.assert_array_equal(jittered, colour_jitter(image, np.random.default_rng(1), TRAINING_AUGMENT))
    gray = np.full((4, 4, 3), 0.4, np.float32)
    hue_only = AugmentConfig(hue=0.5)
    np.testing.assert_allclose(colour_jitter(gray, np.random.default_rng(2), hue_only), gray, atol=1e-5)  # hue keeps grays


@functools.lru_cache(maxsize=None)
def _cached_scene(index: int) -> tuple[View, ...]:
    # the trajectories named, so that adding one to the generator does not change these scenes
    return tuple(SyntheticSceneSource(num_views=5, height=48, width=64, trajectories=WIDE_BASELINE)(index))


def cached_source(index: int) -> list[View]:
    return list(_cached_scene(index))


def test_sample_fields_are_consistent() -> None:
    dataset = MultiViewDataset(cached_source, num_scenes=4, num_views=3, resolution=(32, 40))
    views = dataset[1]
    assert len(views) == 3
    for view in views:
        assert view["img"].shape == (3, 32, 40) and view["img"].dtype == torch.float32
        assert -1 <= view["img"].min() and view["img"].max() <= 1
        assert view["pts3d"].shape == (32, 40, 3) and view["pts3d"].dtype == torch.float32
        assert view["valid"].dtype == torch.bool and view["depth"].shape == (32, 40)
        assert view["camera_pose"].shape == (4, 4) and view["K"].shape == (3, 3)
        assert view["K"][0, 2] == 20 and view["K"][1, 2] == 16  # principal point centred
        torch.testing.assert_close(view["valid"], view["depth"] > 0)
        # pts3d is depth unprojected with K and moved to the world by camera_pose.
        K, pose = view["K"].double(), view["camera_pose"].double()
        v, u = torch.meshgrid(torch.arange(32.0), torch.arange(40.0), indexing="ij")
        z = view["depth"].double()
        camera = torch.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)
        world = camera @ pose[:3, :3].T + pose[:3, 3]
        torch.testing.assert_close(view["pts3d"][view["valid"]].double(), world[view["valid"]], atol=1e-4, rtol=1e-4)
    # The same surface point seen from two sampled views: depth in view 1 agrees with view 0's points,
    # except where view 1 sees a nearer surface (occlusion). Seeing a surface beyond one of view 0's
    # points would mean looking through it: only pixel rounding at depth edges may do that.
    points = views[0]["pts3d"][views[0]["valid"]].double()
    w2c = torch.linalg.inv(views[1]["camera_pose"].double())
    camera = points @ w2c[:3, :3].T + w2c[:3, 3]
    uv = (camera[:, :2] / camera[:, 2:] * torch.diagonal(views[1]["K"].double())[:2] + views[1]["K"][:2, 2]).round().long()
    inside = (camera[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 40) & (uv[:, 1] >= 0) & (uv[:, 1] < 32)
    depth_there = views[1]["depth"][uv[inside, 1], uv[inside, 0]].double()
    agree = (depth_there - camera[inside, 2]).abs() < 0.05 * camera[inside, 2]
    see_through = depth_there > 1.05 * camera[inside, 2]
    assert inside.sum() > 100 and agree.float().mean() > 0.5 and see_through.float().mean() < 0.15


def test_samples_are_deterministic_per_seed_epoch_index() -> None:
    dataset = MultiViewDataset(cached_source, num_scenes=4, num_views=3, resolution=(24, 24), augment=TRAINING_AUGMENT, seed=5)
    first, again = dataset[SampleKey(2, epoch=1)], dataset[SampleKey(2, epoch=1)]
    for a, b in zip(first, again):
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    other_epoch = dataset[SampleKey(2, epoch=2)]
    assert not all(torch.equal(a["img"], b["img"]) for a, b in zip(first, other_epoch))
    other_seed = MultiViewDataset(cached_source, 4, 3, (24, 24), TRAINING_AUGMENT, seed=6)[SampleKey(2, epoch=1)]
    assert not all(torch.equal(a["img"], b["img"]) for a, b in zip(first, other_seed))


def test_views_without_depth_and_too_few_views() -> None:
    blank = View(np.zeros((20, 30, 3), np.uint8), np.array([[20.0, 0, 15], [0, 20.0, 10], [0, 0, 1]]), np.eye(4))
    (sample,) = MultiViewDataset(lambda index: [blank], num_scenes=1, num_views=1, resolution=(10, 10))[0]
    assert not sample["valid"].any() and not sample["pts3d"].any() and not sample["depth"].any()
    with pytest.raises(ValueError, match="scene 0 has 1 views, fewer than the 2 requested"):
        MultiViewDataset(lambda index: [blank], num_scenes=1, num_views=2)[0]


def test_collate_stacks_per_view_and_refuses_mixed_batches() -> None:
    dataset = MultiViewDataset(cached_source, num_scenes=4, num_views=2, resolution=(16, 24))
    views = collate_views([dataset[0], dataset[1], dataset[2]])
    assert len(views) == 2
    assert views[1]["img"].shape == (3, 3, 16, 24) and views[1]["pts3d"].shape == (3, 16, 24, 3)
    assert views[0]["camera_pose"].shape == (3, 4, 4) and views[0]["valid"].shape == (3, 16, 24)
    torch.testing.assert_close(views[1]["img"][2], dataset[2][1]["img"])
    with pytest.raises(ValueError, match="same number of views"):
        collate_views([dataset[0], dataset[SampleKey(1, num_views=3)]])
    with pytest.raises(ValueError, match="same resolution"):
        collate_views([dataset[0], dataset[SampleKey(1, resolution=(8, 8))]])


def test_sampler_varies_views_and_resolution_per_batch() -> None:
    resolutions, num_views = [(16, 16), (12, 20)], [2, 3, 4]
    sampler = MultiViewBatchSampler(40, batch_size=3, resolutions=resolutions, num_views=num_views, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 14
    assert sorted(key.index for batch in batches for key in batch) == list(range(40))
    for batch in batches:
        assert len({(key.num_views, key.resolution, key.epoch) for key in batch}) == 1
    assert {batch[0].resolution for batch in batches} == set(resolutions)
    assert {batch[0].num_views for batch in batches} == set(num_views)
    assert batches == list(sampler)
    sampler.set_epoch(1)
    assert [key.index for key in next(iter(sampler))] != [key.index for key in batches[0]]
    ranks = [list(MultiViewBatchSampler(40, 3, resolutions, num_views, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert [len(batches) for batches in ranks] == [4, 4, 4]
    assert ranks[1][0] == batches[1] and ranks[2][1] == batches[5]

    dataset = MultiViewDataset(cached_source, num_scenes=4, num_views=2)
    loader_sampler = MultiViewBatchSampler(4, batch_size=2, resolutions=resolutions, num_views=[2, 3], seed=3)
    shapes = set()
    for epoch in range(3):
        loader_sampler.set_epoch(epoch)
        for views in DataLoader(dataset, batch_sampler=loader_sampler, collate_fn=collate_views):
            shapes.add((len(views), tuple(views[0]["img"].shape)))
    assert len(shapes) > 1 and all(shape[1][0] == 2 and shape[1][1] == 3 for shape in shapes)
