"""Relative error of bf16 and fp16 forward passes against fp32, ViT-L/512 with random weights, on CUDA.

    python benchmarks/check_precision.py --views 4
"""
from __future__ import annotations

import argparse

import torch

from bench_model import random_model
from fast3r.model import Fast3RConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--views", type=int, default=4)
    args = parser.parse_args()
    reference = random_model(Fast3RConfig.vitl512(), "cuda", torch.float32)
    generator = torch.Generator(device="cuda").manual_seed(0)
    views = [torch.rand(1, 3, 384, 512, device="cuda", generator=generator) * 2 - 1 for _ in range(args.views)]
    with torch.no_grad():
        expected = reference(views)
        for dtype in (torch.bfloat16, torch.float16):
            model = random_model(Fast3RConfig.vitl512(), "cuda", torch.float32)
            model.load_state_dict(reference.state_dict())
            out = model.to(dtype)([v.to(dtype) for v in views])
            for key in ("pts3d_in_other_view", "conf", "pts3d_local", "conf_local"):
                errors = [
                    ((o[key] - e[key]).norm() / e[key].norm()).item() for o, e in zip(out, expected)
                ]
                print(f"{str(dtype):16s} {key:20s} max relative error over views {max(errors):.2e}")


if __name__ == "__main__":
    main()
