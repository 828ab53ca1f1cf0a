"""Start the ranks of a context-parallel forward pass: spawned on one machine, or under torchrun.

    outputs = predict_multi_gpu("jedyang97/Fast3R_ViT_Large_512", images, num_gpus=2)

On one machine the caller is rank 0 (on cuda:0) and gets the outputs; ranks 1.. are spawned processes
that load the weights themselves. Under torchrun (one process per GPU, any number of machines) every
process calls the same function and rank 0 gets the outputs.
"""
from __future__ import annotations

import dataclasses
import os
import socket
from datetime import timedelta
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fast3r.io.images import to_model_range
from fast3r.model import DTYPES, Fast3R, RunOptions
from fast3r.model.fast3r import ImageIds

from .context import ContextParallelFast3R

# NVLink multicast (NVLS) stays off in every process we start: it is unreliable on shared machines.
MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def keep_multicast_off() -> None:
    for name, value in MULTICAST_OFF.items():
        os.environ.setdefault(name, value)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_rank(
    rank: int, world_size: int, init_method: str, device_type: str, timeout_s: float = 1800
) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    keep_multicast_off()
    device = torch.device("cpu")
    if device_type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device_type == "cuda" else "gloo",
        init_method=init_method,
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
    )
    return device


def run_on_ranks(
    fn: Callable[..., Any], world_size: int, *args: Any, device_type: str = "cuda", **rank0_kwargs: Any
) -> Any:
    """fn(device, *args) on `world_size` ranks of a new process group on this machine; returns rank 0's
    result. The caller is rank 0 and alone gets `rank0_kwargs` (e.g. callbacks); ranks 1.. are spawned
    (fn and args must pickle). A failure on another rank is raised here once rank 0 is done (or, inside
    the fusion layers, after the process group's timeout)."""
    keep_multicast_off()
    init_method = f"tcp://127.0.0.1:{free_port()}"
    workers = mp.start_processes(
        _worker, (fn, world_size, init_method, device_type, args), nprocs=world_size - 1, join=False,
        start_method="spawn",
    )
    try:
        device = init_rank(0, world_size, init_method, device_type)
        try:
            result = fn(device, *args, **rank0_kwargs)
        finally:
            dist.destroy_process_group()
        while not workers.join():
            pass
    finally:
        for process in workers.processes:  # only ours, and only if still running after an error
            if process.is_alive():
                process.terminate()
    return result


def _worker(index: int, fn: Callable[..., Any], world_size: int, init_method: str, device_type: str, args) -> None:
    device = init_rank(index + 1, world_size, init_method, device_type)
    try:
        fn(device, *args)
    finally:
        dist.destroy_process_group()


def predict_multi_gpu(
    weights: str | os.PathLike,
    images: Sequence[torch.Tensor],
    image_ids: ImageIds = None,
    num_gpus: int | None = None,
    dtype: torch.dtype | str = "bf16",
    options: RunOptions | None = None,
    device_type: str = "cuda",
) -> list[dict[str, torch.Tensor]] | None:
    """One Fast3R forward pass over `num_gpus` GPUs (default: all visible, at most one per view).

    images: per view, uint8 RGB (H, W, 3) / (B, H, W, 3) as loaded, or model input (3, H, W) /
        (B, 3, H, W) in [-1, 1]; sizes may differ. image_ids: as `Fast3R.forward`.
    options: as `Fast3R.forward`; output_device defaults to "cpu". device_type "cpu" runs gloo
        processes (tests). Returns the per-view dicts of `Fast3R.forward` (on rank 0 under torchrun;
        other ranks get None).
    """
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    options = options or RunOptions(output_device="cpu")
    if dist.is_initialized() or "TORCHELASTIC_RUN_ID" in os.environ:  # torchrun: this process is one rank
        if not dist.is_initialized():
            device = init_rank(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", device_type)
        else:
            device = torch.device("cuda", torch.cuda.current_device()) if device_type == "cuda" else torch.device("cpu")
        outputs = _predict_rank(device, weights, images, image_ids, dtype, options)
        return outputs if dist.get_rank() == 0 else None
    if num_gpus is None:
        num_gpus = torch.cuda.device_count() if device_type == "cuda" else 2
    num_gpus = max(1, min(num_gpus, len(images)))
    if num_gpus == 1:
        model = Fast3R.from_pretrained(weights, device=device_type, dtype=dtype)
        with torch.no_grad():
            return model([_model_view(image) for image in images], image_ids=image_ids, options=options)
    quiet = dataclasses.replace(options, on_step=None)  # progress is rank 0's; a callback need not pickle
    return run_on_ranks(
        _predict_rank, num_gpus, weights, images, image_ids, dtype, quiet, device_type=device_type,
        on_step=options.on_step,
    )


def _predict_rank(
    device: torch.device,
    weights: str | os.PathLike,
    images: Sequence[torch.Tensor],
    image_ids: ImageIds,
    dtype: torch.dtype,
    options: RunOptions,
    on_step: Callable[[str, int], None] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """This rank's part: load the weights, convert its own views, run; rank 0 returns every output."""
    options = dataclasses.replace(options, on_step=on_step or options.on_step)
    model = Fast3R.from_pretrained(weights, device=device, dtype=dtype)
    parallel = ContextParallelFast3R(model)
    own = parallel.split([_placeholder(image) for image in images])[dist.get_rank()]
    views = [_model_view(image) if index in own else _placeholder(image) for index, image in enumerate(images)]
    with torch.no_grad():
        return parallel(views, image_ids=image_ids, options=options)


def _is_rgb(image: torch.Tensor) -> bool:
    return image.dtype == torch.uint8 and image.shape[-1] == 3


def _model_view(image: torch.Tensor) -> torch.Tensor:
    """Model input (..., 3, H, W) in [-1, 1] from either accepted layout."""
    return to_model_range(image) if _is_rgb(image) else image


def _placeholder(image: torch.Tensor) -> torch.Tensor:
    """A meta tensor of the model-input shape: all a rank needs of a view it does not compute."""
    shape = (*image.shape[:-3], 3, *image.shape[-3:-1]) if _is_rgb(image) else image.shape
    return torch.empty(shape, device="meta")
