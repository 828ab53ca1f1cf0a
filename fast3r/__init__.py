"""fast3r: 3D reconstruction of many unposed photos in one forward pass (Fast3R, CVPR 2025)."""
from .model import Fast3R, Fast3RConfig, RunOptions

__version__ = "0.1.0"
__all__ = ["Fast3R", "Fast3RConfig", "RunOptions", "__version__"]
