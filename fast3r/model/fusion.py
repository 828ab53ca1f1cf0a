"""The fusion transformer: all views' tokens attend to each other in one sequence.

Each view is tagged by adding a sin/cos embedding of its image index (the paper's position
interpolation: trained with indices drawn from 0..999, so any index in that range is meaningful).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .config import DecoderConfig
from .layers import Block


def image_index_embedding(image_ids: torch.Tensor, dim: int) -> torch.Tensor:
    """(N,) real image indices -> (N, dim) `[sin(p*w), cos(p*w)]`, w_k = 1/10000**(k/(dim/2)).

    Computed in float64 so integer indices reproduce the release's table rows, and fractional
    indices (for more than 1000 views) are just as exact.
    """
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float64, device=image_ids.device) / half)
    angles = image_ids.to(torch.float64)[:, None] * omega[None, :]  # (N, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


class FusionDecoder(nn.Module):
    def __init__(self, config: DecoderConfig, enc_embed_dim: int, hooks: Sequence[int]):
        super().__init__()
        self.config = config
        self.hooks = tuple(hooks)
        self.decoder_embed = nn.Linear(enc_embed_dim, config.embed_dim)
        self.dec_blocks = nn.ModuleList(
            Block(config.embed_dim, config.num_heads, config.mlp_ratio, config.qkv_bias, norm_eps=1e-5)
            for _ in range(config.depth)
        )
        self.dec_norm = nn.LayerNorm(config.embed_dim, eps=1e-6)

    def forward(
        self,
        tokens: torch.Tensor,  # (B, sum_i P_i, D_enc): every view's encoder tokens, concatenated
        tokens_per_view: Sequence[int],
        image_ids: torch.Tensor,  # (N,) one index per view
        query_chunk: int | None = None,
        mlp_chunk: int | None = None,
        on_block: Callable[[], None] | None = None,
    ) -> list[torch.Tensor]:
        """Returns the decoder outputs named by `hooks` (hook 0 is the input tokens themselves).
        on_block: called after each block (progress displays)."""
        kept = {0: tokens} if 0 in self.hooks else {}
        x = self.decoder_embed(tokens)  # (B, L, D)
        index_embed = image_index_embedding(image_ids, x.shape[-1]).to(x.dtype)  # (N, D)
        # (L, D): each view's row once per token; built from Python counts, so no host-device copy
        # or sync happens here (CUDA-graph capture needs neither)
        x = x + torch.cat([row.expand(count, -1) for row, count in zip(index_embed, tokens_per_view)])[None]
        depth = len(self.dec_blocks)
        for layer, block in enumerate(self.dec_blocks, start=1):
            x = block(x, None, query_chunk, mlp_chunk)
            if layer == depth:
                x = self.dec_norm(x)
            if layer in self.hooks:
                kept[layer] = x
            if on_block is not None:
                on_block()
        return [kept[hook] for hook in self.hooks]
