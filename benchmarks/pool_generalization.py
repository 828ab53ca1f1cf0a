"""Does a pool-mode stage's model fit the scenes its pool served better than new scenes of the same recipe?

    python benchmarks/pool_generalization.py configs/small_wide_random_224.toml fast3r/weights/fast3r-small-224 \
        runs/slot --slot-starts 4235 8546 --seen 2100 --fresh 200000 --scenes 48 --out pool_generalization.json

A pool stage (`data.mode = "pool"`) draws many samples from each rendered scene. This renders `--scenes`
scenes of the config's recipe from scene number `--seen` on (scenes the stage's pool served) and as many
from `--fresh` on (numbers the stage never reached), takes each scene's views, resolution and image
indices as a training step does, and scores every model with the training loss: the loss itself and the
two heads' normalised point distances (`dist_global`, `dist_local`, without confidence). A model trained
on the pool that is better on the served scenes than on fresh ones has memorised them; a model that never
saw either set (the stage's start) scores both alike, which is the control. `--slot-starts` (the steps
where the stage continued from a slot: its pool then held only its newest `pool_slot_restart` scenes)
lets the script replay the stage's draws and say how many samples each served scene gave.
fp32 on the CPU, bf16 autocast on CUDA. Prints a Markdown table; --out writes the figures as JSON.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from fast3r.io.atomic import write_text_atomic
from fast3r.model import Fast3R
from fast3r.train.config import load_train_config
from fast3r.train.data import DataConfig, plan_step, pool_first_scene, pool_scenes, pool_size
from fast3r.train.loss import pointmap_loss
from fast3r.train.pool import SceneRing

TERMS = ("loss", "dist_global", "dist_local")


def draws_per_scene(data: DataConfig, seed: int, total: int, slot_starts: list[int]) -> np.ndarray:
    """How many samples one rank's pool drew from each scene number over steps 0..total-1 (world size 1),
    replaying `fast3r.train.data._PoolBatches`: a slot started at step s held only the newest
    `pool_slot_restart` scenes of pool_size(s), then grew."""
    counts = np.zeros(pool_size(data, total - 1) + 1, dtype=np.int64)
    bounds = [0, *slot_starts, total]
    for start, end in zip(bounds[:-1], bounds[1:]):
        first = pool_first_scene(data, start, data.pool_slot_restart if start else 0)
        for step in range(start, end):
            count = pool_size(data, step)
            held = min(count - first, data.pool_capacity)
            rng = np.random.default_rng([seed, step, 0, 1])
            np.add.at(counts, count - held + rng.integers(held, size=data.batch_size), 1)
    return counts


def score_scenes(models: dict[str, Fast3R], data: DataConfig, seed: int, first: int, num_scenes: int,
                 device: torch.device) -> dict[str, dict[str, np.ndarray]]:
    """{model: {term: (num_scenes,) values}} on scenes first..first+num_scenes-1, each sampled as the
    training step of the same number draws (views, resolution, image indices)."""
    ring = SceneRing(pool_scenes(data), first, first + num_scenes, num_scenes, 0, device)
    ring.grow_to(first + num_scenes)
    scores = {name: {term: np.zeros(num_scenes) for term in TERMS} for name in models}
    for index in range(num_scenes):
        plan = plan_step(data, seed, first + index)
        rng = np.random.default_rng([seed, first + index, 0, 2])
        chosen = np.sort(rng.choice(data.pool_views, plan.num_views, replace=False))
        views = ring.gather(np.array([first + index]), chosen[None], plan.resolution)
        images = [view["img"] for view in views]
        for name, model in models.items():
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                preds = model(images, image_ids=list(plan.image_ids))
            preds = [{key: value.float() for key, value in pred.items()} for pred in preds]
            loss, parts = pointmap_loss(preds, views)
            for term, value in (("loss", loss), ("dist_global", parts["dist_global"]), ("dist_local", parts["dist_local"])):
                scores[name][term][index] = float(value)
    return scores


def mean_interval(values: np.ndarray, minus: np.ndarray | None = None, draws: int = 1000, seed: int = 0) -> list[float]:
    """95% interval of mean(values) (minus mean(minus), a set of other scenes resampled on its own) over
    resamplings of the scenes."""
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(draws):
        mean = values[rng.integers(0, len(values), size=len(values))].mean()
        if minus is not None:
            mean -= minus[rng.integers(0, len(minus), size=len(minus))].mean()
        means.append(mean)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="the stage's training config (TOML), pool mode")
    parser.add_argument("models", nargs="+", help="model directories or hub ids: the stage's start first, then its slots")
    parser.add_argument("--seen", type=int, required=True, help="first scene number of the set the stage's pool served")
    parser.add_argument("--fresh", type=int, required=True, help="first scene number of the set the stage never reached")
    parser.add_argument("--scenes", type=int, default=48, help="scenes per set")
    parser.add_argument("--slot-starts", type=int, nargs="*", default=[], help="steps where the stage continued from a slot")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides the stage ran with (e.g. data.pool_scenes_per_step=0.75)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()

    config = load_train_config(args.config, args.set)
    data = config.data
    if data.mode != "pool":
        parser.error(f"{args.config}: data.mode is {data.mode!r}; this measures pool stages")
    reached = pool_size(data, config.steps - 1)
    if args.seen + args.scenes > reached or args.fresh < reached:
        parser.error(f"the stage rendered scenes 0..{reached - 1}: --seen scenes must lie among them, --fresh after them")
    device = torch.device(args.device)
    models = {name: Fast3R.from_pretrained(name).to(device).eval() for name in args.models}
    draws = draws_per_scene(data, config.seed, config.steps, args.slot_starts)[args.seen: args.seen + args.scenes]
    sets = {"served": args.seen, "fresh": args.fresh}
    scores = {label: score_scenes(models, data, config.seed, first, args.scenes, device) for label, first in sets.items()}

    start = args.models[0]
    results = {"config": args.config, "overrides": args.set, "steps": config.steps, "slot_starts": args.slot_starts, "scenes_per_set": args.scenes,
               "first_scene": sets, "served_draws_per_scene": {"mean": float(draws.mean()), "min": int(draws.min()),
                                                               "max": int(draws.max())},
               "device": str(device), "torch": torch.__version__, "models": {}}  # fmt: skip
    lines = [f"served scenes {args.seen}..{args.seen + args.scenes - 1}: {draws.mean():.1f} samples each "
             f"(min {draws.min()}, max {draws.max()}); fresh scenes from {args.fresh}", "",
             "| model | set | " + " | ".join(TERMS) + " | dist_global against the first model [95%] |",
             "|---" * (len(TERMS) + 3) + "|"]  # fmt: skip
    for name in args.models:
        results["models"][name] = {}
        for label in sets:
            values = scores[label][name]
            entry = {term: float(values[term].mean()) for term in TERMS}
            if name != start:
                difference = values["dist_global"] - scores[label][start]["dist_global"]
                entry["dist_global_minus_first"] = float(difference.mean())
                entry["dist_global_minus_first_ci95"] = mean_interval(difference)
            results["models"][name][label] = entry
            against = ("" if name == start else f"{entry['dist_global_minus_first']:+.4f} "
                       f"[{entry['dist_global_minus_first_ci95'][0]:+.4f}, {entry['dist_global_minus_first_ci95'][1]:+.4f}]")  # fmt: skip
            lines.append(f"| {name} | {label} | " + " | ".join(f"{entry[t]:.4f}" for t in TERMS) + f" | {against} |")
    # What a model gained on the served scenes beyond what it gained on fresh ones, both against the first
    # model on the same scenes: the set's own difficulty cancels, memorisation remains.
    lines += ["", "| model | dist_global: (served - first) - (fresh - first) [95%] |", "|---|---|"]
    for name in args.models[1:]:
        served, fresh = (scores[label][name]["dist_global"] - scores[label][start]["dist_global"] for label in sets)
        gap, interval = float(served.mean() - fresh.mean()), mean_interval(served, minus=fresh)
        results["models"][name]["memorised_dist_global"] = {"value": gap, "ci95": interval}
        lines.append(f"| {name} | {gap:+.4f} [{interval[0]:+.4f}, {interval[1]:+.4f}] |")
    print("\n".join(lines))
    if args.out:
        write_text_atomic(args.out, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
