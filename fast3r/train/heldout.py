"""Camera-pose accuracy of a model on held-out synthetic scenes (seeds disjoint from training).

Per view count N and scene: render N views, run the model once, recover cameras from the pointmaps
(`fast3r.geometry.cameras_from_pointmaps`, local-to-global alignment), and compare the camera-to-world
matrices with the truth over all N(N-1)/2 pairs (`fast3r.eval.pose`). Pairs are pooled over the scenes of
a view count. Beside every set of metrics stands the identity-pose baseline on the same scenes
(`fast3r.eval.pose.identity_baseline_errors`), which a model must beat to have learned anything of
relative pose. Also reports the training loss on the same views.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from fast3r.data.synthetic import TRAJECTORIES, SceneConfig, render_scene
from fast3r.data.synthetic.scene import SCENE_KINDS
from fast3r.data.views import View, visible_share
from fast3r.eval.pose import (
    PairErrors,
    identity_baseline_errors,
    interval_over_samples,
    pooled_metrics,
    relative_pose_errors,
)
from fast3r.geometry import cameras_from_pointmaps
from fast3r.io.images import to_model_range

from .loss import ViewTarget, pointmap_loss

HELDOUT_SEED_BASE = 20_000_000  # training scenes use seeds below this; fast3r.eval's synthetic set uses 10M+
IMAGE_ID_MODES = ("spread", "sequential", "random")
# Pairs binned by overlap: the larger of the two shares of one view's known points that the other sees
# (`fast3r.data.views.visible_share`); name, lowest share, share the bin stops below.
OVERLAP_BINS = (("<5%", 0.0, 0.05), ("5-30%", 0.05, 0.3), (">=30%", 0.3, float("inf")))
# At N > SPREAD_VIEWS views also score the pairs of SPREAD_VIEWS views spread evenly over the N (by index).
# On arc and walk trajectories (views evenly along a path) they are spaced as an SPREAD_VIEWS-view scene's
# views are; on handheld ones (views scattered at random) any SPREAD_VIEWS are. Compared across N, they
# separate what more views in the pass do to pairs like the 8-view ones from the shorter baselines that
# denser sampling adds to the pooled pairs.
SPREAD_VIEWS = 8


@dataclass
class HeldoutConfig:
    """view_counts: N values to evaluate; scenes: scenes per N (cycling `scene_kinds`, then
    `trajectories`, best the training data's); image_ids: "spread" (evenly over the model's index table,
    the inference default), "sequential" (0..N-1) or "random" (view 0 at 0, others distinct from
    1..table-1, seeded per scene).

    A held-out family: list here a scene kind or trajectory that data.scene_kinds / data.trajectories
    leave out; its scenes are scored separately under "by_scene_kind" / "by_trajectory".
    by_overlap: also score pairs binned by their overlap (OVERLAP_BINS) under "by_overlap" in every set of
    metrics; costs two visibility tests per pair (seconds per scene at 32 views, minutes at 128)."""

    view_counts: list[int] = field(default_factory=lambda: [8, 32, 128])
    scenes: int = 6
    trajectories: list[str] = field(default_factory=lambda: list(TRAJECTORIES))
    scene_kinds: list[str] = field(default_factory=lambda: list(SCENE_KINDS))
    seed_base: int = HELDOUT_SEED_BASE
    resolution: tuple[int, int] = (224, 224)
    image_ids: str = "spread"
    render_device: str = "cpu"
    by_overlap: bool = False

    def validate(self) -> None:
        if not self.view_counts or min(self.view_counts) < 2:
            raise ValueError(f"heldout.view_counts must be numbers >= 2, got {self.view_counts}")
        if self.scenes < 0:
            raise ValueError(f"heldout.scenes must be >= 0, got {self.scenes}")
        unknown = [name for name in self.trajectories if name not in TRAJECTORIES]
        if unknown or not self.trajectories:
            raise ValueError(f"heldout.trajectories must be some of {TRAJECTORIES}, got {self.trajectories}")
        if not self.scene_kinds or any(kind not in SCENE_KINDS for kind in self.scene_kinds):
            raise ValueError(f"heldout.scene_kinds must be some of {SCENE_KINDS}, got {self.scene_kinds}")
        if self.image_ids not in IMAGE_ID_MODES:
            raise ValueError(f"heldout.image_ids must be one of {IMAGE_ID_MODES}, got {self.image_ids!r}")
        if len(self.resolution) != 2 or any(int(s) % 16 or int(s) <= 0 for s in self.resolution):
            raise ValueError(f"heldout.resolution must be [H, W], multiples of 16, got {self.resolution}")


def heldout_trajectory(config: HeldoutConfig, index: int) -> tuple[str, str]:
    """(scene kind, trajectory) of the `index`-th held-out scene."""
    kinds = config.scene_kinds
    return kinds[index % len(kinds)], config.trajectories[(index // len(kinds)) % len(config.trajectories)]


def heldout_views(config: HeldoutConfig, index: int, num_views: int) -> list[View]:
    """The `index`-th held-out scene with `num_views` views."""
    kind, trajectory = heldout_trajectory(config, index)
    height, width = (int(s) for s in config.resolution)
    seed = config.seed_base + index
    return render_scene(seed, num_views, height, width, trajectory, config.render_device, SceneConfig(kind=kind))


def heldout_image_ids(mode: str, num_views: int) -> list[float] | str | None:
    """The model's `image_ids` argument for `HeldoutConfig.image_ids`: None spreads them over the index table."""
    if mode == "sequential":
        return [float(i) for i in range(num_views)]
    return "random" if mode == "random" else None


def views_to_tensors(views: list[View], device: torch.device) -> tuple[list[torch.Tensor], list[ViewTarget]]:
    """One scene's views as model input (1, 3, H, W) each and loss targets (batch of 1) on `device`."""
    images, targets = [], []
    for view in views:
        image = to_model_range(torch.from_numpy(view.image))  # (3, H, W)
        images.append(image[None].to(device))
        targets.append(
            ViewTarget(
                pts3d=torch.from_numpy(view.points_world())[None].to(device),
                valid=torch.from_numpy(view.valid)[None].to(device),
                camera_pose=torch.from_numpy(view.c2w).float()[None].to(device),
            )
        )
    return images, targets


def _camera_poses(preds: list[dict[str, torch.Tensor]]) -> np.ndarray:
    """(N, 4, 4) camera-to-world from one scene's predictions (batch of 1). The focal length is fixed
    (it does not enter the poses of the alignment path), which skips its estimation."""
    has_local = "pts3d_local" in preds[0]
    height, width = preds[0]["conf"].shape[-2:]
    cameras = cameras_from_pointmaps(
        torch.cat([p["pts3d_in_other_view"] for p in preds]),  # (N, H, W, 3)
        torch.cat([p["conf"] for p in preds]),  # (N, H, W)
        local_pointmaps=torch.cat([p["pts3d_local"] for p in preds]) if has_local else None,
        local_confidence=torch.cat([p["conf_local"] for p in preds]) if has_local else None,
        focal=float(max(height, width)),
        return_aligned_points=False,
        progress=False,
    )
    return cameras.c2w


def pair_overlap(views: list[View], errors: PairErrors) -> np.ndarray:
    """(P,) for each pair of `errors`, the larger of the two shares of one view's known points that the
    other sees."""
    return np.array([max(visible_share(views[i], views[j]), visible_share(views[j], views[i]))
                     for i, j in zip(errors.first, errors.second)])  # fmt: skip


def _pairs(errors: PairErrors, keep: np.ndarray) -> PairErrors:
    return PairErrors(errors.rotation_deg[keep], errors.translation_deg[keep], errors.first[keep], errors.second[keep])


def spread_view_indices(num_views: int, count: int = SPREAD_VIEWS) -> np.ndarray:
    """`count` indices spread evenly over 0..num_views-1, first and last included."""
    return np.unique(np.round(np.linspace(0, num_views - 1, count)).astype(int))


def _among(errors: PairErrors, indices: np.ndarray) -> PairErrors:
    """The pairs of `errors` whose two views are both in `indices`."""
    return _pairs(errors, np.isin(errors.first, indices) & np.isin(errors.second, indices))


def _metrics_by_overlap(model: list[PairErrors], baseline: list[PairErrors], overlaps: list[np.ndarray]) -> dict:
    """{bin: pooled metrics of the pairs whose overlap falls in it, with "pairs" counted}, per OVERLAP_BINS."""
    result = {}
    for name, low, high in OVERLAP_BINS:
        masks = [(overlap >= low) & (overlap < high) for overlap in overlaps]
        scenes = [index for index, mask in enumerate(masks) if mask.any()]
        if scenes:
            result[name] = _pooled_metrics([_pairs(model[i], masks[i]) for i in scenes],
                                           [_pairs(baseline[i], masks[i]) for i in scenes], None, [True] * len(scenes))  # fmt: skip
            result[name]["pairs"] = int(sum(masks[i].sum() for i in scenes))
    return result


def _pooled_metrics(
    model: list[PairErrors],
    baseline: list[PairErrors],
    point_errors: list[tuple[float, float]] | None,
    chosen: list[bool],
    overlaps: list[np.ndarray] | None = None,
) -> dict:
    """Metrics of the chosen scenes' pairs pooled, their 95% intervals over scene resamplings under
    "ci95_over_scenes", the scenes' mean point errors of the global and local heads (unless None), the
    identity baseline's metrics under "identity_baseline", and with `overlaps` (per scene, per pair) the
    same by overlap bin under "by_overlap"."""

    def kept(per_scene: list) -> list:
        return [item for item, keep in zip(per_scene, chosen) if keep]

    scenes = kept(model)
    interval = interval_over_samples([e.rotation_deg for e in scenes], [e.translation_deg for e in scenes])
    result = {**pooled_metrics(scenes), "ci95_over_scenes": interval, "identity_baseline": pooled_metrics(kept(baseline))}
    if point_errors is not None:
        global_error, local_error = np.mean(kept(point_errors), axis=0)
        result["point_error_global"] = float(global_error)
        result["point_error_local"] = float(local_error) if np.isfinite(local_error) else None  # None: no local head
    if overlaps is not None:
        result["by_overlap"] = _metrics_by_overlap(scenes, kept(baseline), kept(overlaps))
    return result


def heldout_settings(config: HeldoutConfig) -> dict:
    """What a held-out result was measured on: scenes, seeds, size, image indices, families, camera method."""
    return {
        "scenes_per_view_count": config.scenes,
        "seed_base": config.seed_base,
        "resolution": list(config.resolution),
        "image_ids": config.image_ids,
        "trajectories": list(config.trajectories),
        "scene_kinds": list(config.scene_kinds),
        "camera_method": "cameras_from_pointmaps auto: local-to-global Sim(3) alignment on the pixels at or "
                         "above the view's median global confidence, each weighted by both heads' confidences",
        "pairs": "pooled over scenes",
        **({"overlap_bins": [list(b[:2]) for b in OVERLAP_BINS]} if config.by_overlap else {}),
    }


@dataclass
class SceneScore:
    """A model's result on one held-out scene."""

    errors: PairErrors  # every pair's errors; 180 / 90 degrees for all pairs when `failed`
    loss: float  # the training loss on the scene's views
    point_errors: tuple[float, float]  # mean normalised point distance, global and local head (nan: none)
    seconds: float  # the forward pass
    failed: bool  # no cameras could be recovered from the pointmaps


@torch.no_grad()
def score_scene(
    model: torch.nn.Module, views: list[View], config: HeldoutConfig, index: int, device: torch.device, bf16: bool
) -> SceneScore:
    """Run `model` once on the views of held-out scene `index` (`heldout_views`) and score its cameras."""
    images, targets = views_to_tensors(views, device)
    generator = torch.Generator().manual_seed(config.seed_base + index)
    ids = heldout_image_ids(config.image_ids, len(views))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        preds = model(images, image_ids=ids, generator=generator)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    loss, parts = pointmap_loss(preds, targets)
    point_errors = (float(parts["dist_global"]), float(parts.get("dist_local", np.nan)))
    truth = np.stack([view.c2w for view in views])
    try:
        errors, failed = relative_pose_errors(_camera_poses(preds), truth), False
    except ValueError:  # e.g. pointmaps of an untrained model with no usable point
        worst = identity_baseline_errors(truth)
        errors = PairErrors(np.full_like(worst.rotation_deg, 180.0), np.full_like(worst.translation_deg, 90.0),
                            worst.first, worst.second)  # fmt: skip
        failed = True
    return SceneScore(errors, float(loss), point_errors, seconds, failed)


@torch.no_grad()
def evaluate_heldout(
    model: torch.nn.Module, config: HeldoutConfig, device: torch.device | str, bf16: bool = True, progress: bool = True
) -> dict:
    """{"<N>": metrics} for every N in config.view_counts, plus the settings used under "settings".

    Metrics per N: RRA/RTA at 5/15/30 and both mAA(30) variants in percent (pairs pooled over scenes),
    95% intervals of RRA@15 / RTA@15 / mAA(30) over scene resamplings under "ci95_over_scenes", the
    mean point errors of the global and local heads (normalised distances, as in the loss, without
    confidence) under "point_error_global" / "point_error_local", the identity baseline's metrics on the
    same pairs under "identity_baseline", the same under
    "by_trajectory" / "by_scene_kind" for the scenes of each trajectory / kind, mean loss, mean seconds per
    forward pass, scene count, and failed_scenes (no cameras could be recovered: their pairs count as
    errors of 180 / 90 degrees). At N > SPREAD_VIEWS also the metrics (overall and by kind) of only the
    pairs of SPREAD_VIEWS spread views, under "spread_8_views". Runs in eval mode and restores the mode after.
    """
    config.validate()
    device = torch.device(device)
    was_training = model.training
    model.eval()
    results: dict = {"settings": heldout_settings(config)}
    try:
        for num_views in config.view_counts:
            errors, baseline, point_errors, losses, seconds, failed = [], [], [], [], [], 0
            overlaps: list[np.ndarray] | None = [] if config.by_overlap else None
            desc = f"held-out {num_views} views"
            for index in tqdm(range(config.scenes), desc=desc, disable=not progress, leave=False):
                views = heldout_views(config, index, num_views)
                baseline.append(identity_baseline_errors(np.stack([view.c2w for view in views])))
                score = score_scene(model, views, config, index, device, bf16)
                errors.append(score.errors)
                losses.append(score.loss)
                point_errors.append(score.point_errors)
                seconds.append(score.seconds)
                failed += score.failed
                if overlaps is not None:
                    overlaps.append(pair_overlap(views, baseline[-1]))
            if not errors:
                continue
            metrics = _pooled_metrics(errors, baseline, point_errors, [True] * len(errors), overlaps)
            families = [heldout_trajectory(config, index) for index in range(config.scenes)]  # one per scene
            for key, part in (("by_scene_kind", 0), ("by_trajectory", 1)):
                names = [family[part] for family in families]
                metrics[key] = {name: _pooled_metrics(errors, baseline, point_errors, [n == name for n in names], overlaps)
                                for name in dict.fromkeys(names)}  # fmt: skip
            if num_views > SPREAD_VIEWS:
                spread = spread_view_indices(num_views)
                kinds = [family[0] for family in families]
                subset, subset_baseline = [_among(e, spread) for e in errors], [_among(b, spread) for b in baseline]
                metrics[f"spread_{SPREAD_VIEWS}_views"] = {
                    **_pooled_metrics(subset, subset_baseline, None, [True] * len(errors)),
                    "by_scene_kind": {kind: _pooled_metrics(subset, subset_baseline, None, [k == kind for k in kinds])
                                      for kind in dict.fromkeys(kinds)},
                }  # fmt: skip
            metrics.update(
                loss=float(np.mean(losses)),
                seconds_per_forward=float(np.mean(seconds)),
                scenes=config.scenes,
                failed_scenes=failed,
            )
            results[str(num_views)] = metrics
    finally:
        model.train(was_training)
    return results
