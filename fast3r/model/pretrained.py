"""Load and save Fast3R weights in the published layout: `config.json` + `model.safetensors`.

Only safetensors are read (no pickled code runs). A reference checkpoint saved with torch can be
converted with `convert_torch_checkpoint`, which reads it with `torch.load(weights_only=True)`.

The published weights (`jedyang97/Fast3R_ViT_Large_512`) are licensed for non-commercial use only
(fair-nc); fast3r's code is Apache-2.0.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..io.atomic import atomic_path, write_text_atomic
from .config import ConfigError, Fast3RConfig
from .fast3r import Fast3R

logger = logging.getLogger("fast3r")

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"  # sharded weights, in the Hugging Face layout
PUBLISHED_REPO = "jedyang97/Fast3R_ViT_Large_512"
LICENCE_NOTE = (
    "The published Fast3R weights are licensed for non-commercial use only (fair-nc); "
    "fast3r's code is Apache-2.0."
)


class WeightsError(ValueError):
    """Weights that cannot be loaded, with the reason."""


def alias_keys(model: torch.nn.Module) -> dict[str, str]:
    """{alias key: stored key} for tensors registered under two names (the DPT `layer_rn` list)."""
    first_name: dict[int, str] = {}
    aliases = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first_name:
            aliases[name] = first_name[id(tensor)]
        else:
            first_name[id(tensor)] = name
    return aliases


def stored_state_dict(model: Fast3R) -> dict[str, torch.Tensor]:
    """The state dict as stored on disk: aliases dropped (712 tensors for ViT-L/512)."""
    aliases = alias_keys(model)
    return {k: v for k, v in model.state_dict().items() if k not in aliases}


def save_pretrained(
    model: Fast3R,
    directory: str | os.PathLike,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int | None = None,
) -> None:
    """Write `config.json` and `model.safetensors` into `directory` (optionally cast, e.g. fp16).

    With `max_shard_bytes`, weights larger than that are split into `model-0000i-of-0000n.safetensors`
    files with a `model.safetensors.index.json`, as on the Hugging Face hub.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in stored_state_dict(model).items()
    }
    shards: list[dict[str, torch.Tensor]] = [{}]
    shard_bytes = 0
    for key, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        if max_shard_bytes is not None and shards[-1] and shard_bytes + size > max_shard_bytes:
            shards.append({})
            shard_bytes = 0
        shards[-1][key] = tensor
        shard_bytes += size
    for stale in [directory / WEIGHTS_NAME, directory / INDEX_NAME, *directory.glob("model-*-of-*.safetensors")]:
        stale.unlink(missing_ok=True)
    if len(shards) == 1:
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
    else:
        weight_map = {}
        for number, shard in enumerate(shards, start=1):
            name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
            with atomic_path(directory / name) as tmp:
                save_file(shard, str(tmp), metadata={"format": "pt"})
            weight_map.update({key: name for key in shard})
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        write_text_atomic(directory / INDEX_NAME, json.dumps(index, indent=2, sort_keys=True))
    write_text_atomic(directory / CONFIG_NAME, json.dumps(model.config.to_published(), indent=2, sort_keys=True))


BUNDLED_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "fast3r-small-224"  # the demo model
PUBLISHED_WEIGHTS = "jedyang97/Fast3R_ViT_Large_512"  # the release (fair-nc licence)


def weights_source(weights: str | os.PathLike | None) -> str:
    """A folder or hub id as given; None: the published ViT-L/512; "small": the bundled demo model for
    synthetic scenes."""
    if weights is None:
        return PUBLISHED_WEIGHTS
    return str(BUNDLED_WEIGHTS) if str(weights) == "small" else str(weights)


def resolve_source(source: str | os.PathLike) -> Path:
    """A local directory as is; otherwise a Hugging Face hub id, downloaded into the hub cache."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise WeightsError(f"{path} is a file; pass the directory holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    repo_id = str(source)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")):
        raise WeightsError(f"{source!r} is neither a local directory nor a Hugging Face hub id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=[CONFIG_NAME, "*.safetensors", INDEX_NAME]))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WeightsError(
            f"could not download {repo_id!r} from the Hugging Face hub ({reason}). Offline? Download it "
            f"elsewhere (hf download {repo_id} --local-dir DIR) and pass --weights DIR, or try the bundled "
            "demo model for synthetic scenes with --weights small"
        ) from err


def read_config(directory: Path) -> Fast3RConfig:
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise WeightsError(f"{config_path} is missing")
    try:
        raw = json.loads(config_path.read_text())  # reads bare Infinity tokens as floats
        return Fast3RConfig.from_published(raw)
    except (json.JSONDecodeError, ConfigError) as err:
        raise WeightsError(f"{config_path}: {err}") from err


def load_pretrained(
    source: str | os.PathLike,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
) -> Fast3R:
    """Build the model from `config.json` and load `model.safetensors` (or its shards) into it."""
    directory = resolve_source(source)
    config = read_config(directory)
    # as stored (fp16) onto the device first: the checks and conversions then run there, not on CPU
    # cores that photo decoding or other ranks' loading may be using (14 s instead of 1 s, measured)
    tensors = {key: value.to(device) for key, value in read_weights(directory).items()}
    with torch.device("meta"):
        model = Fast3R(config)
    load_state(model, tensors, str(directory))
    if config.to_published() == Fast3RConfig.vitl512().to_published():
        logger.warning(LICENCE_NOTE)
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval()


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of `model.safetensors`, or of the shards its index names."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if (directory / WEIGHTS_NAME).is_file():
        files = [directory / WEIGHTS_NAME]
    elif (directory / INDEX_NAME).is_file():
        try:
            weight_map = json.loads((directory / INDEX_NAME).read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise WeightsError(f"{directory / INDEX_NAME} is not a valid safetensors index: {err}") from err
        files = [directory / name for name in sorted(set(weight_map.values()))]
    else:
        raise WeightsError(f"{directory} holds neither {WEIGHTS_NAME} nor {INDEX_NAME}")
    tensors: dict[str, torch.Tensor] = {}
    for path in files:
        if not path.is_file():
            raise WeightsError(f"{path} is missing")
        try:
            tensors.update(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError) as err:
            raise WeightsError(f"{path} is not a readable safetensors file: {err}") from err
    return tensors


def load_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], origin: str = "state dict") -> None:
    """Check `tensors` against the model, or one of its parts such as `model.encoder` (one error listing
    every problem), then assign them.

    Alias keys may be present or absent; when present they must equal their stored twin.
    """
    aliases = alias_keys(model)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in aliases}
    tensors = dict(tensors)
    problems = []
    for alias, stored in aliases.items():
        if alias in tensors:
            twin = tensors.pop(alias)
            if stored in tensors and not torch.equal(twin, tensors[stored]):
                problems.append(f"aliased tensors differ: {alias} != {stored}")
            tensors.setdefault(stored, twin)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = [
        f"{k}: file {tuple(tensors[k].shape)}, model {expected[k]}"
        for k in sorted(set(expected) & set(tensors))
        if tuple(tensors[k].shape) != expected[k]
    ]
    non_finite = [
        k for k, v in sorted(tensors.items()) if k in expected and v.is_floating_point() and not torch.isfinite(v).all()
    ]
    for title, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("mis-shaped keys", misshaped),
        ("keys with NaN or infinite values", non_finite),
    ):
        if keys:
            shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
            problems.append(f"{title}: {shown}")
    if problems:
        raise WeightsError(f"cannot load {origin}: " + "; ".join(problems))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, strict=False, assign=True)


def convert_torch_checkpoint(checkpoint: str | os.PathLike, config: Fast3RConfig, out_dir: str | os.PathLike) -> None:
    """Convert a torch checkpoint of the reference (a state dict, possibly under 'state_dict' or
    'model', keys possibly prefixed 'model.' or 'net.') into the published safetensors layout."""
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    prefixes = ("model.", "net.", "module.")
    cleaned = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = value
    with torch.device("meta"):
        model = Fast3R(config)
    load_state(model, cleaned, str(checkpoint))
    save_pretrained(model, out_dir)
