"""benchmarks/train_chain.sh: the repository holds a chain that a clean clone can continue (the bundled
weights are the last kept slot's, and its optimiser file and log sit beside them)."""
import csv
import os
import subprocess
from pathlib import Path

import pytest

from fast3r.model import Fast3R
from fast3r.train.config import load_train_config
from fast3r.train.slot import read_slot

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "fast3r" / "weights" / "fast3r-small-224"


def assemble(tmp_path, chain: str | None = None) -> subprocess.CompletedProcess:
    """train_chain.sh up to the assembled slot in tmp_path/slot; chain None: the script's default chain."""
    env = {**os.environ, "OUT": str(tmp_path / "out"), "SLOT_DIR": str(tmp_path / "slot"), "ASSEMBLE_ONLY": "1"}
    env.pop("CHAIN", None)
    if chain is not None:
        env["CHAIN"] = chain
    return subprocess.run(["bash", "benchmarks/train_chain.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_the_slot_assembles_from_the_bundled_weights_and_continues_the_log(tmp_path):
    slot = tmp_path / "slot"
    run = assemble(tmp_path)  # the default chain is the one whose last kept slot is the bundled model
    assert run.returncode == 0, run.stdout + run.stderr
    for shard in BUNDLED.glob("model*.safetensors*"):
        assert (slot / shard.name).read_bytes() == shard.read_bytes()
    metadata, moments = read_slot(slot)
    with open(slot / "train_log.csv") as f:
        last_logged = int(list(csv.DictReader(f))[-1]["step"])
    assert last_logged <= metadata["step"] < last_logged + 10, "the optimiser file and the log are of one slot"
    model = Fast3R.from_pretrained(str(slot))
    names = {key.rsplit("/exp_avg_sq.", 1)[0] for key in moments}
    unused = {name for name, _ in model.named_parameters() if ".refinenet4.resConfUnit1." in name}  # no skip input
    trained = {name for name, _ in model.named_parameters()} - unused
    assert names == trained, "second moments for every trained parameter"


def test_each_chain_runs_at_the_pool_rate_it_ran_at(tmp_path, monkeypatch):
    assert "fresh_rooms: new scenes per step: 0.75" in assemble(tmp_path, "fresh_rooms").stdout
    run = assemble(tmp_path, "wide_random")
    assert "wide_random: new scenes per step: data.pool_scenes_per_step of configs/small_wide_random_224.toml" in run.stdout
    monkeypatch.setenv("POOL_RATE", "1.0")
    assert "wide_random: new scenes per step: 1.0" in assemble(tmp_path, "wide_random").stdout
    assert "share rendered on the GPU" not in assemble(tmp_path, "wide_random").stdout
    monkeypatch.setenv("POOL_SHARE", "0.5")
    assert "wide_random: share rendered on the GPU: 0.5" in assemble(tmp_path, "wide_random").stdout


def test_a_slot_of_another_chain_is_not_continued(tmp_path):
    assert assemble(tmp_path, "more_random_again").returncode == 0
    assert (tmp_path / "slot.chain").read_text().strip() == "more_random_again"
    run = assemble(tmp_path, "outward")  # the outward stage kept no slot (not kept as the bundled model): it starts afresh
    assert run.returncode == 0, run.stdout + run.stderr
    assert "not continuing it" in run.stdout and "starts from configs/small_outward_224.toml's init_weights" in run.stdout
    assert not (tmp_path / "slot").exists() and not (tmp_path / "slot.chain").exists()
    run = assemble(tmp_path, "foo")
    assert run.returncode == 2 and "CHAIN must be wide, outward, varied, random, random_long, random_rooms, fresh_rooms, wide_baseline, wide_random, more_scenes, colour_jitter, fewer_draws, lighter_scenes, more_random, more_random_again or random_eleven, got 'foo'" in run.stdout


def test_the_planned_stage_starts_from_the_bundled_model_at_its_own_rate(tmp_path):
    run = assemble(tmp_path, "random_eleven")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "random_eleven: new scenes per step: data.pool_scenes_per_step of configs/small_random_eleven_224.toml" in run.stdout
    assert "starts from configs/small_random_eleven_224.toml's init_weights" in run.stdout
    config = load_train_config(REPO / "configs" / "small_random_eleven_224.toml")
    assert (REPO / config.model.init_weights).resolve() == BUNDLED.resolve()


def test_a_stage_run_and_not_kept_starts_again_from_the_bundled_model(tmp_path):
    run = assemble(tmp_path, "colour_jitter")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "starts from configs/small_colour_jitter_224.toml's init_weights" in run.stdout


@pytest.mark.parametrize("chain", ["wide", "random", "random_long", "random_rooms", "wide_baseline", "wide_random", "more_scenes", "fewer_draws", "lighter_scenes", "more_random"])  # kept slots that were the bundled model before
def test_a_chain_whose_slot_is_no_longer_the_bundled_model_is_refused(tmp_path, chain):
    run = assemble(tmp_path, chain)
    assert run.returncode == 2 and "the bundled weights are not the chain's last slot" in run.stderr


def test_only_the_chain_whose_slot_is_the_bundled_model_keeps_an_optimiser_file(tmp_path):
    """An optimiser file beside a chain that is refused would only take room in the 64 MB the device tool sends."""
    kept = sorted(REPO.glob("benchmarks/results/train_small/*_chain/slot_state/optimizer.safetensors"))
    assert kept, "the repository keeps the optimiser file of the chain it continues"
    for path in kept:
        chain = path.parents[1].name.removesuffix("_chain")
        run = assemble(tmp_path, chain)
        assert run.returncode == 0 and f"{chain}: slot assembled from the bundled weights" in run.stdout, run.stderr
