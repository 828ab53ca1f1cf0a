"""AdamW with the release's settings, and its learning-rate schedule (linear warm-up, cosine decay)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OptimConfig:
    """The release: AdamW lr 1e-4, betas (0.9, 0.95), weight decay 0.05; warm-up over 2% of the steps,
    then cosine to 1e-6, stepped every step. `grad_clip` is the max global gradient norm (0: none)."""

    lr: float = 1e-4
    min_lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_fraction: float = 0.02
    grad_clip: float = 1.0

    def validate(self) -> None:
        if not self.lr > 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError(f"optim: need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"optim.warmup_fraction must lie in [0, 1), got {self.warmup_fraction}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("optim.weight_decay and optim.grad_clip must be >= 0")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: matrices and convolution kernels decay; norms and biases (1-D tensors) do not."""
    decay, no_decay = [], []
    for parameter in model.parameters():  # unique parameters: aliases (the DPT layer_rn list) appear once
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: OptimConfig, fused: bool = False) -> torch.optim.AdamW:
    """AdamW over `parameter_groups`; `fused` selects the single-kernel CUDA implementation."""
    config.validate()
    return torch.optim.AdamW(
        parameter_groups(model, config.weight_decay),
        lr=config.lr,
        betas=tuple(config.betas),
        fused=fused or None,
    )


@dataclass
class WarmupCosine:
    """Learning-rate multiplier at a step (0-based): (s+1)/W for s < W, then cosine from 1 down to
    min_lr/lr at the last step. A plain object so LambdaLR's state dict saves it."""

    total_steps: int
    warmup_steps: int
    final_ratio: float

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - 1 - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.final_ratio + (1 - self.final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_fraction` of `total_steps` (at least one step), then cosine to
    `min_lr`; call `.step()` after every optimiser step."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    warmup_steps = max(1, round(config.warmup_fraction * total_steps))
    schedule = WarmupCosine(total_steps, warmup_steps, config.min_lr / config.lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def optimiser_step(
    loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
    grad_clip: float,
) -> tuple[torch.Tensor, float]:
    """Backward pass, gradient clipping (grad_clip 0: the norm is only measured), optimiser and schedule
    step. Returns the gradient norm before clipping and the learning rate the step used."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(
        [p for p in model.parameters() if p.grad is not None], grad_clip if grad_clip > 0 else math.inf
    )
    if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
        grad_norm = grad_norm.full_tensor()
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    return grad_norm.detach(), lr
