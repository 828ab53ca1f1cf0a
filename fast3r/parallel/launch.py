"""Start the ranks of a context-parallel forward pass: spawned on one machine, or under torchrun.

    outputs = predict_multi_gpu("jedyang97/Fast3R_ViT_Large_512", images, num_gpus=2)

On one machine the caller is rank 0 (on cuda:0) and gets the outputs; ranks 1.. are spawned processes
that load the weights themselves (`fast3r.parallel.ranks.PredictRanks`). Under torchrun (one process per
GPU, any number of machines) every process calls the same function and rank 0 gets the outputs.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.distributed as dist

from fast3r.model import DTYPES, RunOptions
from fast3r.model.pretrained import load_pretrained

from .group import init_rank
from .ranks import PredictRanks, _model_view, _predict_rank


def predict_multi_gpu(
    weights: str | os.PathLike,
    images: Sequence[torch.Tensor],
    image_ids: Sequence[float] | str | None = None,
    num_gpus: int | None = None,
    dtype: torch.dtype | str = "bf16",
    options: RunOptions | None = None,
    device_type: str = "cuda",
) -> list[dict[str, torch.Tensor]] | None:
    """One Fast3R forward pass over `num_gpus` GPUs (default: all visible, at most one per view).

    images: per view, uint8 RGB (H, W, 3) / (B, H, W, 3) as loaded, or model input (3, H, W) /
        (B, 3, H, W) in [-1, 1], on the CPU; sizes may differ. image_ids: as `Fast3R.forward`.
    options: as `Fast3R.forward`; output_device defaults to "cpu". device_type "cpu" runs gloo
        processes (tests). Returns the per-view dicts of `Fast3R.forward` (on rank 0 under torchrun;
        other ranks get None). To start the ranks while the views are still being made, use `PredictRanks`.
    """
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    options = options or RunOptions(output_device="cpu")
    image_ids = image_ids.tolist() if isinstance(image_ids, torch.Tensor) else image_ids
    if dist.is_initialized() or "TORCHELASTIC_RUN_ID" in os.environ:  # torchrun: this process is one rank
        if dist.is_initialized():
            device = torch.device("cuda", torch.cuda.current_device()) if device_type == "cuda" else torch.device("cpu")
        else:
            device = init_rank(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", device_type)
        model = load_pretrained(weights, device=device, dtype=dtype)
        outputs = _predict_rank(device, model, list(images), image_ids, options)
        return outputs if dist.get_rank() == 0 else None
    if num_gpus is None:
        num_gpus = torch.cuda.device_count() if device_type == "cuda" else 2
    num_gpus = max(1, min(num_gpus, len(images)))
    if num_gpus == 1:
        model = load_pretrained(weights, device=device_type, dtype=dtype)
        with torch.no_grad():
            return model([_model_view(image) for image in images], image_ids=image_ids, options=options)
    with PredictRanks(weights, num_gpus, dtype, device_type) as ranks:
        return ranks.predict(images, image_ids, options)
