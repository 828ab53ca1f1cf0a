"""Start the ranks of a context-parallel forward pass: spawned on one machine, or under torchrun.

    outputs = predict_multi_gpu("jedyang97/Fast3R_ViT_Large_512", images, num_gpus=2)

On one machine the caller is rank 0 (on cuda:0) and gets the outputs; ranks 1.. are spawned processes
that load the weights themselves (`fast3r.parallel.ranks.PredictRanks`). Under torchrun (one process per
GPU, any number of machines) every process calls the same function and rank 0 gets the outputs.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fast3r.model import DTYPES, RunOptions
from fast3r.model.pretrained import load_pretrained

from .group import free_port, init_rank, keep_multicast_off
from .ranks import PredictRanks, _model_view, _predict_rank


def run_on_ranks(fn: Callable[..., Any], rank_args: Sequence[tuple], device_type: str = "cuda") -> Any:
    """fn(device, *rank_args[r]) on each rank r of a new process group on this machine; returns rank 0's
    result. The caller is rank 0 (its arguments are not copied, so they may hold callbacks); ranks 1..
    are spawned processes (fn and their arguments must pickle). A failure on another rank is raised
    here once rank 0 is done (or, inside the fusion layers, after the process group's timeout)."""
    keep_multicast_off()
    init_method = f"tcp://127.0.0.1:{free_port()}"
    context = mp.get_context("spawn")
    workers = [
        context.Process(target=_worker, args=(fn, rank, len(rank_args), init_method, device_type, args))
        for rank, args in enumerate(rank_args)
        if rank > 0
    ]
    try:
        for process in workers:
            process.start()
        device = init_rank(0, len(rank_args), init_method, device_type)
        try:
            result = fn(device, *rank_args[0])
        finally:
            dist.destroy_process_group()
        for process in workers:
            process.join()
        failed = [rank for rank, process in enumerate(workers, start=1) if process.exitcode != 0]
        if failed:
            raise RuntimeError(f"ranks {failed} failed; their errors are printed above")
    finally:
        for process in workers:  # only ours, and only if still running after an error
            if process.is_alive():
                process.terminate()
    return result


def _worker(fn: Callable[..., Any], rank: int, world_size: int, init_method: str, device_type: str, args) -> None:
    device = init_rank(rank, world_size, init_method, device_type)
    try:
        fn(device, *args)
    finally:
        dist.destroy_process_group()


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
