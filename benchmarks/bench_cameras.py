"""Accuracy and speed of the camera paths of `fast3r.geometry.cameras_from_pointmaps`.

    python benchmarks/bench_cameras.py --views 32 1000 --device cuda --methods align pnp --out cameras.json

Accuracy: pointmaps built from ground truth, cameras estimated (focal too), errors against the truth:
synthetic renders (fast3r.data.synthetic) at --height x --width: exact; with noise (0.5% of depth, drawn
independently for the global and local pointmaps); with noise plus 5% gross outliers that have the lowest
confidences; and with outliers the confidence does not flag (focal given: a stress test of the pose fits).
Then the rgbd_dining frames (when --shared-data holds them) and the Middlebury motorcycle pair (when
scikit-image is installed), exact.
Speed: wall time of the whole call at each --views, on synthetic pointmaps with noise and flagged outliers
(the first --distinct-views rendered, then repeated), inputs already on --device.
Methods: "align" (batched Sim(3)), "pnp" (PnP-RANSAC on pixels subsampled to PnPConfig.max_points) and
"pnp-full" (PnP-RANSAC on every pixel, as the release does).
Prints Markdown tables; --out writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from fast3r.data.synthetic import render_scene
from fast3r.geometry import PnPConfig, PointmapsFromDepth, cameras_from_pointmaps, pointmaps_from_depth
from fast3r.geometry.groundtruth import rgbd_folder_pointmaps, stereo_pair_pointmaps
from fast3r.io.atomic import write_text_atomic

METHODS = {"align": ("align", PnPConfig()), "pnp": ("pnp", PnPConfig()), "pnp-full": ("pnp", PnPConfig(max_points=None))}
NOISE = 0.005  # Gaussian noise, as a fraction of each point's depth
OUTLIERS = 0.05  # fraction of pixels replaced by points scattered over the scene


def synthetic_truth(num_views: int, height: int, width: int, seed: int, device: str) -> PointmapsFromDepth:
    views = render_scene(seed=seed, num_views=num_views, height=height, width=width, trajectory="random", device=device)
    return pointmaps_from_depth([v.depth for v in views], [v.K for v in views], [v.c2w for v in views])


def perturb(
    points: torch.Tensor, depth: torch.Tensor, generator: torch.Generator, outliers: torch.Tensor | None = None
) -> torch.Tensor:
    """Depth-proportional Gaussian noise; pixels where `outliers` (N, H, W) is true move to random spots."""
    noisy = points + NOISE * depth[..., None] * torch.randn(points.shape, generator=generator, device=points.device)
    if outliers is not None:
        spread = points.flatten(0, 2).nan_to_num().std(dim=0)
        wild = points + 2.0 * spread * torch.randn(points.shape, generator=generator, device=points.device)
        noisy = torch.where(outliers[..., None], wild, noisy)
    return noisy


def noisy_with_outliers(
    global_: torch.Tensor, local: torch.Tensor, generator: torch.Generator, flagged: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(global, confidence, local) with noise and OUTLIERS of the pixels wrong in both heads. flagged: the
    outliers get the lowest confidences, as a trained model marks them; else confidence says nothing."""
    depth = local[..., 2]
    outliers = torch.rand(depth.shape, generator=generator, device=depth.device) < OUTLIERS
    confidence = torch.rand(depth.shape, generator=generator, device=depth.device) + 1.0  # in [1, 2)
    if flagged:
        confidence = torch.where(outliers, confidence - 1.0, confidence)  # in [0, 1)
    return perturb(global_, depth, generator, outliers), confidence, perturb(local, depth, generator, outliers)


def rotation_errors_deg(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    relative = np.swapaxes(predicted[:, :3, :3], 1, 2) @ truth[:, :3, :3]
    cosine = (np.trace(relative, axis1=1, axis2=2) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def centre_direction_errors_deg(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Angle between predicted and true camera centres (view 0's at the origin), views not at the origin."""
    lengths = np.linalg.norm(truth[:, :3, 3], axis=1)
    moved = lengths > 1e-6 * lengths.max()
    a, b = predicted[moved, :3, 3], truth[moved, :3, 3]
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def accuracy_cases(args: argparse.Namespace) -> dict[str, tuple]:
    """name -> (global pointmaps, confidence, local pointmaps, truth c2w, truth focal, focal given or None)."""
    truth = synthetic_truth(args.accuracy_views, args.height, args.width, seed=1, device="cpu")
    local, global_ = torch.from_numpy(truth.local), torch.from_numpy(truth.global_)
    depth = local[..., 2]
    generator = torch.Generator().manual_seed(0)
    uniform = torch.ones(depth.shape)
    focal = truth.K[:, 0, 0]
    noisy = (perturb(global_, depth, generator), uniform, perturb(local, depth, generator))
    cases = {
        "synthetic exact": (global_, uniform, local, truth.c2w, focal, None),
        "synthetic noise": (*noisy, truth.c2w, focal, None),
        "synthetic noise+outliers (low conf)": (
            *noisy_with_outliers(global_, local, generator, flagged=True), truth.c2w, focal, None
        ),
        # confidence blind to the outliers: a stress test of the pose fits alone, so the focal is given
        "synthetic noise+outliers (blind conf, focal given)": (
            *noisy_with_outliers(global_, local, generator, flagged=False), truth.c2w, focal, focal
        ),
    }
    dining = Path(args.shared_data) / "rgbd_dining"
    if dining.is_dir():
        real = rgbd_folder_pointmaps(dining)
        real_conf = np.random.default_rng(0).random(real.global_.shape[:3]).astype(np.float32) + 1.0
        cases["rgbd_dining"] = (
            real.global_, real_conf, real.local, real.c2w, (real.K[:, 0, 0] + real.K[:, 1, 1]) / 2, None
        )
    try:
        from skimage.data import stereo_motorcycle
    except ImportError:
        stereo_motorcycle = None
    if stereo_motorcycle is not None:
        pair = stereo_pair_pointmaps(stereo_motorcycle()[2], 994.978, 0.193, 31.086, (311.193, 254.877))
        pair_conf = [np.ones(points.shape[:2], np.float32) for points in pair.global_]
        cases["motorcycle"] = (pair.global_, pair_conf, pair.local, pair.c2w, pair.K[:, 0, 0], None)
    return cases


def measure_accuracy(args: argparse.Namespace) -> list[dict]:
    rows = []
    for case, (global_, confidence, local, c2w, focal, given_focal) in accuracy_cases(args).items():
        for name in args.methods:
            method, config = METHODS[name]
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cameras = cameras_from_pointmaps(
                    global_, confidence, local_pointmaps=local, method=method, pnp=config, focal=given_focal,
                    progress=False,
                )
            seconds = time.perf_counter() - start
            rotation = rotation_errors_deg(cameras.c2w, c2w)
            direction = centre_direction_errors_deg(cameras.c2w, c2w)
            focal_error = np.abs(cameras.focal / focal - 1.0) * 100.0
            rows.append({
                "case": case, "method": name, "views": len(c2w), "seconds": seconds,
                "rotation_mean_deg": float(rotation.mean()), "rotation_max_deg": float(rotation.max()),
                "direction_mean_deg": float(direction.mean()), "direction_max_deg": float(direction.max()),
                "focal_max_pct": float(focal_error.max()),
            })
            print(f"accuracy {case} / {name}: rotation max {rotation.max():.4f} deg", flush=True)
    return rows


def timing_pointmaps(num_views: int, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(global, confidence, local) of num_views views on args.device: distinct renders, repeated."""
    distinct = min(num_views, args.distinct_views)
    truth = synthetic_truth(distinct, args.height, args.width, seed=2, device=args.device)
    local = torch.from_numpy(truth.local).to(args.device)
    global_ = torch.from_numpy(truth.global_).to(args.device)
    generator = torch.Generator(device=args.device).manual_seed(0)
    global_, confidence, local = noisy_with_outliers(global_, local, generator, flagged=True)
    order = torch.arange(num_views, device=args.device) % distinct
    return global_[order], confidence[order], local[order]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_speed(args: argparse.Namespace) -> list[dict]:
    rows = []
    for num_views in args.views:
        global_, confidence, local = timing_pointmaps(num_views, args)
        for name in args.methods:
            method, config = METHODS[name]

            def run(count: int):
                return cameras_from_pointmaps(
                    global_[:count], confidence[:count], local_pointmaps=local[:count], method=method, pnp=config,
                    progress=False,
                )

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run(2)  # warm-up: kernels, allocator, thread pool
                times, peak = [], 0.0
                for _ in range(args.repeats if num_views <= 64 else 1):
                    if args.device.startswith("cuda"):
                        torch.cuda.reset_peak_memory_stats()
                    synchronize(args.device)
                    start = time.perf_counter()
                    run(num_views)
                    synchronize(args.device)
                    times.append(time.perf_counter() - start)
                    if args.device.startswith("cuda"):
                        peak = max(peak, torch.cuda.max_memory_allocated() / 2**30)
            seconds = statistics.median(times)
            rows.append({
                "method": name, "views": num_views, "resolution": f"{args.width}x{args.height}",
                "device": args.device, "seconds_median": seconds, "seconds_all": times,
                "ms_per_view": 1000.0 * seconds / num_views, "peak_gib": peak if args.device.startswith("cuda") else None,
            })
            print(f"speed {num_views} views / {name}: {seconds:.3f} s", flush=True)
        del global_, confidence, local
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"


def print_tables(accuracy: list[dict], speed: list[dict], args: argparse.Namespace) -> None:
    print(f"\n{device_name(args.device)} | torch {torch.__version__}")
    if accuracy:
        print("\n| case | method | views | rotation mean / max (deg) | centre direction mean / max (deg) "
              "| focal max error (%) | time (s) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for row in accuracy:
            print(f"| {row['case']} | {row['method']} | {row['views']} "
                  f"| {row['rotation_mean_deg']:.4f} / {row['rotation_max_deg']:.4f} "
                  f"| {row['direction_mean_deg']:.4f} / {row['direction_max_deg']:.4f} "
                  f"| {row['focal_max_pct']:.3f} | {row['seconds']:.2f} |")
    if speed:
        print("\n| method | views | resolution | device | time (s, median) | ms per view | peak GPU memory (GiB) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for row in speed:
            peak = "-" if row["peak_gib"] is None else f"{row['peak_gib']:.2f}"
            print(f"| {row['method']} | {row['views']} | {row['resolution']} | {row['device']} "
                  f"| {row['seconds_median']:.3f} | {row['ms_per_view']:.1f} | {peak} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, nargs="+", default=[32, 1000], help="view counts to time")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=["align", "pnp"])
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--accuracy-views", type=int, default=16, help="views of the synthetic accuracy cases")
    parser.add_argument("--distinct-views", type=int, default=64, help="distinct renders behind the timing views")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size (1 above 64 views)")
    parser.add_argument("--shared-data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no CUDA device")

    accuracy = [] if args.skip_accuracy else measure_accuracy(args)
    speed = [] if args.skip_speed else measure_speed(args)
    print_tables(accuracy, speed, args)
    if args.out:
        meta = {"device": device_name(args.device), "torch": torch.__version__, "noise_fraction_of_depth": NOISE,
                "outlier_fraction": OUTLIERS, "distinct_views": args.distinct_views}
        write_text_atomic(args.out, json.dumps({"meta": meta, "accuracy": accuracy, "speed": speed}, indent=2) + "\n")


if __name__ == "__main__":
    main()
