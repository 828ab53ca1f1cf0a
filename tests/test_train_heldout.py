"""Held-out evaluation: an oracle that returns the true pointmaps scores perfectly; a real model runs."""
import numpy as np
import pytest
import torch
from torch import nn

from fast3r.model import Fast3R, Fast3RConfig
from fast3r.train.heldout import HeldoutConfig, evaluate_heldout, heldout_trajectory, heldout_views


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
    assert results["settings"]["image_ids"] == "spread"


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
