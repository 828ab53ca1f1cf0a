"""benchmarks/bench_heads.py: its "nchw" arm really feeds the heads NCHW maps, with the same outputs."""
import sys
from pathlib import Path

import torch

from fast3r.model import Fast3R, Fast3RConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_heads import nchw_heads  # noqa: E402  (a script beside bench_model.py, not a package)


def first_map_layouts(model: Fast3R, views: list[torch.Tensor]) -> tuple[list[bool], list[dict]]:
    """Whether each call's first head convolution got a channels-last map, and the outputs."""
    layouts = []
    first_conv = model.downstream_head.dpt.act_postprocess[0][0]
    handle = first_conv.register_forward_pre_hook(
        lambda module, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        out = model(views)
    handle.remove()
    return layouts, out


def test_nchw_arm_changes_the_layout_and_not_the_result():
    torch.manual_seed(0)
    model = Fast3R(Fast3RConfig.tiny()).eval()
    views = [torch.rand(1, 3, 32, 48) * 2 - 1 for _ in range(3)]
    layouts, channels_last = first_map_layouts(model, views)
    assert layouts and all(layouts), "the model reads the tokens as channels-last maps"
    handles = nchw_heads(model)
    layouts, nchw = first_map_layouts(model, views)
    assert layouts and not any(layouts), "the benchmark's nchw arm gives contiguous NCHW maps"
    for handle in handles:
        handle.remove()
    for a, b in zip(channels_last, nchw):
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
