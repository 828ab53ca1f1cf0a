"""Compact slot checkpoints: small files, factored moments, and a run continued from one on a 'fresh machine'."""
import pytest
import torch

from fast3r.train.config import load_train_config
from fast3r.train.logs import read_log
from fast3r.train.slot import OPTIMIZER_NAME, SHARD_BYTES, expand_second_moment, factor_second_moment, read_slot
from fast3r.train.trainer import train


def _config(out_dir, *extra):
    return load_train_config(
        "configs/tiny_cpu.toml",
        [f'out_dir="{out_dir}"', "data.batch_size=1", "data.resolutions=[[32,32]]", "ckpt_every=0", *extra],
    )


def test_factored_moments_are_exact_for_rank_one_and_whole_for_vectors():
    rows, cols = torch.rand(5) + 0.1, torch.rand(12) + 0.1
    moment = torch.outer(rows, cols).reshape(5, 3, 4)  # a conv-like kernel of rank one
    parts = factor_second_moment(moment)
    assert parts["rows"].shape == (5,) and parts["cols"].shape == (12,)
    torch.testing.assert_close(expand_second_moment(parts, moment.shape), moment)
    vector = torch.rand(7)
    assert torch.equal(expand_second_moment(factor_second_moment(vector), vector.shape), vector)


def test_a_run_continues_from_a_slot_checkpoint(tmp_path):
    straight = train(_config(tmp_path / "straight"))
    assert straight.steps_done == 6
    # Slot 1 stops after its first step (time limit); its slot checkpoint is all the next slot gets.
    first = train(_config(tmp_path / "slot1", "time_limit_minutes=1e-9", f'slot_out="{tmp_path / "carry"}"'))
    assert first.stopped_early and first.steps_done == 1
    files = sorted(p.name for p in (tmp_path / "carry").iterdir())
    assert OPTIMIZER_NAME in files and "train_log.csv" in files and "config.json" in files and len(files) <= 8
    assert all(p.stat().st_size <= SHARD_BYTES for p in (tmp_path / "carry").iterdir())
    metadata, _ = read_slot(tmp_path / "carry")
    assert metadata["step"] == 1 and metadata["scheduler"]["last_epoch"] == 1

    second = train(_config(tmp_path / "slot2", f'slot_out="{tmp_path / "carry2"}"'), from_slot=str(tmp_path / "carry"))
    assert second.steps_done == 6 and not second.stopped_early
    rows, reference = read_log(tmp_path / "slot2" / "train_log.csv"), read_log(tmp_path / "straight" / "train_log.csv")
    assert [r["step"] for r in rows] == ["1", "2", "3", "4", "5", "6"]  # slot 1's row, then slot 2's appended
    assert rows[0]["loss"] == reference[0]["loss"]
    assert [r["lr"] for r in rows] == [r["lr"] for r in reference]  # the schedule continues where it stopped
    assert [float(r["loss"]) for r in rows[1:]] == pytest.approx([float(r["loss"]) for r in reference[1:]], rel=0.05)
    assert read_slot(tmp_path / "carry2")[0]["step"] == 6
    assert [r["step"] for r in read_log(tmp_path / "carry2" / "train_log.csv")] == ["1", "2", "3", "4", "5", "6"]

    with pytest.raises(ValueError, match="6-step schedule"):
        train(_config(tmp_path / "slot3", "steps=9"), from_slot=str(tmp_path / "carry"))
    with pytest.raises(ValueError, match="pass one"):
        train(_config(tmp_path / "slot2"), resume=True, from_slot=str(tmp_path / "carry"))
