"""Textures with the statistics of natural images: 1/f amplitude spectra and the colours of photos.

One periodic tile per scene holds 1/f ("pink") noise split into octave bands, for three colour axes.
A material maps it onto its surface at its own scale, orientation, stretch and offset, weights the bands
(bands finer than the pixel footprint fade out, as `textures.fractal_noise` does), and turns the three
axes into RGB around a mean colour. The colour constants come from scikit-image's bundled photos
(astronaut, chelsea, coffee, rocket, stereo_motorcycle's left view): the k-means centres of their pixels
(k = 8, drawn in proportion to their clusters' sizes) and the principal axes of pixels' deviations from
their 16x16-block means, with each axis's standard deviation. `tests/test_synthetic_levers.py` checks the rendered colours against those photos.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from .textures import _detail

TILE_BITS = 8  # the tile is (2**TILE_BITS, 2**TILE_BITS) texels
_TILE = 1 << TILE_BITS
_STRIDE = _TILE + 1  # row length of the wrap-padded tile
NUM_BANDS = TILE_BITS - 1  # octaves [1, 2), [2, 4), ..., [64, Nyquist] cycles per tile
NATURAL_PALETTE = np.array(
    [
        [0.120, 0.057, 0.043], [0.164, 0.187, 0.261], [0.526, 0.215, 0.114], [0.301, 0.324, 0.408],
        [0.568, 0.460, 0.391], [0.804, 0.432, 0.253], [0.734, 0.656, 0.608], [0.877, 0.835, 0.816],
    ]
)  # fmt: skip
NATURAL_PALETTE_SHARE = np.array([0.139, 0.160, 0.149, 0.096, 0.127, 0.116, 0.146, 0.067])  # of the photos' pixels
NATURAL_COLOUR_AXES = np.array([[0.568, 0.590, 0.574], [0.772, -0.141, -0.620], [-0.285, 0.795, -0.536]])  # rows, RGB
NATURAL_COLOUR_STD = np.array([0.180, 0.055, 0.019])  # along each axis


@dataclass
class NaturalTextures:
    """A scene's pink-noise tile and, per material (M), whether and how a material shows it."""

    bands: np.ndarray  # (T, T, NUM_BANDS * 3) float32: band b of colour axis c at b * 3 + c; unit total variance
    used: np.ndarray  # (M,) bool: the material shows this texture instead of its procedural one
    mean: np.ndarray  # (M, 3) RGB mean colour
    contrast: np.ndarray  # (M,) multiplier of NATURAL_COLOUR_STD
    tile_metres: np.ndarray  # (M,) side of one tile on the surface
    angle: np.ndarray  # (M,) radians: orientation of the stretch
    stretch: np.ndarray  # (M,) >= 1: how much longer the texture's features run along `angle`
    offset: np.ndarray  # (M, 2) texels

    def to_torch(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        out = {item.name: torch.as_tensor(getattr(self, item.name), device=device) for item in fields(self)}
        out["used"] = out["used"].bool()
        for name in ("mean", "contrast", "tile_metres", "angle", "stretch", "offset"):
            out[name] = out[name].float()
        padded = np.pad(self.bands, ((0, 1), (0, 1), (0, 0)), mode="wrap")  # corners at base + {0, 1, T+1, T+2}
        out["bands"] = torch.as_tensor(padded, dtype=torch.float32, device=device).reshape(_STRIDE * _STRIDE, -1)
        out["colour"] = torch.as_tensor(NATURAL_COLOUR_AXES.T * NATURAL_COLOUR_STD, dtype=torch.float32, device=device)
        return out


def pink_noise_bands(rng: np.random.Generator, size: int = _TILE, channels: int = 3) -> np.ndarray:
    """(size, size, NUM_BANDS * channels) periodic noise whose amplitude spectrum falls as 1/f, split into
    octaves of f (cycles per tile); summed over the bands, each channel has unit variance."""
    frequency_y = np.fft.fftfreq(size)[:, None] * size
    frequency_x = np.fft.rfftfreq(size)[None, :] * size
    frequency = np.hypot(frequency_y, frequency_x)
    spectra = np.fft.rfft2(rng.standard_normal((channels, size, size)), axes=(1, 2)) / np.maximum(frequency, 1.0)
    spectra[:, 0, 0] = 0.0
    edges = [2.0**b for b in range(NUM_BANDS)] + [np.inf]
    bands = np.stack(
        [np.fft.irfft2(spectra * ((frequency >= low) & (frequency < high)), s=(size, size), axes=(1, 2)) for low, high in zip(edges, edges[1:])],
        axis=1,
    )  # (channels, bands, size, size)
    bands /= bands.sum(axis=1).std(axis=(1, 2))[:, None, None, None]
    return bands.transpose(2, 3, 1, 0).reshape(size, size, -1).astype(np.float32)


def sample_natural_textures(rng: np.random.Generator, count: int, share: float) -> NaturalTextures:
    """Natural-texture parameters for `count` materials, each used with probability `share`."""
    palette = rng.choice(len(NATURAL_PALETTE), size=count, p=NATURAL_PALETTE_SHARE / NATURAL_PALETTE_SHARE.sum())
    mean = NATURAL_PALETTE[palette] + rng.normal(0, 0.04, size=(count, 3))
    return NaturalTextures(
        bands=pink_noise_bands(rng),
        used=rng.random(count) < share,
        mean=mean.clip(0.03, 0.97),
        contrast=rng.uniform(0.6, 1.6, size=count),
        tile_metres=np.exp(rng.uniform(np.log(0.8), np.log(4.0), size=count)),
        angle=rng.uniform(0, np.pi, size=count),
        stretch=np.exp(rng.uniform(0.0, np.log(3.0), size=count)),
        offset=rng.uniform(0, _TILE, size=(count, 2)),
    )


def natural_albedo(natural: dict[str, torch.Tensor], material: torch.Tensor, uv: torch.Tensor, footprint: torch.Tensor | None) -> torch.Tensor:
    """(R, 3) RGB in [0, 1] of the natural texture of materials (R,) at surface coordinates uv (R, 2) in
    metres; `footprint` (R,) metres per pixel fades bands finer than two pixels."""
    m = {name: natural[name].index_select(0, material) for name in ("mean", "contrast", "tile_metres", "angle", "stretch", "offset")}
    cos, sin = torch.cos(m["angle"]), torch.sin(m["angle"])
    texels = _TILE / m["tile_metres"]
    x = (uv[:, 0] * cos + uv[:, 1] * sin) * texels / m["stretch"] + m["offset"][:, 0]
    y = (uv[:, 1] * cos - uv[:, 0] * sin) * texels + m["offset"][:, 1]
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    base = (y0.long() & (_TILE - 1)) * _STRIDE + (x0.long() & (_TILE - 1))
    bands = natural["bands"]
    top = torch.lerp(bands.index_select(0, base), bands.index_select(0, base + 1), fx)
    bottom = torch.lerp(bands.index_select(0, base + _STRIDE), bands.index_select(0, base + _STRIDE + 1), fx)
    values = torch.lerp(top, bottom, fy).reshape(len(material), NUM_BANDS, 3)  # (R, bands, axes)
    if footprint is not None:
        finest = m["tile_metres"][:, None] / 2.0 ** (torch.arange(NUM_BANDS, device=uv.device) + 1)  # (R, bands)
        values = values * _detail(finest, footprint[:, None])[..., None]
    axes = values.sum(dim=1)
    return (m["mean"] + m["contrast"][:, None] * axes @ natural["colour"].T).clamp(0, 1)
