"""Two models on the same held-out scenes: does the second beat the first by more than the scenes' luck?

Each scene is rendered once and scored with both models (`fast3r.train.heldout.score_scene`). Per view
count, overall, per trajectory and per scene kind, each pooled metric's difference (second - first) gets
a 95% interval over resamplings of the scenes that draw the same scenes for both
(`fast3r.eval.pose.paired_difference`). Two models' own intervals overlap long after one is reliably
better; the paired interval asks the question a keep-or-drop decision needs.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from fast3r.eval.pose import PairErrors, identity_baseline_errors, paired_difference, pooled_metrics

from .heldout import HeldoutConfig, heldout_settings, heldout_trajectory, heldout_views, score_scene


def _differences(first: list[PairErrors], second: list[PairErrors], baseline: list[PairErrors], chosen: list[bool]) -> dict:
    """paired_difference of the chosen scenes, their count, and the identity baseline's pooled metrics."""
    keep = [index for index, chosen_scene in enumerate(chosen) if chosen_scene]
    return {**paired_difference([first[i] for i in keep], [second[i] for i in keep]),
            "scenes": len(keep), "identity_baseline": pooled_metrics([baseline[i] for i in keep])}  # fmt: skip


@torch.no_grad()
def compare_heldout(
    first: torch.nn.Module,
    second: torch.nn.Module,
    config: HeldoutConfig,
    device: torch.device | str,
    bf16: bool = True,
    progress: bool = True,
) -> dict:
    """{"settings": ..., "<N>": {metric: {"first", "second", "difference", "ci95"}, "scenes",
    "identity_baseline", "by_trajectory": {name: the same}, "by_scene_kind": {name: the same}}} for every N
    in config.view_counts. Both models run in eval mode; their modes are restored after."""
    config.validate()
    device = torch.device(device)
    models = (first, second)
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    results: dict = {"settings": heldout_settings(config)}
    try:
        for num_views in config.view_counts:
            errors: tuple[list[PairErrors], list[PairErrors]] = ([], [])
            baseline: list[PairErrors] = []
            for index in tqdm(range(config.scenes), desc=f"compare {num_views} views", disable=not progress, leave=False):
                views = heldout_views(config, index, num_views)
                baseline.append(identity_baseline_errors(np.stack([view.c2w for view in views])))
                for model, scored in zip(models, errors):
                    scored.append(score_scene(model, views, config, index, device, bf16).errors)
            metrics = _differences(*errors, baseline, [True] * config.scenes)
            families = [heldout_trajectory(config, index) for index in range(config.scenes)]  # (kind, trajectory)
            for key, part in (("by_scene_kind", 0), ("by_trajectory", 1)):
                names = [family[part] for family in families]
                metrics[key] = {name: _differences(*errors, baseline, [n == name for n in names])
                                for name in dict.fromkeys(names)}  # fmt: skip
            results[str(num_views)] = metrics
    finally:
        for model, mode in zip(models, modes):
            model.train(mode)
    return results
