"""Measure what bounds training speed: synthetic rendering (CPU / GPU) and the model's step time.

    python benchmarks/train_speed.py --preset small --views 8 --size 224 --batch 8 16 --steps 20
    python benchmarks/train_speed.py --no-render --batch 16 --compile "" default reduce-overhead
    python benchmarks/train_speed.py --no-render --batch 16 --heads-layout channels_last nchw
    python benchmarks/train_speed.py --no-render --batch 16 --profile 25
Prints one JSON line per measurement; --profile N also prints the N ops taking the most GPU time over
the timed steps (torch.profiler, self time), which says what bounds a step.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from bench_heads import nchw_heads
from fast3r.data.synthetic import SceneConfig, SyntheticSceneSource
from fast3r.model import Fast3R, Fast3RConfig
from fast3r.train.activation_checkpointing import enable_activation_checkpointing
from fast3r.train.data import DataConfig, training_batches
from fast3r.train.optim import OptimConfig, build_optimizer, build_scheduler, optimiser_step
from fast3r.train.trainer import compile_forward_and_loss


def _render(args: tuple[int, int, int, str]) -> int:
    seed, views, size, device = args
    torch.set_num_threads(1)
    source = SyntheticSceneSource(views, size, size, (SceneConfig(kind="room"), SceneConfig(kind="orbit")), device=device)
    return len(source(seed))


def render_rate(views: int, size: int, device: str, workers: int, scenes: int) -> float:
    """Scenes per second."""
    start = time.perf_counter()
    if device == "cuda":
        for seed in range(scenes):
            _render((seed, views, size, device))
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_render, [(seed, views, size, device) for seed in range(scenes)]))
    return scenes / (time.perf_counter() - start)


def step_rate(
    preset: str, views: int, size: int, batch: int, steps: int, checkpointing: bool, compile_mode: str,
    device_name: str = "cuda", heads_layout: str = "channels_last", profile_rows: int = 0,
) -> dict:
    """Seconds per optimiser step on one batch, after 3 warm-up steps (which include any compilation).
    compile_mode: "" runs eager; otherwise torch.compile(mode=...) of the model and the loss, as the
    trainer's `compile` setting does. heads_layout "nchw" times the heads' layout before 2026-11-30
    (see bench_heads.py)."""
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    torch.manual_seed(0)  # the same weights for every variant: their final losses should agree
    model = Fast3R(getattr(Fast3RConfig, preset)()).to(device).train()
    if heads_layout == "nchw":
        nchw_heads(model)
    if checkpointing:
        enable_activation_checkpointing(model)
    optim = OptimConfig()
    optimizer = build_optimizer(model, optim, fused=cuda)
    scheduler = build_scheduler(optimizer, optim, steps + 3)
    data = DataConfig(num_views=[views], resolutions=[(size, size)], batch_size=batch, num_workers=0, render_device=device.type)
    batch_views = next(iter(training_batches(data, 0, 0, 1, 0, 1, device))).views
    images = [v["img"].to(device) for v in batch_views]
    targets = [{k: v[k].to(device) for k in ("pts3d", "valid", "camera_pose")} for v in batch_views]
    image_ids = model.image_ids(views, "random")
    forward, loss_of = compile_forward_and_loss(model, compile_mode)  # as the trainer's step does
    synchronize = torch.cuda.synchronize if cuda else lambda: None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    activities = [torch.profiler.ProfilerActivity.CUDA if cuda else torch.profiler.ProfilerActivity.CPU]
    profiler = torch.profiler.profile(activities=activities) if profile_rows else None
    began = time.perf_counter()
    for index in range(steps + 3):
        if index == 3:
            synchronize()
            warmup = time.perf_counter() - began
            if profiler is not None:
                profiler.start()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            preds = forward(images, image_ids=image_ids)
        loss = loss_of(preds, targets)[0]
        optimiser_step(loss, model, optimizer, scheduler, optim.grad_clip)
    synchronize()
    seconds = (time.perf_counter() - start) / steps
    if profiler is not None:
        profiler.stop()
        sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        print(profiler.key_averages().table(sort_by=sort_by, row_limit=profile_rows), flush=True)
    return {
        "what": "train_step", "preset": preset, "views": views, "size": size, "batch": batch,
        "checkpointing": checkpointing, "compile": compile_mode or "eager", "heads_layout": heads_layout, "warmup_s": warmup,
        "seconds_per_step": seconds, "views_per_s": batch * views / seconds,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None, "loss": float(loss.detach()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--render-scenes", type=int, default=48)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--compile", nargs="+", default=[""], metavar="MODE",
                        help='step variants: "" (eager), default, reduce-overhead, max-autotune-no-cudagraphs')
    parser.add_argument("--heads-layout", nargs="+", choices=["channels_last", "nchw"], default=["channels_last"],
                        help="nchw: the DPT heads' layout before 2026-11-30")
    parser.add_argument("--no-render", action="store_true", help="skip the rendering measurement")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print the N ops with the most GPU time over the timed steps (slows them)")
    parser.add_argument("--step-device", default="cuda", help="where the step is timed (cpu: a smoke run)")
    args = parser.parse_args()
    for device in () if args.no_render else ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
        rate = render_rate(args.views, args.size, device, args.workers, args.render_scenes)
        print(json.dumps({"what": "render", "device": device, "workers": args.workers if device == "cpu" else 1,
                          "views": args.views, "size": args.size, "scenes_per_s": rate}), flush=True)
    if torch.cuda.is_available() or args.step_device == "cpu":
        for batch in args.batch:
            for mode in args.compile:
                for layout in args.heads_layout:
                    row = step_rate(args.preset, args.views, args.size, batch, args.steps, args.checkpointing, mode,
                                    args.step_device, layout, args.profile)
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
