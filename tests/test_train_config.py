"""Training configs: TOML files, overrides, clear errors; the shipped configs; the CLI parser; curves."""
import argparse
import importlib.util
from pathlib import Path

import pytest
import torch

from fast3r.model import Fast3R, Fast3RConfig
from fast3r.train.activation_checkpointing import enable_activation_checkpointing
from fast3r.train.command import add_curves_parser, add_train_parser
from fast3r.train.config import TrainConfigError, load_train_config
from fast3r.train.data import pool_size

CONFIGS = sorted(Path("configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_train_config(path)
    assert config.steps >= 1


def test_demo_configs_differ_only_in_image_indices():
    pool = load_train_config("configs/small_synthetic_224.toml").to_dict()
    sequential = load_train_config("configs/small_synthetic_224_sequential.toml").to_dict()
    assert pool["data"].pop("image_ids") == "pool" and sequential["data"].pop("image_ids") == "sequential"
    assert pool["heldout"].pop("image_ids") == "spread" and sequential["heldout"].pop("image_ids") == "sequential"
    pool.pop("out_dir"), sequential.pop("out_dir")
    assert pool == sequential
    assert pool["model"]["preset"] == "small" and pool["data"]["resolutions"] == [(224, 224)]


def test_wide_config_crops_three_aspect_ratios_from_its_pool():
    data = load_train_config("configs/small_wide_224.toml").data
    assert data.mode == "pool" and data.resolutions == [(224, 224), (224, 160), (160, 224)]
    assert data.render_size() == (224, 224)
    with pytest.raises(TrainConfigError, match="data.resolutions"):
        load_train_config("configs/small_wide_224.toml", ["data.resolutions=[[224, 224], [112, 112]]"])


def _stage_configs(base: str, stage: str) -> tuple[dict, dict]:
    """The config dicts of configs/BASE.toml and configs/STAGE.toml, a stage and the recipe it builds on."""
    return tuple(load_train_config(f"configs/{name}.toml").to_dict() for name in (base, stage))


def _assert_rest_is_the_recipe(base: dict, stage: dict) -> None:
    """After what a test popped, the stage equals its base except for its own schedule, start and check."""
    for config in (base, stage):
        for key in ("steps", "seed", "out_dir", "heldout"):
            config.pop(key)
        config["data"].pop("curriculum_steps"), config["model"].pop("init_weights", None)
        config["optim"].pop("warmup_fraction")
    assert stage == base


GPUS_AT_MOST = 2  # a chain's slot runs on 1 or 2 GPUs, and each rank's pool renders scenes of its own


def _scenes(config) -> range:
    """Scene numbers a shipped synthetic training config renders, at most (a pool's size at the last step on
    each of GPUS_AT_MOST ranks, else a scene per sample)."""
    data = config.data
    count = GPUS_AT_MOST * pool_size(data, config.steps - 1) if data.mode == "pool" else config.steps * data.batch_size
    return range(data.seed_base, data.seed_base + count)


def _assert_continues_the_bundled_model_on_new_scenes(base: dict, stage: dict, name: str) -> None:
    """configs/NAME.toml, `stage`, starts from the bundled model of its time with its base's schedule and
    held-out check, on scenes no other shipped config renders, below fast3r.eval's synthetic set at 10M, and
    with a seed no other config uses. Pops `seed_base`."""
    base["data"].pop("seed_base"), stage["data"].pop("seed_base")
    assert stage["model"]["init_weights"] == "fast3r/weights/fast3r-small-224"
    assert stage["heldout"] == base["heldout"] and stage["steps"] == base["steps"]
    config = load_train_config(f"configs/{name}.toml")
    new_scenes = _scenes(config)
    assert new_scenes.stop <= 10_000_000
    for path in CONFIGS:
        if path.stem == name:
            continue
        other = load_train_config(path)
        assert other.seed != config.seed, f"{name} draws with the seed of {path.name}"
        if other.data.source == "synthetic":
            scenes = _scenes(other)
            assert new_scenes.stop <= scenes.start or scenes.stop <= new_scenes.start, f"{name} renders scenes {path.name} renders"


def test_outward_stage_is_the_wide_recipe_with_outward_captures_and_random_held_out():
    wide, outward = _stage_configs("small_wide_224", "small_outward_224")
    trained = outward["data"].pop("trajectories")
    assert trained == wide["data"].pop("trajectories") + ["outward"] and "random" not in trained
    assert "random" in outward["heldout"]["trajectories"] and "outward" in outward["heldout"]["trajectories"]
    assert outward["model"].pop("init_weights") == "fast3r/weights/fast3r-small-224"
    assert outward["optim"].pop("lr") < wide["optim"].pop("lr")
    _assert_rest_is_the_recipe(wide, outward)


def test_varied_stage_is_the_wide_recipe_with_varied_room_views_and_random_held_out():
    wide, varied = _stage_configs("small_wide_224", "small_varied_224")
    assert varied["data"].pop("varied_views") == 0.5 and wide["data"].pop("varied_views") == 0.0
    assert "random" not in varied["data"]["trajectories"] and "random" in varied["heldout"]["trajectories"]
    assert varied["model"].pop("init_weights") == "fast3r/weights/fast3r-small-224"
    assert varied["optim"].pop("lr") < wide["optim"].pop("lr")
    _assert_rest_is_the_recipe(wide, varied)


def test_random_stage_is_the_varied_recipe_with_random_trained_and_outward_held_out():
    varied, stage = _stage_configs("small_varied_224", "small_random_224")
    assert stage["data"].pop("trajectories") == varied["data"].pop("trajectories") + ["random"]
    assert "outward" in stage["heldout"]["trajectories"] and "random" in stage["heldout"]["trajectories"]
    assert stage["model"]["init_weights"] == "fast3r/weights/fast3r-small-224" and stage["steps"] == 2400
    _assert_rest_is_the_recipe(varied, stage)


def test_long_random_stage_is_the_random_recipe_on_a_longer_schedule_from_the_bundled_model():
    short, long = _stage_configs("small_random_224", "small_random_long_224")
    assert long["steps"] == 8000 > short["steps"] and long["model"]["init_weights"] == "fast3r/weights/fast3r-small-224"
    assert long["heldout"] == short["heldout"]
    _assert_rest_is_the_recipe(short, long)


def test_rooms_stage_draws_random_rooms_more_often_on_new_scenes_at_a_lower_lr():
    long, rooms = _stage_configs("small_random_long_224", "small_random_rooms_224")
    assert rooms["data"].pop("scene_kinds") == ["room", "room", "orbit"] and long["data"].pop("scene_kinds") == ["room", "orbit"]
    trained = rooms["data"].pop("trajectories")
    assert sorted(set(trained)) == sorted(long["data"].pop("trajectories")) and trained.count("random") == 2
    assert "outward" not in trained and rooms["heldout"] == long["heldout"]
    new_scenes = rooms["data"].pop("seed_base")  # past any scene index the earlier stages reached, below the eval sets' 10M
    assert long["data"].pop("seed_base") + 20000 * long["data"]["batch_size"] < new_scenes < 10_000_000
    assert rooms["optim"].pop("lr") < long["optim"].pop("lr")
    _assert_rest_is_the_recipe(long, rooms)


def test_fresh_rooms_stage_is_the_rooms_recipe_on_new_scenes_only():
    rooms, fresh = _stage_configs("small_random_rooms_224", "small_fresh_rooms_224")
    _assert_continues_the_bundled_model_on_new_scenes(rooms, fresh, "small_fresh_rooms_224")  # then: the rooms stage's end
    assert fresh["optim"]["warmup_fraction"] == rooms["optim"]["warmup_fraction"]
    _assert_rest_is_the_recipe(rooms, fresh)


def test_wide_baseline_stage_draws_orbit_and_random_more_often_on_new_scenes():
    rooms, stage = _stage_configs("small_random_rooms_224", "small_wide_baseline_224")
    trained = stage["data"].pop("trajectories")
    assert sorted(set(trained)) == sorted(set(rooms["data"].pop("trajectories")))
    assert (trained.count("orbit"), trained.count("random"), trained.count("arc")) == (3, 4, 1)
    _assert_continues_the_bundled_model_on_new_scenes(rooms, stage, "small_wide_baseline_224")  # then: the rooms stage's end
    _assert_rest_is_the_recipe(rooms, stage)


def test_wide_random_stage_draws_random_half_the_time_on_new_scenes_for_longer():
    base, stage = _stage_configs("small_wide_baseline_224", "small_wide_random_224")
    trained = stage["data"].pop("trajectories")
    assert sorted(set(trained)) == sorted(set(base["data"].pop("trajectories")))
    assert (trained.count("random") / len(trained), trained.count("orbit"), trained.count("arc")) == (0.5, 5, 1)
    new_scenes = stage["data"].pop("seed_base")  # past the wide-baseline stage's scenes, below the eval sets' 10M
    assert base["data"].pop("seed_base") + 20000 * base["data"]["batch_size"] < new_scenes < 10_000_000
    assert stage["heldout"] == base["heldout"] and stage["steps"] > base["steps"] and stage["seed"] != base["seed"]
    assert stage["data"].pop("pool_scenes_per_step") == 0.5 and base["data"].pop("pool_scenes_per_step") == 1.0
    _assert_rest_is_the_recipe(base, stage)


def test_more_scenes_stage_is_the_wide_random_recipe_on_twice_the_new_scenes():
    base, stage = _stage_configs("small_wide_random_224", "small_more_scenes_224")
    _assert_continues_the_bundled_model_on_new_scenes(base, stage, "small_more_scenes_224")  # then: the wide random stage's end
    assert stage["data"].pop("pool_scenes_per_step") == 2 * base["data"].pop("pool_scenes_per_step")
    assert stage["data"].pop("pool_device_share") == base["data"].pop("pool_device_share") == 0.0  # as run: the workers kept up
    _assert_rest_is_the_recipe(base, stage)


def test_colour_jitter_stage_is_the_more_scenes_recipe_with_jittered_views_on_new_scenes():
    base, stage = _stage_configs("small_more_scenes_224", "small_colour_jitter_224")
    _assert_continues_the_bundled_model_on_new_scenes(base, stage, "small_colour_jitter_224")  # then: the more-scenes stage's end
    assert (stage["data"].pop("augment"), base["data"].pop("augment")) == (True, False)
    _assert_rest_is_the_recipe(base, stage)


def test_fewer_draws_stage_is_the_more_scenes_recipe_at_a_quarter_more_new_scenes():
    base, stage = _stage_configs("small_more_scenes_224", "small_fewer_draws_224")
    _assert_continues_the_bundled_model_on_new_scenes(base, stage, "small_fewer_draws_224")  # then: the more-scenes stage's end
    assert stage["data"].pop("pool_scenes_per_step") == 1.25 * base["data"].pop("pool_scenes_per_step")
    assert stage["data"].pop("pool_device_share") == base["data"].pop("pool_device_share") == 0.0
    _assert_rest_is_the_recipe(base, stage)


def test_lighter_scenes_stage_is_the_fewer_draws_recipe_on_pool_scenes_of_twelve_views():
    base, stage = _stage_configs("small_fewer_draws_224", "small_lighter_scenes_224")
    _assert_continues_the_bundled_model_on_new_scenes(base, stage, "small_lighter_scenes_224")  # then: the fewer-draws stage's end
    assert (stage["data"].pop("pool_views"), base["data"].pop("pool_views")) == (12, 16)  # 0.75x the render time
    assert stage["data"].pop("pool_scenes_per_step") == 1.6 and base["data"].pop("pool_scenes_per_step") == 1.25
    _assert_rest_is_the_recipe(base, stage)


def _assert_orbit_moved_to_random(base: dict, stage: dict, random: tuple[int, int], orbit: tuple[int, int]) -> None:
    """Of the 16 trajectory slots, `random` and `orbit` number (stage, base) each, the rest unchanged. Pops
    `trajectories`."""
    trained, before = stage["data"].pop("trajectories"), base["data"].pop("trajectories")
    assert len(trained) == len(before) == 16 and (trained.count("random"), before.count("random")) == random
    assert (trained.count("orbit"), before.count("orbit")) == orbit
    assert sorted(t for t in trained if t not in ("orbit", "random")) == sorted(t for t in before if t not in ("orbit", "random"))


def test_more_random_stage_is_the_lighter_scenes_recipe_with_two_orbit_sixteenths_moved_to_random():
    base, stage = _stage_configs("small_lighter_scenes_224", "small_more_random_224")
    _assert_continues_the_bundled_model_on_new_scenes(base, stage, "small_more_random_224")  # then: the lighter-scenes stage's end
    _assert_orbit_moved_to_random(base, stage, random=(10, 8), orbit=(3, 5))
    _assert_rest_is_the_recipe(base, stage)


def test_more_random_again_stage_is_the_more_random_recipe_on_new_scenes_only():
    base, stage = _stage_configs("small_more_random_224", "small_more_random_again_224")
    _assert_continues_the_bundled_model_on_new_scenes(base, stage, "small_more_random_again_224")  # then: the more-random stage's end
    _assert_rest_is_the_recipe(base, stage)


def test_random_eleven_stage_is_the_more_random_recipe_with_one_orbit_sixteenth_moved_to_random():
    base, stage = _stage_configs("small_more_random_again_224", "small_random_eleven_224")
    _assert_continues_the_bundled_model_on_new_scenes(base, stage, "small_random_eleven_224")  # the more-random-again stage's end
    _assert_orbit_moved_to_random(base, stage, random=(11, 10), orbit=(2, 3))
    _assert_rest_is_the_recipe(base, stage)


def test_release_config_follows_the_recipe():
    config = load_train_config("configs/release_vitl512.toml")
    assert config.model.preset == "vitl512" and config.data.num_views == [20] and config.data.batch_size == 1
    assert config.data.resolutions == [(384, 512), (336, 512), (288, 512), (256, 512), (160, 512)]
    assert (config.optim.lr, config.optim.betas, config.optim.weight_decay) == (1e-4, (0.9, 0.95), 0.05)
    assert config.optim.warmup_fraction == 0.02 and config.optim.min_lr == 1e-6


def test_overrides_and_errors(tmp_path):
    config = load_train_config(None, ["steps=7", "data.batch_size=3", "data.num_views=4", 'model.preset="tiny"', "out_dir=runs/x"])
    assert (config.steps, config.data.batch_size, config.data.num_views, config.model.preset) == (7, 3, [4], "tiny")
    assert config.out_dir == "runs/x"  # a bare word is a string
    bad = tmp_path / "bad.toml"
    bad.write_text("[data]\nbatchsize = 4\n")
    with pytest.raises(TrainConfigError, match=r"bad\.toml.*data\.batchsize"):
        load_train_config(bad)
    bad.write_text("steps = 'many'\n")
    with pytest.raises(TrainConfigError, match="steps must be an integer"):
        load_train_config(bad)
    bad.write_text("steps = [\n")
    with pytest.raises(TrainConfigError, match="not valid TOML"):
        load_train_config(bad)
    with pytest.raises(TrainConfigError, match="distributed"):
        load_train_config(None, ['distributed="horovod"'])
    with pytest.raises(TrainConfigError, match="cannot read"):
        load_train_config(tmp_path / "missing.toml")


def test_activation_checkpointing_keeps_names_and_gradients():
    torch.manual_seed(0)
    plain = Fast3R(Fast3RConfig.tiny())
    checkpointed = Fast3R(Fast3RConfig.tiny())
    checkpointed.load_state_dict(plain.state_dict())
    assert enable_activation_checkpointing(checkpointed) == 2 + 4
    assert list(checkpointed.state_dict()) == list(plain.state_dict())
    images = [torch.rand(1, 3, 32, 32) * 2 - 1 for _ in range(2)]
    for model in (plain, checkpointed):
        outputs = model(images, image_ids=[0.0, 5.0])
        sum(o["pts3d_in_other_view"].square().mean() + o["conf_local"].mean() for o in outputs).backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_cli_parsers(tmp_path):
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    add_train_parser(subparsers)
    add_curves_parser(subparsers)
    args = parser.parse_args(["train", "configs/tiny_cpu.toml", "--resume", "--out", "o", "--set", "steps=2", "--set", "seed=1"])
    assert args.resume and args.out == "o" and args.overrides == ["steps=2", "seed=1"]
    log = tmp_path / "train_log.csv"
    log.write_text("step,loss,dist_global,dist_local\n1,2.0,0.9,0.8\n2,1.5,0.7,0.6\n")
    png = tmp_path / "curves.png"
    args = parser.parse_args(["train-curves", f"demo={log}", "--png", str(png)])
    code = args.handler(args)
    if importlib.util.find_spec("matplotlib") is None:  # optional: a clear message and exit code 1
        assert code == 1 and not png.exists()
    else:
        assert code == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_trailing_mean_skips_gaps_and_lags_no_more_than_its_window():
    from fast3r.train.curves import trailing_mean

    nan = float("nan")
    assert trailing_mean([1.0, 3.0, nan, 5.0], 2) == [1.0, 2.0, 3.0, 5.0]
    assert trailing_mean([4.0, 4.0, 4.0], 1) == [4.0, 4.0, 4.0]
    means = trailing_mean([nan, nan, 2.0], 2)
    assert means[0] != means[0] and means[1] != means[1] and means[2] == 2.0  # NaN until a value is seen


def test_empty_config_and_unknown_keys_are_refused_in_one_line(tmp_path, capsys):
    from fast3r.cli import main

    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing set\n")
    typo = tmp_path / "typo.toml"
    typo.write_text("steps = 2\n[optim]\nlrr = 1e-3\n")
    assert main(["train", str(empty), "--out", str(tmp_path / "run")]) == 1
    assert main(["train", str(typo), "--out", str(tmp_path / "run")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("fast3r train: error: ") for line in lines)
    assert f"{empty}: empty config" in lines[0]
    assert f"{typo}: unknown key 'optim.lrr' (known: optim.lr, optim.min_lr," in lines[1]
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written
    with pytest.raises(TrainConfigError, match=r"--set model\.presett=tiny: unknown key 'model\.presett'"):
        load_train_config("configs/tiny_cpu.toml", ["model.presett=tiny"])
