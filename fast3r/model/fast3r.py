"""Fast3R: encode every view, fuse all views in one transformer, decode per-view pointmaps.

    images (N views) -> ViT encoder (per view) -> fusion transformer (all views) -> two DPT heads
      pts3d_in_other_view, conf   : points of every view in view 0's camera frame
      pts3d_local, conf_local     : points of every view in its own camera frame
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .config import Fast3RConfig
from .dpt import PointHead
from .encoder import ViTEncoder
from .fusion import FusionDecoder

ImageIds = Sequence[float] | torch.Tensor | str | None
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # precisions by name


@dataclass
class RunOptions:
    """How a forward pass is scheduled; none of these change the result beyond rounding (in bf16 the matrix
    kernels can change with a chunk's batch, and values with them by bf16 rounding: BENCHMARKS.md, stages).

    encoder_chunk_views: views encoded at once (per image size).
    head_chunk_views:    views decoded by the DPT heads at once.
    output_device:       where per-view outputs are moved as they are produced (e.g. "cpu").
    attention_query_chunk: split fusion attention queries into chunks of this many tokens (long cuDNN
                         calls run slower than several shorter ones: BENCHMARKS.md, attention).
    mlp_token_chunk:     at inference, run the fusion MLPs over this many tokens at a time.
    on_step:             called as on_step(stage, count) after each unit of work: ("encoder", views),
                         ("fusion", 1) per block, ("heads", views); for progress displays.
    """

    encoder_chunk_views: int = 64
    head_chunk_views: int = 16
    output_device: torch.device | str | None = None
    attention_query_chunk: int | None = 40_960
    mlp_token_chunk: int | None = 262_144
    on_step: Callable[[str, int], None] | None = None


class Fast3R(nn.Module):
    def __init__(self, config: Fast3RConfig | None = None):
        super().__init__()
        self.config = config = config or Fast3RConfig()
        config.validate()
        token_dims = (config.encoder.embed_dim,) + (config.decoder.embed_dim,) * 3
        self.encoder = ViTEncoder(config.encoder)
        self.decoder = FusionDecoder(config.decoder, config.encoder.embed_dim, config.hooks)
        self.downstream_head = PointHead(config.head, token_dims, config.encoder.patch_size)
        self.downstream_head_local = (
            PointHead(config.head, token_dims, config.encoder.patch_size) if config.head.with_local_head else None
        )

    # Loading and saving live in fast3r.model.pretrained; exposed here for the familiar spelling.
    @classmethod
    def from_pretrained(cls, source: str, **kwargs) -> "Fast3R":
        from .pretrained import load_pretrained

        return load_pretrained(source, **kwargs)

    def save_pretrained(
        self, directory: str, dtype: torch.dtype | None = None, max_shard_bytes: int | None = None
    ) -> None:
        from .pretrained import save_pretrained

        save_pretrained(self, directory, dtype=dtype, max_shard_bytes=max_shard_bytes)

    def forward(
        self,
        views: Sequence[torch.Tensor],
        image_ids: ImageIds = None,
        generator: torch.Generator | None = None,
        options: RunOptions | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Reconstruct a scene from N views.

        views: N tensors, each (3, H, W) or (B, 3, H, W) in [-1, 1]; H, W multiples of 16; sizes may
            differ between views; B must agree.
        image_ids: one (possibly fractional) index per view; None spreads them evenly over
            [0, num_image_positions - 1] with view 0 at 0; "random" draws them as the release does.
        Returns one dict per view: pts3d_in_other_view (B, H, W, 3), conf (B, H, W), and, with the
        local head, pts3d_local (B, H, W, 3), conf_local (B, H, W). Outputs are fp32.
        """
        options = options or RunOptions()
        images = self.check_views(views)
        ids = self.image_ids(len(images), image_ids, generator).to(images[0].device)
        tokens = self.encode(images, options)  # N x (B, P_i, D_enc)
        return self.decode(tokens, [tuple(image.shape[-2:]) for image in images], ids, options)

    def encode(self, images: list[torch.Tensor], options: RunOptions | None = None) -> list[torch.Tensor]:
        """Encoder tokens N x (B, P_i, D_enc) of checked views (see `check_views`), in view order.

        Views can be encoded in several calls (e.g. while later photos are still being decoded) and their
        tokens concatenated before `decode`: the encoder sees each view alone.
        """
        options = options or RunOptions()
        tokens: list[torch.Tensor | None] = [None] * len(images)
        for group in _chunks_of_equal_size(images, options.encoder_chunk_views):
            batch = images[group[0]].shape[0]
            encoded = self.encoder(torch.cat([images[i] for i in group]))  # (n*B, P, D)
            for position, index in enumerate(group):
                tokens[index] = encoded[position * batch : (position + 1) * batch]
            _report(options, "encoder", len(group))
        return tokens

    def decode(
        self,
        tokens: list[torch.Tensor],  # N x (B, P_i, D_enc)
        image_sizes: Sequence[tuple[int, int]],  # N x (H_i, W_i)
        image_ids: torch.Tensor,  # (N,) from `image_ids`
        options: RunOptions | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Fusion transformer over all views' tokens, then the heads: one output dict per view.
        Empties `tokens` once they are fused, so the encoder tokens do not outlive the fusion input."""
        options = options or RunOptions()
        tokens_per_view = [t.shape[1] for t in tokens]
        hooks = self.decoder(
            torch.cat(tokens, dim=1),
            tokens_per_view,
            image_ids.to(tokens[0].device),
            options.attention_query_chunk,
            options.mlp_token_chunk,
            on_block=None if options.on_step is None else lambda: options.on_step("fusion", 1),
        )  # 4 x (B, sum P_i, D)
        tokens.clear()
        return self._decode_heads(image_sizes, hooks, tokens_per_view, options)

    def image_ids(self, num_views: int, image_ids: ImageIds, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N,) float64 image indices for the fusion transformer (see `view_image_ids`)."""
        return view_image_ids(num_views, image_ids, self.config.decoder.num_image_positions, generator)

    # ----- steps -----
    def check_views(self, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Views as (B, 3, H, W) tensors on the model's device and dtype; raises on bad shapes."""
        if isinstance(views, torch.Tensor) or not isinstance(views, Sequence):
            raise TypeError("views must be a list of per-view image tensors, each (3, H, W) or (B, 3, H, W)")
        if len(views) == 0:
            raise ValueError("views is empty: give at least one image tensor")
        patch = self.config.encoder.patch_size
        param = next(self.parameters())
        images, batch = [], None
        for index, view in enumerate(views):
            if not isinstance(view, torch.Tensor):
                raise TypeError(f"view {index} is a {type(view).__name__}, not a torch.Tensor")
            if view.ndim == 3:
                view = view[None]
            if view.ndim != 4 or view.shape[1] != 3:
                raise ValueError(f"view {index} has shape {tuple(view.shape)}; expected (3, H, W) or (B, 3, H, W)")
            height, width = view.shape[-2:]
            if height % patch or width % patch or height == 0 or width == 0:
                raise ValueError(f"view {index} is {height}x{width}; height and width must be multiples of {patch}")
            if batch is None:
                batch = view.shape[0]
            elif view.shape[0] != batch:
                raise ValueError(f"view {index} has batch size {view.shape[0]}, view 0 has {batch}")
            images.append(view.to(device=param.device, dtype=param.dtype))
        return images

    def _decode_heads(
        self,
        image_sizes: Sequence[tuple[int, int]],
        hooks: list[torch.Tensor],
        tokens_per_view: list[int],
        options: RunOptions,
    ) -> list[dict[str, torch.Tensor]]:
        starts = [0]
        for count in tokens_per_view:
            starts.append(starts[-1] + count)
        heads = {"": self.downstream_head}
        if self.downstream_head_local is not None:
            heads["_local"] = self.downstream_head_local
        results: list[dict[str, torch.Tensor]] = [{} for _ in image_sizes]
        batch = hooks[0].shape[0]
        for group in _chunks_of_equal_size(image_sizes, options.head_chunk_views):
            height, width = image_sizes[group[0]]
            # (n*B, P, D) per hook: the tokens of this chunk's views, stacked along the batch
            group_hooks = [torch.cat([h[:, starts[i] : starts[i + 1]] for i in group]) for h in hooks]
            for suffix, head in heads.items():
                points, conf = head(group_hooks, height, width)
                for position, index in enumerate(group):
                    part = slice(position * batch, (position + 1) * batch)
                    name = "pts3d_in_other_view" if suffix == "" else "pts3d_local"
                    results[index][name] = _to(points[part], options.output_device)
                    results[index]["conf" + suffix] = _to(conf[part], options.output_device)
            _report(options, "heads", len(group))
        return results


def view_image_ids(
    num_views: int, image_ids: ImageIds, table: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(N,) float64 image indices for a model trained with `table` index positions: None spreads them evenly
    over [0, table - 1] with view 0 at 0; "random" draws them as the release does; else as given."""
    if image_ids is None:
        if num_views == 1:
            return torch.zeros(1, dtype=torch.float64)
        return torch.linspace(0, table - 1, num_views, dtype=torch.float64)
    if isinstance(image_ids, str):
        if image_ids != "random":
            raise ValueError(f"image_ids must be a sequence of numbers, None or 'random', not {image_ids!r}")
        if num_views > table:
            raise ValueError(f"'random' image indices allow at most {table} views, got {num_views}")
        others = torch.randperm(table - 1, generator=generator)[: num_views - 1] + 1
        return torch.cat([torch.zeros(1, dtype=torch.long), others]).to(torch.float64)
    ids = torch.as_tensor(image_ids, dtype=torch.float64).flatten().cpu()
    if ids.numel() != num_views:
        raise ValueError(f"image_ids has {ids.numel()} entries for {num_views} views")
    if not torch.isfinite(ids).all():
        raise ValueError("image_ids must be finite")
    return ids


def _report(options: RunOptions, stage: str, count: int) -> None:
    if options.on_step is not None:
        options.on_step(stage, count)


def _to(tensor: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    return tensor if device is None else tensor.to(device, non_blocking=False)


def _chunks_of_equal_size(views: Sequence[torch.Tensor | tuple[int, int]], chunk_views: int) -> list[list[int]]:
    """Group view indices by image size (keeping order within a size), at most chunk_views a group.
    `views` are image tensors (..., H, W) or (H, W) sizes."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, view in enumerate(views):
        size = tuple(view.shape[-2:]) if isinstance(view, torch.Tensor) else tuple(view)
        by_size.setdefault(size, []).append(index)
    chunk_views = max(1, chunk_views)
    return [
        indices[start : start + chunk_views]
        for indices in by_size.values()
        for start in range(0, len(indices), chunk_views)
    ]
