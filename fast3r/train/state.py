"""Training checkpoints: everything a resumed run needs to continue exactly as an uninterrupted one.

A checkpoint `ckpt_<step>.pt` (written to a temporary name, then renamed) holds the model and optimiser
state (full, unsharded, keyed by parameter name), the scheduler, the number of finished steps, the data
position (the next batch index), every rank's RNG states (python, numpy, torch CPU, CUDA) and the config.
It is read with `torch.load(weights_only=True)`: no pickled code runs.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fast3r.io.atomic import atomic_path

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^ckpt_(\d{8})\.pt$")


def checkpoint_path(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINT_DIR / f"ckpt_{step:08d}.pt"


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the complete checkpoints in `out_dir`, oldest first."""
    folder = Path(out_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), path) for path in folder.iterdir() if (m := _NAME.match(path.name))]
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(out_dir)
    return checkpoints[-1][1] if checkpoints else None


def capture_rng_state() -> dict[str, Any]:
    """This process's random states, in types `torch.load(weights_only=True)` accepts."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["numpy"]
    np.random.set_state(
        (saved["name"], saved["keys"].numpy().astype(np.uint32), saved["position"], saved["has_gauss"], saved["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def save_checkpoint(out_dir: str | Path, step: int, payload: dict[str, Any], keep: int) -> Path:
    """Write `payload` (plus the step) atomically as the checkpoint of `step`; keep the newest `keep`."""
    path = checkpoint_path(out_dir, step)
    with atomic_path(path) as tmp:
        torch.save({**payload, "step": step}, tmp)
    for _, old in list_checkpoints(out_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents on the CPU; a clear error for a damaged or foreign file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several kinds for truncated / foreign files
        raise ValueError(f"cannot read training checkpoint {path}: {type(err).__name__}: {err}") from err
    required = ("model", "optimizer", "scheduler", "step", "data_position", "rng")
    missing = [key for key in required if key not in payload]
    if missing:
        raise ValueError(f"{path} is not a fast3r training checkpoint (missing {missing})")
    return payload
