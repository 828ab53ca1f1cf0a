"""Training configuration: a typed dataclass read from TOML, with `section.key=value` overrides.

    steps = 2000                  # top-level keys: the run
    [model]   preset / config / init_weights / init_encoder / activation_checkpointing
    [data]    see fast3r.train.data.DataConfig (scene levers: clutter, natural_textures, ambient, shadows,
              varied_views)
    [optim]   see fast3r.train.optim.OptimConfig
    [heldout] see fast3r.train.heldout.HeldoutConfig
    [crossview] see fast3r.train.crossview.CrossViewSpec (`fast3r train-crossview` only)
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from fast3r.model import ConfigError, Fast3R, Fast3RConfig, WeightsError
from fast3r.model.pretrained import load_state

from .crossview import ENCODER_FILE, CrossViewSpec
from .data import DataConfig
from .heldout import HeldoutConfig
from .optim import OptimConfig

PRESETS = ("tiny", "small", "vitl512")
DISTRIBUTED = ("none", "ddp", "fsdp2")
COMPILE_MODES = ("", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # "": eager


class TrainConfigError(ValueError):
    """A training configuration that cannot be used, with the file and key at fault."""


@dataclass
class ModelSpec:
    """Which network to train. `init_weights` (a directory or hub id) fine-tunes published / saved
    weights and takes its architecture from them; else `config` (a published-layout config.json);
    else `preset`. `init_encoder`: start the encoder from `fast3r train-crossview`'s encoder.safetensors
    (a file or the folder holding it; the rest starts from scratch). `activation_checkpointing`
    recomputes block activations in the backward pass."""

    preset: str = "small"
    config: str = ""
    init_weights: str = ""
    init_encoder: str = ""
    activation_checkpointing: bool = False

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"model.preset must be one of {PRESETS}, got {self.preset!r}")

    def build(self) -> Fast3R:
        """The model, in training mode, on the CPU."""
        if self.init_weights:
            return Fast3R.from_pretrained(self.init_weights).train()
        if self.config:
            path = Path(self.config)
            try:
                network = Fast3RConfig.from_published(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError, ConfigError) as err:
                raise TrainConfigError(f"model.config {path}: {err}") from err
        else:
            network = getattr(Fast3RConfig, self.preset)()
        model = Fast3R(network)
        initialise_from_scratch(model)
        if self.init_encoder:
            load_encoder(model, Path(self.init_encoder))
        return model.train()


def load_encoder(model: Fast3R, path: Path) -> None:
    """The encoder's weights from an `encoder.safetensors` (keys `encoder.*`, as Fast3R names them)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = path / ENCODER_FILE if path.is_dir() else path
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise TrainConfigError(f"model.init_encoder {path}: not a readable safetensors file ({err})") from err
    state = {key.removeprefix("encoder."): value for key, value in tensors.items()}
    try:
        load_state(model.encoder, state, f"model.init_encoder {path} (it does not fit this model's encoder)")
    except WeightsError as err:
        raise TrainConfigError(str(err)) from err


def initialise_from_scratch(model: Fast3R) -> None:
    """The CroCo / DUSt3R initialisation for training from scratch: Xavier-uniform linear layers with
    zero biases, unit / zero LayerNorms. Convolutions keep PyTorch's default."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


@dataclass
class TrainConfig:
    """One training run. `out_dir` holds checkpoints, logs, the export and the held-out results.

    steps: optimiser steps in all; seed: seeds the data stream and the initial weights.
    bf16: autocast to bfloat16 on CUDA (ignored on the CPU). distributed: "none", "ddp" or "fsdp2"
    (under torchrun). log_every / ckpt_every: in steps (ckpt_every 0: only at the end). keep_checkpoints:
    the newest ones kept. time_limit_minutes: stop early (with a checkpoint, the export and the evaluation)
    once training has run this long; 0 for no limit. export_fp16: also write a half-precision copy of the
    weights in shards of at most 16 MB. heldout_at_end: run the held-out evaluation after training.
    slot_out: a folder for a compact slot checkpoint (fast3r.train.slot: fp16 weights, factored
    second moments, the log; 7 files of at most 16 MB), rewritten with every checkpoint; "" for none.
    `fast3r train --from-slot DIR` continues a run from one on another machine.
    compile: "" runs the forward pass and the loss eagerly; a `torch.compile` mode ("default",
    "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs") compiles them (checkpoints,
    slots and the held-out check use the same weights, uncompiled).
    """

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    heldout: HeldoutConfig = field(default_factory=HeldoutConfig)
    crossview: CrossViewSpec = field(default_factory=CrossViewSpec)
    steps: int = 1000
    seed: int = 0
    bf16: bool = True
    distributed: str = "none"
    device: str = "auto"
    log_every: int = 10
    ckpt_every: int = 500
    keep_checkpoints: int = 2
    time_limit_minutes: float = 0.0
    tensorboard: bool = False
    progress: bool = True
    export_fp16: bool = False
    heldout_at_end: bool = True
    slot_out: str = ""
    compile: str = ""
    out_dir: str = "runs/train"

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.optim.validate()
        self.heldout.validate()
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.distributed not in DISTRIBUTED:
            raise ValueError(f"distributed must be one of {DISTRIBUTED}, got {self.distributed!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.log_every < 1 or self.ckpt_every < 0 or self.keep_checkpoints < 1:
            raise ValueError("log_every and keep_checkpoints must be >= 1, ckpt_every >= 0")
        if self.time_limit_minutes < 0:
            raise ValueError("time_limit_minutes must be >= 0")
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Check `value` against the type of the field's default, converting lists and tuples as needed."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TrainConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TrainConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TrainConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise TrainConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(default, (list, tuple)):
        if isinstance(value, (int, str)) and default and isinstance(default[0], type(value)):
            value = [value]  # a single choice where a list of choices is expected
        if not isinstance(value, (list, tuple)):
            raise TrainConfigError(f"{where} must be a list, got {value!r}")
        items = list(value)
        if default and isinstance(default[0], (list, tuple)):
            items = [tuple(_coerce(item, list(default[0]), f"{where}[{i}]")) for i, item in enumerate(items)]
        elif default:
            items = [_coerce(item, default[0], f"{where}[{i}]") for i, item in enumerate(items)]
        return tuple(items) if isinstance(default, tuple) else items
    raise TrainConfigError(f"{where}: cannot set a value of this kind")


def _fill(instance: Any, table: dict[str, Any], where: str) -> None:
    """Set the dataclass `instance`'s fields from a TOML table, recursing into nested dataclasses."""
    names = [f.name for f in dataclasses.fields(instance)]
    for key, value in table.items():
        path = f"{where}{key}"
        if key not in names:
            known = ", ".join(f"{where}{name}" for name in names)
            raise TrainConfigError(f"unknown key {path!r} (known: {known})")
        current = getattr(instance, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise TrainConfigError(f"{path} must be a table ([{path}])")
            _fill(current, value, f"{path}.")
        else:
            setattr(instance, key, _coerce(value, current, path))


def _parse_override(text: str) -> tuple[list[str], Any]:
    """'data.batch_size=16' -> (['data', 'batch_size'], 16); values are TOML, bare words are strings."""
    if "=" not in text:
        raise TrainConfigError(f"--set {text!r}: expected key=value")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def load_train_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a TOML file (None: the defaults), apply `section.key=value` overrides, and validate. An
    empty file and an unknown key are refused, naming the file (and the key)."""
    config = TrainConfig()
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            table = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise TrainConfigError(f"cannot read training config {path}: {err.strerror or err}") from err
        except tomllib.TOMLDecodeError as err:
            raise TrainConfigError(f"{path} is not valid TOML: {err}") from err
        if not table:
            raise TrainConfigError(f"{path}: empty config (no settings); start from one in configs/, e.g. configs/tiny_cpu.toml")
        try:
            _fill(config, table, "")
        except TrainConfigError as err:
            raise TrainConfigError(f"{path}: {err}") from err
    for override in overrides:
        keys, value = _parse_override(override)
        nested: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            nested = {key: nested}
        try:
            _fill(config, nested, "")
        except TrainConfigError as err:
            raise TrainConfigError(f"--set {override}: {err}") from err
    try:
        config.validate()
    except ValueError as err:
        raise TrainConfigError(f"{source}: {err}") from err
    return config
