"""Cameras from pointmaps: Sim(3) fits, focal estimation, PnP and the batched alignment path."""
from fast3r.geometry.align import AlignResult, align_local_to_global
from fast3r.geometry.cameras import Cameras, cameras_from_pointmaps, depth_from_local
from fast3r.geometry.focal import estimate_focal, estimate_focal_batched
from fast3r.geometry.groundtruth import PointmapsFromDepth, pointmaps_from_depth, unproject_depth
from fast3r.geometry.pnp import PnPConfig, PnPResult, intrinsics, pose_and_focal_from_pnp_sweep, pose_from_pnp
from fast3r.geometry.umeyama import umeyama, umeyama_batched

__all__ = [
    "AlignResult",
    "Cameras",
    "PnPConfig",
    "PnPResult",
    "PointmapsFromDepth",
    "align_local_to_global",
    "cameras_from_pointmaps",
    "depth_from_local",
    "estimate_focal",
    "estimate_focal_batched",
    "intrinsics",
    "pointmaps_from_depth",
    "pose_and_focal_from_pnp_sweep",
    "pose_from_pnp",
    "umeyama",
    "umeyama_batched",
    "unproject_depth",
]
