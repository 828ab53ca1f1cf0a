"""AdamW parameter groups and the warm-up + cosine learning-rate schedule."""
import math

import pytest
import torch

from fast3r.model import Fast3R, Fast3RConfig
from fast3r.train.optim import OptimConfig, build_optimizer, build_scheduler, parameter_groups


def test_no_weight_decay_on_norms_and_biases():
    model = Fast3R(Fast3RConfig.tiny())
    decay, no_decay = parameter_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    assert any(names[id(p)].endswith("norm1.weight") for p in no_decay["params"])
    assert any(names[id(p)].endswith("qkv.bias") for p in no_decay["params"])
    assert any(names[id(p)].endswith("qkv.weight") for p in decay["params"])
    # Aliased tensors (the DPT layer_rn list) are optimised once.
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_optimizer_settings_of_the_release():
    optimizer = build_optimizer(Fast3R(Fast3RConfig.tiny()), OptimConfig())
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert group["lr"] == 1e-4 and tuple(group["betas"]) == (0.9, 0.95)


def _lrs(total: int, config: OptimConfig) -> list[float]:
    parameter = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = torch.optim.AdamW([parameter], lr=config.lr)
    scheduler = build_scheduler(optimizer, config, total)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_warmup_then_cosine_to_min_lr():
    config = OptimConfig(lr=1e-3, min_lr=1e-6, warmup_fraction=0.02)
    rates = _lrs(1000, config)  # warm-up: 20 steps
    assert rates[0] == pytest.approx(1e-3 / 20)
    assert rates[9] == pytest.approx(1e-3 * 10 / 20)
    assert rates[19] == pytest.approx(1e-3)
    assert rates[-1] == pytest.approx(1e-6)
    for step in (20, 300, 600):
        progress = (step - 20) / (1000 - 1 - 20)
        assert rates[step] == pytest.approx(1e-6 + (1e-3 - 1e-6) * 0.5 * (1 + math.cos(math.pi * progress)), rel=1e-9)
    assert all(a >= b for a, b in zip(rates[19:], rates[20:]))  # monotone decay after the peak


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="min_lr"):
        OptimConfig(lr=1e-4, min_lr=1e-3).validate()
    with pytest.raises(ValueError, match="warmup_fraction"):
        OptimConfig(warmup_fraction=1.5).validate()
