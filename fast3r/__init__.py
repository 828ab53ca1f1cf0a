"""fast3r: 3D reconstruction of many unposed photos in one forward pass (Fast3R, CVPR 2025)."""
from .model import Fast3R, Fast3RConfig, RunOptions

__version__ = "0.1.0"
__all__ = ["Fast3R", "Fast3RConfig", "RunOptions", "cameras_from_pointmaps", "reconstruct", "__version__"]


def __getattr__(name: str):
    # The pipeline and camera code load on first use, so `import fast3r` stays light.
    if name == "reconstruct":
        from .pipeline import reconstruct

        return reconstruct
    if name == "cameras_from_pointmaps":
        from .geometry import cameras_from_pointmaps

        return cameras_from_pointmaps
    raise AttributeError(f"module 'fast3r' has no attribute {name!r}")
