"""Checkpoints and exact resume: 3 steps, a fresh process state, 3 more steps == 6 steps straight."""
import shutil

import pytest
import torch
from safetensors.torch import load_file

from fast3r.train.config import load_train_config
from fast3r.train.logs import read_log
from fast3r.train.state import checkpoint_path, list_checkpoints, load_checkpoint
from fast3r.train.trainer import train

DETERMINISTIC_COLUMNS = ("step", "loss", "global", "local", "dist_global", "dist_local", "grad_norm", "lr", "num_views", "height")


def _config(out_dir, *extra):
    return load_train_config(
        "configs/tiny_cpu.toml",
        [f'out_dir="{out_dir}"', "data.batch_size=1", "data.resolutions=[[32,32],[32,48]]", *extra],
    )


POOL = ('data.mode="pool"', "data.resolutions=[[32,32]]", "data.pool_views=4", "data.pool_initial=2",
        "data.pool_scenes_per_step=0.5", "data.pool_capacity=3")


@pytest.mark.parametrize("mode", ["fresh", "pool"])
def test_resume_continues_exactly(tmp_path, mode):
    extra = POOL if mode == "pool" else ()
    straight = tmp_path / "straight"
    result = train(_config(straight, *extra))
    assert result.steps_done == 6 and not result.stopped_early
    assert [step for step, _ in list_checkpoints(straight)] == [3, 6]

    # The state a run killed after its step-3 checkpoint leaves behind: the checkpoint and the log.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoints", resumed / "checkpoints")
    checkpoint_path(resumed, 6).unlink()
    shutil.copy(straight / "train_log.csv", resumed / "train_log.csv")  # holds rows 4..6 too: dropped on resume
    torch.manual_seed(12345)  # disturb the global RNG: resume must restore it
    result = train(_config(resumed, *extra), resume=True)
    assert result.steps_done == 6

    rows_straight, rows_resumed = read_log(straight / "train_log.csv"), read_log(resumed / "train_log.csv")
    assert [r["step"] for r in rows_resumed] == ["1", "2", "3", "4", "5", "6"]
    for a, b in zip(rows_straight, rows_resumed):
        assert {k: a[k] for k in DETERMINISTIC_COLUMNS} == {k: b[k] for k in DETERMINISTIC_COLUMNS}
    weights_straight = load_file(straight / "model" / "model.safetensors")
    weights_resumed = load_file(resumed / "model" / "model.safetensors")
    assert weights_straight.keys() == weights_resumed.keys()
    for key, value in weights_straight.items():
        assert torch.equal(value, weights_resumed[key]), key
    state_straight = load_checkpoint(checkpoint_path(straight, 6))["optimizer"]["state"]
    state_resumed = load_checkpoint(checkpoint_path(resumed, 6))["optimizer"]["state"]
    for name, moments in state_straight.items():
        assert torch.equal(moments["exp_avg_sq"], state_resumed[name]["exp_avg_sq"]), name


def test_checkpoint_contents_and_refusals(tmp_path):
    out = tmp_path / "run"
    train(_config(out, "steps=2", "ckpt_every=0", "keep_checkpoints=1"))
    assert [step for step, _ in list_checkpoints(out)] == [2]
    payload = load_checkpoint(checkpoint_path(out, 2))
    assert payload["step"] == 2 and payload["data_position"] == 2
    assert set(payload["rng"][0]) >= {"python", "numpy", "torch"}
    assert payload["scheduler"]["last_epoch"] == 2
    assert not list(out.glob("checkpoints/.*tmp"))  # no temporary file left behind
    with pytest.raises(ValueError, match="--resume"):
        train(_config(out, "steps=2"))  # a fresh run would overwrite the checkpoints
    broken = checkpoint_path(out, 2)
    broken.write_bytes(broken.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cannot read training checkpoint"):
        train(_config(out, "steps=3"), resume=True)


def test_resume_refuses_a_different_schedule(tmp_path):
    out = tmp_path / "run"
    train(_config(out, "steps=2"))
    with pytest.raises(ValueError, match="2-step schedule"):
        train(_config(out, "steps=4"), resume=True)
