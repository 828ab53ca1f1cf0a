"""Fusion attention alone at one length: one SDPA call against queries split into chunks.

    python benchmarks/bench_attention.py --views 1000 --chunks 0 24576 40960 49152 98304 --out attention.json
    python benchmarks/bench_attention.py --views 1000 --query-share 0.5 ...   # one of 2 GPUs' queries

Shapes are the ViT-L/512 fusion layer's: (1, 16 heads, views x 768 tokens, 64), bf16. Each setting is
timed over `--repeats` calls after one warm-up; TFLOP/s counts 4 x queries x keys x 64 x 16. Chunk 0 is
one call. `RunOptions.attention_query_chunk` defaults to the fastest measured on an H200.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fast3r.model.layers import attention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--tokens-per-view", type=int, default=768)
    parser.add_argument("--query-share", type=float, default=1.0, help="queries as a share of the keys")
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 24576, 40960, 49152, 98304])
    parser.add_argument("--repeats", type=int, default=1, help="timed calls after one warm-up")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    keys = args.views * args.tokens_per_view
    queries = int(keys * args.query_share)
    generator = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 16, queries, 64, device="cuda", dtype=torch.bfloat16, generator=generator)
    k = torch.randn(1, 16, keys, 64, device="cuda", dtype=torch.bfloat16, generator=generator)
    v = torch.randn(1, 16, keys, 64, device="cuda", dtype=torch.bfloat16, generator=generator)
    flops = 4.0 * queries * keys * 64 * 16
    rows = []
    reference = None
    for chunk in args.chunks:
        attention(q, k, v, chunk or None)  # warm-up
        times = []
        for _ in range(args.repeats):
            torch.cuda.synchronize()
            begin = time.perf_counter()
            out = attention(q, k, v, chunk or None)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - begin)
        reference = out if reference is None else reference
        seconds = statistics.median(times)
        row = {"chunk": chunk, "seconds": seconds, "seconds_all": times, "tflops": flops / seconds / 1e12,
               "max_abs_diff_vs_first": (out.float() - reference.float()).abs().max().item()}
        rows.append(row)
        print(json.dumps(row), flush=True)
        del out
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "views": args.views,
              "queries": queries, "keys": keys, "rows": rows}
    best = min(rows, key=lambda r: r["seconds"])
    print(f"fastest: chunk {best['chunk']} at {best['tflops']:.0f} TFLOP/s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
