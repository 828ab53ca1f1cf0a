"""Procedural scene layouts: a furnished box room, or objects on a ground disc seen from an orbit.

World axes: z up, floor / ground at z = 0, metres. A layout is plain numpy; `render.py` casts rays into it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .natural import NaturalTextures, sample_natural_textures
from .textures import MaterialTable, concatenate_materials, random_colour, sample_materials

SCENE_KINDS = ("room", "orbit")


@dataclass(frozen=True)
class SceneConfig:
    """What a random scene may contain. Ranges are (low, high), inclusive for counts."""

    kind: str = "room"  # "room": furnished box room; "orbit": objects on a ground disc (CO3D-like)
    fov_deg: tuple[float, float] = (50.0, 80.0)  # horizontal field of view of the scene's camera
    num_objects: tuple[int, int] = (4, 10)  # furniture in a room / objects at the centre of an orbit scene
    num_posters: tuple[int, int] = (2, 5)  # flat image-like panels on the room walls
    num_background: tuple[int, int] = (4, 8)  # distant pillars and blocks around an orbit scene
    room_size: tuple[float, float] = (4.0, 8.0)  # room side lengths
    room_height: tuple[float, float] = (2.5, 3.2)
    ground_radius: float = 12.0  # orbit scenes: rays beyond this disc see the sky (depth unknown)
    clutter: tuple[int, int] = (0, 0)  # small boxes and spheres on the floor and on furniture (parallax, occlusion)
    natural_textures: float = 0.0  # share of materials with natural-image statistics (natural.py) instead of procedural
    ambient: tuple[float, float] = (0.4, 0.55)  # share of light from everywhere; the rest comes from the sun
    shadows: bool = False  # objects cast shadows of the sun (one more ray per pixel); room walls do not
    varied_views: float = 0.0  # share of room scenes whose orbit / arc views get their own heights and aim points

    def __post_init__(self) -> None:
        if self.kind not in SCENE_KINDS:
            raise ValueError(f"SceneConfig.kind must be one of {SCENE_KINDS}, got {self.kind!r}")
        names = ("fov_deg", "num_objects", "num_posters", "num_background", "room_size", "room_height", "clutter")
        for name in names:
            low, high = getattr(self, name)
            if low > high or low < 0:
                raise ValueError(f"SceneConfig.{name} must be a range (low, high) with 0 <= low <= high")
        if not (0 < self.fov_deg[0] and self.fov_deg[1] < 180):
            raise ValueError("SceneConfig.fov_deg must lie strictly between 0 and 180 degrees")
        if not 0 <= self.ambient[0] <= self.ambient[1] <= 1:
            raise ValueError(f"SceneConfig.ambient must be a range within [0, 1], got {self.ambient}")
        if not 0 <= self.natural_textures <= 1:
            raise ValueError(f"SceneConfig.natural_textures must be a share in [0, 1], got {self.natural_textures}")
        if not 0 <= self.varied_views <= 1:
            raise ValueError(f"SceneConfig.varied_views must be a share in [0, 1], got {self.varied_views}")


@dataclass
class Scene:
    """A scene's geometry, materials and lighting.

    boxes:     (B, 7) centre xyz, half extents xyz, yaw about z (radians)
    cylinders: (C, 5) axis x, y, radius, z bottom, z top (vertical axis)
    spheres:   (S, 4) centre xyz, radius
    *_materials: (B,) / (C,) / (S,) int indices into `materials`
    room:      (3,) extents of the room box [0, L] seen from inside, or None
    room_materials: (6,) materials of the faces -x, +x, -y, +y, floor, ceiling
    ground_radius: radius of the ground disc at z = 0 (orbit scenes), 0 for none
    centre:    (3,) the point of interest cameras look at
    """

    kind: str
    materials: MaterialTable
    noise_table: np.ndarray  # (T, T) float32 in [0, 1): lattice values for all procedural textures
    boxes: np.ndarray
    box_materials: np.ndarray
    cylinders: np.ndarray
    cylinder_materials: np.ndarray
    spheres: np.ndarray
    sphere_materials: np.ndarray
    centre: np.ndarray
    light_direction: np.ndarray  # (3,) unit vector towards the light
    ambient: float
    diffuse: float
    shadows: bool
    sky_colours: np.ndarray  # (2, 3) horizon and zenith colours
    room: np.ndarray | None = None
    room_materials: np.ndarray = field(default_factory=lambda: np.zeros(6, dtype=np.int64))
    ground_radius: float = 0.0
    ground_material: int = 0
    natural: NaturalTextures | None = None  # natural-image textures of some materials, or None for none

    def object_bounds(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Vertical bounding cylinders of all objects: centres (O, 2), radii (O,), z ranges (O, 2)."""
        box_xy, box_r = self.boxes[:, :2], np.hypot(self.boxes[:, 3], self.boxes[:, 4])
        box_z = np.stack([self.boxes[:, 2] - self.boxes[:, 5], self.boxes[:, 2] + self.boxes[:, 5]], axis=1)
        cyl_xy, cyl_r, cyl_z = self.cylinders[:, :2], self.cylinders[:, 2], self.cylinders[:, 3:5]
        sph_xy, sph_r = self.spheres[:, :2], self.spheres[:, 3]
        sph_z = np.stack([self.spheres[:, 2] - sph_r, self.spheres[:, 2] + sph_r], axis=1)
        return (
            np.concatenate([box_xy, cyl_xy, sph_xy]),
            np.concatenate([box_r, cyl_r, sph_r]),
            np.concatenate([box_z, cyl_z, sph_z]),
        )

    def blocked(self, points: np.ndarray, margin: float) -> np.ndarray:
        """(P, O) bool: point p lies within `margin` of object o's bounding cylinder."""
        centres, radii, z_range = self.object_bounds()
        horizontal = np.linalg.norm(points[:, None, :2] - centres[None], axis=-1) < radii[None] + margin
        vertical = (points[:, None, 2] > z_range[None, :, 0] - margin) & (points[:, None, 2] < z_range[None, :, 1] + margin)
        return horizontal & vertical

    def inside(self, points: np.ndarray, margin: float) -> np.ndarray:
        """(P,) bool: points at least `margin` inside the room, or above the ground for an open scene."""
        if self.room is not None:
            return np.all((points > margin) & (points < self.room - margin), axis=1)
        return points[:, 2] > margin

    def is_free(self, points: np.ndarray, margin: float) -> np.ndarray:
        """(P,) bool: points at least `margin` away from every object and every wall."""
        return self.inside(points, margin) & ~self.blocked(points, margin).any(axis=1)

    def without_objects_near(self, points: np.ndarray, margin: float) -> Scene:
        """The scene minus the objects within `margin` of any point (a fallback that clears a camera path)."""
        keep = ~self.blocked(points, margin).any(axis=0)
        num_boxes, num_cylinders = len(self.boxes), len(self.cylinders)
        keep_boxes = keep[:num_boxes]
        keep_cylinders = keep[num_boxes : num_boxes + num_cylinders]
        keep_spheres = keep[num_boxes + num_cylinders :]
        return replace(
            self,
            boxes=self.boxes[keep_boxes],
            box_materials=self.box_materials[keep_boxes],
            cylinders=self.cylinders[keep_cylinders],
            cylinder_materials=self.cylinder_materials[keep_cylinders],
            spheres=self.spheres[keep_spheres],
            sphere_materials=self.sphere_materials[keep_spheres],
        )


class _ObjectList:
    """Collects primitives while a layout is being built."""

    def __init__(self) -> None:
        self.boxes: list[list[float]] = []
        self.cylinders: list[list[float]] = []
        self.spheres: list[list[float]] = []
        self.footprints: list[tuple[float, float, float]] = []  # x, y, radius of objects standing on the floor

    def overlaps(self, x: float, y: float, radius: float, gap: float) -> bool:
        return any(np.hypot(x - fx, y - fy) < radius + fr + gap for fx, fy, fr in self.footprints)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.asarray(self.boxes, dtype=np.float64).reshape(-1, 7),
            np.asarray(self.cylinders, dtype=np.float64).reshape(-1, 5),
            np.asarray(self.spheres, dtype=np.float64).reshape(-1, 4),
        )


def _add_standing_object(objects: _ObjectList, rng: np.random.Generator, x: float, y: float, size: float) -> None:
    """A box, cylinder or sphere of about `size` metres standing on the floor at (x, y)."""
    shape = rng.choice(3, p=[0.5, 0.3, 0.2])
    if shape == 0:
        half_x, half_y = rng.uniform(0.25, 0.5, size=2) * size
        height = rng.uniform(0.3, 1.2) * size
        objects.boxes.append([x, y, height / 2, half_x, half_y, height / 2, rng.uniform(0, np.pi)])
        radius = float(np.hypot(half_x, half_y))
        if rng.random() < 0.4:  # something resting on top
            top_radius = rng.uniform(0.3, 0.8) * min(half_x, half_y)
            objects.spheres.append([x, y, height + top_radius, top_radius])
    elif shape == 1:
        radius = rng.uniform(0.15, 0.4) * size
        objects.cylinders.append([x, y, radius, 0.0, rng.uniform(0.4, 1.6) * size])
    else:
        radius = rng.uniform(0.2, 0.45) * size
        objects.spheres.append([x, y, radius, radius])
    objects.footprints.append((x, y, radius))


def _place_room_objects(rng: np.random.Generator, config: SceneConfig, room: np.ndarray, objects: _ObjectList) -> None:
    num_objects = int(rng.integers(config.num_objects[0], config.num_objects[1] + 1))
    for _ in range(num_objects):
        for _attempt in range(30):
            size = rng.uniform(0.6, 1.8)
            x, y = rng.uniform(0.3, room[0] - 0.3), rng.uniform(0.3, room[1] - 0.3)
            reach = 0.56 * size
            if x - reach < 0.05 or y - reach < 0.05 or x + reach > room[0] - 0.05 or y + reach > room[1] - 0.05:
                continue
            if not objects.overlaps(x, y, reach, gap=0.3):
                _add_standing_object(objects, rng, x, y, size)
                break


def _place_posters(rng: np.random.Generator, config: SceneConfig, room: np.ndarray, objects: _ObjectList) -> None:
    """Thin panels flat against the walls: image-like patches at eye height."""
    num_posters = int(rng.integers(config.num_posters[0], config.num_posters[1] + 1))
    thickness = 0.02
    for _ in range(num_posters):
        wall = int(rng.integers(4))
        width, height = rng.uniform(0.5, 1.4), rng.uniform(0.4, 1.0)
        z = rng.uniform(height / 2 + 0.8, max(room[2] - height / 2 - 0.2, height / 2 + 0.9))
        along_axis = 1 if wall < 2 else 0
        along = rng.uniform(width / 2 + 0.1, room[along_axis] - width / 2 - 0.1)
        across = thickness if wall % 2 == 0 else room[1 - along_axis] - thickness
        centre = [across, along] if wall < 2 else [along, across]
        half = [thickness, width / 2] if wall < 2 else [width / 2, thickness]
        objects.boxes.append([centre[0], centre[1], z, half[0], half[1], height / 2, 0.0])


def _place_orbit_objects(rng: np.random.Generator, config: SceneConfig, objects: _ObjectList) -> None:
    num_objects = int(rng.integers(config.num_objects[0], config.num_objects[1] + 1))
    for _ in range(num_objects):
        for _attempt in range(30):
            size = rng.uniform(0.6, 1.4)
            radius, angle = rng.uniform(0.0, 0.8), rng.uniform(0, 2 * np.pi)
            x, y = radius * np.cos(angle), radius * np.sin(angle)
            if not objects.overlaps(x, y, 0.56 * size, gap=0.05):
                _add_standing_object(objects, rng, x, y, size)
                break
    num_background = int(rng.integers(config.num_background[0], config.num_background[1] + 1))
    max_distance = max(7.5, config.ground_radius - 1.0)
    for _ in range(num_background):
        distance, angle = rng.uniform(7.0, max_distance), rng.uniform(0, 2 * np.pi)
        x, y = distance * np.cos(angle), distance * np.sin(angle)
        height = rng.uniform(1.0, 4.0)
        if rng.random() < 0.5:
            objects.cylinders.append([x, y, rng.uniform(0.2, 0.7), 0.0, height])
        else:
            half = rng.uniform(0.3, 1.0, size=2)
            objects.boxes.append([x, y, height / 2, half[0], half[1], height / 2, rng.uniform(0, np.pi)])


def _clutter_spot(
    rng: np.random.Generator, room: np.ndarray | None, taken: list[_ObjectList], tops: list[list[float]], half: float
) -> tuple[float, float, float] | None:
    """(x, y, z of the surface below) for a clutter item of `half` size: on a furniture top (30%), else on
    the floor clear of the footprints in `taken`; None if the floor spot drawn is taken."""
    if tops and rng.random() < 0.3:
        top = tops[int(rng.integers(len(tops)))]
        local = rng.uniform(-1, 1, size=2) * np.maximum(np.array(top[3:5]) - half, 0.0)
        cos, sin = np.cos(top[6]), np.sin(top[6])
        return top[0] + cos * local[0] - sin * local[1], top[1] + sin * local[0] + cos * local[1], top[2] + top[5]
    if room is not None:
        x, y = rng.uniform(0.15 + half, room[0] - 0.15 - half), rng.uniform(0.15 + half, room[1] - 0.15 - half)
    else:
        distance, angle = rng.uniform(0.3, 2.2), rng.uniform(0, 2 * np.pi)
        x, y = distance * np.cos(angle), distance * np.sin(angle)
    if any(objects.overlaps(x, y, half * 1.42, gap=0.02) for objects in taken):
        return None
    return x, y, 0.0


def _place_clutter(rng: np.random.Generator, config: SceneConfig, room: np.ndarray | None, objects: _ObjectList) -> _ObjectList:
    """Small boxes and spheres (4-20 cm half size) on the floor between the objects or on top of
    furniture boxes near the centre (not posters or far pillars): extra parallax and occlusion."""
    clutter = _ObjectList()
    tops = [box for box in objects.boxes if min(box[3], box[4]) > 0.05 and (room is not None or np.hypot(box[0], box[1]) < 2.5)]
    for _ in range(int(rng.integers(config.clutter[0], config.clutter[1] + 1))):
        half = rng.uniform(0.04, 0.2)
        for _attempt in range(30):
            spot = _clutter_spot(rng, room, [objects, clutter], tops, half)
            if spot is None:
                continue
            x, y, floor = spot
            if rng.random() < 0.5:
                half_height = half * rng.uniform(0.5, 2.0)
                clutter.boxes.append([x, y, floor + half_height, half * rng.uniform(0.5, 1.0), half, half_height, rng.uniform(0, np.pi)])
            else:
                clutter.spheres.append([x, y, floor + half, half])
            if floor == 0.0:
                clutter.footprints.append((x, y, half * 1.42))
            break
    return clutter


def _with_clutter(scene: Scene, clutter: _ObjectList, materials: MaterialTable) -> Scene:
    """`scene` plus the clutter primitives, whose `materials` are appended to the scene's table."""
    boxes, _cylinders, spheres = clutter.arrays()
    first = len(scene.materials.noise_frequency)
    return replace(
        scene,
        materials=concatenate_materials(scene.materials, materials),
        boxes=np.concatenate([scene.boxes, boxes]),
        box_materials=np.concatenate([scene.box_materials, first + np.arange(len(boxes))]),
        spheres=np.concatenate([scene.spheres, spheres]),
        sphere_materials=np.concatenate([scene.sphere_materials, first + len(boxes) + np.arange(len(spheres))]),
    )


def build_scene(seed: int, config: SceneConfig | None = None) -> Scene:
    """A random scene of `config.kind`, a pure function of (seed, config)."""
    config = config or SceneConfig()
    rng = np.random.default_rng([seed, 0])
    objects = _ObjectList()
    room = None
    if config.kind == "room":
        room = np.array([*rng.uniform(*config.room_size, size=2), rng.uniform(*config.room_height)])
        _place_room_objects(rng, config, room, objects)
        _place_posters(rng, config, room, objects)
        centre = np.array([room[0] / 2, room[1] / 2, 0.9])
    else:
        _place_orbit_objects(rng, config, objects)
        centre = np.array([0.0, 0.0, 0.4])
    boxes, cylinders, spheres = objects.arrays()
    num_surfaces = len(boxes) + len(cylinders) + len(spheres) + 7  # + 6 room faces + ground
    materials = sample_materials(rng, num_surfaces)
    elevation, azimuth = rng.uniform(np.radians(35), np.radians(75)), rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    ambient = rng.uniform(*config.ambient)
    horizon = random_colour(rng, saturation=(0.05, 0.25), value=(0.8, 0.95))
    zenith = random_colour(rng, saturation=(0.3, 0.6), value=(0.6, 0.9))
    num_boxes, num_cylinders = len(boxes), len(cylinders)
    scene = Scene(
        kind=config.kind,
        materials=materials,
        noise_table=rng.random((256, 256), dtype=np.float32),
        boxes=boxes,
        box_materials=np.arange(num_boxes),
        cylinders=cylinders,
        cylinder_materials=num_boxes + np.arange(num_cylinders),
        spheres=spheres,
        sphere_materials=num_boxes + num_cylinders + np.arange(len(spheres)),
        centre=centre,
        light_direction=light,
        ambient=float(ambient),
        diffuse=float(1.0 - ambient),
        shadows=config.shadows,
        sky_colours=np.stack([horizon, zenith]),
        room=room,
        room_materials=num_surfaces - 7 + np.arange(6),
        ground_radius=config.ground_radius if config.kind == "orbit" else 0.0,
        ground_material=num_surfaces - 1,
    )
    if config.clutter[1] > 0:  # a stream of its own: the scene without clutter stays as it was
        clutter_rng = np.random.default_rng([seed, 3])
        clutter = _place_clutter(clutter_rng, config, room, objects)
        scene = _with_clutter(scene, clutter, sample_materials(clutter_rng, len(clutter.boxes) + len(clutter.spheres)))
    if config.natural_textures > 0:
        num_materials = len(scene.materials.noise_frequency)
        scene = replace(scene, natural=sample_natural_textures(np.random.default_rng([seed, 4]), num_materials, config.natural_textures))
    return scene
