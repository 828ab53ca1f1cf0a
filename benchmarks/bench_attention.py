"""Fusion attention alone at one length: one SDPA call against queries split into chunks.

    python benchmarks/bench_attention.py --views 1000 --chunks 0 24576 40960 49152 98304 --out attention.json
    python benchmarks/bench_attention.py --views 1000 --query-share 0.5 ...   # one of 2 GPUs' queries

Shapes are the ViT-L/512 fusion layer's: (1, 16 heads, views x 768 tokens, 64), bf16. Each setting is
timed over `--repeats` calls after one warm-up; TFLOP/s counts 4 x queries x keys x 64 x 16. Chunk 0 is
one call. `RunOptions.attention_query_chunk` defaults to the fastest measured on an H200.

`--layouts` sets how q, k and v lie in memory, each seen as (1, heads, L, 64): "bhld" contiguous; "blhd" a
token-major (1, L, heads, 64) tensor transposed (what one projection per q, k, v gives); "qkv" strided views
of one (1, L, 3, heads, 64) projection (what `Attention` did until 2026-12-01).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fast3r.model.layers import attention


def in_layout(layout: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """The same q (1, heads, Lq, 64), k, v (1, heads, L, 64) values lying in memory as `layout` says."""
    if layout == "bhld":
        return q, k, v
    if layout == "blhd":
        return tuple(t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    qkv = torch.stack([t.transpose(1, 2) for t in (k, k, v)], dim=2)  # (1, L, 3, heads, 64): one projection
    qkv[:, : q.shape[2], 0] = q.transpose(1, 2)
    views = qkv.permute(2, 0, 3, 1, 4)  # (3, 1, heads, L, 64)
    return views[0, :, :, : q.shape[2]], views[1], views[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--tokens-per-view", type=int, default=768)
    parser.add_argument("--query-share", type=float, default=1.0, help="queries as a share of the keys")
    parser.add_argument("--chunks", type=int, nargs="+", default=[0, 24576, 40960, 49152, 98304])
    parser.add_argument("--layouts", nargs="+", choices=["bhld", "blhd", "qkv"], default=["bhld"])
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
    for layout in args.layouts:
        q_in, k_in, v_in = in_layout(layout, q, k, v)
        for chunk in args.chunks:
            attention(q_in, k_in, v_in, chunk or None)  # warm-up
            times = []
            for _ in range(args.repeats):
                torch.cuda.synchronize()
                begin = time.perf_counter()
                out = attention(q_in, k_in, v_in, chunk or None)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - begin)
            reference = out if reference is None else reference
            seconds = statistics.median(times)
            row = {"layout": layout, "chunk": chunk, "seconds": seconds, "seconds_all": times,
                   "tflops": flops / seconds / 1e12,
                   "max_abs_diff_vs_first": (out.float() - reference.float()).abs().max().item()}
            rows.append(row)
            print(json.dumps(row), flush=True)
            del out
        del q_in, k_in, v_in
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "views": args.views,
              "queries": queries, "keys": keys, "rows": rows}
    best = min(rows, key=lambda r: r["seconds"])
    print(f"fastest: {best['layout']}, chunk {best['chunk']} at {best['tflops']:.0f} TFLOP/s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
