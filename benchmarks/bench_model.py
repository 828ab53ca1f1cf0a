"""Time and peak memory of one Fast3R forward pass (random weights) at a given number of views.

    python benchmarks/bench_model.py --views 2 32 128 --dtype bf16 --out results.json

Prints a Markdown table; the numbers go into BENCHMARKS.md with the device, torch version and date.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fast3r.model import DTYPES, Fast3R, Fast3RConfig, RunOptions, layers


def random_model(config: Fast3RConfig, device: str, dtype: torch.dtype) -> Fast3R:
    """The model at full size with random weights, initialised directly on the device."""
    with torch.device("meta"):
        model = Fast3R(config)
    model = model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.fill_(1.0)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.normal_(0.0, 0.02, generator=generator)
    return model.to(dtype).eval()


def attention_flops(num_views: int, tokens_per_view: int, config: Fast3RConfig) -> float:
    """FLOPs of the fusion attention alone (QK^T and AV), all decoder layers."""
    length = num_views * tokens_per_view
    return 4.0 * length**2 * config.decoder.embed_dim * config.decoder.depth


def run_once(model: Fast3R, views: list[torch.Tensor], options: RunOptions) -> tuple[float, float]:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.no_grad():
        out = model(views, options=options)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak_gib = torch.cuda.max_memory_allocated() / 2**30
    del out
    return seconds, peak_gib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--views", type=int, nargs="+", default=[2, 32, 128])
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--dtype", choices=DTYPES, default="bf16")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size (1 above 128 views)")
    parser.add_argument("--attention", choices=["auto", "flash", "cudnn"], default="auto")
    parser.add_argument("--query-chunk", type=int, default=RunOptions().attention_query_chunk,
                        help="fusion attention queries per call (0: one call)")
    parser.add_argument("--output-device", default=None, help="e.g. cpu: move outputs off the GPU per chunk")
    parser.add_argument("--out", default=None, help="write results as JSON here")
    args = parser.parse_args()

    if args.attention != "auto":
        from torch.nn.attention import SDPBackend

        chosen = SDPBackend.FLASH_ATTENTION if args.attention == "flash" else SDPBackend.CUDNN_ATTENTION
        layers._CUDA_BACKENDS = [chosen]

    config = Fast3RConfig.vitl512()
    model = random_model(config, "cuda", DTYPES[args.dtype])
    options = RunOptions(attention_query_chunk=args.query_chunk or None, output_device=args.output_device)
    tokens_per_view = (args.height // 16) * (args.width // 16)
    rows = []
    for num_views in args.views:
        generator = torch.Generator(device="cuda").manual_seed(num_views)
        views = [
            torch.rand(1, 3, args.height, args.width, device="cuda", generator=generator, dtype=DTYPES[args.dtype]) * 2 - 1
            for _ in range(num_views)
        ]
        if num_views <= 128:  # warm-up: kernel selection, allocator (larger sizes reuse it)
            run_once(model, views, options)
        runs = [run_once(model, views, options) for _ in range(args.repeats if num_views <= 128 else 1)]
        seconds = statistics.median(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        tflops = attention_flops(num_views, tokens_per_view, config) / seconds / 1e12
        rows.append(
            {
                "views": num_views,
                "resolution": f"{args.width}x{args.height}",
                "dtype": args.dtype,
                "attention": args.attention,
                "query_chunk": args.query_chunk,
                "seconds_median": seconds,
                "seconds_all": [r[0] for r in runs],
                "peak_gib": peak,
                "fusion_attention_tflops_lower_bound": tflops,
            }
        )
        print(f"{num_views} views: {seconds:.3f} s, {peak:.2f} GiB", flush=True)
        del views
        torch.cuda.empty_cache()

    print(f"\n{torch.cuda.get_device_name()} | torch {torch.__version__} | {args.dtype} | attention {args.attention}")
    print("| views | resolution | time (s, median) | peak memory (GiB) | attention-only TFLOP/s (lower bound) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['views']} | {row['resolution']} | {row['seconds_median']:.3f} | {row['peak_gib']:.2f} "
            f"| {row['fusion_attention_tflops_lower_bound']:.0f} |"
        )
    if args.out:
        meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
        with open(args.out, "w") as handle:
            json.dump({"meta": meta, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
