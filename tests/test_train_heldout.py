"""Held-out evaluation: an oracle that returns the true pointmaps scores perfectly; a real model runs."""
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

from fast3r.data.views import visible_share
from fast3r.eval.pose import PairErrors, identity_baseline_errors, metrics_from_errors
from fast3r.model import Fast3R, Fast3RConfig
from fast3r.train.heldout import (
    OVERLAP_BINS,
    HeldoutConfig,
    _metrics_by_overlap,
    evaluate_heldout,
    heldout_trajectory,
    heldout_views,
)


def benchmarks_table(results: dict, view_counts: tuple[int, ...] = (3,)) -> str:
    """benchmarks/heldout_eval.py's table of `results` (the script is not a package)."""
    spec = importlib.util.spec_from_file_location("heldout_eval", "benchmarks/heldout_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.format_table(results, list(view_counts))


class Oracle(nn.Module):
    """Returns the true pointmaps of the held-out scene it is told about, in the model's output format."""

    def __init__(self, config: HeldoutConfig, blind_to: str = ""):
        super().__init__()
        self.config, self.index, self.blind_to = config, 0, blind_to
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images, image_ids=None, generator=None):
        views = heldout_views(self.config, self.index, len(images))
        blind = heldout_trajectory(self.config, self.index)[1] == self.blind_to
        world_to_view0 = np.linalg.inv(views[0].c2w)
        outputs = []
        for view in views:
            world = view.points_world().astype(np.float64)
            global_points = world @ world_to_view0[:3, :3].T + world_to_view0[:3, 3]
            if blind:  # every view placed where view 0 is: identity poses
                global_points = view.points_camera()
            outputs.append(
                {
                    "pts3d_in_other_view": torch.from_numpy(global_points).float()[None],
                    "conf": torch.from_numpy(1.0 + 9.0 * view.valid).float()[None],
                    "pts3d_local": torch.from_numpy(view.points_camera())[None],
                    "conf_local": torch.from_numpy(1.0 + 9.0 * view.valid).float()[None],
                }
            )
        self.index = (self.index + 1) % self.config.scenes
        return outputs


def test_oracle_pointmaps_give_perfect_poses():
    config = HeldoutConfig(view_counts=[3, 5], scenes=2, resolution=(48, 64))
    results = evaluate_heldout(Oracle(config), config, "cpu", bf16=False, progress=False)
    for count in ("3", "5"):
        metrics = results[count]
        assert metrics["RRA@5_pct"] == 100.0 and metrics["RTA@5_pct"] == 100.0
        assert metrics["mAA30_fast3r_31bin_pct"] > 95.0
        assert metrics["failed_scenes"] == 0
        assert metrics["scenes"] == 2
        assert metrics["ci95_over_scenes"]["RRA@15_pct"] == [100.0, 100.0]
    assert results["settings"]["image_ids"] == "spread"


def test_identity_baseline_stands_beside_every_table_on_the_same_scenes():
    config = HeldoutConfig(view_counts=[3], scenes=4, trajectories=["arc", "handheld"], resolution=(48, 64))
    results = evaluate_heldout(Oracle(config, blind_to="handheld"), config, "cpu", bf16=False, progress=False)
    metrics = results["3"]
    handheld = metrics["by_trajectory"]["handheld"]
    # The blind oracle predicts identity poses on handheld scenes: there it scores exactly the baseline.
    for key in ("RRA@5_pct", "RRA@15_pct", "rotation_error_mean_deg", "num_pairs"):
        assert handheld[key] == pytest.approx(handheld["identity_baseline"][key], abs=1e-6), key
    arc = metrics["by_trajectory"]["arc"]
    truth = [np.stack([v.c2w for v in heldout_views(config, i, 3)]) for i in (0, 1)]  # the two arc scenes
    assert arc["identity_baseline"] == metrics_from_errors(
        *(np.concatenate(parts) for parts in zip(*((e.rotation_deg, e.translation_deg) for e in map(identity_baseline_errors, truth))))
    )
    assert metrics["identity_baseline"]["num_pairs"] == 4 * 3 and arc["identity_baseline"]["RRA@5_pct"] < 100.0
    # Point errors tell the heads apart: the blind oracle's global pointmaps are wrong, its local ones exact.
    assert handheld["point_error_global"] > 0.05 and arc["point_error_global"] < 1e-4
    assert handheld["point_error_local"] < 1e-4 and arc["point_error_local"] < 1e-4
    assert benchmarks_table(results).count("| 3 |") == 3
    assert set(metrics["by_scene_kind"]) == {"room", "orbit"} and metrics["by_scene_kind"]["room"]["num_pairs"] == 2 * 3


def test_a_held_out_scene_kind_is_evaluated_on_its_own():
    config = HeldoutConfig(view_counts=[2], scenes=4, scene_kinds=["orbit"], trajectories=["arc", "orbit"], resolution=(32, 32))
    assert [heldout_trajectory(config, i) for i in range(4)] == [("orbit", "arc"), ("orbit", "orbit")] * 2
    with pytest.raises(ValueError, match="scene_kinds"):
        HeldoutConfig(scene_kinds=["cave"]).validate()


def test_metrics_by_trajectory_credit_each_scene_to_its_own_trajectory():
    config = HeldoutConfig(view_counts=[3], scenes=4, trajectories=["arc", "handheld"], resolution=(48, 64))
    assert [heldout_trajectory(config, i) for i in range(4)] == [
        ("room", "arc"), ("orbit", "arc"), ("room", "handheld"), ("orbit", "handheld")
    ]
    results = evaluate_heldout(Oracle(config, blind_to="handheld"), config, "cpu", bf16=False, progress=False)
    metrics = results["3"]
    arc, handheld = metrics["by_trajectory"]["arc"], metrics["by_trajectory"]["handheld"]
    assert arc["num_pairs"] == handheld["num_pairs"] == 2 * 3
    assert arc["RRA@5_pct"] == 100.0 and handheld["RRA@5_pct"] < 100.0
    assert metrics["RRA@5_pct"] == pytest.approx((arc["RRA@5_pct"] + handheld["RRA@5_pct"]) / 2)
    assert results["settings"]["trajectories"] == ["arc", "handheld"]
    with pytest.raises(ValueError, match="heldout.trajectories"):
        HeldoutConfig(trajectories=["fly"]).validate()


def test_heldout_seeds_differ_from_training_and_a_model_runs():
    config = HeldoutConfig(view_counts=[2], scenes=1, resolution=(32, 32), image_ids="sequential")
    model = Fast3R(Fast3RConfig.tiny()).train()
    results = evaluate_heldout(model, config, "cpu", bf16=False, progress=False)
    assert model.training  # the mode is restored
    metrics = results["2"]
    assert 0.0 <= metrics["RRA@30_pct"] <= 100.0 and metrics["num_pairs"] == 1
    assert np.isfinite(metrics["loss"])
    with pytest.raises(ValueError, match="image_ids"):
        HeldoutConfig(image_ids="shuffled").validate()


def test_pairs_binned_by_overlap_are_scored_in_their_own_bin():
    # Two scenes of 3 views (pairs 01, 02, 12): the pairs with little overlap are the wrong ones.
    first, second = np.array([0, 0, 1]), np.array([1, 2, 2])
    model = [PairErrors(np.array([1.0, 90.0, 1.0]), np.array([1.0, 90.0, 1.0]), first, second),
             PairErrors(np.array([90.0, 1.0, 1.0]), np.array([90.0, 1.0, 1.0]), first, second)]  # fmt: skip
    overlaps = [np.array([0.5, 0.01, 0.2]), np.array([0.0, 0.9, 0.3])]
    baseline = [PairErrors(np.full(3, 40.0), np.full(3, 90.0), first, second)] * 2
    bins = _metrics_by_overlap(model, baseline, overlaps)
    assert list(bins) == [name for name, _, _ in OVERLAP_BINS]
    assert [bins[name]["pairs"] for name in bins] == [2, 1, 3]
    assert bins["<5%"]["RRA@15_pct"] == 0.0 and bins["5-30%"]["RRA@15_pct"] == bins[">=30%"]["RRA@15_pct"] == 100.0
    assert bins["<5%"]["identity_baseline"]["num_pairs"] == 2 and "point_error_global" not in bins["<5%"]


def test_by_overlap_partitions_every_scene_set_and_reaches_the_table():
    config = HeldoutConfig(view_counts=[3], scenes=2, trajectories=["arc", "random"], resolution=(48, 64), by_overlap=True)
    results = evaluate_heldout(Oracle(config), config, "cpu", bf16=False, progress=False)
    metrics = results["3"]
    for row in [metrics, *metrics["by_trajectory"].values(), *metrics["by_scene_kind"].values()]:
        assert sum(part["pairs"] for part in row["by_overlap"].values()) == row["num_pairs"]
        assert all(part["RRA@5_pct"] == 100.0 for part in row["by_overlap"].values())  # the oracle is exact
    counts = {}  # each pair's bin from the two visible shares, counted by hand
    for scene in range(2):
        views = heldout_views(config, scene, 3)
        for i, j in ((0, 1), (0, 2), (1, 2)):
            share = max(visible_share(views[i], views[j]), visible_share(views[j], views[i]))
            name = next(name for name, low, high in OVERLAP_BINS if low <= share < high)
            counts[name] = counts.get(name, 0) + 1
    assert {name: part["pairs"] for name, part in metrics["by_overlap"].items()} == counts
    assert "overlap" in benchmarks_table(results)
    plain = evaluate_heldout(Oracle(config), HeldoutConfig(view_counts=[3], scenes=2, trajectories=["arc", "random"],
                                                           resolution=(48, 64)), "cpu", bf16=False, progress=False)  # fmt: skip
    assert "by_overlap" not in plain["3"] and "overlap" not in benchmarks_table(plain)


def test_spread_views_are_even_and_their_pairs_are_scored_alone():
    from fast3r.train.heldout import SPREAD_VIEWS, _among, spread_view_indices

    assert list(spread_view_indices(8)) == list(range(8))
    assert list(spread_view_indices(128)) == [0, 18, 36, 54, 73, 91, 109, 127]
    first, second = np.triu_indices(12, k=1)
    spread = spread_view_indices(12)
    kept = _among(PairErrors(np.zeros(len(first)), np.zeros(len(first)), first, second), spread)
    assert len(kept.first) == SPREAD_VIEWS * (SPREAD_VIEWS - 1) // 2
    assert set(kept.first) | set(kept.second) == set(spread)
    config = HeldoutConfig(view_counts=[8, 12], scenes=2, trajectories=["walk", "handheld"], resolution=(48, 64))
    results = evaluate_heldout(Oracle(config), config, "cpu", bf16=False, progress=False)
    assert "spread_8_views" not in results["8"]
    subset = results["12"]["spread_8_views"]
    assert subset["num_pairs"] == subset["identity_baseline"]["num_pairs"] == 2 * 28
    assert subset["RRA@5_pct"] == 100.0 and sum(row["num_pairs"] for row in subset["by_scene_kind"].values()) == 56
    table = benchmarks_table(results, (8, 12))
    assert "| 12 | all, pairs of 8 spread views |" in table and "| 8 | all, pairs of 8 spread views |" not in table
