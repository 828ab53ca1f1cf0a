"""Rendering speed of the synthetic scene generator (`fast3r.data.synthetic.render_scene`).

    python benchmarks/bench_synthetic.py --device cpu --sizes 224x224 288x384 384x512 --out synthetic_cpu.json
    python benchmarks/bench_synthetic.py --device cuda --views 24 --out synthetic_cuda.json
    python benchmarks/bench_synthetic.py --device cuda --train-config configs/small_wide_random_224.toml \
        --views 16 --sizes 224x224 --repeats 20 --out synthetic_cuda_recipe.json
    python benchmarks/bench_synthetic.py --train-config configs/small_wide_random_224.toml --pool-workers 14 \
        --repeats 4 --out synthetic_pool_workers.json

Each row renders whole scenes (layout, cameras, ray casting, shading, copy back to numpy) of --views
views at one size (H x W), both scene kinds in turn, a different seed per repeat, after one warm-up scene.
The scenes are the generator's defaults, or with --train-config a training recipe's scenes (its lenses and
scene levers: clutter, textures, light, shadows), cameras on the recipe's trajectories in turn.
Prints a Markdown table of views per second; --out writes the numbers as JSON.

--pool-workers N measures instead what feeds a training pool: the recipe's pool scenes (its kinds,
trajectories, `pool_views` views at its largest resolution, as `fast3r.train.data.pool_scenes` makes them)
rendered on the CPU by N DataLoader worker processes of one thread each, as training renders them,
--repeats scenes per worker after each worker's first. It prints the scenes per second they deliver.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch.utils.data import DataLoader, Subset

from fast3r.data.synthetic import SceneConfig, render_scene
from fast3r.io.atomic import write_text_atomic
from fast3r.train.config import load_train_config
from fast3r.train.data import pool_scenes


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW, e.g. 224x224") from None
    return height, width


def time_scenes(kind: str, height: int, width: int, args: argparse.Namespace) -> list[float]:
    """Seconds per scene over --repeats scenes, after one warm-up scene."""
    config, trajectories = SceneConfig(kind=kind), ("orbit", "walk", "random")
    if args.train_config:
        data = load_train_config(args.train_config).data
        config = next(scene for scene in data.scene_configs() if scene.kind == kind)
        trajectories = tuple(dict.fromkeys(data.trajectories))
    render_scene(0, args.views, height, width, "orbit", args.device, config)
    seconds = []
    for repeat in range(args.repeats):
        start = time.perf_counter()
        render_scene(1 + repeat, args.views, height, width, trajectories[repeat % len(trajectories)], args.device, config)
        seconds.append(time.perf_counter() - start)
    return seconds


def pool_throughput(train_config: str, workers: int, repeats: int) -> dict[str, float]:
    """Scenes per second that `workers` worker processes deliver, rendering a recipe's pool scenes."""
    data = load_train_config(train_config).data
    scenes = pool_scenes(data)
    count = workers * (1 + repeats)
    loader = DataLoader(Subset(scenes, range(count)), batch_size=None, num_workers=workers, prefetch_factor=2)
    arrivals = []
    for _scene in loader:
        arrivals.append(time.perf_counter())
    timed = arrivals[workers - 1 :]  # from when every worker has rendered one scene (process start, imports)
    seconds = timed[-1] - timed[0]
    height, width = data.render_size()
    print(f"{train_config}: pool scenes of {data.pool_views} views at {height}x{width}, torch {torch.__version__}")
    print(f"{workers} worker processes: {len(timed) - 1} scenes in {seconds:.1f} s, {(len(timed) - 1) / seconds:.2f} scenes / s")
    return {
        "pool_workers": workers,
        "scenes": len(timed) - 1,
        "views": data.pool_views,
        "height": height,
        "width": width,
        "seconds": seconds,
        "scenes_per_second": (len(timed) - 1) / seconds,
    }


def scene_rows(args: argparse.Namespace) -> list[dict]:
    """One row per size and kind: the median seconds per scene, printed as a Markdown table."""
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.views} views per scene\n")
    print("| kind | size (HxW) | s / scene (median) | views / s | Mpixel / s |")
    print("| --- | --- | ---: | ---: | ---: |")
    rows = []
    for height, width in args.sizes:
        for kind in args.kinds:
            seconds = statistics.median(time_scenes(kind, height, width, args))
            row = {
                "kind": kind,
                "height": height,
                "width": width,
                "views": args.views,
                "seconds_per_scene": seconds,
                "views_per_second": args.views / seconds,
                "megapixels_per_second": args.views * height * width / seconds / 1e6,
            }
            rows.append(row)
            print(f"| {kind} | {height}x{width} | {seconds:.3f} | {row['views_per_second']:.1f} | {row['megapixels_per_second']:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device to render on (cpu, cuda)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(224, 224), (288, 384), (384, 512)], help="HxW")
    parser.add_argument("--views", type=int, default=8, help="views per scene")
    parser.add_argument("--repeats", type=int, default=3, help="timed scenes per row")
    parser.add_argument("--kinds", nargs="+", choices=["room", "orbit"], default=["room", "orbit"])
    parser.add_argument("--train-config", help="render this training config's scenes (TOML) instead of the defaults")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--pool-workers", type=int, help="with --train-config: scenes per second of this many worker processes")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pool_workers is not None and (not args.train_config or args.pool_workers < 1 or args.device != "cpu"):
        parser.error("--pool-workers needs --train-config, a count of at least 1 and --device cpu")

    if args.pool_workers:
        rows = [pool_throughput(args.train_config, args.pool_workers, args.repeats)]
    else:
        rows = scene_rows(args)
    if args.out:
        device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine()
        result = {
            "device": args.device,
            "device_name": device_name,
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
            "train_config": args.train_config,
            "repeats": args.repeats,
            "rows": rows,
        }
        write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
