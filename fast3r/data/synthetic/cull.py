"""Which boxes, cylinders and spheres a bundle of rays can hit, from each primitive's bounding sphere
(`intersect.*_bounds`).

Ray casting tests every ray against every primitive, (P, R) work; most primitives lie outside a view
band or far from a group of shadow rays, so the renderer tests only those these conservative checks keep.
A kept primitive may still be missed; a dropped one cannot be hit, so the nearest hits do not change.
"""
from __future__ import annotations

import torch

_SLACK = 1e-4  # bounding radii grow by this share of their distance, covering the rays' float32 rounding


def in_frustum(
    centres: torch.Tensor, radii: torch.Tensor, c2w: torch.Tensor, x_range: tuple[float, float], y_range: tuple[float, float]
) -> torch.Tensor:
    """(P,) bool: the sphere meets the pyramid of rays from camera c2w (4, 4) through the camera-frame
    points (x, y, 1) with x in x_range and y in y_range (x_range[0] < x_range[1]: the pyramid looks forward)."""
    rotation, origin = c2w[:3, :3].to(centres.dtype), c2w[:3, 3].to(centres.dtype)
    local = (centres - origin) @ rotation  # (P, 3) camera frame
    (x_low, x_high), (y_low, y_high) = x_range, y_range
    inward = torch.tensor(  # the four side planes through the camera centre, normals pointing inside
        [[1.0, 0.0, -x_low], [-1.0, 0.0, x_high], [0.0, 1.0, -y_low], [0.0, -1.0, y_high]],
        dtype=centres.dtype, device=centres.device,
    )
    inward = inward / inward.norm(dim=1, keepdim=True)
    reach = radii + _SLACK * local.norm(dim=1)
    return ((local @ inward.T) >= -reach[:, None]).all(dim=1)


def can_shadow(centres: torch.Tensor, radii: torch.Tensor, origins: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """(P,) bool: the sphere may block some ray origins (R, 3) + t * light (t > 0; light a unit vector).

    Seen along the light, the sphere must come within its radius of the origins' bounding rectangle,
    and it must reach above the lowest origin."""
    helper = torch.zeros_like(light)
    helper[int(light.abs().argmin())] = 1.0
    first = torch.linalg.cross(light, helper)
    first = first / first.norm()
    across = torch.stack([first, torch.linalg.cross(light, first)], dim=1)  # (3, 2) orthonormal, across the light
    spread = origins @ across  # (R, 2)
    low, high = spread.min(dim=0).values, spread.max(dim=0).values
    centre_across = centres @ across  # (P, 2)
    outside = (low - centre_across).clamp_min(0) + (centre_across - high).clamp_min(0)  # (P, 2)
    height = origins @ light  # (R,)
    origins_extent = torch.maximum(low.abs(), high.abs()).sum() + height.abs().max()  # bounds every |origin|
    reach = radii + _SLACK * (centres.norm(dim=1) + origins_extent)
    near_enough = (outside * outside).sum(dim=1) <= reach * reach
    above = centres @ light + reach >= height.min()
    return near_enough & above
