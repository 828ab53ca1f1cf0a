"""`PredictRanks`: the ranks of one context-parallel pass on this machine, started before the views exist.

    rank 0 (the caller): background thread spawns ranks 1.. and loads its weights -> wait_ready joins
        the process group -> predict sends each rank its views, runs its own part, gathers every output
    rank r (spawned):   load weights -> join the group -> "ready" -> views -> its part -> its timeline
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fast3r.io.images import to_model_range
from fast3r.model import DTYPES, Fast3R, RunOptions
from fast3r.model.pretrained import load_pretrained, resolve_source

from .context import ContextParallelFast3R, split_views
from .group import free_port, init_rank, keep_multicast_off, rank_device


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
        self.timeline.append(_event(self.started, rank, event))

    def _start(self) -> None:
        try:
            keep_multicast_off()
            context = mp.get_context("spawn")
            for rank in range(1, self.world_size):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_rank_main,
                    args=(rank, self.world_size, self._init_method, self.device_type, self.weights, self.dtype, theirs,
                          self.started, os.getpid()),
                    daemon=True,
                )
                start_with_sigint_blocked(process)  # returns at once: it imports torch and loads on its own
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
        # Every rank has loaded its weights and is joining: only then does this one join, in a call that
        # waits in C++ (deaf to Ctrl-C) until all have. A start given up earlier leaves nothing waiting.
        self._receive("joining")
        self._device = init_rank(0, self.world_size, self._init_method, self.device_type)
        self._mark(0, "group joined")
        self._receive("ready")
        self._ready = True

    def _receive(self, expected: str) -> None:
        """Wait (interruptibly) for `expected` from every spawned rank; raise if one stops first."""
        for pipe in self._pipes:
            while not pipe.poll(0.2):
                self._check_alive()
            try:
                message = pipe.recv()
            except EOFError:
                self._check_alive()
                raise
            if message != expected:
                raise RuntimeError(f"a rank said {message!r} where {expected!r} was due")

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


def start_with_sigint_blocked(process: mp.Process) -> None:
    """Start a spawned process with Ctrl-C blocked: a terminal sends it to the whole process group, and the
    process would die inside its imports with a traceback (`_rank_main` then ignores it)."""
    # Started first, not inside process.start(): starting the resource tracker unblocks SIGINT in the
    # calling thread (CPython's multiprocessing.resource_tracker), which would undo the block below.
    resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _rank_main(
    rank: int,
    world_size: int,
    init_method: str,
    device_type: str,
    weights: str,
    dtype: torch.dtype,
    pipe: Connection,
    started: float,
    caller: int,
) -> None:
    """Rank 1.. of `PredictRanks`: start, then run the one pass the pipe brings (None: none). `caller`: the
    starting process's pid (not os.getppid() here, which is already init's if the caller died meanwhile)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; rank 0 stops us
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked while we started (a pending one is dropped)
    threading.Thread(target=_exit_with_parent, args=(caller,), daemon=True).start()
    logging.getLogger("fast3r").setLevel(logging.ERROR)  # the licence note is rank 0's to print
    timeline = []

    def mark(event: str) -> None:
        timeline.append(_event(started, rank, event))

    mark("process started")
    device = rank_device(rank, device_type)
    torch.empty(0, device=device)
    mark("device ready")
    model = load_pretrained(weights, device=device, dtype=dtype)
    mark("weights loaded")
    try:
        pipe.send("joining")
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
    except (BrokenPipeError, ConnectionResetError, EOFError):  # the caller died before _exit_with_parent saw it
        os._exit(1)  # leave as that would, without a traceback on the user's terminal


def _event(started: float, rank: int, event: str) -> tuple[float, int, str]:
    """A timeline entry: seconds since the ranks were started (wall clock, shared by the processes)."""
    return round(time.time() - started, 3), rank, event


def _exit_with_parent(parent: int) -> None:
    """Leave at once if the caller dies without stopping us (killed): no rank holds a GPU for nothing."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


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
