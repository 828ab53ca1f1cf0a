"""Procedural multi-view scenes rendered by exact ray casting, with exact depth and cameras.

>>> views = render_scene(seed=0, num_views=8, height=224, width=224, trajectory="walk")
>>> views[0].image.shape, views[0].depth.shape, views[0].K, views[0].c2w
"""
from .cameras import CAPTURE_LIKE, TRAJECTORIES, WIDE_BASELINE, intrinsics_from_fov, look_at, sample_trajectory
from .render import SyntheticSceneSource, render_scene, render_views
from .scene import Scene, SceneConfig, build_scene

__all__ = [
    "CAPTURE_LIKE",
    "WIDE_BASELINE",
    "TRAJECTORIES",
    "Scene",
    "SceneConfig",
    "SyntheticSceneSource",
    "build_scene",
    "intrinsics_from_fov",
    "look_at",
    "render_scene",
    "render_views",
    "sample_trajectory",
]
