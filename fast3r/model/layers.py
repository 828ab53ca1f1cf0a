"""Transformer building blocks shared by the encoder and the fusion decoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:  # torch >= 2.5: choose the kernel order ourselves (cuDNN is fastest on Hopper, then flash)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _CUDA_BACKENDS = [
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
    ]
except ImportError:  # pragma: no cover - old torch uses its own default order
    sdpa_kernel = None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, query_chunk: int | None = None) -> torch.Tensor:
    """Softmax attention, (B, heads, L, head_dim) -> same, through PyTorch's fused kernels.

    On CUDA the fastest applicable kernel is tried first (cuDNN, flash, memory-efficient, math); a
    kernel that does not support the GPU or dtype is skipped. `query_chunk` splits very long query
    sequences, which keeps long cuDNN calls at a higher rate.
    """
    if query_chunk is None or q.shape[2] <= query_chunk:
        return _sdpa(q, k, v)
    out = q.new_empty(q.shape)  # filled chunk by chunk: one extra chunk in memory, not a second output
    for start in range(0, q.shape[2], query_chunk):
        out[:, :, start : start + query_chunk] = _sdpa(q[:, :, start : start + query_chunk], k, v)
    return out


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if q.is_cuda and sdpa_kernel is not None:
        with sdpa_kernel(_CUDA_BACKENDS, set_priority=True):
            return F.scaled_dot_product_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


class RoPE2D(nn.Module):
    """2D rotary position embedding: the first half of each head rotates with the patch row,
    the second half with the column. Angles and rotation are computed in fp32."""

    def __init__(self, base: float = 100.0):
        super().__init__()
        self.base = base

    def cos_sin(self, positions: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (P, 2) integer (row, col) -> cos, sin of shape (P, head_dim) in fp32."""
        half = head_dim // 2
        inv_freq = 1.0 / (self.base ** (torch.arange(0, half, 2, device=positions.device).float() / half))
        angles = []
        for axis in (0, 1):
            freqs = positions[:, axis].float()[:, None] * inv_freq[None, :]  # (P, half/2)
            angles.append(torch.cat([freqs, freqs], dim=-1))  # (P, half)
        angle = torch.cat(angles, dim=-1)  # (P, head_dim)
        return angle.cos(), angle.sin()

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x (B, heads, P, head_dim) -> rotated, in x's dtype. The arithmetic is fp32: x times the fp32 tables
        promotes exactly, so no fp32 copy of x is made (nor kept for the backward pass)."""
        y1, y2, x1, x2 = x.chunk(4, dim=-1)
        rotated_half = torch.cat([-y2, y1, -x2, x1], dim=-1)  # rotate_half on each axis's half; x's dtype
        return (x * cos + rotated_half * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,  # (B, L, D)
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        query_chunk: int | None = None,
    ) -> torch.Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        if query_chunk is not None and length > query_chunk:
            # Long sequences (the fusion at many views): cuDNN attends 1% faster over contiguous q, k, v than
            # over these strided views of one projection (BENCHMARKS.md, attention layout); the copy is 0.1%.
            qkv = qkv.contiguous()  # the projection's own memory goes as the name moves on
        q, k, v = qkv.unbind(0)  # each (B, heads, L, head_dim)
        if rope is not None:
            cos, sin = rope
            q, k = RoPE2D.rotate(q, cos, sin), RoPE2D.rotate(k, cos, sin)
        out = attention(q, k, v, query_chunk)  # (B, heads, L, head_dim)
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()  # exact (erf) GELU
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x += attn(LN1(x)); x += mlp(LN2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(
        self,
        x: torch.Tensor,  # (B, L, D)
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        query_chunk: int | None = None,
        mlp_chunk: int | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope, query_chunk)
        if mlp_chunk is None or x.shape[1] <= mlp_chunk or torch.is_grad_enabled():
            return x + self.mlp(self.norm2(x))
        # Inference on long sequences: the 4x-wide MLP activation exists for one chunk at a time.
        for part in x.split(mlp_chunk, dim=1):
            part.add_(self.mlp(self.norm2(part)))
        return x
