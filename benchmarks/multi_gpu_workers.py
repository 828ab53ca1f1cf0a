"""What runs inside each process of `bench_multi_gpu.py`: the model and inputs, the worker functions,
the probe attention and `worker_entry`, the process entry point. Workers are started with the spawn
method, so this module is imported by name from the benchmarks folder (as `bench_model` is)."""
from __future__ import annotations

import statistics
import time
import traceback

import torch
import torch.distributed as dist
from torch import nn

from bench_model import random_model
from fast3r.model import DTYPES, Fast3R, Fast3RConfig, RunOptions
from fast3r.model.graphs import GraphedFast3R
from fast3r.model.layers import attention
from fast3r.parallel import ContextParallelFast3R
from fast3r.parallel.context import replace_modules
from fast3r.parallel.group import init_rank

DRY_FITS = 37  # --dry-run: probes above this many views raise a simulated out-of-memory error


# ----- the model and inputs, built inside each worker -----
def build_model(spec: dict, device: torch.device) -> Fast3R:
    config = Fast3RConfig.tiny() if spec["dry"] else Fast3RConfig.vitl512()
    model = random_model(config, device, DTYPES[spec["dtype"]])
    blocks = spec.get("fusion_blocks")
    return model if blocks is None else cut_fusion(model, blocks)


def cut_fusion(model: Fast3R, blocks: int) -> Fast3R:
    """The model with its first `blocks` fusion blocks, hooks spaced as for a model of that depth."""
    decoder = replace_modules(model.decoder, dec_blocks=nn.ModuleList(model.decoder.dec_blocks[:blocks]))
    decoder.hooks = (0, blocks * 2 // 4, blocks * 3 // 4, blocks)
    return replace_modules(model, decoder=decoder)


class ProbeAttention(nn.Module):
    """Fusion attention that allocates what the fused kernel does (the full output and its per-query
    log-sum-exp) but computes only the first `queries` queries: memory of a full pass, little work."""

    def __init__(self, attn: nn.Module, queries: int):
        super().__init__()
        self.attn, self.queries = attn, queries

    def forward(self, x, rope=None, query_chunk=None):
        batch, length, dim = x.shape
        heads = self.attn.num_heads
        q, k, v = self.attn.qkv(x).view(batch, length, 3, heads, dim // heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = torch.empty_like(q)  # (B, heads, L, head_dim)
        stats = torch.empty(batch, heads, length, device=x.device)  # noqa: F841 - held during the kernel
        out[:, :, : self.queries] = attention(q[:, :, : self.queries], k, v)
        return self.attn.proj(out.transpose(1, 2).reshape(batch, length, dim))


def make_views(spec: dict, device: torch.device, own: range | None = None) -> list[torch.Tensor]:
    """The same random views on every rank (seeded per view); views not in `own` are meta placeholders."""
    shape = (1, 3, spec["height"], spec["width"])
    views = []
    for index in range(spec["views"]):
        if own is not None and index not in own:
            views.append(torch.empty(shape, device="meta"))
            continue
        generator = torch.Generator(device=device).manual_seed(index)
        image = torch.rand(shape, generator=generator, device=device, dtype=torch.float32) * 2 - 1
        views.append(image.to(DTYPES[spec["dtype"]]))
    return views


class StageClock:
    """Times of each on_step call (CUDA events on a GPU), read after the run as stage durations."""

    def __init__(self, device: torch.device):
        self.cuda, self.marks = device.type == "cuda", []

    def now(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def __call__(self, stage: str, count: int) -> None:
        self.marks.append((stage, self.now()))

    def stages(self, start) -> dict[str, float]:
        """Seconds from the end of the previous stage to the last mark of each stage."""
        elapsed = (lambda a, b: a.elapsed_time(b) / 1000) if self.cuda else (lambda a, b: b - a)
        last = {stage: mark for stage, mark in self.marks}
        out, previous = {}, start
        for stage in ("encoder", "fusion", "heads"):
            if stage in last:
                out[stage] = elapsed(previous, last[stage])
                previous = last[stage]
        out["fusion_blocks"] = sum(stage == "fusion" for stage, _ in self.marks)
        return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----- workers -----
def forward_worker(device: torch.device, spec: dict) -> dict:
    """Time the forward pass (1 GPU: the plain model; more: context parallel) and, at most 128 views,
    compare rank 0's gathered outputs with the plain model's."""
    model = build_model(spec, device)
    world = dist.get_world_size() if dist.is_initialized() else 1
    parallel = ContextParallelFast3R(model) if world > 1 else None
    own = parallel.split(make_views(spec, device, range(0))) if parallel else None
    views = make_views(spec, device, own[dist.get_rank()] if own else None)

    def run(inputs, options):
        with torch.no_grad():
            return parallel(inputs, options=options) if parallel else model(inputs, options=options)

    warmup = views if spec["views"] <= 128 else make_views({**spec, "views": 2 * world}, device)
    run(warmup, RunOptions(output_device=spec["output_device"]))
    seconds, stages = [], []
    for _ in range(spec["repeats"] if spec["views"] <= 128 else 1):
        clock = StageClock(device)
        options = RunOptions(output_device=spec["output_device"], on_step=clock)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if world > 1:
            dist.barrier()
        sync(device)
        start, begin = clock.now(), time.perf_counter()
        outputs = run(views, options)
        sync(device)
        seconds.append(time.perf_counter() - begin)
        stages.append(clock.stages(start))
        del outputs
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    result = {"seconds": statistics.median(seconds), "seconds_all": seconds, "stages": stages[len(stages) // 2],
              "peak_gib": peak}
    if world > 1 and spec["views"] <= 128:
        outputs = run(views, RunOptions(output_device=spec["output_device"]))
        if dist.get_rank() == 0:
            with torch.no_grad():
                reference = model(make_views(spec, device), options=RunOptions(output_device=spec["output_device"]))
            result["max_rel_diff_vs_1gpu"] = max(
                ((out[key].float() - ref[key].float()).abs().max() / ref[key].float().abs().max()).item()
                for out, ref in zip(outputs, reference)
                for key in ref
            )
    return result


def small_views_worker(device: torch.device, spec: dict) -> dict:
    """2 views: eager against CUDA-graph replay, timed per call, outputs compared."""
    model = build_model(spec, device)
    views = make_views({**spec, "views": 2}, device)
    graphed = GraphedFast3R(model)

    def timed(fn, count):
        times = []
        for _ in range(count):
            sync(device)
            begin = time.perf_counter()
            out = fn()
            sync(device)
            times.append(time.perf_counter() - begin)
        return statistics.median(times) * 1000, out

    with torch.no_grad():
        timed(lambda: model(views), 3)
        eager_ms, eager = timed(lambda: model(views), 20)
        capture_ms, _ = timed(lambda: graphed(views), 1)
        graph_ms, replayed = timed(lambda: graphed(views), 20)
    diff = max((a[key].float() - b[key].float()).abs().max().item() for a, b in zip(replayed, eager) for key in a)
    equal = all(torch.equal(a[key], b[key]) for a, b in zip(replayed, eager) for key in a)
    return {"eager_ms": eager_ms, "graph_ms": graph_ms, "first_graph_call_ms": capture_ms,
            "graph_used": bool(graphed.graphs), "equal": equal, "max_abs_diff": diff}


def probe_worker(device: torch.device, spec: dict, requests, replies) -> None:
    """Answer view counts with whether one forward pass fits: the fusion cut to `fusion_blocks` blocks
    with `ProbeAttention`, outputs dropped as produced (as moving them to the host would)."""
    model = build_model(spec, device)
    decoder = model.decoder
    blocks = nn.ModuleList(
        replace_modules(block, attn=ProbeAttention(block.attn, spec["probe_queries"])) for block in decoder.dec_blocks
    )
    model = replace_modules(model, decoder=replace_modules(decoder, dec_blocks=blocks))
    while (views := requests.get()) is not None:
        begin = time.perf_counter()
        reply = {"views": views, "fits": True, "peak_gib": None}
        try:
            if spec["dry"] and views > DRY_FITS:
                raise torch.OutOfMemoryError(f"simulated: more than {DRY_FITS} views")
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            inputs = make_views({**spec, "views": views}, device)
            with torch.no_grad():
                model(inputs, options=RunOptions(output_device="meta"))
            if device.type == "cuda":
                reply["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        except torch.OutOfMemoryError:
            reply["fits"] = False
        inputs = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
            reply["capacity_gib"] = torch.cuda.mem_get_info(device)[1] / 2**30
        replies.put({**reply, "seconds": time.perf_counter() - begin})


def worker_entry(rank: int, world: int, init_method: str, target, spec: dict, results, extra) -> None:
    """A worker process: join the group (if several), run `target`, report to the parent."""
    try:
        device_type = "cpu" if spec["dry"] else "cuda"
        if world > 1:
            device = init_rank(rank, world, init_method, device_type)
        else:
            device = torch.device("cuda", 0) if device_type == "cuda" else torch.device("cpu")
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        report = {"rank": rank, "status": "ok", "device": name, **(target(device, spec, *extra) or {})}
    except torch.OutOfMemoryError as err:
        report = {"rank": rank, "status": "oom", "error": str(err).splitlines()[0]}
    except Exception:  # noqa: BLE001 - recorded for this configuration
        report = {"rank": rank, "status": "error", "error": traceback.format_exc(limit=4)}
    results.put(report)
    if dist.is_initialized() and report["status"] == "ok":
        dist.destroy_process_group()
