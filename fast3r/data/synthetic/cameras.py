"""Camera intrinsics and trajectories for synthetic scenes.

Wide-baseline: "orbit" (up to a full circle), "walk" (forward motion), "random" (anywhere, looking
anywhere in the middle). Capture-like, every view sharing the region the first one sees: "arc" (part of
an orbit, at most 150 degrees around objects, 90 in a room) and "handheld" (unordered shots of one
region from nearby places, as when someone photographs a thing or a corner by walking around it).
"outward": standing near one spot and turning (120-360 degrees), looking out at the room's walls or,
around objects, at the ground and the scene beyond: wide rotations, little translation. It is in neither
group: `fast3r eval --dataset synthetic` draws its scenes from WIDE_BASELINE, which stays as it was.
Poses are camera-to-world 4x4 in OpenCV camera axes (x right, y down, z forward); the world has z up.
"""
from __future__ import annotations

import numpy as np

from .scene import Scene

# New trajectories go at the end: a scene's render seed includes its trajectory's index here.
TRAJECTORIES = ("orbit", "walk", "random", "arc", "handheld", "outward")
WIDE_BASELINE = ("orbit", "walk", "random")
CAPTURE_LIKE = ("arc", "walk", "handheld")
_ROLL_DEG = {"orbit": 0.0, "arc": 0.0, "walk": 3.0, "random": 3.0, "handheld": 8.0, "outward": 3.0}  # largest roll
CAMERA_MARGIN = 0.35  # metres between a camera and any surface
_MAX_ATTEMPTS = 200


def intrinsics_from_fov(fov_deg: float, height: int, width: int) -> np.ndarray:
    """(3, 3) pinhole K with a horizontal field of view, square pixels, principal point at (W/2, H/2)."""
    focal = (width / 2) / np.tan(np.radians(fov_deg) / 2)
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """(4, 4) camera-to-world of a camera at `eye` looking at `target`, z up, rolled by `roll` radians."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    if np.linalg.norm(right) < 1e-6:  # looking straight up or down
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    cos, sin = np.cos(roll), np.sin(roll)
    right, down = cos * right + sin * down, cos * down - sin * right
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, down, forward], axis=1)
    c2w[:3, 3] = eye
    return c2w


def _direction(yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], axis=-1)


def _orbit(
    scene: Scene, rng: np.random.Generator, num_views: int, room_span: tuple[float, float] = (90, 240),
    object_span: tuple[float, float] = (120, 360),
) -> tuple[np.ndarray, np.ndarray]:
    """Eyes on an arc (span in degrees) around the scene centre, all looking inwards."""
    if scene.room is not None:
        centre = scene.centre + np.array([*rng.uniform(-0.1, 0.1, size=2) * scene.room[:2], 0.0])
        radius = rng.uniform(0.22, 0.38) * min(scene.room[0], scene.room[1])
        heights = np.full(num_views, rng.uniform(1.2, 1.9))
        span = np.radians(rng.uniform(*room_span))
    else:
        centre = scene.centre.copy()
        radius = rng.uniform(2.0, 3.5)
        heights = radius * np.tan(np.radians(rng.uniform(10, 45) + rng.uniform(-4, 4, size=num_views)))
        span = np.radians(rng.uniform(*object_span))
    steps = max(num_views - 1, 1) if span < 2 * np.pi - 1e-9 else num_views
    angles = rng.uniform(0, 2 * np.pi) + span * np.arange(num_views) / steps
    eyes = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles), heights], axis=1)
    target_height = rng.uniform(0.4, 1.2) if scene.room is not None else centre[2]
    targets = np.array([centre[0], centre[1], target_height]) + rng.normal(0, 0.1, size=(num_views, 3))
    return eyes, targets


def _walk(scene: Scene, rng: np.random.Generator, num_views: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward motion along a line with a gentle sway, looking ahead with small smooth rotations."""
    if scene.room is not None:
        start = np.array([rng.uniform(0.6, scene.room[0] - 0.6), rng.uniform(0.6, scene.room[1] - 0.6)])
        heading = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.3, 0.6) * min(scene.room[0], scene.room[1])
        height = rng.uniform(1.3, 1.8)
        pitch = np.radians(rng.uniform(-20, 0))
    else:
        azimuth = rng.uniform(0, 2 * np.pi)
        start = rng.uniform(3.5, 5.0) * np.array([np.cos(azimuth), np.sin(azimuth)])
        heading = azimuth + np.pi + rng.uniform(-0.2, 0.2)
        length = rng.uniform(1.0, 2.0)
        height = rng.uniform(1.0, 2.5)
        pitch = -np.arctan2(height - scene.centre[2], np.linalg.norm(start) - length / 2)
    progress = np.linspace(0.0, 1.0, num_views)
    phase = rng.uniform(0, 2 * np.pi)
    along = np.array([np.cos(heading), np.sin(heading)])
    sideways = np.array([-along[1], along[0]])
    sway = 0.1 * np.sin(phase + 2 * np.pi * progress)
    xy = start + length * progress[:, None] * along + sway[:, None] * sideways
    eyes = np.concatenate([xy, (height + 0.03 * np.sin(phase + 6 * np.pi * progress))[:, None]], axis=1)
    yaw = heading + np.radians(rng.uniform(5, 20)) * np.sin(phase * 1.7 + 2 * np.pi * progress)
    pitches = pitch + np.radians(rng.uniform(2, 6)) * np.sin(phase * 0.6 + 2 * np.pi * progress)
    return eyes, eyes + _direction(yaw, pitches)


def _room_eye_space(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Corners (low, high) of the box where a camera may stand in a room: 0.6 m from the walls, 1-2 m up."""
    return np.array([0.6, 0.6, 1.0]), np.array([scene.room[0] - 0.6, scene.room[1] - 0.6, 2.0])


def _eyes_around_objects(rng: np.random.Generator, num_views: int, azimuth_window_deg: tuple[float, float]) -> np.ndarray:
    """(num_views, 3) eyes 2-4 m from the origin, 10-50 degrees up, in an azimuth window whose width is
    drawn from `azimuth_window_deg`."""
    distance = rng.uniform(2.0, 4.0, size=num_views)
    azimuth = rng.uniform(0, 2 * np.pi) + rng.uniform(0, np.radians(rng.uniform(*azimuth_window_deg)), size=num_views)
    elevation = np.radians(rng.uniform(10, 50, size=num_views))
    return distance[:, None] * _direction(azimuth, elevation)


def room_middle(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Corners (low, high) of the box `random` views aim into: the middle 40% of the room, 0.3-1.5 m up."""
    return (np.array([0.3 * scene.room[0], 0.3 * scene.room[1], 0.3]),
            np.array([0.7 * scene.room[0], 0.7 * scene.room[1], 1.5]))  # fmt: skip


def _random(scene: Scene, rng: np.random.Generator, num_views: int) -> tuple[np.ndarray, np.ndarray]:
    """Eyes anywhere in free space, each looking at a random point in the middle of the scene."""
    if scene.room is not None:
        low, high = _room_eye_space(scene)
        eyes = rng.uniform(low, high, size=(num_views, 3))
        targets = rng.uniform(*room_middle(scene), size=(num_views, 3))
    else:
        eyes = _eyes_around_objects(rng, num_views, azimuth_window_deg=(90, 360))
        targets = scene.centre + rng.normal(0, 0.25, size=(num_views, 3))
    return eyes, targets


def _arc(scene: Scene, rng: np.random.Generator, num_views: int) -> tuple[np.ndarray, np.ndarray]:
    """Part of an orbit: 40-150 degrees around objects, 30-90 degrees inside a room."""
    return _orbit(scene, rng, num_views, room_span=(30, 90), object_span=(40, 150))


def _handheld(scene: Scene, rng: np.random.Generator, num_views: int) -> tuple[np.ndarray, np.ndarray]:
    """Unordered shots of one region from nearby places: eyes scattered around a base position (in a
    room) or within an azimuth window of 30-120 degrees (objects), all aimed near one point."""
    if scene.room is not None:
        low, high = _room_eye_space(scene)
        target = rng.uniform([0.3 * scene.room[0], 0.3 * scene.room[1], 0.4], [0.7 * scene.room[0], 0.7 * scene.room[1], 1.3])
        base = rng.uniform(low, high)
        for _ in range(20):  # stand back from the target, as a photographer would
            if np.linalg.norm((base - target)[:2]) >= 1.5:
                break
            base = rng.uniform(low, high)
        eyes = np.clip(base + rng.uniform([-0.6, -0.6, -0.3], [0.6, 0.6, 0.3], size=(num_views, 3)), low, high)
        targets = target + rng.normal(0, 0.25, size=(num_views, 3))
    else:
        eyes = _eyes_around_objects(rng, num_views, azimuth_window_deg=(30, 120))
        targets = scene.centre + rng.normal(0, 0.2, size=(num_views, 3))
    return eyes, targets


def _outward(scene: Scene, rng: np.random.Generator, num_views: int) -> tuple[np.ndarray, np.ndarray]:
    """Turning on the spot, looking outwards: yaw sweeps 120-360 degrees in order while the eye drifts
    up to 0.3 m from a standing point near the room's middle (or 2-3.5 m from the objects' centre)."""
    if scene.room is not None:
        stand = rng.uniform([0.35 * scene.room[0], 0.35 * scene.room[1]], [0.65 * scene.room[0], 0.65 * scene.room[1]])
        height, pitch = rng.uniform(1.2, 1.8), np.radians(rng.uniform(-25, 5))
    else:
        azimuth = rng.uniform(0, 2 * np.pi)
        stand = scene.centre[:2] + rng.uniform(2.0, 3.5) * np.array([np.cos(azimuth), np.sin(azimuth)])
        height, pitch = rng.uniform(1.3, 1.8), np.radians(rng.uniform(-35, -15))  # the ground, not the sky
    span = np.radians(rng.uniform(120, 360))
    steps = max(num_views - 1, 1) if span < 2 * np.pi - 1e-9 else num_views
    yaw = rng.uniform(0, 2 * np.pi) + span * np.arange(num_views) / steps + np.radians(rng.uniform(-5, 5, size=num_views))
    drift = rng.uniform(-0.3, 0.3, size=(num_views, 2)) * np.linspace(0.3, 1.0, num_views)[:, None]
    eyes = np.concatenate([stand + drift, (height + rng.uniform(-0.05, 0.05, size=num_views))[:, None]], axis=1)
    pitches = pitch + np.radians(rng.uniform(-5, 5, size=num_views))
    return eyes, eyes + _direction(yaw, pitches)


def _vary_views(
    scene: Scene, rng: np.random.Generator, eyes: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The same eyes in plan, each at its own height (1-2 m), each aimed at its own point: the trajectory's
    target moved by up to 1.2 m across and put at its own height (0.3-1.5 m), kept in the room's middle.
    (Each of these differences alone cost the bundled model 32-39 RRA@15 points on held-out room orbits:
    BENCHMARKS.md, "Which part of `random` it fails on".)"""
    count = len(eyes)
    eyes = eyes.copy()
    eyes[:, 2] = rng.uniform(1.0, 2.0, size=count)
    moved = targets + np.concatenate([rng.uniform(-1.2, 1.2, size=(count, 2)), np.zeros((count, 1))], axis=1)
    moved[:, 2] = rng.uniform(0.3, 1.5, size=count)
    return eyes, np.clip(moved, *room_middle(scene))


_VARIED = ("orbit", "arc")  # the trajectories `_vary_views` applies to
_SAMPLERS = {"orbit": _orbit, "walk": _walk, "random": _random, "arc": _arc, "handheld": _handheld, "outward": _outward}


def sample_trajectory(
    scene: Scene, rng: np.random.Generator, num_views: int, trajectory: str, varied_share: float = 0.0
) -> tuple[Scene, np.ndarray]:
    """(scene, c2w (N, 4, 4)): camera poses whose eyes keep CAMERA_MARGIN from every surface.

    Tries up to _MAX_ATTEMPTS random trajectories; if none is free, removes the objects in the way of
    the last one (so the returned scene may have fewer objects than the input). varied_share: the share
    of room scenes whose `orbit` / `arc` views each get their own height and aim point (`_vary_views`);
    at 0 no random number is drawn for it, so every scene is as before.
    """
    if trajectory not in _SAMPLERS:
        raise ValueError(f"unknown trajectory {trajectory!r}; expected one of {TRAJECTORIES}")
    if num_views < 1:
        raise ValueError(f"num_views must be at least 1, got {num_views}")
    varied = varied_share > 0 and scene.room is not None and trajectory in _VARIED and rng.random() < varied_share
    for _ in range(_MAX_ATTEMPTS):
        eyes, targets = _SAMPLERS[trajectory](scene, rng, num_views)
        if varied:
            eyes, targets = _vary_views(scene, rng, eyes, targets)
        # Targets inside the room keep a walking camera from staring at a wall from up close.
        targets_ok = scene.room is None or scene.inside(targets, 0.0).all()
        if targets_ok and scene.is_free(eyes, CAMERA_MARGIN).all():
            break
    else:
        scene = scene.without_objects_near(eyes, CAMERA_MARGIN)
    rolls = np.radians(rng.uniform(-1, 1, size=num_views) * _ROLL_DEG[trajectory])
    return scene, np.stack([look_at(eye, target, roll) for eye, target, roll in zip(eyes, targets, rolls)])
