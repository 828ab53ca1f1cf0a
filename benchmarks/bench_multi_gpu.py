"""Context-parallel Fast3R (ViT-L/512, random weights) over 1..N GPUs: time, peak memory per GPU, scaling.

    python benchmarks/bench_multi_gpu.py --views 128 1000 --gpus 1 2 --out OUT
    python benchmarks/bench_multi_gpu.py --views --small-views --find-max-views --out OUT  # 1 GPU
    python benchmarks/bench_multi_gpu.py --dry-run --out OUT           # CPU, tiny model, gloo: self-check

Every configuration runs in fresh processes (one per GPU), so an out-of-memory error or a crash is
recorded for that configuration and the next one starts clean. OUT gets results.json and table.md;
the table is printed last. Per-GPU efficiency = time on 1 GPU / (GPUs x time on N GPUs).

What runs inside each process (model, workers, probe attention) is in multi_gpu_workers.py.
"""
from __future__ import annotations

import argparse
import json
import queue
import time
from pathlib import Path

import torch

from fast3r.model import DTYPES, Fast3RConfig
from fast3r.parallel.group import free_port
from multi_gpu_workers import forward_worker, probe_worker, small_views_worker, worker_entry


# ----- the parent: one configuration at a time -----
def run_config(target, spec: dict, world: int, timeout_s: float, extra=()) -> list[dict]:
    """Run `target` on `world` fresh processes; a rank that fails or outlives the timeout stops the rest."""
    context = torch.multiprocessing.get_context("spawn")
    results = context.Queue()
    init_method = f"tcp://127.0.0.1:{free_port()}"
    processes = [
        context.Process(target=worker_entry, args=(rank, world, init_method, target, spec, results, extra))
        for rank in range(world)
    ]
    for process in processes:
        process.start()
    reports, deadline = {}, time.monotonic() + timeout_s
    while len(reports) < world and time.monotonic() < deadline:
        try:
            report = results.get(timeout=1)
        except queue.Empty:
            if all(not p.is_alive() for p in processes):
                break
            continue
        reports[report["rank"]] = report
        if report["status"] != "ok":  # the other ranks may wait in a collective: give them a moment
            deadline = min(deadline, time.monotonic() + 10)
    for process in processes:  # only the processes started here
        if process.is_alive():
            process.kill()
        process.join()
    return [reports.get(rank, {"rank": rank, "status": "timeout or crash"}) for rank in range(world)]


def forward_row(spec: dict, gpus: int, timeout_s: float, depth: int) -> dict:
    reports = run_config(forward_worker, spec, gpus, timeout_s)
    statuses = {report["status"] for report in reports}
    row = {"mode": "forward", "views": spec["views"], "gpus": gpus, "fusion_blocks": spec["fusion_blocks"] or depth}
    row["status"] = "ok" if statuses == {"ok"} else "oom" if "oom" in statuses else sorted(statuses - {"ok"})[0]
    row["errors"] = [report["error"] for report in reports if "error" in report]
    row["device"] = reports[0].get("device", "unknown")
    if row["status"] != "ok":
        return row
    row["seconds"] = max(report["seconds"] for report in reports)
    row["peak_gib_per_gpu"] = [report["peak_gib"] for report in reports]
    row["stages_per_rank"] = [report["stages"] for report in reports]
    row["seconds_full"] = max(  # the cut blocks at the measured per-block time
        r["seconds"] + (depth - r["stages"]["fusion_blocks"]) * r["stages"]["fusion"] / r["stages"]["fusion_blocks"]
        for r in reports
    )
    row["extrapolated"] = row["fusion_blocks"] < depth
    if "max_rel_diff_vs_1gpu" in reports[0]:
        row["max_rel_diff_vs_1gpu"] = reports[0]["max_rel_diff_vs_1gpu"]
    return row


def find_max_views(spec: dict, start: int, budget_s: float, timeout_s: float) -> dict:
    """Largest view count whose pass fits one GPU: a linear fit of two probes' peaks gives a guess,
    steps of 5% bracket it, bisection narrows it to 1% (or until the time budget is spent)."""
    context = torch.multiprocessing.get_context("spawn")
    requests, replies = context.Queue(), context.Queue()
    results = context.Queue()
    worker = context.Process(target=worker_entry, args=(0, 1, "", probe_worker, spec, results, (requests, replies)))
    worker.start()
    probes, began = [], time.monotonic()

    def probe(views: int) -> bool:
        requests.put(views)
        deadline = time.monotonic() + timeout_s
        while worker.is_alive() and time.monotonic() < deadline:
            try:
                probes.append(replies.get(timeout=5))
                return probes[-1]["fits"]
            except queue.Empty:
                pass
        raise RuntimeError(f"probe of {views} views: worker died or timed out {results.get() if results.qsize() else ''}")

    fits, fails = 0, None
    try:
        for views in (start // 2, start):
            if probe(views):
                fits = views
            else:
                fails = fails or views
        peaks = [(p["views"], p["peak_gib"]) for p in probes if p["fits"] and p["peak_gib"]]
        grow, stepped = 2.0, True
        if fails is None and len(peaks) == 2:  # peak memory is linear in the view count
            (n0, p0), (n1, p1) = peaks
            guess = int(n1 + (probes[-1]["capacity_gib"] * 0.97 - p1) * (n1 - n0) / (p1 - p0))
            grow, stepped = 1.05, False
        else:
            guess = int(fits * grow) if fails is None else (fits + fails) // 2
        while time.monotonic() - began < budget_s and guess >= 1:
            if probe(guess):
                fits = max(fits, guess)
            else:
                fails = min(fails or guess, guess)
            if fails is None:
                guess = int(fits * grow) + 1
            elif fails - fits <= max(8, fits // 100):
                break
            elif fits < 0.9 * fails and not stepped:  # a fitted guess is near: one step down, then bisect
                guess, stepped = int(fails * 0.95), True
            else:
                guess = (fits + fails) // 2
    finally:
        requests.put(None)
        worker.join(timeout=30)
        if worker.is_alive():
            worker.kill()
    return {"mode": "max_views", "gpus": 1, "fits": fits, "fails": fails, "probes": probes,
            "fusion_blocks": spec["fusion_blocks"], "probe_queries": spec["probe_queries"],
            "note": "fusion cut to fusion_blocks blocks; attention allocates full size, computes probe_queries queries"}


# ----- main -----
def table(rows: list[dict]) -> str:
    lines = ["| run | views | GPUs | time (s) | full time (s) | peak GiB per GPU | speed-up | per-GPU efficiency | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r.get("status", "ok") != "ok":
            lines.append(f"| {r['mode']} | {r.get('views', 2)} | {r.get('gpus', 1)} | {r['status']} | | | | | |")
        elif r["mode"] == "forward":
            peaks = " / ".join("-" if p is None else f"{p:.1f}" for p in r["peak_gib_per_gpu"])
            note = f"fusion {r['fusion_blocks']} blocks, full time extrapolated; " if r["extrapolated"] else ""
            note += f"rel. diff vs 1 GPU {r['max_rel_diff_vs_1gpu']:.1e}" if "max_rel_diff_vs_1gpu" in r else ""
            lines.append(f"| forward | {r['views']} | {r['gpus']} | {r['seconds']:.3f} | {r['seconds_full']:.3f} | {peaks} "
                         f"| {r.get('speedup', 0):.2f} | {r.get('efficiency', 0):.0%} | {note} |")
        elif r["mode"] == "small_views":
            lines.append(f"| eager / CUDA graph | 2 | 1 | {r['eager_ms'] / 1000:.4f} / {r['graph_ms'] / 1000:.4f} | | "
                         f"| {r['eager_ms'] / r['graph_ms']:.2f} | | graph used {r['graph_used']}, outputs equal "
                         f"{r['equal']} (max abs diff {r['max_abs_diff']:.1e}) |")
        else:
            lines.append(f"| largest view count | fits {r['fits']}, fails {r['fails']} | 1 | | | "
                         f"{max((p['peak_gib'] or 0) for p in r['probes']):.1f} | | | {len(r['probes'])} probes; {r['note']} |")
    return "\n".join(lines)


def add_scaling(rows: list[dict]) -> None:
    """Speed-up and per-GPU efficiency of each multi-GPU row against the 1-GPU row of its view count."""
    base = {r["views"]: r["seconds_full"] for r in rows if r["mode"] == "forward" and r["gpus"] == 1 and r["status"] == "ok"}
    for row in rows:
        if row["mode"] == "forward" and row["status"] == "ok" and row["views"] in base:
            row["speedup"] = base[row["views"]] / row["seconds_full"]
            row["efficiency"] = row["speedup"] / row["gpus"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for results.json and table.md")
    parser.add_argument("--views", type=int, nargs="*", default=[128, 1000])
    parser.add_argument("--gpus", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--dtype", choices=DTYPES, default="bf16")
    parser.add_argument("--fusion-blocks", type=int, default=None, help="cut the fusion to K blocks; extrapolate")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs up to 128 views (1 above)")
    parser.add_argument("--output-device", default="cpu", help="where outputs go as produced (the pipeline's cpu)")
    parser.add_argument("--small-views", action="store_true", help="2 views: eager against CUDA-graph replay")
    parser.add_argument("--find-max-views", action="store_true", help="bisect the largest view count on 1 GPU")
    parser.add_argument("--search-start", type=int, default=1000, help="first probes: half this and this")
    parser.add_argument("--search-budget-s", type=float, default=300)
    parser.add_argument("--probe-queries", type=int, default=4096)
    parser.add_argument("--config-timeout-s", type=float, default=420)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, gloo, small sizes")
    args = parser.parse_args()
    if args.dry_run:
        args.views, args.gpus, args.height, args.width, args.dtype = [3, 5], [1, 2], 48, 64, "fp32"
        args.search_start, args.repeats = 8, 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    depth = (Fast3RConfig.tiny() if args.dry_run else Fast3RConfig.vitl512()).decoder.depth
    spec = {"dry": args.dry_run, "dtype": args.dtype, "height": args.height, "width": args.width,
            "fusion_blocks": args.fusion_blocks, "repeats": args.repeats, "output_device": args.output_device,
            "probe_queries": args.probe_queries}
    rows: list[dict] = []

    def save() -> None:
        add_scaling(rows)
        meta = {"torch": torch.__version__, "dry_run": args.dry_run, "args": vars(args),
                "device": next((row["device"] for row in rows if "device" in row), "cpu")}  # CUDA only in workers
        (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        (out / "table.md").write_text(f"{meta['device']} | torch {meta['torch']} | {args.dtype} | "
                                      f"{args.width}x{args.height}\n\n{table(rows)}\n")

    if args.small_views:
        reports = run_config(small_views_worker, {**spec, "fusion_blocks": None}, 1, args.config_timeout_s)
        rows.append({"mode": "small_views", **reports[0]})
        print(json.dumps(rows[-1]), flush=True)
        save()
    for views in args.views:
        for gpus in args.gpus:
            rows.append(forward_row({**spec, "views": views}, gpus, args.config_timeout_s, depth))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "stages_per_rank"}), flush=True)
            save()
    if args.find_max_views:
        probe_spec = {**spec, "fusion_blocks": args.fusion_blocks or min(4, depth)}
        try:
            rows.append(find_max_views(probe_spec, args.search_start, args.search_budget_s, args.config_timeout_s))
        except RuntimeError as err:
            rows.append({"mode": "max_views", "status": "error", "error": str(err)})
        print(json.dumps(rows[-1]), flush=True)
        save()
    print()
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
