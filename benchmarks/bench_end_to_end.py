"""`fast3r reconstruct` as a user runs it: N 12-megapixel JPEG photos in, every default export out.

Writes the photos (a textured scene seen from shifted viewpoints, 4032x3024, JPEG quality 92), makes
ViT-L/512 weights in the published layout (random, fp16 safetensors; the work is the same as with the
published ones), runs `python -m fast3r.cli reconstruct PHOTOS -o OUT --weights W` in a child process per
view count, and reports each stage (from the command's summary), wall time, peak host RSS of the command,
peak GPU memory and the output folder's size.

    python benchmarks/bench_end_to_end.py --views 200 1000 --work /tmp/e2e --json results.json
    python benchmarks/bench_end_to_end.py --views 4 --size 640 480 --model tiny --device cpu   # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_photo(args: tuple[Path, int, int, int, int]) -> int:
    """One photo: a window of a large procedural texture, shifted per view, with sensor-like grain."""
    path, index, count, width, height = args
    rng = np.random.default_rng(1000 + index)
    world = np.random.default_rng(0)
    base = world.integers(0, 256, (96, 128, 3), dtype=np.uint8)  # the scene: the same for every view
    base = cv2.resize(base, (1280, 960), interpolation=cv2.INTER_CUBIC)
    detail = world.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    scene = cv2.addWeighted(base, 0.75, cv2.resize(detail, (1280, 960), interpolation=cv2.INTER_LINEAR), 0.25, 0)
    shift = int(round(320 * index / max(1, count - 1)))  # views pan across the scene
    window = scene[120:840, shift : shift + 960]
    photo = cv2.resize(window, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 4, (height // 2, width // 2, 1)).astype(np.float32)
    photo = np.clip(photo + cv2.resize(grain, (width, height))[..., None], 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path.stat().st_size


def make_photos(folder: Path, count: int, width: int, height: int) -> float:
    """Write `count` photos (kept between runs when already there); returns their total size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [folder / f"IMG_{index:05d}.jpg" for index in range(count)]
    missing = [(path, i, count, width, height) for i, path in enumerate(wanted) if not path.exists()]
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(write_photo, missing, chunksize=4))
    for stale in set(folder.iterdir()) - set(wanted):
        stale.unlink()
    return float(sum(path.stat().st_size for path in wanted))


def make_weights(folder: Path, model: str) -> Path:
    """Random weights of the named preset in the published layout (fp16), made once."""
    if (folder / "config.json").is_file():
        return folder
    import torch

    from fast3r.model import Fast3R, Fast3RConfig

    torch.manual_seed(0)
    config = {"vitl512": Fast3RConfig.vitl512, "tiny": Fast3RConfig.tiny}[model]()
    with torch.device("cpu"):
        Fast3R(config).save_pretrained(str(folder), dtype=torch.float16)
    return folder


def folder_bytes(folder: Path) -> tuple[int, dict[str, int]]:
    """Bytes written under `folder` (links count as links, not their targets), total and per top entry."""
    per_entry: dict[str, int] = {}
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            size = sum(p.lstat().st_size for p in entry.rglob("*"))
        else:
            size = entry.lstat().st_size
        per_entry[entry.name] = size
    return sum(per_entry.values()), per_entry


def parse_summary(text: str) -> dict:
    """Stage seconds, total and peak GPU memory from the command's closing summary."""
    stages = {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^  ([A-Za-z +()]+?)\s+([\d.]+) s$", text, re.M)}
    gpu = re.search(r"peak GPU memory\s+([\d.]+) GiB", text)
    points = re.search(r"points exported: ([\d,]+)", text)
    return {
        "stages_s": stages,
        "peak_gpu_gib": float(gpu.group(1)) if gpu else None,
        "points_exported": int(points.group(1).replace(",", "")) if points else None,
    }


def run_reconstruct(photos: Path, out: Path, weights: Path, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "fast3r.cli", "reconstruct", str(photos), "-o", str(out), "--weights",
               str(weights), "--overwrite", "--quiet", *extra]
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    log_out, log_err = out.parent / f"{out.name}.stdout", out.parent / f"{out.name}.stderr"
    start = time.perf_counter()
    with open(log_out, "w") as stdout, open(log_err, "w") as stderr:
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS
    wall = time.perf_counter() - start
    text, errors = log_out.read_text(), log_err.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"reconstruct failed ({os.waitstatus_to_exitcode(status)}):\n{text}\n{errors}")
    total, per_entry = folder_bytes(out)
    return {
        "command": " ".join(command[1:]),
        "wall_s": wall,
        "peak_rss_gib": usage.ru_maxrss / 2**20,
        "output_bytes": total,
        "output_entries_bytes": per_entry,
        **parse_summary(text),
        "stdout": text,
        "stderr_tail": errors[-2000:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--size", type=int, nargs=2, default=[4032, 3024], metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--model", choices=["vitl512", "tiny"], default="vitl512")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fast3r_e2e"), help="photos, weights, outputs")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("extra", nargs="*", help="more reconstruct options, after --")
    args = parser.parse_args()

    import torch

    started = time.perf_counter()
    weights = make_weights(args.work / f"weights_{args.model}", args.model)
    print(f"weights ready ({time.perf_counter() - started:.1f} s)", flush=True)
    results = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "model": args.model,
        "photo_size": args.size,
        "runs": [],
    }
    for count in sorted(args.views):
        started = time.perf_counter()
        photos = args.work / f"photos_{count}"
        photo_bytes = make_photos(photos, count, *args.size)
        print(f"{count} photos ready, {photo_bytes / 2**30:.2f} GiB ({time.perf_counter() - started:.1f} s)", flush=True)
        run = run_reconstruct(photos, args.work / f"out_{count}", weights, args.extra)
        run.update(views=count, photo_bytes=photo_bytes)
        results["runs"].append(run)
        print(run["stdout"], flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    print("views | wall s | " + " | ".join(results["runs"][0]["stages_s"]) + " | peak RSS GiB | peak GPU GiB | output MB")
    for run in results["runs"]:
        stages = " | ".join(f"{v:.2f}" for v in run["stages_s"].values())
        print(f"{run['views']} | {run['wall_s']:.1f} | {stages} | {run['peak_rss_gib']:.2f} | {run['peak_gpu_gib']} | "
              f"{run['output_bytes'] / 1e6:.0f}")


if __name__ == "__main__":
    main()
