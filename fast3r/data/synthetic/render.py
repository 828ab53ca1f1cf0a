"""Exact ray casting of synthetic scenes into posed views with depth, batched over pixels in torch."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..views import View
from . import intersect
from .cameras import TRAJECTORIES, intrinsics_from_fov, sample_trajectory
from .scene import Scene, SceneConfig, build_scene
from .textures import lattice_table, sky_colour, surface_albedo

CHUNK_RAYS = 1 << 17  # rays cast at once; bounds the (primitives x rays) temporaries
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
        self.materials = scene.materials.to_torch(device)
        self.table = lattice_table(scene.noise_table, device)
        self.light = tensor(scene.light_direction)
        self.ambient, self.diffuse = scene.ambient, scene.diffuse
        self.sky = tensor(scene.sky_colours)


_DISTANCE = {_BOX: intersect.box_distance, _CYLINDER: intersect.cylinder_distance, _SPHERE: intersect.sphere_distance}
_SURFACE = {_BOX: intersect.box_surface, _CYLINDER: intersect.cylinder_surface, _SPHERE: intersect.sphere_surface}


def _cast(scene: _SceneTensors, origin: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Nearest hit of each ray: t (R,) (+inf for none), primitive kind (R,) and index (R,)."""
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
        t, face = intersect.room_exit(scene.room, origin, directions)
        keep_nearer(t, _ROOM, face)
    if scene.ground_radius > 0:
        keep_nearer(intersect.ground_distance(scene.ground_radius, origin, directions), _GROUND, torch.zeros_like(best_index))
    for kind, (params, _materials) in scene.primitives.items():
        if len(params):
            t, index = _DISTANCE[kind](params, origin, directions).min(dim=0)
            keep_nearer(t, kind, index)
    return best_t, best_kind, best_index


def _shade(
    scene: _SceneTensors,
    origin: torch.Tensor,
    directions: torch.Tensor,
    t: torch.Tensor,
    kind: torch.Tensor,
    index: torch.Tensor,
    focal: float,
) -> torch.Tensor:
    """(R, 3) colours in [0, 1]: Lambertian albedo under a directional light plus ambient; sky for misses.

    `focal` (pixels) sets each hit's pixel footprint, which fades texture detail finer than a pixel.
    """
    hit = kind >= 0
    all_hit = bool(hit.all())  # closed rooms: skip the masking
    hit_dirs = directions if all_hit else directions[hit]
    points = origin + (t if all_hit else t[hit])[:, None] * hit_dirs
    normals, uvs = torch.empty_like(points), torch.empty_like(points[:, :2])
    materials = torch.empty(points.shape[0], dtype=torch.int64, device=points.device)
    hit_kind, hit_index = (kind, index) if all_hit else (kind[hit], index[hit])
    for k in range(5):
        rays = (hit_kind == k).nonzero()[:, 0]
        if not len(rays):
            continue
        ray_points, ray_index = points[rays], hit_index[rays]
        if k == _ROOM:
            normal, uv = intersect.room_surface(scene.room, ray_index, ray_points)
            material = scene.room_materials[ray_index]
        elif k == _GROUND:
            normal = torch.zeros_like(ray_points)
            normal[:, 2] = 1.0
            uv, material = ray_points[:, :2], torch.full_like(ray_index, scene.ground_material)
        else:
            params, primitive_materials = scene.primitives[k]
            normal, uv = _SURFACE[k](params, ray_index, ray_points)
            material = primitive_materials[ray_index]
        normals.index_copy_(0, rays, normal)
        uvs.index_copy_(0, rays, uv)
        materials.index_copy_(0, rays, material)
    cosine = (normals * hit_dirs).sum(dim=1) / hit_dirs.norm(dim=1)
    facing = torch.where(cosine[:, None] > 0, -normals, normals)
    lambert = scene.ambient + scene.diffuse * (facing @ scene.light).clamp_min(0)
    footprint = (t if all_hit else t[hit]) / focal / cosine.abs().clamp_min(0.2)  # metres of surface per pixel
    shaded = surface_albedo(scene.materials, scene.table, materials, uvs, footprint) * lambert[:, None]
    if all_hit:
        return shaded
    colour = torch.empty_like(directions)
    colour[hit] = shaded
    colour[~hit] = sky_colour(scene.sky, scene.table, directions[~hit])
    return colour


def render_views(
    scene: Scene, K: np.ndarray, c2w: np.ndarray, height: int, width: int, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Cast one ray through every pixel centre (integer coordinates) of every camera.

    K: (3, 3) shared or (N, 3, 3); c2w: (N, 4, 4) OpenCV axes. Returns images (N, H, W, 3) uint8 and
    z-depths (N, H, W) float32, 0 where a ray hits nothing.
    """
    c2w = np.asarray(c2w, dtype=np.float64).reshape(-1, 4, 4)
    K = np.broadcast_to(np.asarray(K, dtype=np.float64), (len(c2w), 3, 3))
    device = torch.device(device)
    tensors = _SceneTensors(scene, device)
    images = np.empty((len(c2w), height, width, 3), dtype=np.uint8)
    depths = np.empty((len(c2w), height, width), dtype=np.float32)
    rows_per_chunk = max(1, CHUNK_RAYS // width)
    columns = torch.arange(width, dtype=torch.float64, device=device)
    with torch.no_grad():
        for view, (intrinsics, pose) in enumerate(zip(K, c2w)):
            rotation = torch.as_tensor(pose[:3, :3], dtype=torch.float64, device=device)
            origin = torch.as_tensor(pose[:3, 3], dtype=torch.float32, device=device)
            x = (columns - intrinsics[0, 2]) / intrinsics[0, 0]  # (W,)
            for row_start in range(0, height, rows_per_chunk):
                rows = torch.arange(row_start, min(row_start + rows_per_chunk, height), dtype=torch.float64, device=device)
                y = (rows - intrinsics[1, 2]) / intrinsics[1, 1]
                # Camera-frame directions (x, y, 1): the hit parameter t is then the z-depth itself.
                camera_dirs = torch.stack(torch.broadcast_tensors(x[None, :], y[:, None], torch.ones(1, 1, dtype=torch.float64, device=device)), dim=-1)
                directions = (camera_dirs.reshape(-1, 3) @ rotation.T).float()
                t, kind, index = _cast(tensors, origin, directions)
                colour = _shade(tensors, origin, directions, t, kind, index, float(intrinsics[0, 0]))
                chunk = slice(row_start, row_start + len(rows))
                images[view, chunk] = (colour.clamp(0, 1) * 255 + 0.5).to(torch.uint8).reshape(len(rows), width, 3).cpu().numpy()
                depths[view, chunk] = torch.where(kind >= 0, t, 0.0).reshape(len(rows), width).cpu().numpy()
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
    scene, c2w = sample_trajectory(scene, rng, num_views, trajectory)
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
