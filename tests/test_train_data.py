"""Training batches: deterministic per step, different per rank, and pool batches geometrically exact."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fast3r.data.synthetic import SceneConfig, SyntheticSceneSource
from fast3r.data.transforms import apply_colour_jitter, crop_resize, jitter_factors
from fast3r.train.data import DataConfig, _PoolBatches, plan_step, pool_size, training_batches


def _model_range(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1


def _identify(image: torch.Tensor, scenes: dict) -> tuple[int, int]:
    """(scene index, view number) of the one rendered view in `scenes` ({index: views}) equal to `image`."""
    matches = [
        (index, number)
        for index, views in scenes.items()
        for number, view in enumerate(views)
        if torch.equal(image, _model_range(view.image))
    ]
    assert len(matches) == 1, "each pool sample is one rendered view of a held scene"
    return matches[0]


def _first(config, seed=0, start=0, total=2, rank=0, world_size=1):
    return next(iter(training_batches(config, seed, start, total, rank, world_size, torch.device("cpu"))))


def test_image_id_modes():
    pool = plan_step(DataConfig(num_views=[8], image_id_pool=1000), seed=0, step=5)
    assert pool.image_ids[0] == 0.0
    assert len(set(pool.image_ids)) == 8 and all(1 <= i <= 999 for i in pool.image_ids[1:])
    assert pool == plan_step(DataConfig(num_views=[8], image_id_pool=1000), seed=0, step=5)
    assert pool != plan_step(DataConfig(num_views=[8], image_id_pool=1000), seed=0, step=6)
    sequential = plan_step(DataConfig(num_views=[4], image_ids="sequential"), seed=0, step=5)
    assert sequential.image_ids == (0.0, 1.0, 2.0, 3.0)


def test_views_and_resolution_drawn_per_step():
    config = DataConfig(num_views=[2, 3, 4], resolutions=[(32, 32), (32, 48)])
    plans = {(p.num_views, p.resolution) for p in (plan_step(config, 0, step) for step in range(40))}
    assert {n for n, _ in plans} == {2, 3, 4} and {r for _, r in plans} == {(32, 32), (32, 48)}


def test_fresh_batches_layout_and_ranks_see_different_scenes():
    config = DataConfig(num_views=[3], resolutions=[(32, 48)], batch_size=2, num_workers=0)
    rank0, rank1 = _first(config, rank=0, world_size=2), _first(config, rank=1, world_size=2)
    assert len(rank0.views) == 3
    view = rank0.views[0]
    assert view["img"].shape == (2, 3, 32, 48) and view["img"].min() >= -1 and view["img"].max() <= 1
    assert view["pts3d"].shape == (2, 32, 48, 3) and view["valid"].dtype == torch.bool
    assert view["camera_pose"].shape == (2, 4, 4)
    assert rank0.image_ids == rank1.image_ids  # the plan is shared
    assert not torch.equal(rank0.views[0]["img"], rank1.views[0]["img"])  # the scenes are not
    again = _first(config, rank=1, world_size=2)
    assert torch.equal(again.views[0]["img"], rank1.views[0]["img"])
    resumed = _first(config, start=1, total=2)
    straight = list(training_batches(config, 0, 0, 2, 0, 1, torch.device("cpu")))[1]
    assert resumed.step == 1 and torch.equal(resumed.views[1]["pts3d"], straight.views[1]["pts3d"])


def test_pool_batches_match_the_rendered_views():
    config = DataConfig(
        mode="pool", num_views=[3], resolutions=[(32, 32)], batch_size=2, num_workers=0,
        pool_views=4, pool_initial=2, pool_scenes_per_step=0.5, pool_capacity=2, scene_kinds=["room"],
    )
    assert [pool_size(config, step) for step in range(4)] == [2, 2, 3, 3]
    batch = _first(config, start=3, total=4)  # the ring holds scenes 1 and 2 at step 3
    source = SyntheticSceneSource(4, 32, 32, (SceneConfig(kind="room"),), tuple(config.trajectories))
    scenes = {index: source(index) for index in (1, 2)}
    for position, view in enumerate(batch.views):
        for item in range(2):
            index, number = _identify(view["img"][item], scenes)
            truth = scenes[index][number]
            np.testing.assert_allclose(view["pts3d"][item].numpy(), truth.points_world(), atol=2e-4)
            assert torch.equal(view["valid"][item], torch.from_numpy(truth.valid))
            np.testing.assert_allclose(view["camera_pose"][item].numpy(), truth.c2w, atol=1e-6)


def test_pool_batches_crop_each_drawn_resolution_as_fresh_mode_does():
    config = DataConfig(
        mode="pool", num_views=[2], resolutions=[(32, 32), (32, 16), (16, 32)], batch_size=2, num_workers=0,
        pool_views=4, pool_initial=2, pool_scenes_per_step=0.0, pool_capacity=2, scene_kinds=["room"],
    )
    source = SyntheticSceneSource(4, 32, 32, (SceneConfig(kind="room"),), tuple(config.trajectories))
    rendered = {index: source(index) for index in (0, 1)}
    crops = {size: {i: [crop_resize(v, *size) for v in views] for i, views in rendered.items()} for size in config.resolutions}
    drawn = set()
    for batch in training_batches(config, 0, 0, 12, 0, 1, torch.device("cpu")):
        size = plan_step(config, 0, batch.step).resolution
        drawn.add(size)
        for view in batch.views:
            assert view["img"].shape == (2, 3, *size) and view["pts3d"].shape == (2, *size, 3)
            for item in range(2):
                index, number = _identify(view["img"][item], crops[size])
                truth = crops[size][index][number]
                np.testing.assert_allclose(view["K"][item].numpy(), truth.K, rtol=1e-6)
                np.testing.assert_allclose(view["pts3d"][item].numpy(), truth.points_world(), atol=2e-4)
                assert torch.equal(view["valid"][item], torch.from_numpy(truth.valid))
    assert drawn == set(config.resolutions)


def test_single_resolution_pool_batches_are_those_of_the_one_resolution_pool():
    """(scene, view) of every sample, as drawn before pool mode took several resolutions."""
    config = DataConfig(
        mode="pool", num_views=[2, 3], resolutions=[(32, 32)], batch_size=2, num_workers=0,
        pool_views=4, pool_initial=2, pool_scenes_per_step=1.0, pool_capacity=3, scene_kinds=["room"],
    )
    source = SyntheticSceneSource(4, 32, 32, (SceneConfig(kind="room"),), tuple(config.trajectories))
    scenes = {index: source(index) for index in range(4)}
    drawn = [
        [tuple(_identify(view["img"][item], scenes) for view in batch.views) for item in range(2)]
        for batch in training_batches(config, 7, 0, 4, 0, 1, torch.device("cpu"))
    ]
    assert drawn == [
        [((1, 0), (1, 1), (1, 2)), ((0, 0), (0, 1), (0, 3))],
        [((1, 0), (1, 1), (1, 3)), ((0, 1), (0, 2), (0, 3))],
        [((2, 1), (2, 2)), ((1, 0), (1, 1))],
        [((3, 0), (3, 1), (3, 3)), ((2, 1), (2, 2), (2, 3))],
    ]


def test_a_run_from_a_slot_renders_only_the_newest_pool_scenes_again():
    """Continuing from a slot re-renders pool_slot_restart scenes, not the whole pool (minutes at scale),
    draws only from those until new ones arrive; an exact resume renders and draws from the whole pool."""
    config = DataConfig(
        mode="pool", num_views=[2], resolutions=[(32, 32)], batch_size=4, num_workers=0, pool_views=4,
        pool_initial=2, pool_scenes_per_step=1.0, pool_capacity=8, pool_slot_restart=2, scene_kinds=["room"],
    )
    source = SyntheticSceneSource(4, 32, 32, (SceneConfig(kind="room"),), tuple(config.trajectories))
    scenes = {index: source(index) for index in range(10)}

    def drawn_scenes(from_slot: bool) -> tuple[list[set[int]], int]:
        batches = training_batches(config, 0, 5, 8, 0, 1, torch.device("cpu"), from_slot=from_slot)
        drawn = [{_identify(view["img"][item], scenes)[0] for view in batch.views for item in range(4)} for batch in batches]
        return drawn, batches.ring.count - batches.ring.first

    exact, rendered = drawn_scenes(from_slot=False)
    assert rendered == pool_size(config, 7) == 9  # scenes 0..8, all held (capacity 8 keeps 1..8)
    assert set().union(*exact) - set(range(9)) == set()
    continued, rendered = drawn_scenes(from_slot=True)
    assert rendered == 4  # scenes 5 and 6 rendered before step 5, then 7 and 8 as steps 6 and 7 begin
    assert continued[0] <= {5, 6} and continued[1] <= {5, 6, 7} and continued[2] <= {5, 6, 7, 8}
    assert len(set().union(*continued)) >= 3
    with pytest.raises(ValueError, match="data.pool_slot_restart"):
        DataConfig(mode="pool", pool_slot_restart=-1).validate()


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="data.resolutions"):
        DataConfig(resolutions=[(30, 32)]).validate()
    with pytest.raises(ValueError, match="data.resolutions"):
        DataConfig(mode="pool", resolutions=[(32, 32), (32, 24)]).validate()
    with pytest.raises(ValueError, match="data.mode='pool' crops data.resolutions .* 64x64 .* needs height 64 or width 64"):
        DataConfig(mode="pool", resolutions=[(32, 32), (64, 64)]).validate()
    DataConfig(mode="pool", resolutions=[(64, 64), (64, 32), (48, 64)]).validate()
    with pytest.raises(ValueError, match="num_workers"):
        DataConfig(render_device="cuda", num_workers=2).validate()
    with pytest.raises(ValueError, match="colmap"):
        DataConfig(source="co3d:/data").validate()


def test_curriculum_grows_views_and_baseline_window_then_leaves_the_plan_alone():
    config = DataConfig(mode="pool", num_views=[8], pool_views=16, curriculum_steps=100)
    start, middle, end = (plan_step(config, 0, step) for step in (0, 50, 100))
    assert (start.num_views, start.view_window) == (2, 2)
    assert (middle.num_views, middle.view_window) == (5, 5 + round(0.5 * 11))
    assert (end.num_views, end.view_window) == (8, 16) and len(end.image_ids) == 8
    assert plan_step(config, 0, 107) == plan_step(DataConfig(mode="pool", num_views=[8], pool_views=16), 0, 107)
    rng = np.random.default_rng(0)
    for plan in (start, middle):
        chosen = np.stack([_PoolBatches._choose_views(SimpleNamespace(config=config), rng, plan) for _ in range(50)])
        assert (np.diff(chosen, axis=1) > 0).all() and (chosen[:, -1] - chosen[:, 0] < plan.view_window).all()
        assert chosen.min() >= 0 and chosen.max() <= 15 and chosen.shape[1] == plan.num_views
    with pytest.raises(ValueError, match="curriculum_steps"):
        DataConfig(curriculum_steps=-1).validate()


def test_fov_range_reaches_the_rendered_cameras():
    config = DataConfig(num_views=[2], resolutions=[(32, 48)], batch_size=1, num_workers=0, fov_deg=(30.0, 30.0))
    view = _first(config).views[0]
    assert float(view["K"][0, 0, 0]) == pytest.approx(24 / np.tan(np.radians(15)), rel=1e-5)
    with pytest.raises(ValueError, match="fov_deg"):
        DataConfig(fov_deg=(0.0, 90.0)).validate()


def test_scene_levers_reach_the_rendered_scenes_and_default_to_none():
    assert DataConfig().scene_configs() == (SceneConfig(kind="room"), SceneConfig(kind="orbit"))
    config = DataConfig(num_views=[2], resolutions=[(32, 32)], batch_size=1, num_workers=0, scene_kinds=["orbit"],
                        clutter=(3, 5), natural_textures=0.5, ambient=(0.1, 0.2), shadows=True, varied_views=0.25)
    (scene,) = config.scene_configs()
    assert (scene.clutter, scene.natural_textures, scene.ambient, scene.shadows, scene.varied_views) == ((3, 5), 0.5, (0.1, 0.2), True, 0.25)
    plain = _first(DataConfig(num_views=[2], resolutions=[(32, 32)], batch_size=1, num_workers=0, scene_kinds=["orbit"]))
    assert not torch.equal(_first(config).views[0]["img"], plain.views[0]["img"])
    for key, value in (("clutter", (5, 2)), ("natural_textures", 1.5), ("ambient", (0.5, 0.2))):
        with pytest.raises(ValueError, match=f"data.{key}"):
            DataConfig(**{key: value}).validate()


def test_a_pool_share_rendered_by_the_training_process_gives_the_same_batches(monkeypatch):
    """pool_device_share: every other scene (at 0.5) is rendered in the training process, not by the
    workers; the scenes, and so the batches, are those of an all-worker pool."""
    from fast3r.train.pool import PoolScenes

    from_workers: list[int] = []
    getitem = PoolScenes.__getitem__
    monkeypatch.setattr(PoolScenes, "__getitem__", lambda scenes, index: (from_workers.append(index), getitem(scenes, index))[1])

    def batches(share: float) -> list:
        config = DataConfig(
            mode="pool", num_views=[2], resolutions=[(32, 32)], batch_size=2, num_workers=0, pool_views=4,
            pool_initial=2, pool_scenes_per_step=1.0, pool_capacity=4, scene_kinds=["room"], pool_device_share=share,
        )
        from_workers.clear()
        return list(training_batches(config, 5, 0, 6, 0, 1, torch.device("cpu")))

    everything = batches(0.0)
    assert from_workers == list(range(7))  # pool_size(5) = 7 scenes, all from the workers
    shared = batches(0.5)
    assert from_workers == [0, 2, 4, 6]  # 1, 3 and 5 rendered by the training process
    for ours, theirs in zip(shared, everything, strict=True):
        for mine, other in zip(ours.views, theirs.views, strict=True):
            assert torch.equal(mine["img"], other["img"]) and torch.equal(mine["pts3d"], other["pts3d"])
    with pytest.raises(ValueError, match="data.pool_device_share"):
        DataConfig(mode="pool", pool_device_share=1.5).validate()


def test_pool_augment_jitters_each_views_colours_and_keeps_the_draws(monkeypatch):
    """data.augment in pool mode: each view's colours jittered on the training device by its own factors,
    drawn after the scenes and views, which stay those of the same run without it."""
    import fast3r.train.data as train_data

    config = DataConfig(
        mode="pool", num_views=[3], resolutions=[(32, 32)], batch_size=2, num_workers=0, pool_views=4,
        pool_initial=2, pool_scenes_per_step=1.0, pool_capacity=4, scene_kinds=["room"],
    )
    plain = list(training_batches(config, 5, 0, 3, 0, 1, torch.device("cpu")))
    config.augment = True
    drawn = []
    monkeypatch.setattr(train_data, "jitter_factors", lambda rng, augment: drawn.append(jitter_factors(rng, augment)) or drawn[-1])
    jittered = list(training_batches(config, 5, 0, 3, 0, 1, torch.device("cpu")))
    assert len(drawn) == 3 * 2 * 3  # steps x samples x views
    again = list(training_batches(config, 5, 0, 3, 0, 1, torch.device("cpu")))
    for step, (ours, theirs, repeat) in enumerate(zip(jittered, plain, again, strict=True)):
        for position, (mine, other, same) in enumerate(zip(ours.views, theirs.views, repeat.views, strict=True)):
            assert torch.equal(mine["pts3d"], other["pts3d"]) and torch.equal(mine["camera_pose"], other["camera_pose"])
            assert torch.equal(mine["img"], same["img"])  # deterministic per step
            for sample in range(2):
                factors = torch.from_numpy(drawn[(step * 2 + sample) * 3 + position])
                unjittered = (other["img"][sample].permute(1, 2, 0) + 1.0) / 2.0
                expected = apply_colour_jitter(unjittered, factors).permute(2, 0, 1) * 2.0 - 1.0
                torch.testing.assert_close(mine["img"][sample], expected, atol=2e-6, rtol=0)
                assert (mine["img"][sample] - other["img"][sample]).abs().mean() > 0.01
    assert len({tuple(factors) for factors in drawn[:18]}) == 18  # each view its own factors
