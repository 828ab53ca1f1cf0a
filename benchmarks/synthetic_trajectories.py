"""How much the views of each synthetic trajectory overlap: what makes wide-baseline and capture-like data.

    python benchmarks/synthetic_trajectories.py --scenes 12 --views 8 --size 64 --out trajectories.json

For each scene kind and trajectory, over --scenes seeds: the share of view 0's points that each other
view sees (`fast3r.data.views.visible_share`) and the rotation between view 0 and each other view, both
averaged over views and scenes; and the training loss's global point error (`dist_global`, normalised,
without confidence) of a guess that every camera sits where view 0 is: the level a model reaches by
learning each view's geometry and no motion. Prints a Markdown table; --out writes the numbers as JSON.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from fast3r.data.synthetic import TRAJECTORIES, SceneConfig, render_scene
from fast3r.data.views import View, visible_share
from fast3r.eval.pose import rotation_angle_deg
from fast3r.io.atomic import write_text_atomic
from fast3r.train.loss import ViewTarget, pointmap_loss


def identity_pose_error(views: list[View]) -> float:
    """dist_global of predicting each view's exact camera-frame points as if it were view 0's camera."""
    preds, targets = [], []
    for view in views:
        points = torch.from_numpy(view.points_camera())[None]  # (1, H, W, 3)
        ones = torch.ones(points.shape[:3])
        preds.append({"pts3d_in_other_view": points, "conf": ones, "pts3d_local": points, "conf_local": ones})
        targets.append(ViewTarget(torch.from_numpy(view.points_world())[None], torch.from_numpy(view.valid)[None],
                                  torch.from_numpy(view.c2w).float()[None]))  # fmt: skip
    return float(pointmap_loss(preds, targets)[1]["dist_global"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=12, help="scenes per kind and trajectory")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="square image side in pixels")
    parser.add_argument("--out", help="JSON file for the numbers")
    args = parser.parse_args()
    rows = []
    print("| scene | trajectory | view 0's points seen by another view | rotation from view 0 (degrees) "
          "| global error of identity poses |\n| --- | --- | --- | --- | --- |")
    for kind in ("room", "orbit"):
        for trajectory in TRAJECTORIES:
            shares, angles, errors = [], [], []
            for seed in range(args.scenes):
                views = render_scene(seed, args.views, args.size, args.size, trajectory, config=SceneConfig(kind=kind))
                shares += [visible_share(views[0], other) for other in views[1:]]
                rotations = np.stack([view.c2w[:3, :3] for view in views])
                angles += list(rotation_angle_deg(np.broadcast_to(rotations[0], rotations[1:].shape), rotations[1:]))
                errors.append(identity_pose_error(views))
            row = {"kind": kind, "trajectory": trajectory, "visible_share": float(np.mean(shares)),
                   "rotation_deg": float(np.mean(angles)), "identity_pose_dist_global": float(np.mean(errors))}  # fmt: skip
            rows.append(row)
            print(f"| {kind} | {trajectory} | {row['visible_share']:.2f} | {row['rotation_deg']:.0f} "
                  f"| {row['identity_pose_dist_global']:.2f} |")
    if args.out:
        settings = {"scenes": args.scenes, "views": args.views, "size": args.size}
        write_text_atomic(args.out, json.dumps({"settings": settings, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
