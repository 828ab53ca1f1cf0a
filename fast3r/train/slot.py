"""Compact slot checkpoints: one training run spread over many short GPU slots.

A slot may bring back only a few small files (at most 8, each at most 16 MB, 64 MB in all), so the full
checkpoint (fp32 weights and both AdamW moments: 16 bytes per parameter) cannot leave the machine. A
slot checkpoint folder holds instead, for `Fast3RConfig.small` (18.4M parameters) 7 files, 37 MB:

  config.json, model.safetensors.index.json, model-0000i-of-0000n.safetensors
      the weights in fp16, shards of at most 16 MB (`save_pretrained`; `Fast3R.from_pretrained` reads it)
  optimizer.safetensors
      AdamW's second moments, factored as Adafactor does (per matrix its row and column means, in fp32;
      vectors whole), with the step, the schedule and the run's config as metadata (under 1 MB)
  train_log.csv
      the run's log so far; the next slot appends to it

Restoring is not exact, and what is lost is measured in BENCHMARKS.md ("Training across GPU slots"):
the fp32 weights come back rounded to fp16, the second moments as outer(row mean, column mean) / mean,
and the first moments as zero (with beta1 = 0.9 AdamW forgets them within about ten steps). The data
stream is a pure function of (seed, step), so it continues where the slot stopped.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from fast3r.model import Fast3R

from .logs import LOG_NAME

OPTIMIZER_NAME = "optimizer.safetensors"
SHARD_BYTES = 16_000_000
_META_KEY = "fast3r_slot"


def factor_second_moment(moment: torch.Tensor) -> dict[str, torch.Tensor]:
    """A non-negative moment as Adafactor keeps it: rows and columns means of its (shape[0], -1)
    matrix; a vector or scalar whole."""
    moment = moment.detach().float().cpu()
    if moment.ndim < 2:
        return {"full": moment.clone()}
    matrix = moment.reshape(moment.shape[0], -1)
    return {"rows": matrix.mean(dim=1), "cols": matrix.mean(dim=0)}


def expand_second_moment(parts: dict[str, torch.Tensor], shape: torch.Size) -> torch.Tensor:
    """The moment of `shape` rebuilt from `factor_second_moment`: outer(rows, cols) / mean."""
    if "full" in parts:
        return parts["full"].reshape(shape).clone()
    rows, cols = parts["rows"], parts["cols"]
    total = rows.mean()
    matrix = torch.outer(rows, cols) / total if total > 0 else torch.zeros(rows.numel(), cols.numel())
    return matrix.reshape(shape)


def save_slot(
    folder: str | Path, model: Fast3R, optimizer_state: dict[str, Any], scheduler_state: dict[str, Any],
    step: int, config: dict[str, Any], log_path: Path,
) -> Path:
    """Write the slot checkpoint of `step` into `folder`, replacing what was there only once complete.

    model: a plain model holding the full weights; optimizer_state: `full_optimizer_state` (keyed by
    parameter name); config: the run's settings (recorded); log_path: the run's train_log.csv.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging), dtype=torch.float16, max_shard_bytes=SHARD_BYTES)
    tensors: dict[str, torch.Tensor] = {}
    for name, state in optimizer_state["state"].items():
        for part, value in factor_second_moment(state["exp_avg_sq"]).items():
            tensors[f"{name}/exp_avg_sq.{part}"] = value.contiguous()
    metadata = {"step": step, "scheduler": scheduler_state, "config": config}
    save_file(tensors, str(staging / OPTIMIZER_NAME), metadata={_META_KEY: json.dumps(metadata)})
    if log_path.is_file():
        shutil.copyfile(log_path, staging / LOG_NAME)
    previous = folder.with_name(folder.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if folder.exists():
        folder.rename(previous)
    staging.rename(folder)
    shutil.rmtree(previous, ignore_errors=True)
    return folder


def read_slot(folder: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata: step, scheduler, config; factored second moments) of a slot checkpoint folder."""
    from safetensors import safe_open

    path = Path(folder) / OPTIMIZER_NAME
    if not path.is_file():
        raise ValueError(f"{folder} is not a slot checkpoint (no {OPTIMIZER_NAME})")
    with safe_open(str(path), framework="pt") as handle:
        metadata = json.loads((handle.metadata() or {})[_META_KEY])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    return metadata, tensors


def restored_optimizer_state(fresh_state: dict[str, Any], moments: dict[str, torch.Tensor], step: int) -> dict[str, Any]:
    """A fresh optimiser's full state with the slot's second moments expanded, zero first moments and
    the step count set to `step`."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in moments.items():  # "<name>/exp_avg_sq.<part>"
        name, part = key.rsplit("/exp_avg_sq.", 1)
        grouped.setdefault(name, {})[part] = value
    state = {}
    for name, entry in fresh_state["state"].items():
        parts = grouped.get(name)
        if not parts:
            raise ValueError(f"the slot checkpoint has no optimiser state for {name}")
        exp_avg_sq = expand_second_moment(parts, entry["exp_avg_sq"].shape).to(entry["exp_avg_sq"].dtype)
        state[name] = {**entry, "step": torch.full_like(entry["step"], float(step)), "exp_avg": torch.zeros_like(entry["exp_avg"]),
                       "exp_avg_sq": exp_avg_sq}  # fmt: skip
    return {"state": state, "param_groups": fresh_state["param_groups"]}
