"""Training batches as a pure function of (seed, step, rank): resumable at any step, different per rank.

A batch is a list over views of dicts of batched tensors (the layout of `fast3r.data.multiview`):
  img (B, 3, H, W) float32 in [-1, 1], pts3d (B, H, W, 3) world points, valid (B, H, W) bool,
  camera_pose (B, 4, 4) camera-to-world, K (B, 3, 3), depth (B, H, W) (0 = unknown).
Each step draws its number of views, its resolution and its image indices (the same on every rank,
so their work is balanced); each rank takes its own scenes.

Two ways to feed the model:
  "fresh": every sample is a new scene, rendered (or read) by `fast3r.data.multiview.MultiViewDataset`
    in DataLoader workers, with optional crop / colour augmentation. Rendering costs about 8 ms per
    224x224 view and CPU core, far slower than a GPU trains a small model.
  "pool": (synthetic only) rendered scenes of `pool_views` views are kept on the training device; the
    pool starts with `pool_initial` scenes and grows by `pool_scenes_per_step` scenes per step (rendered
    ahead by the workers), keeping the newest `pool_capacity`. A sample is a random scene of the pool and
    a random subset of its views, so each rendered view serves many samples. Scenes are rendered at the
    largest height and width of `resolutions`; a step's resolution is a centre crop of them, as fresh
    mode crops (so each resolution needs that height or that width: no resizing). An exact resume
    renders the whole pool again before its first step; a run continued from a slot checkpoint (inexact
    anyway) renders only the newest `pool_slot_restart` scenes and draws from what it holds, which grows
    back to the whole pool as new scenes come in (re-rendering 1,557 scenes took 295 s of a 508 s slot).
    `pool_device_share` of the new scenes are rendered by the training process on its own device (a GPU
    renders the recipe's scenes about 26x faster than one CPU core) and the rest by the workers.

Curriculum (`curriculum_steps` > 0): over the first curriculum_steps steps, at progress p from 0 to 1,
a step's views grow from 2 to the number drawn (2 + round(p (N - 2))), and in pool mode its views are
taken from a window of consecutive trajectory positions that widens from those views to all
`pool_views`: along the ordered trajectories (arc, orbit, walk) neighbouring positions are near each
other, so early samples have small baselines and later ones the full spread.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from fast3r.data.multiview import MultiViewDataset, SampleKey, collate_views
from fast3r.data.synthetic import TRAJECTORIES, SceneConfig, SyntheticSceneSource
from fast3r.data.synthetic.scene import SCENE_KINDS
from fast3r.data.transforms import POOL_AUGMENT, TRAINING_AUGMENT, AugmentConfig, jitter_factors
from fast3r.data.views import View

from .heldout import HELDOUT_SEED_BASE
from .pool import PoolScenes, SceneRing

IMAGE_ID_MODES = ("pool", "sequential")
MODES = ("fresh", "pool")
RENDER_DEVICES = ("cpu", "cuda")


@dataclass
class DataConfig:
    """source: "synthetic" (procedural rooms / orbit scenes rendered on the fly) or "colmap:<dir>" (one
    COLMAP reconstruction with depth maps in <dir>/depth; fresh mode). num_views / resolutions ((H, W)):
    one drawn per batch. image_ids: "pool" (view 0 gets 0, the others distinct random indices from
    1..image_id_pool-1, as the release) or "sequential" (0..N-1). augment: the release's colour jitter
    and mild zoom (fresh mode; pool mode: the colour jitter alone, per view, on the training device).
    render_device: "cpu" renders in `num_workers` DataLoader processes, "cuda" in the main process
    (num_workers = 0). fov_deg: range of the cameras' horizontal field of view, drawn per scene (e.g.
    [30, 100] for narrow to wide lenses). See the module docstring for
    `mode`, the pool and `curriculum_steps` (0: none). Scene levers (fast3r.data.synthetic.SceneConfig;
    the defaults render the scenes as before): clutter: [low, high] small boxes and spheres per scene,
    on the floor and furniture; natural_textures: share of materials with 1/f-spectrum textures in
    photo colours; ambient: [low, high] share of ambient light (lower: stronger sun shading);
    shadows: objects cast shadows of the sun; varied_views: share of room scenes whose orbit and arc views
    each get their own height and aim point."""

    source: str = "synthetic"
    mode: str = "fresh"
    scene_kinds: list[str] = field(default_factory=lambda: list(SCENE_KINDS))
    trajectories: list[str] = field(default_factory=lambda: list(TRAJECTORIES))
    num_views: list[int] = field(default_factory=lambda: [8])
    resolutions: list[tuple[int, int]] = field(default_factory=lambda: [(224, 224)])
    batch_size: int = 8
    image_ids: str = "pool"
    image_id_pool: int = 1000
    augment: bool = False
    num_workers: int = 4
    render_device: str = "cpu"
    seed_base: int = 0
    pool_views: int = 16
    pool_initial: int = 64
    pool_scenes_per_step: float = 1.0
    pool_capacity: int = 2048
    pool_slot_restart: int = 128
    pool_device_share: float = 0.0
    fov_deg: tuple[float, float] = (50.0, 80.0)
    curriculum_steps: int = 0
    clutter: tuple[int, int] = (0, 0)
    natural_textures: float = 0.0
    ambient: tuple[float, float] = (0.4, 0.55)
    shadows: bool = False
    varied_views: float = 0.0

    def render_size(self) -> tuple[int, int]:
        """(height, width) that scenes are rendered at: the largest of `resolutions`, cropped to each."""
        return max(int(size[0]) for size in self.resolutions), max(int(size[1]) for size in self.resolutions)

    def scene_configs(self) -> tuple[SceneConfig, ...]:
        """One SceneConfig per scene kind, with this config's lens and scene levers."""
        levers = dict(clutter=tuple(self.clutter), natural_textures=self.natural_textures, ambient=tuple(self.ambient),
                      shadows=self.shadows, varied_views=self.varied_views)  # fmt: skip
        return tuple(SceneConfig(kind=kind, fov_deg=tuple(self.fov_deg), **levers) for kind in self.scene_kinds)

    def validate(self) -> None:
        if self.source != "synthetic" and not self.source.startswith("colmap:"):
            raise ValueError(f"data.source must be 'synthetic' or 'colmap:<dir>', got {self.source!r}")
        if self.mode not in MODES:
            raise ValueError(f"data.mode must be one of {MODES}, got {self.mode!r}")
        for kind in self.scene_kinds:
            if kind not in SCENE_KINDS:
                raise ValueError(f"data.scene_kinds: unknown kind {kind!r}; expected some of {SCENE_KINDS}")
        for trajectory in self.trajectories:
            if trajectory not in TRAJECTORIES:
                raise ValueError(f"data.trajectories: unknown {trajectory!r}; expected some of {TRAJECTORIES}")
        if not self.scene_kinds or not self.trajectories:
            raise ValueError("data.scene_kinds and data.trajectories must not be empty")
        if not self.num_views or min(self.num_views) < 1:
            raise ValueError(f"data.num_views must be numbers >= 1, got {self.num_views}")
        if not self.resolutions:
            raise ValueError("data.resolutions must hold at least one [H, W] pair")
        for size in self.resolutions:
            if len(size) != 2 or any(int(s) <= 0 or int(s) % 16 for s in size):
                raise ValueError(f"data.resolutions: {list(size)} is not an [H, W] pair of multiples of 16")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError("data.batch_size must be >= 1 and data.num_workers >= 0")
        if self.image_ids not in IMAGE_ID_MODES:
            raise ValueError(f"data.image_ids must be one of {IMAGE_ID_MODES}, got {self.image_ids!r}")
        if self.image_ids == "pool" and self.image_id_pool < max(self.num_views):
            raise ValueError(f"data.image_id_pool={self.image_id_pool} is smaller than the most views {max(self.num_views)}")
        if self.render_device not in RENDER_DEVICES:
            raise ValueError(f"data.render_device must be one of {RENDER_DEVICES}, got {self.render_device!r}")
        if self.render_device == "cuda" and self.num_workers:
            raise ValueError("data.render_device='cuda' renders in the main process: set data.num_workers = 0")
        if not 0 < self.fov_deg[0] <= self.fov_deg[1] < 180:
            raise ValueError(f"data.fov_deg must be [low, high] degrees with 0 < low <= high < 180, got {list(self.fov_deg)}")
        if self.curriculum_steps < 0:
            raise ValueError(f"data.curriculum_steps must be >= 0, got {self.curriculum_steps}")
        try:
            self.scene_configs()
        except ValueError as err:
            raise ValueError(str(err).replace("SceneConfig.", "data.")) from err
        if self.mode == "pool":
            if self.source != "synthetic":
                raise ValueError("data.mode='pool' renders synthetic scenes: set data.source = 'synthetic'")
            height, width = self.render_size()
            for size in self.resolutions:
                if int(size[0]) != height and int(size[1]) != width:
                    raise ValueError(
                        f"data.mode='pool' crops data.resolutions from scenes rendered at {height}x{width} without "
                        f"resizing: {list(size)} needs height {height} or width {width}"
                    )
            if max(self.num_views) > self.pool_views:
                raise ValueError(f"data.pool_views={self.pool_views} is fewer than the most views {max(self.num_views)}")
            if not 1 <= self.pool_initial <= self.pool_capacity or self.pool_scenes_per_step < 0:
                raise ValueError("data.pool_* need 1 <= pool_initial <= pool_capacity and pool_scenes_per_step >= 0")
            if self.pool_slot_restart < 0:
                raise ValueError("data.pool_slot_restart must be >= 0 (0: a continued run renders the whole pool)")
            if not 0.0 <= self.pool_device_share <= 1.0:
                raise ValueError(f"data.pool_device_share must be a share from 0 to 1, got {self.pool_device_share}")


@dataclass
class Batch:
    step: int
    views: list[dict[str, torch.Tensor]]
    image_ids: list[float]

    def pin_memory(self) -> "Batch":
        """Called by the DataLoader's pin-memory thread."""
        return Batch(self.step, [{k: v.pin_memory() for k, v in view.items()} for view in self.views], self.image_ids)


@dataclass(frozen=True)
class StepPlan:
    """What every rank draws at one step; `view_window`: pool mode draws the views from this many
    consecutive trajectory positions (the curriculum's baseline limit)."""

    num_views: int
    resolution: tuple[int, int]
    image_ids: tuple[float, ...]
    view_window: int


def curriculum_progress(config: DataConfig, step: int) -> float:
    """0 at step 0 rising to 1 at `curriculum_steps` (1 throughout without a curriculum)."""
    return min(1.0, step / config.curriculum_steps) if config.curriculum_steps else 1.0


def plan_step(config: DataConfig, seed: int, step: int) -> StepPlan:
    """The number of views, resolution and image indices of `step`: a pure function of its arguments."""
    rng = np.random.default_rng([seed, step])
    num_views = int(config.num_views[int(rng.integers(len(config.num_views)))])
    progress = curriculum_progress(config, step)
    if num_views > 2:
        num_views = 2 + round(progress * (num_views - 2))
    view_window = num_views + round(progress * (config.pool_views - num_views)) if config.mode == "pool" else num_views
    height, width = (int(s) for s in config.resolutions[int(rng.integers(len(config.resolutions)))])
    if config.image_ids == "sequential":
        image_ids = tuple(float(i) for i in range(num_views))
    else:
        others = rng.permutation(config.image_id_pool - 1)[: num_views - 1] + 1
        image_ids = (0.0, *(float(i) for i in others))
    return StepPlan(num_views, (height, width), image_ids, view_window)


# ----- fresh: one new scene per sample, through fast3r.data.multiview -----
class _FixedScene:
    """A scene source that always returns the same views (one COLMAP reconstruction)."""

    def __init__(self, views: list[View]):
        self.views = views

    def __call__(self, index: int) -> list[View]:
        return self.views


def _colmap_source(directory: str) -> tuple[_FixedScene, int]:
    from fast3r.data.colmap_reader import load_colmap_views

    root = Path(directory)
    depth_dir = root / "depth"
    if not depth_dir.is_dir():
        raise ValueError(f"data.source colmap:{root}: training needs depth maps in {depth_dir} (named after the images)")
    views = load_colmap_views(root, depth_dir=depth_dir)
    if not any(view.depth is not None for view in views):
        raise ValueError(f"data.source colmap:{root}: no image has a depth map in {depth_dir}")
    return _FixedScene(views), 1


def _synthetic_source(config: DataConfig, num_views: int, height: int, width: int) -> tuple[SyntheticSceneSource, int]:
    source = SyntheticSceneSource(
        num_views=num_views,
        height=height,
        width=width,
        configs=config.scene_configs(),
        trajectories=tuple(config.trajectories),
        base_seed=config.seed_base,
        device=config.render_device,
    )
    return source, HELDOUT_SEED_BASE - config.seed_base


class StepBatchSampler(Sampler[list[SampleKey]]):
    """The sample keys of steps start..total-1 for one rank: sample k of the whole run (over steps,
    ranks and batch positions) is scene k mod num_scenes in epoch k // num_scenes."""

    def __init__(self, config: DataConfig, seed: int, num_scenes: int, start: int, total: int, rank: int, world_size: int):
        self.config, self.seed, self.num_scenes = config, seed, num_scenes
        self.start, self.total, self.rank, self.world_size = start, total, rank, world_size

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        batch = self.config.batch_size
        for step in range(self.start, self.total):
            plan = plan_step(self.config, self.seed, step)
            first = (step * self.world_size + self.rank) * batch
            yield [
                SampleKey(k % self.num_scenes, k // self.num_scenes, plan.num_views, plan.resolution)
                for k in range(first, first + batch)
            ]


class _FreshBatches:
    """Iterates Batches from a DataLoader over MultiViewDataset with StepBatchSampler."""

    def __init__(self, config: DataConfig, seed: int, start: int, total: int, rank: int, world_size: int, pin_memory: bool):
        if config.source == "synthetic":
            source, num_scenes = _synthetic_source(config, max(config.num_views), *config.render_size())
        else:
            source, num_scenes = _colmap_source(config.source.split(":", 1)[1])
        augment = TRAINING_AUGMENT if config.augment else AugmentConfig()
        dataset = MultiViewDataset(source, num_scenes, max(config.num_views), tuple(config.resolutions[0]), augment, seed)
        self.sampler = StepBatchSampler(config, seed, num_scenes, start, total, rank, world_size)
        self.loader = DataLoader(
            dataset,
            batch_sampler=self.sampler,
            collate_fn=collate_views,
            num_workers=config.num_workers,
            pin_memory=pin_memory,
            prefetch_factor=2 if config.num_workers else None,
        )
        self.config, self.seed, self.start = config, seed, start

    def __iter__(self) -> Iterator[Batch]:
        for step, views in enumerate(self.loader, start=self.start):
            yield Batch(step, views, list(plan_step(self.config, self.seed, step).image_ids))


# ----- pool: rendered scenes kept on the device, many samples per scene -----
def pool_size(config: DataConfig, step: int) -> int:
    """Scenes rendered into the pool by the time the batch of `step` is drawn."""
    return config.pool_initial + math.floor(step * config.pool_scenes_per_step)


def pool_scenes(config: DataConfig, rank: int = 0, world_size: int = 1) -> PoolScenes:
    """The scenes one rank's pool renders: the config's recipe at its largest resolution, `pool_views` views."""
    return PoolScenes(*_synthetic_source(config, config.pool_views, *config.render_size()), rank, world_size)


def pool_first_scene(config: DataConfig, start: int, restart_scenes: int = 0) -> int:
    """The oldest scene a run starting at step `start` renders into its pool: scenes before the newest
    `pool_capacity` are never drawn again, and an inexact restart renders only its newest `restart_scenes`."""
    first = max(0, pool_size(config, start) - config.pool_capacity)
    if restart_scenes:
        first = max(first, pool_size(config, start) - restart_scenes)
    return first


class _PoolBatches:
    """Draws each step's scenes and views from one rank's SceneRing, refilled as the steps go."""

    def __init__(
        self, config: DataConfig, seed: int, start: int, total: int, rank: int, world_size: int, device: torch.device,
        restart_scenes: int = 0,
    ):
        self.config, self.seed, self.start, self.total, self.rank = config, seed, start, total, rank
        scenes = pool_scenes(config, rank, world_size)
        last = pool_size(config, max(total - 1, 0))
        if last > len(scenes):
            raise ValueError(f"data pool needs {last} scenes per rank; at most {len(scenes)} seeds lie below the held-out seeds")
        first = pool_first_scene(config, start, restart_scenes)
        self.ring = SceneRing(scenes, first, last, config.pool_capacity, config.num_workers, device, config.pool_device_share)

    def batch(self, step: int) -> Batch:
        config = self.config
        self.ring.grow_to(pool_size(config, step))
        plan = plan_step(config, self.seed, step)
        rng = np.random.default_rng([self.seed, step, self.rank, 1])
        held = self.ring.held
        scenes = self.ring.count - held + rng.integers(held, size=config.batch_size)  # scene numbers in the pool
        chosen = np.stack([self._choose_views(rng, plan) for _ in scenes])
        jitter = None
        if config.augment:  # drawn after the scenes and views, which stay those of a run without it
            jitter = np.array([[jitter_factors(rng, POOL_AUGMENT) for _ in range(plan.num_views)] for _ in scenes])
        return Batch(step, self.ring.gather(scenes, chosen, plan.resolution, jitter), list(plan.image_ids))

    def _choose_views(self, rng: np.random.Generator, plan: StepPlan) -> np.ndarray:
        """plan.num_views sorted view numbers of one scene, within a window of plan.view_window positions."""
        if plan.view_window >= self.config.pool_views:
            return np.sort(rng.choice(self.config.pool_views, plan.num_views, replace=False))
        first = rng.integers(self.config.pool_views - plan.view_window + 1)
        return first + np.sort(rng.choice(plan.view_window, plan.num_views, replace=False))

    def __iter__(self) -> Iterator[Batch]:
        for step in range(self.start, self.total):
            yield self.batch(step)


def training_batches(
    config: DataConfig, seed: int, start: int, total: int, rank: int, world_size: int, device: torch.device,
    from_slot: bool = False,
) -> _FreshBatches | _PoolBatches:
    """An iterable of this rank's Batches for steps start..total-1 (pool batches already on `device`).
    `from_slot`: the run continues from a slot checkpoint, so a pool renders only its newest
    `pool_slot_restart` scenes again (0: all; otherwise the batches differ from an uninterrupted run's)."""
    config.validate()
    if config.mode == "pool":
        restart_scenes = config.pool_slot_restart if from_slot else 0
        return _PoolBatches(config, seed, start, total, rank, world_size, device, restart_scenes)
    return _FreshBatches(config, seed, start, total, rank, world_size, pin_memory=device.type == "cuda")
