"""Crop / resize views with exact intrinsics, and colour jitter, for training samples.

Pixel convention (OpenCV): pixel centres at integer coordinates, so the image spans [-0.5, W - 0.5].
`crop_resize` maps output pixel (u', v') to the source point

    u = c_u + (u' - W' / 2) / s,    v = c_v + (v' - H' / 2) / s

for a scale s and crop centre (c_u, c_v); the output intrinsics are then exactly
fx' = s fx, fy' = s fy, cx' = W' / 2 + s (cx - c_u), cy' = H' / 2 + s (cy - c_v). With the crop centred on
the principal point (c = (cx, cy), the default) the principal point lands exactly at (W' / 2, H' / 2).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from .views import View


@dataclass(frozen=True)
class AugmentConfig:
    """Random crop and colour changes applied to each view independently. All zero / 1.0: none."""

    zoom_range: tuple[float, float] = (1.0, 1.0)  # scale over the largest crop that fits, drawn per view (>= 1)
    center_jitter: float = 0.0  # 0: principal point at the image centre; 1: crop anywhere it fits
    brightness: float = 0.0  # factor drawn from [1 - brightness, 1 + brightness]
    contrast: float = 0.0  # factor drawn from [1 - contrast, 1 + contrast]
    saturation: float = 0.0  # factor drawn from [1 - saturation, 1 + saturation]
    hue: float = 0.0  # hue rotation in turns, drawn from [-hue, hue]

    def __post_init__(self) -> None:
        if not 1.0 <= self.zoom_range[0] <= self.zoom_range[1]:
            raise ValueError(f"zoom_range must satisfy 1 <= low <= high, got {self.zoom_range}")
        if not 0.0 <= self.center_jitter <= 1.0:
            raise ValueError(f"center_jitter must lie in [0, 1], got {self.center_jitter}")
        if min(self.brightness, self.contrast, self.saturation) < 0 or not 0 <= self.hue <= 0.5:
            raise ValueError("colour jitter strengths must be >= 0, and hue at most 0.5")


# The release's training augmentation: DUSt3R-style colour jitter and mild random zoom, centred crops.
TRAINING_AUGMENT = AugmentConfig(zoom_range=(1.0, 1.15), brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1)
# Its colour jitter alone, for views cropped from a training pool's scenes without resizing.
POOL_AUGMENT = replace(TRAINING_AUGMENT, zoom_range=(1.0, 1.0))


def crop_resize(view: View, height: int, width: int, zoom: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)) -> View:
    """`view` cropped and resized to (height, width) with exactly transformed intrinsics.

    The crop is the largest with the output aspect ratio around the principal point, shrunk by `zoom`
    (>= 1); `offset` in [-1, 1]^2 moves its centre that fraction of the way to the edge of where it still
    fits (0: principal point exactly at (width / 2, height / 2)). Images are area-reduced then bilinearly
    resampled; depth takes the nearest source pixel (0 outside the source).
    """
    if height < 1 or width < 1:
        raise ValueError(f"output size must be positive, got {height}x{width}")
    if zoom < 1.0:
        raise ValueError(f"zoom must be >= 1, got {zoom}")
    K = np.asarray(view.K, dtype=np.float64)
    cx, cy = K[0, 2], K[1, 2]
    margins = (cx + 0.5, view.width - 0.5 - cx, cy + 0.5, view.height - 0.5 - cy)
    if min(margins) <= 0:
        raise ValueError(f"view {view.name!r}: principal point ({cx:.1f}, {cy:.1f}) lies outside the image")
    # Smallest scale s at which the output grid, centred on the principal point, fits inside the source.
    scale = zoom * max((width + 1) / (2 * margins[0]), (width - 1) / (2 * margins[1]),
                       (height + 1) / (2 * margins[2]), (height - 1) / (2 * margins[3]))  # fmt: skip
    centre_u = _jittered_centre(cx, offset[0], (width + 1) / (2 * scale) - 0.5, view.width - 0.5 - (width - 1) / (2 * scale))
    centre_v = _jittered_centre(cy, offset[1], (height + 1) / (2 * scale) - 0.5, view.height - 0.5 - (height - 1) / (2 * scale))
    source_u = centre_u + (np.arange(width) - width / 2) / scale  # (W',) source coordinates of output pixels
    source_v = centre_v + (np.arange(height) - height / 2) / scale  # (H',)

    new_K = K.copy()
    new_K[:2, :2] *= scale
    new_K[0, 2] = width / 2 + scale * (cx - centre_u)
    new_K[1, 2] = height / 2 + scale * (cy - centre_v)
    depth = None if view.depth is None else _nearest(view.depth, source_u, source_v)
    image = _resample_image(view.image, scale, source_u[0], source_v[0], height, width)
    return View(image=image, K=new_K, c2w=view.c2w.copy(), depth=depth, name=view.name)


def _jittered_centre(principal: float, offset: float, low: float, high: float) -> float:
    """Crop centre moved `offset` (in [-1, 1]) of the way from the principal point to the limit on that side."""
    if not -1.0 <= offset <= 1.0:
        raise ValueError(f"crop offset must lie in [-1, 1], got {offset}")
    return principal + offset * ((high - principal) if offset > 0 else (principal - low))


def _nearest(depth: np.ndarray, source_u: np.ndarray, source_v: np.ndarray) -> np.ndarray:
    """(H', W') depth of the source pixels nearest to the given coordinates, 0 outside the source."""
    columns, rows = np.floor(source_u + 0.5).astype(np.int64), np.floor(source_v + 0.5).astype(np.int64)
    inside = (rows[:, None] >= 0) & (rows[:, None] < depth.shape[0]) & (columns[None] >= 0) & (columns[None] < depth.shape[1])
    sampled = depth[rows.clip(0, depth.shape[0] - 1)[:, None], columns.clip(0, depth.shape[1] - 1)[None]]
    return np.where(inside, sampled, 0.0).astype(np.float32)


def _resample_image(image: np.ndarray, scale: float, first_u: float, first_v: float, height: int, width: int) -> np.ndarray:
    """Output pixel (u', v') samples the source at (first_u + u' / scale, first_v + v' / scale).

    Shrinking by 2x or more first averages factor x factor blocks (INTER_AREA) so the bilinear step
    never skips pixels; block i of the reduced image is centred on source pixel factor * i + (factor - 1) / 2.
    """
    factor = int(np.floor(1.0 / scale)) if scale <= 0.5 else 1
    source = np.ascontiguousarray(image)
    if factor > 1:
        rows, columns = image.shape[0] // factor, image.shape[1] // factor
        source = cv2.resize(source[: rows * factor, : columns * factor], (columns, rows), interpolation=cv2.INTER_AREA)
    step, shift = 1.0 / (scale * factor), (factor - 1) / 2
    affine = np.array([[step, 0.0, (first_u - shift) / factor], [0.0, step, (first_v - shift) / factor]])
    return cv2.warpAffine(
        source, affine, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def jitter_factors(rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """(4,) brightness, contrast and saturation factors and a hue angle (radians) drawn from `rng`.

    Draws the same four numbers whatever the strengths, so streams stay aligned across configs.
    """
    brightness, contrast, saturation = (rng.uniform(max(0.0, 1 - s), 1 + s) for s in (config.brightness, config.contrast, config.saturation))
    return np.array([brightness, contrast, saturation, 2 * np.pi * rng.uniform(-config.hue, config.hue)])


def apply_colour_jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Images (..., H, W, 3) float in [0, 1] with brightness, contrast, saturation and hue changed, in that
    order, by factors (..., 4) from `jitter_factors`; each image by its own, clipped to [0, 1] after each."""
    factors = factors.to(device=images.device, dtype=torch.float64)
    brightness, contrast, saturation, angle = (factors[..., i, None, None, None] for i in range(4))  # (..., 1, 1, 1)
    yiq = torch.as_tensor(_RGB_TO_YIQ, dtype=torch.float64, device=images.device)
    gray_weights = yiq[0].to(images.dtype)
    out = (images * brightness.to(images.dtype)).clamp(0, 1)
    mean = (out @ gray_weights).mean(dim=(-2, -1))[..., None, None, None]
    out = ((out - mean) * contrast.to(images.dtype) + mean).clamp(0, 1)
    gray = (out @ gray_weights)[..., None]
    out = (gray + (out - gray) * saturation.to(images.dtype)).clamp(0, 1)
    cos, sin = torch.cos(angle[..., 0, 0, 0]), torch.sin(angle[..., 0, 0, 0])
    rotation = torch.zeros((*cos.shape, 3, 3), dtype=torch.float64, device=images.device)
    rotation[..., 0, 0], rotation[..., 1, 1], rotation[..., 1, 2] = 1.0, cos, -sin
    rotation[..., 2, 1], rotation[..., 2, 2] = sin, cos
    to_rgb = torch.as_tensor(_YIQ_TO_RGB, dtype=torch.float64, device=images.device)
    hue = to_rgb @ rotation @ yiq  # (..., 3, 3): rotate the chroma plane of YIQ
    return (out @ hue.transpose(-1, -2)[..., None, :, :].to(images.dtype)).clamp(0, 1)


def colour_jitter(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] with random brightness, contrast, saturation and hue (`apply_colour_jitter`)."""
    factors = torch.from_numpy(jitter_factors(rng, config))
    return apply_colour_jitter(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), factors).numpy()
