"""Cameras from the same learned pointmaps by several alignment weightings, on held-out synthetic scenes.

    python benchmarks/camera_weighting.py --trajectories orbit random --scenes 200 --seed-offset 1000000

The bundled model (or --weights) runs once per scene (8 views, fp32 on the CPU, the held-out check's
image indices); each variant then recovers the cameras from those predictions and is scored over the view
pairs (RRA@15 / RTA@15 / mAA(30), percent), per trajectory and pooled. Variants: the local pointmap fitted
onto the global one (Umeyama Sim(3)) on the pixels at or above the view's p-th global-confidence percentile,
unweighted ("align pP") or weighted ("w=..."), and PnP-RANSAC on the global pointmap (focal per view from the
local pointmap). `--seed-offset` moves the scenes off the held-out set the model card reports, so that a
choice made here is not scored on the scenes it was chosen on.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from fast3r.eval.pose import pooled_metrics, relative_pose_errors
from fast3r.geometry import cameras_from_pointmaps
from fast3r.geometry.align import alignment_mask
from fast3r.geometry.umeyama import umeyama_batched
from fast3r.model import Fast3R
from fast3r.train.heldout import HeldoutConfig, heldout_image_ids, heldout_trajectory, heldout_views, views_to_tensors

COLUMNS = ("RRA@15_pct", "RTA@15_pct", "mAA30_fast3r_31bin_pct")


def weighted_align(local, global_, weights) -> np.ndarray:
    """(N, 4, 4) camera-to-world of a Umeyama Sim(3) per view with (N, H, W) weights."""
    views = local.shape[0]
    _, rotation, translation = umeyama_batched(local.reshape(views, -1, 3), global_.reshape(views, -1, 3),
                                               weights.reshape(views, -1))
    c2w = np.tile(np.eye(4), (views, 1, 1))
    c2w[:, :3, :3], c2w[:, :3, 3] = rotation.numpy(), translation.numpy()
    return c2w


def variants(g, c, l, cl) -> dict[str, np.ndarray]:
    """Camera-to-world per variant from one scene's global / local pointmaps (N, H, W, 3) and confidences."""
    out = {}
    for percentile in (85, 50, 0):
        mask = alignment_mask(l, g, c, float(percentile))
        out[f"align p{percentile}"] = weighted_align(l, g, mask)
    for name, weights in (("w=conf", c), ("w=conf*conf_local", c * cl), ("w=log conf", torch.log(c)),
                          ("w=(conf-1)(conf_local-1)", (c - 1) * (cl - 1))):
        out[f"align p0 {name}"] = weighted_align(l, g, weights)
    out["align p50 w=conf*conf_local"] = weighted_align(l, g, alignment_mask(l, g, c, 50.0) * c * cl)
    out["pnp (local focal)"] = cameras_from_pointmaps(g, c, local_pointmaps=l, local_confidence=cl, method="pnp",
                                                      return_aligned_points=False, progress=False).c2w
    out["identity"] = np.tile(np.eye(4), (g.shape[0], 1, 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="fast3r/weights/fast3r-small-224")
    parser.add_argument("--trajectories", nargs="+", default=["orbit", "random"])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--seed-offset", type=int, default=1_000_000, help="added to the held-out seeds")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    model = Fast3R.from_pretrained(args.weights).eval()
    config = HeldoutConfig(view_counts=[args.views], scenes=args.scenes, trajectories=args.trajectories)
    config.seed_base += args.seed_offset
    config.validate()
    errors: dict[str, dict[str, list]] = {}
    with torch.no_grad():
        for index in range(args.scenes):
            views = heldout_views(config, index, args.views)
            family = heldout_trajectory(config, index)[1]
            images, _ = views_to_tensors(views, "cpu")
            generator = torch.Generator().manual_seed(config.seed_base + index)
            preds = model(images, image_ids=heldout_image_ids(config.image_ids, args.views), generator=generator)
            g, c, l, cl = (torch.cat([p[key] for p in preds])
                           for key in ("pts3d_in_other_view", "conf", "pts3d_local", "conf_local"))
            truth = np.stack([view.c2w for view in views])
            for name, c2w in variants(g, c, l, cl).items():
                errors.setdefault(name, {}).setdefault(family, []).append(relative_pose_errors(c2w, truth))
    table = {}
    for name, by_family in errors.items():
        table[name] = {}
        for family, parts in [*by_family.items(), ("all", sum(by_family.values(), []))]:
            metrics = pooled_metrics(parts)
            table[name][family] = [round(metrics[key], 1) for key in COLUMNS]
        print(name, table[name], flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"settings": vars(args), "columns": COLUMNS, "variants": table}, handle, indent=1)


if __name__ == "__main__":
    main()
