"""benchmarks/bench_stages.py and bench_attention.py: their "before" arms and layouts are what they say."""
import sys
from pathlib import Path

import torch

from fast3r.model import Fast3R, Fast3RConfig, RunOptions, layers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_attention import in_layout  # noqa: E402  (scripts beside bench_model.py, not a package)
from bench_stages import code_as_of  # noqa: E402


def test_before_arm_runs_the_old_code_then_restores_it_with_the_same_outputs():
    torch.manual_seed(0)
    model = Fast3R(Fast3RConfig.tiny()).eval()
    views = [torch.rand(1, 3, 32, 48) * 2 - 1 for _ in range(3)]
    options = RunOptions(attention_query_chunk=8)  # the fusion's 18 tokens take the contiguous path now
    calls = []
    original = layers.attention
    layers.attention = lambda q, k, v, chunk=None: calls.append(q.is_contiguous()) or original(q, k, v, chunk)
    try:
        with torch.no_grad():
            now = model(views, options=options)
            fusion_now = calls[-len(model.decoder.dec_blocks):]
            with code_as_of("before"):
                before = model(views, options=options)
            fusion_before = calls[-len(model.decoder.dec_blocks):]
            again = model(views, options=options)
    finally:
        layers.attention = original
    assert all(fusion_now) and not any(fusion_before), "now: contiguous q; before: views of the qkv projection"
    assert calls[-len(model.decoder.dec_blocks):] == fusion_now, "the context manager restores today's code"
    for a, b, c in zip(now, before, again):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)
            assert torch.equal(a[key], c[key])


def test_attention_layouts_hold_the_same_values_in_the_named_memory_order():
    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 4, 10, 8), torch.randn(1, 4, 10, 8)
    for layout in ("bhld", "blhd", "qkv"):
        q_in, k_in, v_in = in_layout(layout, q, k, v)
        assert torch.equal(q_in, q) and torch.equal(k_in, k) and torch.equal(v_in, v)
    assert in_layout("blhd", q, k, v)[1].stride() == (320, 8, 32, 1)  # token-major: heads inside each token
    q_in, k_in, v_in = in_layout("qkv", q, k, v)
    assert q_in.untyped_storage().data_ptr() == k_in.untyped_storage().data_ptr() == v_in.untyped_storage().data_ptr()
    assert k_in.stride() == (960, 8, 96, 1)  # one (1, L, 3, heads, 8) projection
