"""`run_on_ranks`: a function on each rank of a new process group on this machine (tests of the
context-parallel model under 2 gloo processes; the package starts its ranks with `PredictRanks`)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch.distributed as dist
import torch.multiprocessing as mp

from fast3r.parallel.group import free_port, init_rank, keep_multicast_off


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
