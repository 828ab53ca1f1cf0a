"""benchmarks/pool_generalization.py: its replay of a pool stage's draws is the training loop's, slot
restarts included, and it refuses scene sets the stage did not serve or did reach."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fast3r.train.data import DataConfig, training_batches
from fast3r.train.pool import SceneRing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pool_generalization  # noqa: E402  (a script beside heldout_compare.py, not a package)


def test_the_replayed_draws_are_those_of_the_training_loop(monkeypatch):
    config = DataConfig(
        mode="pool", num_views=[2], resolutions=[(32, 32)], batch_size=3, num_workers=0, pool_views=4,
        pool_initial=2, pool_scenes_per_step=0.5, pool_capacity=5, pool_slot_restart=2, scene_kinds=["room"],
    )
    drawn: list[int] = []
    gather = SceneRing.gather

    def recording_gather(ring, scenes, chosen, resolution, jitter=None):
        drawn.extend(int(scene) for scene in scenes)
        return gather(ring, scenes, chosen, resolution, jitter)

    monkeypatch.setattr(SceneRing, "gather", recording_gather)
    for start, end, from_slot in ((0, 7, False), (7, 16, True)):  # a run, then a slot continuing it
        for _ in training_batches(config, 3, start, end, 0, 1, torch.device("cpu"), from_slot=from_slot):
            pass
    replayed = pool_generalization.draws_per_scene(config, 3, 16, [7])
    assert replayed.sum() == 16 * 3
    assert np.array_equal(replayed, np.bincount(drawn, minlength=len(replayed)))
    assert not np.array_equal(replayed, pool_generalization.draws_per_scene(config, 3, 16, []))  # the restart matters


@pytest.mark.parametrize("seen, fresh", [(4500, 200000), (100, 4000)])
def test_sets_the_stage_did_not_serve_or_did_reach_are_refused(monkeypatch, capsys, seen, fresh):
    argv = ["pool_generalization.py", "configs/small_wide_random_224.toml", "unused-model", "--seen", str(seen),
            "--fresh", str(fresh), "--scenes", "40"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    with pytest.raises(SystemExit):
        pool_generalization.main()
    assert "the stage rendered scenes 0..4530: --seen scenes must lie among them, --fresh after them" in capsys.readouterr().err
