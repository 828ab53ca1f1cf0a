"""Procedural surface textures: multi-octave value noise, stripes, checkers and coloured blobs.

Every texture is a function of a surface coordinate (u, v) in metres, so a surface point has the same
colour in every view. Random values come from one lattice table per scene (numpy-generated), looked up with
integer arithmetic: the same on any device.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, fields

import numpy as np
import torch

PATTERN_STRIPES, PATTERN_CHECKER, PATTERN_BLOBS = 0, 1, 2
TABLE_BITS = 8  # the lattice table is (2**TABLE_BITS, 2**TABLE_BITS)
_TABLE_MASK = (1 << TABLE_BITS) - 1
NOISE_OCTAVES = 5


@dataclass
class MaterialTable:
    """Per-material texture parameters, one row per material (M materials)."""

    dark: np.ndarray  # (M, 3) base colour where the noise is low
    light: np.ndarray  # (M, 3) base colour where the noise is high
    noise_frequency: np.ndarray  # (M,) lattice cells per metre of the coarsest noise octave
    pattern: np.ndarray  # (M,) int: PATTERN_STRIPES, PATTERN_CHECKER or PATTERN_BLOBS
    pattern_period: np.ndarray  # (M,) metres
    pattern_angle: np.ndarray  # (M,) radians
    pattern_colour: np.ndarray  # (M, 3) stripe / checker colour (blobs take a colour per cell)
    pattern_strength: np.ndarray  # (M,) 0..1 opacity of the pattern over the base
    table_offset: np.ndarray  # (M, 2) lattice offsets that decorrelate materials

    def to_torch(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        out = {}
        for item in fields(self):
            value = getattr(self, item.name)
            dtype = torch.int64 if item.name == "pattern" else torch.float32
            out[item.name] = torch.as_tensor(value, dtype=dtype, device=device)
        return out


def concatenate_materials(first: MaterialTable, second: MaterialTable) -> MaterialTable:
    """The rows of `first`, then those of `second`."""
    return MaterialTable(*(np.concatenate([getattr(first, f.name), getattr(second, f.name)]) for f in fields(MaterialTable)))


def random_colour(
    rng: np.random.Generator,
    hue: float | None = None,
    saturation: tuple[float, float] = (0.2, 0.8),
    value: tuple[float, float] = (0.4, 0.95),
) -> np.ndarray:
    """(3,) RGB in [0, 1] from a random (or given) hue and saturation / value ranges."""
    hue = rng.random() if hue is None else hue % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(*saturation), rng.uniform(*value)))


def sample_materials(rng: np.random.Generator, count: int) -> MaterialTable:
    """`count` random materials: coloured noise under one contrasting pattern each."""
    rows = []
    for _ in range(count):
        hue = rng.random()
        pattern = int(rng.integers(3))
        period_range = {PATTERN_STRIPES: (0.08, 0.4), PATTERN_CHECKER: (0.1, 0.6), PATTERN_BLOBS: (0.15, 0.6)}
        rows.append(
            (
                random_colour(rng, hue + rng.uniform(-0.08, 0.08), (0.2, 0.9), (0.2, 0.5)),
                random_colour(rng, hue, (0.1, 0.7), (0.6, 0.95)),
                rng.uniform(0.8, 4.0),
                pattern,
                rng.uniform(*period_range[pattern]),
                rng.uniform(0.0, np.pi),
                random_colour(rng, hue + rng.uniform(0.25, 0.75)),
                rng.uniform(0.35, 0.9),
                rng.integers(0, 1 << TABLE_BITS, size=2).astype(np.float64),
            )
        )
    columns = list(zip(*rows)) if rows else [[] for _ in range(9)]
    shapes = [(-1, 3), (-1, 3), (-1,), (-1,), (-1,), (-1,), (-1, 3), (-1,), (-1, 2)]
    arrays = [np.asarray(column, dtype=np.float64).reshape(shape) for column, shape in zip(columns, shapes)]
    arrays[3] = arrays[3].astype(np.int64)
    return MaterialTable(*arrays)


_STRIDE = (1 << TABLE_BITS) + 1  # row length of the padded table


def lattice_table(values: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """A (T, T) table as a flat tensor of the table padded to (T + 1, T + 1) by wrapping around.

    The padding lets a lattice cell's four corners sit at base, base + 1, base + T + 1, base + T + 2.
    """
    padded = np.pad(values, ((0, 1), (0, 1)), mode="wrap")
    return torch.as_tensor(padded, dtype=torch.float32, device=device).reshape(-1)


def _lookup(table: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
    """Table values at integer lattice points, wrapping around; table from `lattice_table`."""
    return table.index_select(0, (iy & _TABLE_MASK) * _STRIDE + (ix & _TABLE_MASK))


def value_noise(table: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Smooth noise in [0, 1): lattice values interpolated with a smoothstep."""
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    base = (y0.long() & _TABLE_MASK) * _STRIDE + (x0.long() & _TABLE_MASK)
    top = torch.lerp(table.index_select(0, base), table.index_select(0, base + 1), sx)
    bottom = torch.lerp(table.index_select(0, base + _STRIDE), table.index_select(0, base + _STRIDE + 1), sx)
    return torch.lerp(top, bottom, sy)


def _detail(period: torch.Tensor | float, footprint: torch.Tensor | None) -> torch.Tensor | float:
    """Weight of a feature of `period` metres on pixels covering `footprint` metres: 1 down to 2 px, 0 at 1 px.

    Fading features finer than the pixel grid keeps textures from aliasing into moire at a distance.
    """
    if footprint is None:
        return 1.0
    return (period / footprint - 1.0).clamp(0, 1)


def fractal_noise(
    table: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    octaves: int = NOISE_OCTAVES,
    cell: torch.Tensor | float = 1.0,
    footprint: torch.Tensor | None = None,
) -> torch.Tensor:
    """Octaves of value noise, each twice the frequency and half the amplitude of the last, in [0, 1).

    (x, y) are lattice coordinates with lattice cells of `cell` metres; octaves finer than the pixel
    `footprint` (metres, per point) fade to their mean.
    """
    total = torch.zeros_like(x)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        scale = float(2**octave)
        noise = value_noise(table, x * scale + 37.0 * octave, y * scale + 91.0 * octave)
        total += amplitude * (0.5 + _detail(cell / scale, footprint) * (noise - 0.5))
        norm += amplitude
        amplitude *= 0.5
    return total / norm


def surface_albedo(
    materials: dict[str, torch.Tensor],
    table: torch.Tensor,
    material: torch.Tensor,
    uv: torch.Tensor,
    footprint: torch.Tensor | None = None,
) -> torch.Tensor:
    """(R, 3) colours in [0, 1] of R surface points with material indices (R,) and coordinates (R, 2).

    footprint: (R,) metres of surface one pixel covers there; detail finer than it is faded out.
    """
    m = {name: value.index_select(0, material) for name, value in materials.items()}
    u, v = uv[:, 0], uv[:, 1]
    frequency = m["noise_frequency"]
    noise = fractal_noise(
        table,
        u * frequency + m["table_offset"][:, 0],
        v * frequency + m["table_offset"][:, 1],
        cell=1.0 / frequency,
        footprint=footprint,
    )
    noise = ((noise - 0.5) * 2.5 + 0.5).clamp(0, 1)
    base = torch.lerp(m["dark"], m["light"], noise[:, None])

    cos_a, sin_a = torch.cos(m["pattern_angle"]), torch.sin(m["pattern_angle"])
    pu = (u * cos_a + v * sin_a) / m["pattern_period"]
    pv = (v * cos_a - u * sin_a) / m["pattern_period"]
    stripes = (torch.sin(2 * math.pi * pu) * 2.5 + 0.5).clamp(0, 1)
    cell_u, cell_v = torch.floor(pu), torch.floor(pv)
    checker = torch.remainder(cell_u + cell_v, 2.0)
    # Blobs: at most one soft disc per cell, at a random place, of a random size and colour.
    iu = cell_u.long() + m["table_offset"][:, 0].long()
    iv = cell_v.long() + m["table_offset"][:, 1].long()
    centre_u = 0.35 + 0.3 * _lookup(table, iu + 11, iv + 3)
    centre_v = 0.35 + 0.3 * _lookup(table, iu + 5, iv + 17)
    radius = 0.12 + 0.2 * _lookup(table, iu + 23, iv + 29)
    distance = torch.hypot(pu - cell_u - centre_u, pv - cell_v - centre_v)
    present = (_lookup(table, iu, iv) < 0.8).float()
    blobs = ((radius - distance) / 0.03).clamp(0, 1) * present
    blob_colour = torch.stack([_lookup(table, iu + 41 * k, iv + 7 * k) for k in (1, 2, 3)], dim=1)

    pattern = m["pattern"]
    mask = torch.where(pattern == PATTERN_STRIPES, stripes, torch.where(pattern == PATTERN_CHECKER, checker, blobs))
    colour = torch.where((pattern == PATTERN_BLOBS)[:, None], blob_colour, m["pattern_colour"])
    colour = colour * (0.8 + 0.4 * noise[:, None])  # keep noise texture inside the pattern too
    opacity = mask * m["pattern_strength"] * _detail(m["pattern_period"] / 2, footprint)
    return torch.lerp(base, colour, opacity[:, None]).clamp(0, 1)


def sky_colour(sky_colours: torch.Tensor, table: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(R, 3) colour of rays that hit nothing: a horizon-to-zenith gradient with noise clouds.

    sky_colours: (2, 3) horizon and zenith colours; directions: (R, 3), any length.
    """
    unit = directions / directions.norm(dim=1, keepdim=True)
    elevation = torch.asin(unit[:, 2].clamp(-1, 1))
    azimuth = torch.atan2(unit[:, 1], unit[:, 0])
    gradient = (elevation * 1.5 + 0.15).clamp(0, 1)
    colour = torch.lerp(sky_colours[0], sky_colours[1], gradient[:, None])
    clouds = fractal_noise(table, azimuth * 6.0 + 101.0, elevation * 12.0 + 57.0, octaves=4)
    cover = ((clouds - 0.45) * 3.0).clamp(0, 1) * (elevation * 5.0).clamp(0, 1)
    colour = torch.lerp(colour, torch.full_like(colour, 0.95), cover[:, None] * 0.8)
    below = (-elevation * 4.0).clamp(0, 1)  # under the horizon, beyond the ground: a darker haze
    return colour * (1.0 - 0.35 * below[:, None])
