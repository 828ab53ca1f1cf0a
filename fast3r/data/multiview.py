"""The training dataset: multi-view samples from any scene source, batched per view.

A scene source is any callable `source(index) -> list[View]` (the synthetic generator, a COLMAP reader,
the CO3D / RealEstate10K readers). A sample is a list over views of dicts:

    img          (3, H, W) float32 in [-1, 1]
    pts3d        (H, W, 3) float32 world points (zeros where invalid)
    valid        (H, W) bool, pixels with known depth
    depth        (H, W) float32 z-depth, 0 where unknown
    camera_pose  (4, 4) float32 camera-to-world, OpenCV axes
    K            (3, 3) float32 intrinsics of the cropped, resized image

Varying the number of views and the resolution per batch: `MultiViewBatchSampler` yields batches of
`SampleKey`s that share one `num_views` and one `resolution`, both drawn per batch from the given lists,
deterministically from (seed, epoch, batch position):

    sampler = MultiViewBatchSampler(len(dataset), batch_size=4, resolutions=[(384, 512), (288, 512)],
                                    num_views=[4, 8], seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_views, num_workers=4)
    for epoch in range(num_epochs):
        sampler.set_epoch(epoch)
        for views in loader:                      # list over views of dicts of (B, ...) tensors
            output = model([view["img"] for view in views])

Every random choice of a sample (views, crops, colour jitter) comes from numpy's generator seeded with
(seed, epoch, index), so a sample is the same in any worker, process or order.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .transforms import AugmentConfig, colour_jitter, crop_resize
from .views import View

SceneSource = Callable[[int], list[View]]


@dataclass(frozen=True)
class SampleKey:
    """What to draw: scene `index` in `epoch`, with `num_views` views at `resolution` (height, width).

    None takes the dataset's default.
    """

    index: int
    epoch: int = 0
    num_views: int | None = None
    resolution: tuple[int, int] | None = None


class MultiViewDataset(Dataset):
    """`num_views` random views of scene `index`, cropped around the principal point to `resolution`.

    Items are indexed by an int (the dataset's defaults, epoch 0) or a `SampleKey`.
    """

    def __init__(
        self,
        source: SceneSource,
        num_scenes: int,
        num_views: int = 8,
        resolution: tuple[int, int] = (224, 224),
        augment: AugmentConfig = AugmentConfig(),
        seed: int = 0,
    ) -> None:
        if num_scenes < 1 or num_views < 1:
            raise ValueError(f"need at least one scene and one view, got {num_scenes} scenes, {num_views} views")
        self.source, self.num_scenes, self.num_views = source, num_scenes, num_views
        self.resolution, self.augment, self.seed = tuple(resolution), augment, seed

    def __len__(self) -> int:
        return self.num_scenes

    def __getitem__(self, key: int | SampleKey) -> list[dict[str, torch.Tensor]]:
        if not isinstance(key, SampleKey):
            key = SampleKey(int(key))
        if not 0 <= key.index < self.num_scenes:
            raise IndexError(f"scene index {key.index} out of range for {self.num_scenes} scenes")
        num_views = key.num_views or self.num_views
        height, width = key.resolution or self.resolution
        rng = np.random.default_rng([self.seed, key.epoch, key.index])
        views = self.source(key.index)
        if len(views) < num_views:
            raise ValueError(f"scene {key.index} has {len(views)} views, fewer than the {num_views} requested")
        chosen = rng.choice(len(views), size=num_views, replace=False)
        return [self._prepare(views[int(i)], height, width, rng) for i in chosen]

    def _prepare(self, view: View, height: int, width: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        zoom = rng.uniform(*self.augment.zoom_range)
        offset = rng.uniform(-1.0, 1.0, size=2) * self.augment.center_jitter
        view = crop_resize(view, height, width, zoom, (float(offset[0]), float(offset[1])))
        image = colour_jitter(view.image.astype(np.float32) / 255.0, rng, self.augment)
        if view.depth is None:
            depth, points = np.zeros((height, width), np.float32), np.zeros((height, width, 3), np.float32)
        else:
            depth, points = np.where(view.valid, view.depth, 0.0).astype(np.float32), view.points_world()
        return {
            "img": torch.from_numpy(image * 2.0 - 1.0).permute(2, 0, 1).contiguous(),
            "pts3d": torch.from_numpy(points),
            "valid": torch.from_numpy(view.valid),
            "depth": torch.from_numpy(depth),
            "camera_pose": torch.from_numpy(view.c2w.astype(np.float32)),
            "K": torch.from_numpy(view.K.astype(np.float32)),
        }


def collate_views(samples: list[list[dict[str, torch.Tensor]]]) -> list[dict[str, torch.Tensor]]:
    """Samples (each a list over views) -> a list over views of dicts of (B, ...) stacked tensors."""
    num_views = {len(sample) for sample in samples}
    if len(num_views) != 1:
        raise ValueError(f"all samples of a batch need the same number of views, got {sorted(num_views)}")
    shapes = {tuple(sample[0]["img"].shape) for sample in samples}
    if len(shapes) != 1:
        raise ValueError(f"all samples of a batch need the same resolution, got {sorted(shapes)}")
    return [{name: torch.stack([sample[v][name] for sample in samples]) for name in samples[0][v]} for v in range(len(samples[0]))]


class MultiViewBatchSampler(Sampler[list[SampleKey]]):
    """Batches of `SampleKey`s sharing a number of views and a resolution drawn per batch.

    With `world_size` > 1, rank r gets batches r, r + world_size, ...; every rank gets the same number
    of batches (the remainder is dropped) so distributed steps stay in lockstep.
    """

    def __init__(
        self,
        num_scenes: int,
        batch_size: int,
        resolutions: Sequence[tuple[int, int]],
        num_views: Sequence[int],
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or not resolutions or not num_views:
            raise ValueError("need batch_size >= 1 and at least one resolution and one number of views")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must lie in [0, world_size={world_size})")
        self.num_scenes, self.batch_size = num_scenes, batch_size
        self.resolutions = [tuple(int(x) for x in resolution) for resolution in resolutions]
        self.num_views = [int(n) for n in num_views]
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _num_batches(self) -> int:
        full, rest = divmod(self.num_scenes, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __len__(self) -> int:
        return self._num_batches() // self.world_size

    def __iter__(self) -> Iterator[list[SampleKey]]:
        order_rng = np.random.default_rng([self.seed, self.epoch])
        order = order_rng.permutation(self.num_scenes) if self.shuffle else np.arange(self.num_scenes)
        for position in range(len(self) * self.world_size):
            if position % self.world_size != self.rank:
                continue
            batch_rng = np.random.default_rng([self.seed, self.epoch, position, 1])
            resolution = self.resolutions[int(batch_rng.integers(len(self.resolutions)))]
            num_views = self.num_views[int(batch_rng.integers(len(self.num_views)))]
            indices = order[position * self.batch_size : (position + 1) * self.batch_size]
            yield [SampleKey(int(i), self.epoch, num_views, resolution) for i in indices]
