"""Can the model learn wide-baseline relative poses at all? Train a small Fast3R on a few scenes and score
its cameras on those same scenes, beside the identity baseline.

    python benchmarks/memorize_poses.py --scenes 4 --views 8 --steps 1500 --trajectories orbit
    python benchmarks/memorize_poses.py --scenes 2 --views 4 --steps 400 --lr 2e-3     # the test's run

This separates "cannot represent or recover large rotations" (a bug in the global head, the loss's
frames or the camera recovery) from "does not generalise yet" (data and compute). The scenes are the
held-out generator's (`fast3r.train.heldout`), so `evaluate_heldout` scores exactly the training scenes.
Image indices are drawn per step from 1..999 as in training, and scored "spread" as at inference.
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from fast3r.model.config import DecoderConfig, EncoderConfig, Fast3RConfig, HeadConfig
from fast3r.model.fast3r import Fast3R
from fast3r.train.config import initialise_from_scratch
from fast3r.train.heldout import HeldoutConfig, evaluate_heldout, heldout_views, views_to_tensors
from fast3r.train.loss import ViewTarget, pointmap_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--size", type=int, default=64, help="square image size (a multiple of 16)")
    parser.add_argument("--trajectories", nargs="+", default=["orbit"])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=4, help="scenes per step (at most --scenes)")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = Fast3RConfig(  # 2.5M parameters: between the test preset and the bundled small model
        encoder=EncoderConfig(embed_dim=128, depth=4, num_heads=4, img_size=args.size),
        decoder=DecoderConfig(embed_dim=128, depth=4, num_heads=4),
        head=HeadConfig(feature_dim=32, last_dim=16, layer_dims=(16, 32, 64, 128)),
    )
    model = Fast3R(config)
    initialise_from_scratch(model)
    scenes_config = HeldoutConfig(
        view_counts=[args.views], scenes=args.scenes, trajectories=args.trajectories,
        resolution=(args.size, args.size), image_ids="spread",
    )  # fmt: skip
    cpu = torch.device("cpu")
    scenes = [views_to_tensors(heldout_views(scenes_config, index, args.views), cpu) for index in range(args.scenes)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
    rng = np.random.default_rng(0)
    began, losses = time.perf_counter(), []
    model.train()
    for _ in range(args.steps):
        picked = [scenes[k] for k in rng.choice(args.scenes, size=min(args.batch, args.scenes), replace=False)]
        images = [torch.cat([scene_images[v] for scene_images, _ in picked]) for v in range(args.views)]  # V x (B, 3, H, W)
        targets = [_batched([scene_targets[v] for _, scene_targets in picked]) for v in range(args.views)]
        image_ids = [0.0, *(float(i) for i in rng.permutation(999)[: args.views - 1] + 1)]
        loss, _ = pointmap_loss(model(images, image_ids=image_ids), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - began
    scores = evaluate_heldout(model, scenes_config, "cpu", bf16=False, progress=False)[str(args.views)]
    keys = ("RRA@15_pct", "RTA@15_pct", "mAA30_fast3r_31bin_pct", "rotation_error_median_deg")
    print(json.dumps({
        "settings": vars(args), "train_seconds": round(seconds, 1),
        "loss_first_last": [round(losses[0], 4), round(float(np.mean(losses[-20:])), 4)],
        "model": {key: round(scores[key], 2) for key in keys},
        "identity_baseline": {key: round(scores["identity_baseline"][key], 2) for key in keys},
    }))  # fmt: skip


def _batched(targets: list[ViewTarget]) -> ViewTarget:
    """One view's targets of several scenes (each a batch of 1) as one batch."""
    return ViewTarget(*(torch.cat([getattr(t, name) for t in targets]) for name in ("pts3d", "valid", "camera_pose")))


if __name__ == "__main__":
    main()
