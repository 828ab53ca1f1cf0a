"""Start the ranks of a context-parallel forward pass: spawned on one machine, or under torchrun.

    outputs = predict_multi_gpu("jedyang97/Fast3R_ViT_Large_512", images, num_gpus=2)

On one machine the caller is rank 0 (on cuda:0) and gets the outputs; ranks 1.. are spawned processes
that load the weights themselves. Under torchrun (one process per GPU, any number of machines) every
process calls the same function and rank 0 gets the outputs.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import threading
import time
from datetime import timedelta
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from multiprocessing.connection import Connection

from fast3r.io.images import to_model_range
from fast3r.model import DTYPES, Fast3R, RunOptions
from fast3r.model.pretrained import load_pretrained, resolve_source

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


def rank_device(rank: int, device_type: str) -> torch.device:
    """The device of a rank on this machine: cuda:LOCAL_RANK (torchrun) or cuda:rank; the CPU for gloo."""
    if device_type != "cuda":
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))


def init_rank(
    rank: int, world_size: int, init_method: str, device_type: str, timeout_s: float = 1800
) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    keep_multicast_off()
    device = rank_device(rank, device_type)
    if device_type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device_type == "cuda" else "gloo",
        init_method=init_method,
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
        device_id=device if device_type == "cuda" else None,  # NCCL connects now, not at the first collective
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


class PredictRanks:
    """The ranks of one context-parallel pass on this machine, started before the views exist.

        with PredictRanks(weights, num_gpus=2) as ranks:   # starts in the background (see below)
            images = decode_photos()                      # meanwhile
            outputs = ranks.predict(images, image_ids)    # every view's outputs, here (rank 0)

    Starting means: spawning ranks 1.. (each imports torch and loads its weights) and loading rank 0's
    weights on cuda:0 in this process, in a background thread. `wait_ready` (called by `predict`) waits
    for it and joins the process group (NCCL connects at once); `predict` then sends each rank its own
    views and runs rank 0's part.
    `timeline` lists (seconds since the start, rank, event) for every rank once the ranks are closed.
    One pass per group. Ctrl-C reaches only this process: the ranks ignore it and are stopped here.
    """

    def __init__(
        self, weights: str | os.PathLike, num_gpus: int, dtype: torch.dtype | str = "bf16", device_type: str = "cuda"
    ):
        if num_gpus < 2:
            raise ValueError(f"PredictRanks needs at least 2 ranks, got {num_gpus}")
        self.weights = str(resolve_source(weights))  # one download here; the ranks read the local folder
        self.world_size = num_gpus
        self.dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        self.device_type = device_type
        self.started = time.time()
        self._init_method = f"tcp://127.0.0.1:{free_port()}"
        self.timeline: list[tuple[float, int, str]] = []
        self._workers: list[mp.Process] = []
        self._pipes: list[Connection] = []
        self._ready = self._sent = False
        self._device: torch.device | None = None
        self._model: Fast3R | None = None
        self._error: BaseException | None = None
        self._starting = threading.Thread(target=self._start, name="fast3r-ranks", daemon=True)
        self._starting.start()

    def _mark(self, rank: int, event: str) -> None:
        self.timeline.append((round(time.time() - self.started, 3), rank, event))

    def _start(self) -> None:
        try:
            keep_multicast_off()
            context = mp.get_context("spawn")
            for rank in range(1, self.world_size):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_rank_main,
                    args=(rank, self.world_size, self._init_method, self.device_type, self.weights, self.dtype, theirs, self.started),
                    daemon=True,
                )
                process.start()  # returns once the new process has imported this module
                theirs.close()
                self._workers.append(process)
                self._pipes.append(ours)
            self._mark(0, "ranks spawned")
            device = rank_device(0, self.device_type)
            torch.empty(0, device=device)  # the CUDA context, timed apart from the weights
            self._mark(0, "device ready")
            self._model = load_pretrained(self.weights, device=device, dtype=self.dtype)
            self._mark(0, "weights loaded")
        except BaseException as err:  # noqa: BLE001 - raised by wait_ready, in the caller's thread
            self._error = err

    def wait_ready(self) -> None:
        """Block until every rank has started and joined the group; raise if one could not."""
        if self._ready:
            return
        while self._starting.is_alive():
            self._starting.join(timeout=0.2)
            self._check_alive()
        if self._error is not None:
            raise RuntimeError(f"rank 0 could not start: {self._error}") from self._error
        # Joined here, not in the background: a start given up before this point leaves nothing waiting.
        self._device = init_rank(0, self.world_size, self._init_method, self.device_type)
        self._mark(0, "group joined")
        for pipe in self._pipes:
            while not pipe.poll(0.2):
                self._check_alive()
            try:
                pipe.recv()  # "ready"
            except EOFError:
                self._check_alive()
                raise
        self._ready = True

    def _check_alive(self) -> None:
        for rank, process in enumerate(self._workers, start=1):
            if process.exitcode is not None:
                process.join()
                raise RuntimeError(f"rank {rank} stopped (exit code {process.exitcode}); its error is printed above")

    def predict(
        self,
        images: Sequence[torch.Tensor | np.ndarray],
        image_ids: Sequence[float] | str | None = None,
        options: RunOptions | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """The pass over `images` (as `predict_multi_gpu`); returns every view's outputs."""
        if self._sent:
            raise RuntimeError("PredictRanks runs one pass; start a new group for another")
        options = options or RunOptions(output_device="cpu")
        image_ids = image_ids.tolist() if isinstance(image_ids, torch.Tensor) else image_ids
        # Each rank gets its own views by value (numpy through the pipe, not shared memory, which may be
        # small) and only the shapes of the others; the split by pixels equals the split by tokens.
        shapes = [_input_shape(image) for image in images]
        split = split_views([shape[-2] * shape[-1] for shape in shapes], self.world_size)
        self.wait_ready()
        quiet = dataclasses.replace(options, on_step=None)  # progress is rank 0's; a callback need not pickle
        self._sent = True
        for rank, pipe in enumerate(self._pipes, start=1):
            own = split[rank]
            pipe.send(([_by_value(images[i]) if i in own else shapes[i] for i in range(len(images))], image_ids, quiet))
        self._mark(0, "views sent")
        outputs = _predict_rank(self._device, self._model, list(images), image_ids, options)
        self._mark(0, "done")
        return outputs

    def __enter__(self) -> "PredictRanks":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        self.close(failed=error_type is not None)

    def close(self, failed: bool = False) -> None:
        """Stop the ranks: after a pass, collect their timelines and leave the process group; after a
        failure (or while the ranks are still starting), stop them at once."""
        clean = not failed and not self._starting.is_alive() and self._error is None
        try:
            if clean:
                if not self._sent:
                    self.wait_ready()
                    for pipe in self._pipes:
                        pipe.send(None)  # nothing to run
                for pipe in self._pipes:
                    if pipe.poll(60):
                        self.timeline += pipe.recv()
                self.timeline.sort()
                # before the joins: NCCL's shutdown waits for every rank to reach it
                dist.destroy_process_group()
                for process in self._workers:
                    process.join(timeout=30)
        finally:
            for process in self._workers:  # only ours, and only if still running
                if process.is_alive():
                    process.terminate()
                    process.join(timeout=10)
            if self._device is not None and dist.is_initialized():
                dist.destroy_process_group()
            self._model = None


def _rank_main(
    rank: int,
    world_size: int,
    init_method: str,
    device_type: str,
    weights: str,
    dtype: torch.dtype,
    pipe: Connection,
    started: float,
) -> None:
    """Rank 1.. of `PredictRanks`: start, then run the one pass the pipe brings (None: none)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; rank 0 stops us
    logging.getLogger("fast3r").setLevel(logging.ERROR)  # the licence note is rank 0's to print
    timeline = []

    def mark(event: str) -> None:
        timeline.append((round(time.time() - started, 3), rank, event))

    mark("process started")
    device = rank_device(rank, device_type)
    torch.empty(0, device=device)
    mark("device ready")
    model = load_pretrained(weights, device=device, dtype=dtype)
    mark("weights loaded")
    device = init_rank(rank, world_size, init_method, device_type)  # waits for rank 0's wait_ready
    mark("group joined")
    try:
        pipe.send("ready")
        job = pipe.recv()
        if job is not None:
            mark("views received")
            _predict_rank(device, model, *job)
            mark("done")
        pipe.send(timeline)
    finally:
        dist.destroy_process_group()


def _predict_rank(
    device: torch.device,
    model: Fast3R,
    images: list[torch.Tensor | np.ndarray | tuple[int, ...]],
    image_ids: Sequence[float] | str | None,
    options: RunOptions,
) -> list[dict[str, torch.Tensor]]:
    """This rank's part: convert its own views, run; rank 0 returns every output. `images` holds at
    least this rank's views; other entries may be model-input shapes."""
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
