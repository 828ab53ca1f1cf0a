"""Where the time of one Fast3R forward pass goes, and what its scheduling options are worth.

    python benchmarks/bench_stages.py --views 1000 --out stages.json

ViT-L/512 with random weights, bf16, random images at 512x384, outputs kept on the GPU (as bench_model.py).
1. The whole pass split into encoder, fusion attention (CUDA events around every fusion attention call),
   the rest of the fusion transformer, and the heads.
2. Sweeps of the options that should not change the result, each stage timed alone over all views:
   `RunOptions.encoder_chunk_views`, `RunOptions.head_chunk_views`, and the encoder's RoPE rotation as it was
   until 2026-12-01 ("before": an fp32 copy of q and k, then four fp32 passes) against now.
   (`benchmarks/bench_attention.py --layouts` sweeps the fusion attention's memory layouts.)
3. One fusion layer's attention with q, k, v as the model makes them (strided views of one qkv projection)
   against contiguous copies.
4. `--profile-views V`: the 25 CUDA kernels that take longest in one pass over V views (torch.profiler).
5. `--compare`: the whole pass twice in this process, once with the code and options of 2026-11-30 (RoPE
   and the attention's q, k, v as "before") and once as now with the fastest options of the sweeps;
   outputs compared.
Prints one JSON line per measurement and writes them all to --out.
"""
from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager

import torch

from bench_model import random_model
from fast3r.model import DTYPES, Fast3R, Fast3RConfig, RunOptions, layers


def rotate_before(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`RoPE2D.rotate` as it was until 2026-12-01: the same values, through an fp32 copy of x."""
    x32 = x.float()
    y1, y2, x1, x2 = x32.chunk(4, dim=-1)
    rotated_half = torch.cat([-y2, y1, -x2, x1], dim=-1)
    return (x32 * cos + rotated_half * sin).to(x.dtype)


def attention_forward_before(self, x, rope=None, query_chunk=None):
    """`Attention.forward` as it was until 2026-12-01: q, k, v always strided views of one projection."""
    batch, length, dim = x.shape
    qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, dim // self.num_heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    if rope is not None:
        cos, sin = rope
        q, k = layers.RoPE2D.rotate(q, cos, sin), layers.RoPE2D.rotate(k, cos, sin)
    out = layers.attention(q, k, v, query_chunk)
    return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


@contextmanager
def code_as_of(when: str, parts: tuple[str, ...] = ("rope", "attention")):
    """Run the model as its code is ("now") or was until 2026-12-01 ("before"): the RoPE rotation, the
    attention's q, k, v layout, or both (`parts`)."""
    rotate, forward = layers.RoPE2D.rotate, layers.Attention.forward
    if when == "before" and "rope" in parts:
        layers.RoPE2D.rotate = staticmethod(rotate_before)
    if when == "before" and "attention" in parts:
        layers.Attention.forward = attention_forward_before
    try:
        yield
    finally:
        layers.RoPE2D.rotate, layers.Attention.forward = staticmethod(rotate), forward


@contextmanager
def timed_attention(min_queries: int):
    """Record CUDA events around every attention call with at least `min_queries` queries (the fusion's)."""
    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    original = layers.attention

    def wrapper(q, k, v, query_chunk=None):
        if q.shape[2] < min_queries:
            return original(q, k, v, query_chunk)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = original(q, k, v, query_chunk)
        end.record()
        events.append((start, end))
        return out

    layers.attention = wrapper
    try:
        yield events
    finally:
        layers.attention = original


def seconds_of(fn) -> tuple[float, object]:
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, result


def stage_split(model: Fast3R, images: list[torch.Tensor], options: RunOptions) -> dict:
    """Encoder, fusion (its attention apart) and heads of one pass, each synchronised."""
    sizes = [tuple(image.shape[-2:]) for image in images]
    ids = model.image_ids(len(images), None).to(images[0].device)
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        encoder_s, tokens = seconds_of(lambda: model.encode(images, options))
        tokens_per_view = [t.shape[1] for t in tokens]
        fused = torch.cat(tokens, dim=1)
        tokens.clear()
        with timed_attention(min_queries=2 * tokens_per_view[0]) as events:
            fusion_s, hooks = seconds_of(lambda: model.decoder(fused, tokens_per_view, ids,
                                                               options.attention_query_chunk, options.mlp_token_chunk))
        del fused
        attention_s = sum(start.elapsed_time(end) for start, end in events) / 1000
        heads_s, outputs = seconds_of(lambda: model._decode_heads(sizes, hooks, tokens_per_view, options))
    del hooks
    return {"encoder_s": encoder_s, "fusion_s": fusion_s, "fusion_attention_s": attention_s,
            "fusion_rest_s": fusion_s - attention_s, "heads_s": heads_s,
            "total_s": encoder_s + fusion_s + heads_s, "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "outputs": outputs}


def largest_relative_difference(first: list[dict], second: list[dict]) -> dict:
    return {key: max(float((a[key] - b[key]).abs().max() / b[key].abs().max()) for a, b in zip(first, second))
            for key in first[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=1000)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--encoder-chunks", type=int, nargs="*", default=[64, 128, 256])
    parser.add_argument("--head-chunks", type=int, nargs="*", default=[16, 32, 64])
    parser.add_argument("--profile-views", type=int, default=0)
    parser.add_argument("--compare", action="store_true", help="the whole pass as of 2026-11-30 against now")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    dtype = torch.bfloat16
    config = Fast3RConfig.vitl512()
    model = random_model(config, "cuda", dtype)
    generator = torch.Generator(device="cuda").manual_seed(args.views)
    images = [torch.rand(1, 3, args.height, args.width, device="cuda", generator=generator, dtype=dtype) * 2 - 1
              for _ in range(args.views)]
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "views": args.views,
            "size": [args.height, args.width], "dtype": "bf16"}
    rows: list[dict] = []

    def emit(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)

    with torch.no_grad():
        model(images[:8])  # warm-up: kernel choice, allocator
        if args.profile_views:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                model(images[: args.profile_views])
                torch.cuda.synchronize()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))

        # 2. encoder: chunk sizes and the RoPE rotation
        encoder_times = {}
        for kind in ("before", "now"):
            for chunk in args.encoder_chunks:
                with code_as_of(kind, ("rope",)):
                    model.encode(images[:chunk], RunOptions(encoder_chunk_views=chunk))  # warm-up
                    seconds, tokens = seconds_of(lambda: model.encode(images, RunOptions(encoder_chunk_views=chunk)))
                encoder_times[(kind, chunk)] = seconds
                if kind == "before" and chunk == args.encoder_chunks[0]:
                    reference = torch.cat(tokens, dim=1)
                worst = float((torch.cat(tokens, dim=1).float() - reference.float()).abs().max())
                emit({"stage": "encoder", "rope": kind, "chunk_views": chunk, "seconds": seconds,
                      "max_abs_diff_vs_first": worst})
                del tokens
        del reference

        # 2. heads: chunk sizes over random hooks of all views
        patch = config.encoder.patch_size
        per_view = (args.height // patch) * (args.width // patch)
        dims = (config.encoder.embed_dim,) + (config.decoder.embed_dim,) * 3
        hooks = [torch.randn(1, args.views * per_view, d, device="cuda", generator=generator, dtype=dtype) for d in dims]
        head_times = {}
        for chunk in args.head_chunks:
            sizes, counts = [(args.height, args.width)] * args.views, [per_view] * args.views
            model._decode_heads(sizes[:chunk], [h[:, : per_view * chunk] for h in hooks], counts[:chunk],
                                RunOptions(head_chunk_views=chunk))  # warm-up
            torch.cuda.reset_peak_memory_stats()
            seconds, out = seconds_of(lambda: model._decode_heads(sizes, hooks, counts, RunOptions(head_chunk_views=chunk)))
            head_times[chunk] = seconds
            emit({"stage": "heads", "chunk_views": chunk, "seconds": seconds,
                  "peak_gib": torch.cuda.max_memory_allocated() / 2**30})
            del out
        del hooks

        # 3. one fusion layer's attention: strided q, k, v (as the model makes them) against contiguous
        block = model.decoder.dec_blocks[0]
        tokens = torch.randn(1, args.views * per_view, config.decoder.embed_dim, device="cuda", generator=generator,
                             dtype=dtype)
        heads = config.decoder.num_heads
        qkv = block.attn.qkv(block.norm1(tokens)).reshape(1, tokens.shape[1], 3, heads, -1)
        del tokens
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        chunk = RunOptions().attention_query_chunk
        for layout, (qq, kk, vv) in (("strided", (q, k, v)), ("contiguous", (q.contiguous(), k.contiguous(), v.contiguous()))):
            layers.attention(qq[:, :, :chunk], kk, vv)  # warm-up
            times = [seconds_of(lambda: layers.attention(qq, kk, vv, chunk))[0] for _ in range(2)]
            emit({"stage": "fusion attention, one layer", "layout": layout, "seconds_all": times,
                  "tflops": 4.0 * q.shape[2] ** 2 * config.decoder.embed_dim / min(times) / 1e12})
        del q, k, v, qkv

        # 1 and 5: the whole pass split into stages
        best_encoder = min((c for kind, c in encoder_times if kind == "now"), key=lambda c: encoder_times[("now", c)])
        best_heads = min(head_times, key=head_times.get)
        now = RunOptions(encoder_chunk_views=best_encoder, head_chunk_views=best_heads)
        passes = [("now", now)]
        if args.compare:
            passes.insert(0, ("before", RunOptions(encoder_chunk_views=64, head_chunk_views=16)))
        outputs = {}
        for name, options in passes:
            with code_as_of(name):
                split = stage_split(model, images, options)
            # kept on the host, so the next pass's peak memory is its own
            outputs[name] = [{key: value.cpu() for key, value in view.items()} for view in split.pop("outputs")]
            emit({"stage": "whole pass", "as": name, "encoder_chunk_views": options.encoder_chunk_views,
                  "head_chunk_views": options.head_chunk_views, **split})
            torch.cuda.empty_cache()
        if len(outputs) == 2:
            emit({"stage": "whole pass", "max_relative_difference_before_now":
                  largest_relative_difference(outputs["before"], outputs["now"])})
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"meta": meta, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
