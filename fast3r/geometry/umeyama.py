"""Weighted similarity (Sim(3)) fits between corresponding point sets (Umeyama, 1991)."""
from __future__ import annotations

import numpy as np
import torch

from fast3r.geometry.masks import finite_points

MIN_POINTS = 3


def umeyama_batched(
    source: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    with_scale: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit `target ≈ scale * R @ source + t` for each batch element, minimising weighted squared error.

    source, target: (B, M, 3) corresponding points. weights: (B, M), >= 0 (a bool mask works too);
    None weighs all points equally. Points that are not finite in either set are ignored.
    A batch element with fewer than 3 usable points, or whose source points all coincide, gets the
    identity (scale 1, R = I, t = 0).
    Arithmetic is float64; returns scale (B,), R (B, 3, 3), t (B, 3) as float64 on the input's device.
    """
    if source.ndim != 3 or source.shape[-1] != 3 or source.shape != target.shape:
        raise ValueError(
            f"umeyama needs source and target of one shape (B, M, 3); got {tuple(source.shape)} "
            f"and {tuple(target.shape)}"
        )
    if weights is not None and weights.shape != source.shape[:2]:
        raise ValueError(f"weights must be (B, M) = {tuple(source.shape[:2])}, got {tuple(weights.shape)}")
    usable = finite_points(source) & finite_points(target)  # (B, M)
    weight = usable.to(torch.float64)
    if weights is not None:
        weight = weight * torch.nan_to_num(weights.to(torch.float64), nan=0.0).clamp(min=0.0)
    src = torch.where(usable[..., None], source, 0).to(torch.float64)  # (B, M, 3)
    dst = torch.where(usable[..., None], target, 0).to(torch.float64)
    total = weight.sum(dim=1)  # (B,)
    enough = ((weight > 0).sum(dim=1) >= MIN_POINTS) & (total > 0)
    norm_weight = weight / total.clamp(min=torch.finfo(torch.float64).tiny)[:, None]  # (B, M)

    src_mean = torch.einsum("bm,bmk->bk", norm_weight, src)  # (B, 3)
    dst_mean = torch.einsum("bm,bmk->bk", norm_weight, dst)
    src_centred = src - src_mean[:, None]
    dst_centred = dst - dst_mean[:, None]
    covariance = torch.einsum("bm,bmi,bmj->bij", norm_weight, dst_centred, src_centred)  # (B, 3, 3)
    src_variance = torch.einsum("bm,bmk->b", norm_weight, src_centred.square())  # (B,)

    # 3x3 SVDs are cheapest on the CPU, whatever device the points live on
    u, singular, vh = torch.linalg.svd(covariance.cpu())
    reflection = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    reflection = torch.where(reflection == 0, torch.ones_like(reflection), reflection)
    sign = torch.ones_like(singular)
    sign[:, 2] = reflection
    rotation = (u * sign[:, None, :]) @ vh  # (B, 3, 3)
    rotation = rotation.to(source.device)
    singular_sum = (singular * sign).sum(dim=1).to(source.device)

    # a source spread below ~1e-12 of the target's cannot fix a scale or a rotation
    dst_variance = torch.einsum("bm,bmk->b", norm_weight, dst_centred.square())
    spread = src_variance > 1e-24 * dst_variance.clamp(min=1.0)
    solvable = enough & spread & torch.isfinite(covariance).all(dim=(1, 2))
    if with_scale:
        scale = singular_sum / src_variance.clamp(min=torch.finfo(torch.float64).tiny)
    else:
        scale = torch.ones_like(src_variance)
    translation = dst_mean - scale[:, None] * torch.einsum("bij,bj->bi", rotation, src_mean)

    eye = torch.eye(3, dtype=torch.float64, device=source.device).expand_as(rotation)
    scale = torch.where(solvable, scale, torch.ones_like(scale))
    rotation = torch.where(solvable[:, None, None], rotation, eye)
    translation = torch.where(solvable[:, None], translation, torch.zeros_like(translation))
    return scale, rotation, translation


def umeyama(
    source: np.ndarray,
    target: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    with_scale: bool = True,
) -> tuple[float, np.ndarray, np.ndarray]:
    """NumPy form of `umeyama_batched` for one point set: source, target (M, 3), weights (M,).

    Returns scale (float), R (3, 3) and t (3,) as float64 with `target ≈ scale * R @ source + t`;
    the identity when fewer than 3 usable points remain.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.ndim != 2 or source.shape[-1] != 3 or source.shape != target.shape:
        raise ValueError(
            f"umeyama needs source and target of one shape (M, 3); got {source.shape} and {target.shape}"
        )
    batch_weights = None
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != source.shape[:1]:
            raise ValueError(f"weights must be (M,) = {source.shape[:1]}, got {weights.shape}")
        batch_weights = torch.from_numpy(weights)[None]
    scale, rotation, translation = umeyama_batched(
        torch.from_numpy(source)[None], torch.from_numpy(target)[None], batch_weights, with_scale=with_scale
    )
    return float(scale[0]), rotation[0].numpy(), translation[0].numpy()
