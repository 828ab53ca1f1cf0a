"""Which part of the held-out `random` trajectory a model fails on: `random` in rooms differs from the
trained `orbit` in where the eyes stand (anywhere, at 1-2 m, against one circle at one height) and where
each view looks (its own point in the room's middle, against near one centre). Each variant changes one
of these and is scored on the same held-out room scenes as `benchmarks/heldout_eval.py`:

    python benchmarks/heldout_variants.py fast3r/weights/fast3r-small-224 --scenes 10 --out variants.json

  orbit                 the trained trajectory, as is
  orbit_varied_heights  orbit eyes, each at its own height (1-2 m), looking at its own height (0.3-1.5 m)
  orbit_own_targets     orbit eyes, each looking at its own point of the room's middle, as `random` does
  random_one_target     `random` eyes (anywhere), all looking near one point (0.1 m), as an orbit does
  random                the held-out trajectory, as is

The variants replace the samplers of `fast3r.data.synthetic.cameras` for this process only.
"""
from __future__ import annotations

import argparse
import json
from unittest import mock

import torch

from heldout_eval import table_header, table_row
from fast3r.data.synthetic import cameras
from fast3r.io.atomic import write_text_atomic
from fast3r.model import Fast3R
from fast3r.train.heldout import HeldoutConfig, evaluate_heldout


def orbit_varied_heights(scene, rng, num_views):
    eyes, targets = cameras._orbit(scene, rng, num_views)
    eyes[:, 2] = rng.uniform(1.0, 2.0, size=num_views)
    targets[:, 2] = rng.uniform(0.3, 1.5, size=num_views)
    return eyes, targets


def orbit_own_targets(scene, rng, num_views):
    eyes, _ = cameras._orbit(scene, rng, num_views)
    return eyes, rng.uniform(*cameras.room_middle(scene), size=(num_views, 3))


def random_one_target(scene, rng, num_views):
    eyes, targets = cameras._random(scene, rng, num_views)
    return eyes, targets[0] + rng.normal(0, 0.1, size=(num_views, 3))


VARIANTS = {  # name: (the trajectory whose sampler and roll it replaces, sampler; None keeps it)
    "orbit": ("orbit", None),
    "orbit_varied_heights": ("orbit", orbit_varied_heights),
    "orbit_own_targets": ("orbit", orbit_own_targets),
    "random_one_target": ("random", random_one_target),
    "random": ("random", None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="model directory or Hugging Face hub id")
    parser.add_argument("--scenes", type=int, default=10, help="room scenes per variant")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = Fast3R.from_pretrained(args.weights).float().to(device)
    results = {}
    print("\n".join(table_header("variant (rooms)")))
    for name in args.variants:
        trajectory, sampler = VARIANTS[name]
        config = HeldoutConfig(view_counts=[args.views], scenes=args.scenes, trajectories=[trajectory],
                               scene_kinds=["room"], render_device=device.type)  # fmt: skip
        replaced = {trajectory: sampler} if sampler is not None else {}
        with mock.patch.dict(cameras._SAMPLERS, replaced):
            metrics = evaluate_heldout(model, config, device, bf16=device.type == "cuda", progress=False)[str(args.views)]
        results[name] = metrics
        print(table_row(str(args.views), name, metrics), flush=True)
    if args.out:
        write_text_atomic(args.out, json.dumps({"weights": args.weights, "scenes": args.scenes, "views": args.views,
                                                "variants": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
