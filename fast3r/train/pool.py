"""The pool's device side: one rank's ring of rendered scenes on the training device, refilled by
DataLoader workers, and the views of chosen scenes gathered from it with their world points.
Which scenes and views a batch takes is drawn in `fast3r.train.data`."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fast3r.data.synthetic import SyntheticSceneSource
from fast3r.data.transforms import apply_colour_jitter
from fast3r.io.images import to_model_range


class PoolScenes(Dataset):
    """Scene k of one rank's pool, as tensors: image (V, H, W, 3) uint8, depth (V, H, W), K (3, 3), c2w (V, 4, 4)."""

    def __init__(self, source: SyntheticSceneSource, num_scenes: int, rank: int, world_size: int):
        self.source, self.num_scenes, self.rank, self.world_size = source, num_scenes, rank, world_size

    def __len__(self) -> int:
        return self.num_scenes // self.world_size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.render(index, self.source.device)

    def render(self, index: int, device: str | torch.device) -> dict[str, torch.Tensor]:
        """Scene `index`, ray cast on `device` (the same scene wherever it is rendered)."""
        source = self.source if str(device) == self.source.device else dataclasses.replace(self.source, device=str(device))
        views = source(index * self.world_size + self.rank)
        return {
            "image": torch.from_numpy(np.stack([v.image for v in views])),
            "depth": torch.from_numpy(np.stack([np.where(v.valid, v.depth, 0.0) for v in views]).astype(np.float32)),
            "K": torch.from_numpy(views[0].K.astype(np.float32)),
            "c2w": torch.from_numpy(np.stack([v.c2w for v in views]).astype(np.float32)),
        }


class SceneRing:
    """The newest `capacity` of scenes first..last-1 of `scenes`, on `device`: scene number n lies in slot
    n mod capacity; scenes first..count-1 have been rendered in. A `device_share` of the scenes (spread
    evenly: n is one when floor((n + 1) share) > floor(n share)) is rendered by this process on `device`,
    the rest by `num_workers` DataLoader workers."""

    def __init__(
        self, scenes: PoolScenes, first: int, last: int, capacity: int, num_workers: int, device: torch.device,
        device_share: float = 0.0,
    ):
        self.first, self.count, self.capacity, self.device = first, first, capacity, device
        self.scenes, self.device_share = scenes, device_share
        self.loader = iter(
            DataLoader(
                scenes,
                batch_size=None,
                sampler=[n for n in range(first, last) if not self.renders_on_device(n)],
                num_workers=num_workers,
                prefetch_factor=8 if num_workers else None,
            )
        )
        views, height, width = scenes.source.num_views, scenes.source.height, scenes.source.width
        self.height, self.width = height, width
        self.images = torch.empty((capacity, views, height, width, 3), dtype=torch.uint8, device=device)
        self.depths = torch.empty((capacity, views, height, width), dtype=torch.float32, device=device)
        self.K = torch.empty((capacity, 3, 3), dtype=torch.float32, device=device)
        self.c2w = torch.empty((capacity, views, 4, 4), dtype=torch.float32, device=device)
        rows = torch.arange(height, dtype=torch.float32, device=device)
        cols = torch.arange(width, dtype=torch.float32, device=device)
        self.pixel_v, self.pixel_u = torch.meshgrid(rows, cols, indexing="ij")  # (H, W)

    @property
    def held(self) -> int:
        """How many scenes the ring holds: numbers count - held .. count - 1."""
        return min(self.count - self.first, self.capacity)

    def renders_on_device(self, number: int) -> bool:
        """Whether scene `number` is rendered by this process on the ring's device."""
        return math.floor((number + 1) * self.device_share) > math.floor(number * self.device_share)

    def grow_to(self, size: int) -> None:
        """Render scenes in until `size` have been."""
        while self.count < size:
            scene = self.scenes.render(self.count, self.device) if self.renders_on_device(self.count) else next(self.loader)
            slot = self.count % self.capacity
            self.images[slot] = scene["image"].to(self.device, non_blocking=True)
            self.depths[slot] = scene["depth"].to(self.device, non_blocking=True)
            self.K[slot] = scene["K"].to(self.device)
            self.c2w[slot] = scene["c2w"].to(self.device)
            self.count += 1

    def gather(
        self, scenes: np.ndarray, chosen: np.ndarray, resolution: tuple[int, int], jitter: np.ndarray | None = None
    ) -> list[dict[str, torch.Tensor]]:
        """Views chosen[b, i] of held scene numbers scenes[b], centre-cropped to `resolution` (height, width;
        at most the rendered size, differing from it by even numbers), as a list over i of batched view dicts.
        jitter: (B, N, 4) colour jitter factors per view (`fast3r.data.transforms.jitter_factors`), or None."""
        height, width = resolution
        top, left = (self.height - height) // 2, (self.width - width) // 2
        rows, cols = slice(top, top + height), slice(left, left + width)
        pixel_v, pixel_u = self.pixel_v[:height, :width], self.pixel_u[:height, :width]
        slots = torch.as_tensor(scenes % self.capacity, device=self.device)
        chosen = torch.as_tensor(chosen, device=self.device)  # (B, N) view numbers within each scene
        factors = None if jitter is None else torch.as_tensor(jitter, device=self.device)  # (B, N, 4), one copy
        K = self.K[slots]  # (B, 3, 3), a copy
        K[:, 0, 2] -= left
        K[:, 1, 2] -= top
        views = []
        for position in range(chosen.shape[1]):
            which = chosen[:, position]
            image = self.images[slots, which, rows, cols]  # (B, H, W, 3)
            depth = self.depths[slots, which, rows, cols]  # (B, H, W)
            c2w = self.c2w[slots, which]  # (B, 4, 4)
            x = (pixel_u - K[:, None, None, 0, 2]) / K[:, None, None, 0, 0] * depth
            y = (pixel_v - K[:, None, None, 1, 2]) / K[:, None, None, 1, 1] * depth
            camera = torch.stack([x, y, depth], dim=-1)  # (B, H, W, 3)
            world = camera @ c2w[:, None, :3, :3].transpose(-1, -2) + c2w[:, None, None, :3, 3]
            valid = depth > 0
            views.append(
                {
                    "img": to_model_range(image) if factors is None else self._jittered(image, factors[:, position]),
                    "pts3d": torch.where(valid[..., None], world, 0.0),
                    "valid": valid,
                    "camera_pose": c2w,
                    "K": K,
                    "depth": depth,
                }
            )
        return views

    def _jittered(self, image: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> colour-jittered float32 (B, 3, H, W) in [-1, 1], as fresh mode's views;
        factors (B, 4) on the ring's device."""
        jittered = apply_colour_jitter(image.to(torch.float32) / 255.0, factors)
        return (jittered * 2.0 - 1.0).movedim(-1, -3)
