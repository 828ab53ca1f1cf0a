"""DPT head: four token maps -> a dense (B, 4, H, W) map -> 3D points and confidence per pixel."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import HeadConfig


def _bilinear_weights(size: int, device: torch.device) -> torch.Tensor:
    """(2 * size, size) fp32: bilinear x2 upsampling along one axis with align_corners=True, with the
    weights torch's own kernel computes (source position = dst * (size - 1) / (2 * size - 1) in fp32)."""
    scale = (size - 1) / (2 * size - 1)
    source = torch.arange(2 * size, device=device, dtype=torch.float32) * scale
    low = source.long().clamp(max=size - 1)  # (2 * size,)
    high = (low + 1).clamp(max=size - 1)
    frac = source - low
    columns = torch.arange(size, device=device)
    return (1 - frac)[:, None] * (columns == low[:, None]) + frac[:, None] * (columns == high[:, None])


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling of (B, C, h, w) maps with align_corners=True, as `F.interpolate`.

    On a GPU in bf16 / fp16 it runs as two matrix products over the channels-last map (along the width,
    then the height): torch's bilinear kernels there took 15% of a training step of the small model (their
    backward accumulates with atomics), the products a fraction of that (BENCHMARKS.md). Their weights are
    rounded to the input's precision, a difference of the order of that precision's own rounding. fp32
    and the CPU keep `F.interpolate`.
    """
    if x.device.type == "cuda" and x.dtype in (torch.bfloat16, torch.float16):
        return _upsample2x_by_products(x)
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def _upsample2x_by_products(x: torch.Tensor) -> torch.Tensor:
    """`upsample2x` as two matrix products (any device and dtype; the channels-last layout is kept)."""
    batch, channels, height, width = x.shape
    along_h = _bilinear_weights(height, x.device).to(x.dtype)  # (2h, h)
    along_w = _bilinear_weights(width, x.device).to(x.dtype)  # (2w, w)
    nhwc = x.permute(0, 2, 3, 1)  # (B, h, w, C): a view of a channels-last map
    wide = torch.matmul(along_w, nhwc)  # (B, h, 2w, C)
    tall = torch.matmul(along_h, wide.reshape(batch, height, 2 * width * channels))  # (B, 2h, 2w * C)
    return tall.view(batch, 2 * height, 2 * width, channels).permute(0, 3, 1, 2)  # (B, C, 2h, 2w)


class Upsample2x(nn.Module):
    """`upsample2x` as a layer (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample2x(x)


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Refine (and add a skip), upsample x2, project: one step of the DPT decoder."""

    def __init__(self, features: int):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        return self.out_conv(upsample2x(x))


class Scratch(nn.Module):
    """Channel projections and refinement blocks. The projections are also registered as
    `layer_rn.{0..3}`: the release's state dict carries both names for the same four tensors."""

    def __init__(self, layer_dims: Sequence[int], features: int):
        super().__init__()
        self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn = (
            nn.Conv2d(dim, features, 3, padding=1, bias=False) for dim in layer_dims
        )
        self.layer_rn = nn.ModuleList([self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn])
        self.refinenet1, self.refinenet2, self.refinenet3, self.refinenet4 = (
            FusionBlock(features) for _ in range(4)
        )


class DPT(nn.Module):
    def __init__(self, config: HeadConfig, token_dims: Sequence[int], patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        d0, d1, d2, d3 = config.layer_dims
        self.act_postprocess = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(token_dims[0], d0, 1), nn.ConvTranspose2d(d0, d0, 4, stride=4)),
                nn.Sequential(nn.Conv2d(token_dims[1], d1, 1), nn.ConvTranspose2d(d1, d1, 2, stride=2)),
                nn.Sequential(nn.Conv2d(token_dims[2], d2, 1)),
                nn.Sequential(nn.Conv2d(token_dims[3], d3, 1), nn.Conv2d(d3, d3, 3, stride=2, padding=1)),
            ]
        )
        self.scratch = Scratch(config.layer_dims, config.feature_dim)
        self.head = nn.Sequential(
            nn.Conv2d(config.feature_dim, config.feature_dim // 2, 3, padding=1),
            Upsample2x(),
            nn.Conv2d(config.feature_dim // 2, config.last_dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(config.last_dim, 4, 1),
        )

    def forward(self, hooks: Sequence[torch.Tensor], height: int, width: int) -> torch.Tensor:
        """hooks: four (B, P, D_i) token maps of views of size (height, width) -> (B, 4, H, W).

        The maps keep the tokens' memory layout: (B, P, D) tokens give channels-last maps (no copy), and
        the convolutions follow their input's layout (on an H200 1.3x faster than NCHW maps: BENCHMARKS.md).
        """
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        layers = []
        for index, tokens in enumerate(hooks):
            fmap = tokens.unflatten(1, (grid_h, grid_w)).permute(0, 3, 1, 2)  # (B, D_i, h, w)
            layers.append(self.scratch.layer_rn[index](self.act_postprocess[index](fmap)))
        l1, l2, l3, l4 = layers  # strides 4, 8, 16, 32 (relative to pixels)
        path = self.scratch.refinenet4(l4)[:, :, : l3.shape[2], : l3.shape[3]]
        path = self.scratch.refinenet3(path, l3)
        path = self.scratch.refinenet2(path, l2)
        path = self.scratch.refinenet1(path, l1)
        return self.head(path)


class PointHead(nn.Module):
    """A DPT head with the release's output activations (kept under the `dpt.` key prefix)."""

    def __init__(self, config: HeadConfig, token_dims: Sequence[int], patch_size: int):
        super().__init__()
        self.dpt = DPT(config, token_dims, patch_size)

    def forward(self, hooks: Sequence[torch.Tensor], height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> points (B, H, W, 3) and confidence (B, H, W), in fp32."""
        out = self.dpt(hooks, height, width).float().permute(0, 2, 3, 1)  # (B, H, W, 4)
        xyz, raw_conf = out[..., :3], out[..., 3]
        distance = xyz.norm(dim=-1, keepdim=True)
        points = xyz / distance.clamp(min=1e-8) * torch.expm1(distance)
        return points, 1 + raw_conf.exp()
