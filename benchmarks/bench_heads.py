"""Time the two DPT heads over N views as `Fast3R` runs them, with the fusion tokens in either memory layout.

    python benchmarks/bench_heads.py --views 1000 --layouts channels_last nchw --out heads.json

The heads read the fusion transformer's (B, P, D) tokens as (B, D, h, w) maps. Kept as they lie in memory,
these maps are channels-last and every convolution runs channels-last ("channels_last", what the model
does); "nchw" first copies the tokens to the (B, D, P) layout, which is what the model did before
2026-11-30 (its maps were a contiguous NCHW copy). ViT-L/512 heads with random weights, outputs kept on
the GPU. Prints one JSON line per layout and the largest relative difference between the layouts' outputs.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from bench_model import random_model
from fast3r.model import DTYPES, Fast3R, Fast3RConfig, RunOptions
from fast3r.model.dpt import DPT


def nchw_heads(model: Fast3R) -> list[torch.utils.hooks.RemovableHandle]:
    """Make the model's DPT heads read NCHW maps (the layout before 2026-11-30); remove the handles to undo."""

    def to_nchw(module, args):
        hooks, *rest = args
        return ([tokens.transpose(1, 2).contiguous().transpose(1, 2) for tokens in hooks], *rest)

    return [m.register_forward_pre_hook(to_nchw) for m in model.modules() if isinstance(m, DPT)]


def time_heads(model: Fast3R, hooks: list[torch.Tensor], views: int, size: tuple[int, int], chunk: int):
    """Seconds, peak GiB (CUDA) and outputs of the heads over all views (one synchronised call)."""
    cuda = hooks[0].is_cuda
    synchronize = torch.cuda.synchronize if cuda else lambda: None
    tokens_per_view = [hooks[0].shape[1] // views] * views
    options = RunOptions(head_chunk_views=chunk)
    with torch.no_grad():
        model._decode_heads([size] * chunk, [h[:, : tokens_per_view[0] * chunk] for h in hooks],
                            tokens_per_view[:chunk], options)  # warm-up: algorithm choice
        synchronize()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = model._decode_heads([size] * views, hooks, tokens_per_view, options)
        synchronize()
    return time.perf_counter() - start, torch.cuda.max_memory_allocated() / 2**30 if cuda else None, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--dtype", choices=DTYPES, default="bf16")
    parser.add_argument("--chunk", type=int, default=RunOptions().head_chunk_views, help="views per head call")
    parser.add_argument("--layouts", nargs="+", choices=["channels_last", "nchw"], default=["channels_last", "nchw"])
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    config = Fast3RConfig.vitl512()
    model = random_model(config, args.device, DTYPES[args.dtype])
    patch = config.encoder.patch_size
    tokens = args.views * (args.height // patch) * (args.width // patch)
    generator = torch.Generator(device=args.device).manual_seed(1)
    dims = (config.encoder.embed_dim,) + (config.decoder.embed_dim,) * 3
    hooks = [torch.randn(1, tokens, d, device=args.device, generator=generator, dtype=DTYPES[args.dtype]) for d in dims]
    rows, outputs = [], {}
    for layout in args.layouts:
        handles = nchw_heads(model) if layout == "nchw" else []
        seconds, peak, outputs[layout] = time_heads(model, hooks, args.views, (args.height, args.width), args.chunk)
        for handle in handles:
            handle.remove()
        device = torch.cuda.get_device_name() if args.device == "cuda" else args.device
        rows.append({"layout": layout, "views": args.views, "size": [args.height, args.width], "dtype": args.dtype,
                     "chunk": args.chunk, "seconds": seconds, "ms_per_view": 1000 * seconds / args.views,
                     "peak_gib": peak, "device": device, "torch": torch.__version__})
        print(json.dumps(rows[-1]), flush=True)
    if len(outputs) == 2:
        first, second = outputs.values()
        worst = {key: max(float((a[key] - b[key]).abs().max() / b[key].abs().max()) for a, b in zip(first, second))
                 for key in first[0]}
        rows.append({"max_relative_difference_between_layouts": worst})
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
