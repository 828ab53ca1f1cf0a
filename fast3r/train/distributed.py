"""Single-process, DDP and FSDP2 training under torchrun, and full (unsharded) state dicts for all three.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK. NCCL on CUDA, gloo on the CPU. NCCL's own environment
(e.g. NCCL_NVLS_ENABLE) is left exactly as the caller set it.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from fast3r.model import Fast3R
from fast3r.model.pretrained import alias_keys

from .activation_checkpointing import checkpointed_blocks


@dataclass
class DistributedContext:
    mode: str  # "none", "ddp" or "fsdp2"
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.mode != "none"

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order (on every rank)."""
        if not self.active:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of a tensor (a copy)."""
        values = values.detach().clone()
        if self.active:
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
            values /= self.world_size
        return values


def choose_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available")
    return torch.device("cuda", local_rank)


def setup_distributed(mode: str, device_preference: str = "auto") -> DistributedContext:
    """Join the process group torchrun describes (mode "ddp" / "fsdp2"), or run alone (mode "none")."""
    if mode == "none":
        return DistributedContext("none", 0, 1, 0, choose_device(device_preference))
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ValueError(
            f"distributed={mode!r} needs torchrun's environment (RANK, WORLD_SIZE): launch with "
            f"`torchrun --nproc_per_node=NUM_GPUS -m fast3r.cli train CONFIG`, or set distributed = \"none\""
        )
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = choose_device(device_preference, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return DistributedContext(mode, rank, world_size, local_rank, device)


def teardown_distributed(context: DistributedContext) -> None:
    if context.active and dist.is_initialized():
        dist.destroy_process_group()


def freeze_unused_parameters(model: Fast3R, device: torch.device) -> list[str]:
    """Stop gradients for parameters no output depends on (the DPT's first refinement unit of its
    coarsest level is never called); DDP and full optimiser state dicts need every trained parameter
    to get a gradient. Found by one small forward / backward pass; returns their names."""
    patch = model.config.encoder.patch_size
    images = [torch.zeros(1, 3, 4 * patch, 4 * patch, device=device) for _ in range(2)]
    model.zero_grad(set_to_none=True)
    outputs = model(images, image_ids=[0.0, 1.0])
    sum(value.float().sum() for view in outputs for value in view.values()).backward()
    unused = [name for name, parameter in model.named_parameters() if parameter.requires_grad and parameter.grad is None]
    for name, parameter in model.named_parameters():
        if name in unused:
            parameter.requires_grad_(False)
    model.zero_grad(set_to_none=True)
    return unused


def wrap_model(model: Fast3R, context: DistributedContext) -> nn.Module:
    """DDP: replicate, all-reduce gradients. FSDP2: shard every transformer block, each head, then the rest."""
    if context.mode == "ddp":
        # The DPT heads run channels-last, so their 1x1 convolutions' weight gradients come with strides
        # that differ from the weights' only along the size-1 kernel dimensions: the same memory layout,
        # which DDP's exact stride check still reports (tests/test_train_ddp.py checks it is only those).
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if context.mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for block in checkpointed_blocks(model):
            fully_shard(block)
        for head in (model.downstream_head, model.downstream_head_local):
            if head is not None:
                fully_shard(head)
        fully_shard(model)
    return model


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on the CPU without alias keys (the DPT `layer_rn` list), as
    `save_pretrained` stores it. A collective under FSDP2: call it on every rank."""
    aliases = alias_keys(unwrap(model))
    return {k: v for k, v in get_model_state_dict(model, options=_FULL).items() if k not in aliases}


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, every_rank: bool = False) -> dict[str, Any]:
    """The optimiser state keyed by parameter names, unsharded (collective under FSDP2): on the CPU and on
    rank 0 only (other ranks get an empty dict), or with `every_rank` on every rank, where it lives."""
    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True) if every_rank else _FULL)


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optimizer_state: dict) -> None:
    """Load states written by `full_model_state` / `full_optimizer_state` (every rank passes them)."""
    result = set_model_state_dict(model, model_state, options=StateDictOptions(full_state_dict=True, strict=False))
    aliases = set(alias_keys(unwrap(model)))
    missing = sorted(key for key in result.missing_keys if key.removeprefix("module.") not in aliases)  # DDP's prefix
    if missing or result.unexpected_keys:
        raise ValueError(f"checkpoint does not fit the model: missing {missing[:10]}, unexpected {sorted(result.unexpected_keys)[:10]}")
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=StateDictOptions(full_state_dict=True))


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
