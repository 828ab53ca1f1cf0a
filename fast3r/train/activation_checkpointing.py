"""Activation checkpointing of the transformer blocks, applied from the outside of the model.

Each encoder and fusion block's forward is replaced, on that instance only, by one that runs under
`torch.utils.checkpoint` (non-reentrant): its activations are recomputed in the backward pass instead of
kept. Parameter names, the state dict and the results are unchanged.
"""
from __future__ import annotations

import functools

from torch import nn
from torch.utils.checkpoint import checkpoint

from fast3r.model import Fast3R


def _checkpointed(forward, *args, **kwargs):
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def checkpointed_blocks(model: Fast3R) -> list[nn.Module]:
    """The encoder and fusion-transformer blocks."""
    return [*model.encoder.enc_blocks, *model.decoder.dec_blocks]


def enable_activation_checkpointing(model: Fast3R) -> int:
    """Checkpoint every encoder and fusion block of `model`; returns how many blocks were wrapped."""
    blocks = checkpointed_blocks(model)
    for block in blocks:
        if "forward" not in vars(block):  # idempotent: wrap each instance once
            block.forward = functools.partial(_checkpointed, block.forward)
    return len(blocks)
