"""fast3r: 3D reconstruction of many unposed photos in one forward pass (Fast3R, CVPR 2025)."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .geometry import cameras_from_pointmaps
    from .model import Fast3R, Fast3RConfig, RunOptions
    from .pipeline import reconstruct

__version__ = "0.1.0"
__all__ = ["Fast3R", "Fast3RConfig", "RunOptions", "cameras_from_pointmaps", "reconstruct", "__version__"]

# Each public name loads its module (and torch) on first use, so `import fast3r` is instant and the
# `fast3r` command can take over Ctrl-C before any heavy import starts.
_HOMES = {
    "Fast3R": ".model",
    "Fast3RConfig": ".model",
    "RunOptions": ".model",
    "cameras_from_pointmaps": ".geometry",
    "reconstruct": ".pipeline",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'fast3r' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
