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

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fast3r.io.images import to_model_range
from fast3r.model import DTYPES, Fast3R, RunOptions

from .context import ContextParallelFast3R, split_views

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
        other ranks get None).
    """
    dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    options = options or RunOptions(output_device="cpu")
    image_ids = image_ids.tolist() if isinstance(image_ids, torch.Tensor) else image_ids
    if dist.is_initialized() or "TORCHELASTIC_RUN_ID" in os.environ:  # torchrun: this process is one rank
        if dist.is_initialized():
            device = torch.device("cuda", torch.cuda.current_device()) if device_type == "cuda" else torch.device("cpu")
        else:
            device = init_rank(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", device_type)
        outputs = _predict_rank(device, weights, list(images), image_ids, dtype, options)
        return outputs if dist.get_rank() == 0 else None
    if num_gpus is None:
        num_gpus = torch.cuda.device_count() if device_type == "cuda" else 2
    num_gpus = max(1, min(num_gpus, len(images)))
    if num_gpus == 1:
        model = Fast3R.from_pretrained(weights, device=device_type, dtype=dtype)
        with torch.no_grad():
            return model([_model_view(image) for image in images], image_ids=image_ids, options=options)
    # Each spawned rank gets its own views by value (numpy through the pipe, not shared memory, which
    # may be small) and only the shapes of the others; the split by pixels equals the split by tokens.
    shapes = [_input_shape(image) for image in images]
    split = split_views([shape[-2] * shape[-1] for shape in shapes], num_gpus)
    quiet = dataclasses.replace(options, on_step=None)  # progress is rank 0's; a callback need not pickle
    rank_args = [(weights, list(images), image_ids, dtype, options)] + [
        (weights, [_by_value(images[i]) if i in own else shapes[i] for i in range(len(images))], image_ids, dtype, quiet)
        for own in split[1:]
    ]
    return run_on_ranks(_predict_rank, rank_args, device_type=device_type)


def _predict_rank(
    device: torch.device,
    weights: str | os.PathLike,
    images: list[torch.Tensor | np.ndarray | tuple[int, ...]],
    image_ids: Sequence[float] | str | None,
    dtype: torch.dtype,
    options: RunOptions,
) -> list[dict[str, torch.Tensor]]:
    """This rank's part: load the weights, convert its own views, run; rank 0 returns every output.
    `images` holds at least this rank's views; other entries may be model-input shapes."""
    model = Fast3R.from_pretrained(weights, device=device, dtype=dtype)
    parallel = ContextParallelFast3R(model)
    placeholders = [torch.empty(_input_shape(image), device="meta") for image in images]
    own = parallel.split(placeholders)[dist.get_rank()]
    # uint8 pixels travel to the device and become model input there (4x fewer bytes, no CPU conversion)
    views = [
        _model_view(torch.as_tensor(images[i]).to(device)) if i in own else placeholders[i] for i in range(len(images))
    ]
    with torch.no_grad():
        return parallel(views, image_ids=image_ids, options=options)


def _is_rgb(image: torch.Tensor | np.ndarray) -> bool:
    return image.dtype in (torch.uint8, np.uint8) and image.shape[-1] == 3


def _input_shape(image: torch.Tensor | np.ndarray | tuple[int, ...]) -> tuple[int, ...]:
    """The model-input shape (..., 3, H, W) of a view in either layout (a shape is returned as is)."""
    if isinstance(image, tuple):
        return image
    return (*image.shape[:-3], 3, *image.shape[-3:-1]) if _is_rgb(image) else tuple(image.shape)


def _model_view(image: torch.Tensor) -> torch.Tensor:
    """Model input (..., 3, H, W) in [-1, 1] from either accepted layout."""
    return to_model_range(image) if _is_rgb(image) else image


def _by_value(image: torch.Tensor) -> torch.Tensor | np.ndarray:
    """numpy where it can be (pickled by value); torch pickles tensors through shared memory."""
    return image.numpy() if image.dtype in (torch.uint8, torch.float32, torch.float16) else image
