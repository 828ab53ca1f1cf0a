"""Exact ray-primitive intersections in torch, batched over primitives and rays.

Rays start at `origins` (R, 3), or (1, 3) when all share one camera centre (cheaper), and run along
`directions` (R, 3) of any length, or (1, 3) when all are parallel (shadow rays; boxes, cylinders and
spheres only); a hit lies at origin + t * direction. Distance functions return t of shape (P, R) for P
primitives, +inf where the ray misses or the hit lies behind MIN_T. Surface functions
take the rays that hit primitive `index` (R,) at `points` (R, 3) and return outward unit normals (R, 3)
and surface coordinates (R, 2) in metres. Bounds functions return spheres holding each primitive.
"""
from __future__ import annotations

import torch

MIN_T = 1e-4  # hits closer than this along the ray are ignored


def _nonzero(values: torch.Tensor) -> torch.Tensor:
    """Direction components with exact zeros nudged off zero, so 1 / value is a signed infinity-like number."""
    tiny = torch.where(values >= 0, 1e-12, -1e-12).to(values.dtype)
    return torch.where(values.abs() < 1e-12, tiny, values)


def _rotate_z(x: torch.Tensor, y: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates of (x, y) in a frame rotated by the angle with (cos, sin) about z."""
    return cos * x + sin * y, cos * y - sin * x


def room_exit(extent: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where rays from inside the box [0, extent] leave it: t (R,) and face (R,) = 2 * axis + (1 on the far side)."""
    safe = _nonzero(directions)
    t_low, t_high = (0.0 - origins) / safe, (extent - origins) / safe  # (R, 3)
    t, axis = torch.maximum(t_low, t_high).min(dim=1)
    far_side = (directions.gather(1, axis[:, None])[:, 0] > 0).long()
    return t, 2 * axis + far_side


def room_surface(extent: torch.Tensor, face: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    axis = face // 2
    normal = torch.zeros_like(points)
    normal.scatter_(1, axis[:, None], torch.where(face % 2 == 1, -1.0, 1.0)[:, None].to(points.dtype))
    # The two coordinates other than `axis`: x-walls use (y, z), y-walls (x, z), floor and ceiling (x, y).
    first = torch.where(axis == 0, points[:, 1], points[:, 0])
    second = torch.where(axis == 2, points[:, 1], points[:, 2])
    return normal, torch.stack([first, second], dim=1)


def ground_distance(radius: float, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(R,) distance to the disc z = 0, |xy| <= radius, seen from above."""
    t = -origins[:, 2] / _nonzero(directions[:, 2])
    xy = origins[:, :2] + t[:, None] * directions[:, :2]
    hit = (t > MIN_T) & ((xy * xy).sum(dim=1) <= radius * radius) & (origins[:, 2] > 0)
    return torch.where(hit, t, torch.full_like(t, float("inf")))


def box_distance(boxes: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(B, R) distance to boxes (B, 7): centre, half extents, yaw about z; slab test in each box's frame."""
    cos, sin = torch.cos(boxes[:, 6])[:, None], torch.sin(boxes[:, 6])[:, None]
    relative = origins[None] - boxes[:, None, :3]  # (B, R or 1, 3)
    origin_x, origin_y = _rotate_z(relative[..., 0], relative[..., 1], cos, sin)  # (B, R or 1)
    dir_x, dir_y = _rotate_z(directions[None, :, 0], directions[None, :, 1], cos, sin)  # (B, R or 1)
    t_near = t_far = None
    for local_origin, local_dir, half in (
        (origin_x, dir_x, boxes[:, 3:4]),
        (origin_y, dir_y, boxes[:, 4:5]),
        (relative[..., 2], directions[None, :, 2], boxes[:, 5:6]),
    ):
        inverse = 1.0 / _nonzero(local_dir)
        t_a, t_b = (-half - local_origin) * inverse, (half - local_origin) * inverse
        low, high = torch.minimum(t_a, t_b), torch.maximum(t_a, t_b)
        t_near = low if t_near is None else torch.maximum(t_near, low)
        t_far = high if t_far is None else torch.minimum(t_far, high)
    hit = (t_far >= t_near) & (t_near > MIN_T)
    return torch.where(hit, t_near, torch.full_like(t_near, float("inf")))


def box_surface(boxes: torch.Tensor, index: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    box = boxes.index_select(0, index)
    cos, sin = torch.cos(box[:, 6]), torch.sin(box[:, 6])
    relative = points - box[:, :3]
    lx, ly = _rotate_z(relative[:, 0], relative[:, 1], cos, sin)
    local = torch.stack([lx, ly, relative[:, 2]], dim=1)
    axis = (local.abs() / box[:, 3:6]).argmax(dim=1)  # the face the point lies on
    sign = torch.sign(local.gather(1, axis[:, None])[:, 0])
    local_normal = torch.zeros_like(points)
    local_normal.scatter_(1, axis[:, None], sign[:, None])
    normal = torch.stack(
        [cos * local_normal[:, 0] - sin * local_normal[:, 1], sin * local_normal[:, 0] + cos * local_normal[:, 1], local_normal[:, 2]],
        dim=1,
    )
    face = 2 * axis + (sign > 0).long()
    first = torch.where(axis == 0, local[:, 1], local[:, 0])
    second = torch.where(axis == 2, local[:, 1], local[:, 2])
    return normal, torch.stack([first + 7.3 * face, second + 3.1 * face], dim=1)


def box_bounds(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (B, 3) and radii (B,) of spheres holding the boxes."""
    return boxes[:, :3], boxes[:, 3:6].norm(dim=1)


def cylinder_distance(cylinders: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(C, R) distance to capped vertical cylinders (C, 5): axis x, y, radius, z bottom, z top."""
    inf = torch.tensor(float("inf"), dtype=directions.dtype, device=directions.device)
    rx, ry = origins[None, :, 0] - cylinders[:, 0:1], origins[None, :, 1] - cylinders[:, 1:2]  # (C, R or 1)
    origin_z = origins[None, :, 2]
    radius, z_low, z_high = cylinders[:, 2:3], cylinders[:, 3:4], cylinders[:, 4:5]
    dx, dy, dz = directions[None, :, 0], directions[None, :, 1], directions[None, :, 2]
    a = (dx * dx + dy * dy).clamp_min(1e-20)
    b = 2 * (rx * dx + ry * dy)
    c = rx * rx + ry * ry - radius * radius
    discriminant = b * b - 4 * a * c
    t_side = (-b - torch.sqrt(discriminant.clamp_min(0))) / (2 * a)
    z_side = origin_z + t_side * dz
    side_hit = (discriminant >= 0) & (t_side > MIN_T) & (z_side >= z_low) & (z_side <= z_high)
    t = torch.where(side_hit, t_side, inf)
    safe_dz = _nonzero(dz)
    for z_cap in (z_low, z_high):
        t_cap = (z_cap - origin_z) / safe_dz
        cap_x, cap_y = rx + t_cap * dx, ry + t_cap * dy
        cap_hit = (t_cap > MIN_T) & (cap_x * cap_x + cap_y * cap_y <= radius * radius)
        t = torch.minimum(t, torch.where(cap_hit, t_cap, inf))
    return t


def cylinder_surface(cylinders: torch.Tensor, index: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cylinder = cylinders.index_select(0, index)
    rx, ry = points[:, 0] - cylinder[:, 0], points[:, 1] - cylinder[:, 1]
    radial = torch.hypot(rx, ry)
    to_side = (radial - cylinder[:, 2]).abs()
    to_bottom, to_top = (points[:, 2] - cylinder[:, 3]).abs(), (points[:, 2] - cylinder[:, 4]).abs()
    on_side = to_side < torch.minimum(to_bottom, to_top)
    safe_radial = radial.clamp_min(1e-12)
    cap_sign = torch.where(to_top <= to_bottom, 1.0, -1.0).to(points.dtype)
    zeros = torch.zeros_like(rx)
    normal = torch.where(
        on_side[:, None],
        torch.stack([rx / safe_radial, ry / safe_radial, zeros], dim=1),
        torch.stack([zeros, zeros, cap_sign], dim=1),
    )
    angle = torch.atan2(ry, rx)
    uv_side = torch.stack([angle * cylinder[:, 2], points[:, 2]], dim=1)
    uv_cap = torch.stack([rx + 5.7, ry + 2.9], dim=1)
    return normal, torch.where(on_side[:, None], uv_side, uv_cap)


def cylinder_bounds(cylinders: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (C, 3) and radii (C,) of spheres holding the cylinders."""
    half_height = (cylinders[:, 4] - cylinders[:, 3]) / 2
    centres = torch.stack([cylinders[:, 0], cylinders[:, 1], cylinders[:, 3] + half_height], dim=1)
    return centres, torch.hypot(cylinders[:, 2], half_height)


def sphere_distance(spheres: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(S, R) distance to spheres (S, 4): centre, radius."""
    relative = origins[None] - spheres[:, None, :3]  # (S, R or 1, 3)
    a = (directions * directions).sum(dim=1)[None]  # (1, R or 1)
    if origins.shape[0] == 1:
        b = 2 * relative[:, 0] @ directions.T  # (S, R)
    elif directions.shape[0] == 1:
        b = 2 * relative @ directions[0]  # (S, R)
    else:
        b = 2 * (relative * directions[None]).sum(dim=2)
    c = (relative * relative).sum(dim=2) - spheres[:, 3:4] ** 2
    discriminant = b * b - 4 * a * c
    t = (-b - torch.sqrt(discriminant.clamp_min(0))) / (2 * a)
    hit = (discriminant >= 0) & (t > MIN_T)
    return torch.where(hit, t, torch.full_like(t, float("inf")))


def sphere_surface(spheres: torch.Tensor, index: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sphere = spheres.index_select(0, index)
    relative = points - sphere[:, :3]
    normal = relative / sphere[:, 3:4]
    uv = torch.stack([torch.atan2(relative[:, 1], relative[:, 0]) * sphere[:, 3], relative[:, 2]], dim=1)
    return normal, uv


def sphere_bounds(spheres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (S, 3) and radii (S,): the spheres themselves."""
    return spheres[:, :3], spheres[:, 3]
