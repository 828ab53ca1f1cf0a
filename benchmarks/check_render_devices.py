"""Whether a training recipe's pool scenes are the same scenes rendered on the GPU as on the CPU.

    python benchmarks/check_render_devices.py --train-config configs/small_more_scenes_224.toml --scenes 6

A pool renders `pool_device_share` of its scenes on the training GPU and the rest on CPU workers, and
held-out sets render on the GPU, so both devices must draw the same pictures. Prints, per scene, the share
of pixel values that differ by more than 1 and by any amount, and the largest relative depth difference;
exits 1 when more than --max-share of the pixel values differ by more than 1.
"""
from __future__ import annotations

import argparse
import sys

import torch

from fast3r.train.config import load_train_config
from fast3r.train.data import pool_scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-config", required=True)
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU")
    parser.add_argument("--max-share", type=float, default=1e-3, help="of pixel values off by more than 1")
    args = parser.parse_args()
    scenes = pool_scenes(load_train_config(args.train_config).data)
    worst = 0.0
    for index in range(args.scenes):
        cpu, other = scenes.render(index, "cpu"), scenes.render(index, args.device)
        image_gap = (cpu["image"].int() - other["image"].cpu().int()).abs()
        depth_cpu, depth_other = cpu["depth"], other["depth"].cpu()
        both = (depth_cpu > 0) & (depth_other > 0)
        relative = ((depth_cpu - depth_other).abs() / depth_cpu.clamp_min(1e-6))[both]
        off_by_more = (image_gap > 1).float().mean().item()
        worst = max(worst, off_by_more)
        print(
            f"scene {index}: pixel values off by >1 {off_by_more:.2e}, by any {(image_gap > 0).float().mean().item():.2e}; "
            f"hit on one device only {(depth_cpu > 0).ne(depth_other > 0).float().mean().item():.2e}; "
            f"largest relative depth gap {relative.max().item() if relative.numel() else 0.0:.2e}"
        )
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    print(f"torch {torch.__version__}, {name} against the CPU: worst share off by >1 {worst:.2e}")
    sys.exit(1 if worst > args.max_share else 0)


if __name__ == "__main__":
    main()
