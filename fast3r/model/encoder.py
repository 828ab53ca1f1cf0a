"""Per-view ViT encoder: 16x16 patches, 2D RoPE, no class token and no absolute position embedding."""
from __future__ import annotations

import torch
from torch import nn

from .config import EncoderConfig
from .layers import Block, RoPE2D


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # (B, 3, H, W) -> (B, H/p * W/p, D), patches in row-major order
        return self.proj(images).flatten(2).transpose(1, 2)


def patch_positions(grid_h: int, grid_w: int, device: torch.device) -> torch.Tensor:
    """(grid_h * grid_w, 2) integer (row, col) of each patch, row-major."""
    rows = torch.arange(grid_h, device=device)
    cols = torch.arange(grid_w, device=device)
    return torch.cartesian_prod(rows, cols)


class ViTEncoder(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config.patch_size, config.embed_dim)
        self.rope = RoPE2D(config.rope_base)
        self.enc_blocks = nn.ModuleList(
            Block(config.embed_dim, config.num_heads, config.mlp_ratio, qkv_bias=True, norm_eps=1e-6)
            for _ in range(config.depth)
        )
        self.enc_norm = nn.LayerNorm(config.embed_dim, eps=1e-6)

    def forward(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> tokens (B, H/16 * W/16, D); with `keep` (indices of patches,
        row-major), only those patches' tokens (B, len(keep), D), encoded without the others."""
        patch = self.config.patch_size
        grid_h, grid_w = images.shape[-2] // patch, images.shape[-1] // patch
        tokens = self.patch_embed(images)
        positions = patch_positions(grid_h, grid_w, images.device)
        if keep is not None:
            tokens, positions = tokens[:, keep], positions[keep]
        rope = self.rope.cos_sin(positions, self.config.embed_dim // self.config.num_heads)
        for block in self.enc_blocks:
            tokens = block(tokens, rope)
        return self.enc_norm(tokens)
