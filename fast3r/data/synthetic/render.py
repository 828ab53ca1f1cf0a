"""Exact ray casting of synthetic scenes into posed views with depth, batched over pixels in torch."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..views import View
from . import intersect
from .cameras import TRAJECTORIES, intrinsics_from_fov, sample_trajectory
from .cull import can_shadow, in_frustum
from .scene import Scene, SceneConfig, build_scene
from .natural import natural_albedo
from .textures import lattice_table, sky_colour, surface_albedo

# Per device type: (rays cast at once, which bounds the primitives x rays temporaries; whether a block
# may hold several views). On CPU a block is a band of rows of one view: the intersections broadcast its
# one camera centre, only the primitives in the band's frustum are tested, and the temporaries stay
# small. A GPU wants few, large launches.
RAY_BLOCKS = {"cpu": (1 << 15, False), "cuda": (1 << 21, True)}
_ROOM, _GROUND, _BOX, _CYLINDER, _SPHERE = range(5)


class _SceneTensors:
    """A scene's arrays as float32 tensors on the render device."""

    def __init__(self, scene: Scene, device: torch.device) -> None:
        def tensor(value: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(np.asarray(value), dtype=dtype, device=device)

        self.room = None if scene.room is None else tensor(scene.room)
        self.room_materials = tensor(scene.room_materials, torch.int64)
        self.ground_radius = scene.ground_radius
        self.ground_material = scene.ground_material
        self.primitives = {
            _BOX: (tensor(scene.boxes), tensor(scene.box_materials, torch.int64)),
            _CYLINDER: (tensor(scene.cylinders), tensor(scene.cylinder_materials, torch.int64)),
            _SPHERE: (tensor(scene.spheres), tensor(scene.sphere_materials, torch.int64)),
        }
        bounds = [_BOUNDS[kind](params) for kind, (params, _) in self.primitives.items()]
        self.bound_centres = torch.cat([centres for centres, _ in bounds])  # (P, 3), all kinds in turn
        self.bound_radii = torch.cat([radii for _, radii in bounds])  # (P,)
        self.materials = scene.materials.to_torch(device)
        self.table = lattice_table(scene.noise_table, device)
        self.light = tensor(scene.light_direction)
        self.ambient, self.diffuse, self.shadows = scene.ambient, scene.diffuse, scene.shadows
        self.sky = tensor(scene.sky_colours)
        self.natural = None if scene.natural is None else scene.natural.to_torch(device)


_DISTANCE = {_BOX: intersect.box_distance, _CYLINDER: intersect.cylinder_distance, _SPHERE: intersect.sphere_distance}
_SURFACE = {_BOX: intersect.box_surface, _CYLINDER: intersect.cylinder_surface, _SPHERE: intersect.sphere_surface}
_BOUNDS = {_BOX: intersect.box_bounds, _CYLINDER: intersect.cylinder_bounds, _SPHERE: intersect.sphere_bounds}


def _cast(
    scene: _SceneTensors, origins: torch.Tensor, directions: torch.Tensor, candidates: dict[int, torch.Tensor] | None = None
) -> tuple[torch.Tensor, ...]:
    """Nearest hit of each ray: t (R,) (+inf for none), primitive kind (R,) and index (R,).

    `candidates`: per primitive kind, the indices of the only primitives the rays can hit (all if None)."""
    num_rays = directions.shape[0]
    best_t = torch.full((num_rays,), float("inf"), dtype=directions.dtype, device=directions.device)
    best_kind = torch.full((num_rays,), -1, dtype=torch.int64, device=directions.device)
    best_index = torch.zeros(num_rays, dtype=torch.int64, device=directions.device)

    def keep_nearer(t: torch.Tensor, kind: int, index: torch.Tensor) -> None:
        nearer = t < best_t
        best_t.copy_(torch.where(nearer, t, best_t))
        best_kind.masked_fill_(nearer, kind)
        best_index.copy_(torch.where(nearer, index, best_index))

    if scene.room is not None:
        t, face = intersect.room_exit(scene.room, origins, directions)
        keep_nearer(t, _ROOM, face)
    if scene.ground_radius > 0:
        keep_nearer(intersect.ground_distance(scene.ground_radius, origins, directions), _GROUND, torch.zeros_like(best_index))
    for kind, (params, _materials) in scene.primitives.items():
        kept = None if candidates is None else candidates[kind]
        if kept is not None:
            params = params.index_select(0, kept)
        if len(params):
            t, index = _DISTANCE[kind](params, origins, directions).min(dim=0)
            keep_nearer(t, kind, index if kept is None else kept[index])
    return best_t, best_kind, best_index


def _per_kind(scene: _SceneTensors, kept: torch.Tensor) -> dict[int, torch.Tensor]:
    """Per primitive kind, the indices of the kept primitives; kept (P,) bool over all kinds in turn."""
    counts = [len(params) for params, _ in scene.primitives.values()]
    return {kind: part.nonzero()[:, 0] for kind, part in zip(scene.primitives, kept.split(counts))}


def _in_view(scene: _SceneTensors, c2w: torch.Tensor, x_range: tuple[float, float], y_range: tuple[float, float]) -> dict[int, torch.Tensor]:
    """Per primitive kind, the indices of the primitives in the pyramid of one camera's rays (`cull.in_frustum`)."""
    return _per_kind(scene, in_frustum(scene.bound_centres, scene.bound_radii, c2w, x_range, y_range))


def _in_shadow(scene: _SceneTensors, points: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """(R,) bool: the ray from each point (on a surface facing the light, normals towards the light
    side) to the light hits a box, cylinder or sphere. Room walls and the ground cast no shadows."""
    origins = points + 1e-3 * normals
    blocked = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    if not len(points) or not len(scene.bound_radii):
        return blocked
    candidates = _per_kind(scene, can_shadow(scene.bound_centres, scene.bound_radii, origins, scene.light))
    for kind, (params, _materials) in scene.primitives.items():
        params = params.index_select(0, candidates[kind])
        if len(params):  # one direction for all rays: the intersections broadcast it
            blocked |= _DISTANCE[kind](params, origins, scene.light[None]).isfinite().any(dim=0)
    return blocked


def _shade(
    scene: _SceneTensors,
    origins: torch.Tensor,
    directions: torch.Tensor,
    t: torch.Tensor,
    kind: torch.Tensor,
    index: torch.Tensor,
    pixel_angle: torch.Tensor,
) -> torch.Tensor:
    """(R, 3) colours in [0, 1]: Lambertian albedo under a directional light (shadowed by objects if the
    scene says so) plus ambient; sky for misses.

    `pixel_angle` (R,) or (1,), 1 / focal in pixels, sets each hit's pixel footprint, which fades
    texture detail finer than a pixel.
    """
    hit = kind >= 0
    hit_rays = hit.nonzero()[:, 0]
    all_hit = len(hit_rays) == len(kind)  # closed rooms: skip the gathers

    def hits(values: torch.Tensor) -> torch.Tensor:  # per-ray values at the hits; shared (1, ...) ones as they are
        return values if all_hit or values.shape[0] == 1 else values.index_select(0, hit_rays)

    hit_dirs, hit_t = hits(directions), hits(t)
    points = hits(origins) + hit_t[:, None] * hit_dirs
    normals, uvs = torch.empty_like(points), torch.empty_like(points[:, :2])
    materials = torch.empty(points.shape[0], dtype=torch.int64, device=points.device)
    hit_kind, hit_index = hits(kind), hits(index)
    for k in range(5):
        rays = (hit_kind == k).nonzero()[:, 0]
        if not len(rays):
            continue
        ray_points, ray_index = points.index_select(0, rays), hit_index.index_select(0, rays)
        if k == _ROOM:
            normal, uv = intersect.room_surface(scene.room, ray_index, ray_points)
            material = scene.room_materials.index_select(0, ray_index)
        elif k == _GROUND:
            normal = torch.zeros_like(ray_points)
            normal[:, 2] = 1.0
            uv, material = ray_points[:, :2], torch.full_like(ray_index, scene.ground_material)
        else:
            params, primitive_materials = scene.primitives[k]
            normal, uv = _SURFACE[k](params, ray_index, ray_points)
            material = primitive_materials.index_select(0, ray_index)
        normals.index_copy_(0, rays, normal)
        uvs.index_copy_(0, rays, uv)
        materials.index_copy_(0, rays, material)
    cosine = (normals * hit_dirs).sum(dim=1) / hit_dirs.norm(dim=1)
    facing = torch.where(cosine[:, None] > 0, -normals, normals)
    sunlit = (facing @ scene.light).clamp_min(0)
    if scene.shadows:
        lit = (sunlit > 0).nonzero()[:, 0]
        sunlit = sunlit.index_fill(0, lit[_in_shadow(scene, points.index_select(0, lit), facing.index_select(0, lit))], 0.0)
    lambert = scene.ambient + scene.diffuse * sunlit
    footprint = hit_t * hits(pixel_angle) / cosine.abs().clamp_min(0.2)  # metres of surface per pixel
    if scene.natural is None:
        albedo = surface_albedo(scene.materials, scene.table, materials, uvs, footprint)
    else:  # each ray's material is either natural or procedural
        natural = scene.natural["used"].index_select(0, materials)
        albedo = torch.empty_like(points)
        rays = natural.nonzero()[:, 0]
        at = [values.index_select(0, rays) for values in (materials, uvs, footprint)]
        albedo.index_copy_(0, rays, natural_albedo(scene.natural, *at))
        rays = (~natural).nonzero()[:, 0]
        at = [values.index_select(0, rays) for values in (materials, uvs, footprint)]
        albedo.index_copy_(0, rays, surface_albedo(scene.materials, scene.table, *at))
    shaded = albedo * lambert[:, None]
    if all_hit:
        return shaded
    sky_rays = (~hit).nonzero()[:, 0]
    colour = torch.empty_like(directions).index_copy_(0, hit_rays, shaded)
    return colour.index_copy_(0, sky_rays, sky_colour(scene.sky, scene.table, directions.index_select(0, sky_rays)))


def _ray_blocks(num_views: int, height: int, width: int, block_rays: int, multi_view: bool) -> list[tuple[int, int, int, int]]:
    """(first view, end view, first row, end row) blocks of at most about block_rays rays: several whole
    views per block when allowed and views are small, else row bands of one view."""
    views_per_block = block_rays // (height * width) if multi_view else 1
    if views_per_block >= 2:
        return [(v, min(v + views_per_block, num_views), 0, height) for v in range(0, num_views, views_per_block)]
    bands = -(-height // max(1, block_rays // width))
    rows = -(-height // bands)  # bands of equal height, the last one no thinner
    return [(v, v + 1, r, min(r + rows, height)) for v in range(num_views) for r in range(0, height, rows)]


def render_views(
    scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int, width: int, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Cast one ray through every pixel centre (integer coordinates) of every camera.

    K: (3, 3) shared or (N, 3, 3); c2w: (N, 4, 4) OpenCV axes. Returns images (N, H, W, 3) uint8 and
    z-depths (N, H, W) float32, 0 where a ray hits nothing.
    """
    c2w = np.asarray(c2w, dtype=np.float64).reshape(-1, 4, 4)
    K = np.array(np.broadcast_to(np.asarray(K, dtype=np.float64), (len(c2w), 3, 3)))
    device = torch.device(device)
    tensors = _SceneTensors(scene, device)
    images = np.empty((len(c2w), height, width, 3), dtype=np.uint8)
    depths = np.empty((len(c2w), height, width), dtype=np.float32)
    all_K = torch.as_tensor(K, dtype=torch.float64, device=device)  # (N, 3, 3)
    all_c2w = torch.as_tensor(c2w, dtype=torch.float64, device=device)  # (N, 4, 4)
    columns = torch.arange(width, dtype=torch.float64, device=device)
    block_rays, multi_view = RAY_BLOCKS.get(device.type, RAY_BLOCKS["cuda"])
    with torch.no_grad():
        for first, end, top, bottom in _ray_blocks(len(c2w), height, width, block_rays, multi_view):
            intrinsics, pose = all_K[first:end], all_c2w[first:end]  # (V, 3, 3), (V, 4, 4)
            rows = torch.arange(top, bottom, dtype=torch.float64, device=device)
            x = (columns[None] - intrinsics[:, 0, 2:3]) / intrinsics[:, 0, 0:1]  # (V, W)
            y = (rows[None] - intrinsics[:, 1, 2:3]) / intrinsics[:, 1, 1:2]  # (V, rows)
            # Camera-frame directions (x, y, 1): the hit parameter t is then the z-depth itself.
            x, y = torch.broadcast_tensors(x[:, None, :], y[:, :, None])  # (V, rows, W)
            camera_dirs = torch.stack([x, y, torch.ones_like(x)], dim=-1)
            directions = torch.einsum("vhwc,vdc->vhwd", camera_dirs, pose[:, :3, :3]).reshape(-1, 3).float()
            rays_per_view = (bottom - top) * width
            if end - first == 1:  # one camera centre: intersections broadcast it; only primitives in view
                origins, pixel_angle = pose[:, :3, 3].float(), 1.0 / intrinsics[:, 0, 0].float()
                x_range, y_range = (float(x[0, 0, 0]), float(x[0, 0, -1])), (float(y[0, 0, 0]), float(y[0, -1, 0]))
                candidates = _in_view(tensors, pose[0], x_range, y_range)
            else:
                origins = pose[:, None, :3, 3].expand(-1, rays_per_view, -1).reshape(-1, 3).float()
                pixel_angle = (1.0 / intrinsics[:, 0, 0:1].float()).expand(-1, rays_per_view).reshape(-1)
                candidates = None
            t, kind, index = _cast(tensors, origins, directions, candidates)
            colour = _shade(tensors, origins, directions, t, kind, index, pixel_angle)
            shape = (end - first, bottom - top, width)
            images[first:end, top:bottom] = (colour.clamp(0, 1) * 255 + 0.5).to(torch.uint8).reshape(*shape, 3).cpu().numpy()
            depths[first:end, top:bottom] = torch.where(kind >= 0, t, 0.0).reshape(shape).cpu().numpy()
    return images, depths


def render_scene(
    seed: int,
    num_views: int,
    height: int,
    width: int,
    trajectory: str = "orbit",
    device: str | torch.device = "cpu",
    config: SceneConfig | None = None,
) -> list[View]:
    """`num_views` views of the random scene `seed`, a pure function of all arguments but `device`.

    All views share one camera (fov drawn from config.fov_deg); the poses follow `trajectory`.
    """
    if trajectory not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory {trajectory!r}; expected one of {TRAJECTORIES}")
    config = config or SceneConfig()
    scene = build_scene(seed, config)
    rng = np.random.default_rng([seed, 1, TRAJECTORIES.index(trajectory)])
    K = intrinsics_from_fov(rng.uniform(*config.fov_deg), height, width)
    scene, c2w = sample_trajectory(scene, rng, num_views, trajectory, config.varied_views)
    images, depths = render_views(scene, K, c2w, height, width, device)
    return [View(image=images[i], K=K.copy(), c2w=c2w[i], depth=depths[i], name=f"view_{i:03d}") for i in range(num_views)]


@dataclass(frozen=True)
class SyntheticSceneSource:
    """A scene source for `MultiViewDataset`: scene(index) renders the synthetic scene of seed base_seed + index.

    The scene kind and trajectory are drawn from `configs` and `trajectories`, deterministically per index.
    """

    num_views: int = 8
    height: int = 288
    width: int = 384
    configs: tuple[SceneConfig, ...] = (SceneConfig(kind="room"), SceneConfig(kind="orbit"))
    trajectories: tuple[str, ...] = TRAJECTORIES
    base_seed: int = 0
    device: str = "cpu"

    def __call__(self, index: int) -> list[View]:
        seed = self.base_seed + int(index)
        rng = np.random.default_rng([seed, 2])
        config = self.configs[int(rng.integers(len(self.configs)))]
        trajectory = self.trajectories[int(rng.integers(len(self.trajectories)))]
        return render_scene(seed, self.num_views, self.height, self.width, trajectory, self.device, config)
