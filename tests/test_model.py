"""The network on CPU with tiny configurations of the same code."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fast3r.model import Fast3R, Fast3RConfig, RunOptions
from fast3r.model.fusion import image_index_embedding

KEYS = ("pts3d_in_other_view", "conf", "pts3d_local", "conf_local")


@pytest.fixture(scope="module")
def model() -> Fast3R:
    torch.manual_seed(0)
    return Fast3R(Fast3RConfig.tiny()).eval()


def images(*sizes, batch=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, 3, h, w, generator=generator) * 2 - 1 for h, w in sizes]


# ----- an independent, naive restatement of the published computation -----
def naive_rope(x, positions, base=100.0):
    """x (B, heads, P, D): first half rotates with rows, second with columns, per-half rotate_half."""
    half = x.shape[-1] // 2
    out = []
    for axis, part in enumerate((x[..., :half], x[..., half:])):
        inv_freq = 1.0 / (base ** (torch.arange(0, half, 2).float() / half))
        freqs = positions[:, axis].float()[:, None] * inv_freq[None]
        emb = torch.cat([freqs, freqs], -1)
        rotated = torch.cat([-part[..., half // 2 :], part[..., : half // 2]], -1)
        out.append(part * emb.cos() + rotated * emb.sin())
    return torch.cat(out, -1)


def naive_block(block, x, positions=None, eps=1e-6):
    B, L, D = x.shape
    heads = block.attn.num_heads
    h = F.layer_norm(x, (D,), block.norm1.weight, block.norm1.bias, eps)
    qkv = (h @ block.attn.qkv.weight.T + block.attn.qkv.bias).reshape(B, L, 3, heads, D // heads)
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    if positions is not None:
        q, k = naive_rope(q, positions), naive_rope(k, positions)
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // heads), -1)
    o = (attn @ v).transpose(1, 2).reshape(B, L, D)
    x = x + o @ block.attn.proj.weight.T + block.attn.proj.bias
    h = F.layer_norm(x, (D,), block.norm2.weight, block.norm2.bias, eps)
    h = F.gelu(h @ block.mlp.fc1.weight.T + block.mlp.fc1.bias, approximate="none")
    return x + h @ block.mlp.fc2.weight.T + block.mlp.fc2.bias


def naive_dpt(dpt, hooks, height, width):
    """The release's DPT: token maps as contiguous NCHW copies (transpose + reshape), then the same layers."""
    grid_h, grid_w = height // dpt.patch_size, width // dpt.patch_size
    maps = [t.transpose(1, 2).reshape(t.shape[0], t.shape[2], grid_h, grid_w) for t in hooks]
    l1, l2, l3, l4 = (dpt.scratch.layer_rn[i](dpt.act_postprocess[i](m)) for i, m in enumerate(maps))
    path = dpt.scratch.refinenet4(l4)[:, :, : l3.shape[2], : l3.shape[3]]
    path = dpt.scratch.refinenet3(path, l3)
    path = dpt.scratch.refinenet2(path, l2)
    path = dpt.scratch.refinenet1(path, l1)
    return dpt.head(path)


def naive_forward(model, views, ids):
    enc, dec, cfg = model.encoder, model.decoder, model.config
    tokens = []
    for img in views:
        _, _, H, W = img.shape
        t = F.conv2d(img, enc.patch_embed.proj.weight, enc.patch_embed.proj.bias, stride=16).flatten(2).transpose(1, 2)
        pos = torch.tensor([(r, c) for r in range(H // 16) for c in range(W // 16)])
        for blk in enc.enc_blocks:
            t = naive_block(blk, t, pos, eps=1e-6)
        tokens.append(F.layer_norm(t, (t.shape[-1],), enc.enc_norm.weight, enc.enc_norm.bias, 1e-6))
    x0 = torch.cat(tokens, 1)
    x = x0 @ dec.decoder_embed.weight.T + dec.decoder_embed.bias
    D = x.shape[-1]
    w = 1.0 / 10000 ** (np.arange(D // 2) / (D // 2))
    table = np.concatenate([np.sin(np.outer(ids, w)), np.cos(np.outer(ids, w))], 1)
    x = x + torch.cat([torch.tensor(table[i], dtype=torch.float32).expand(t.shape[1], D) for i, t in enumerate(tokens)])[None]
    outs = [x0]
    for blk in dec.dec_blocks:
        x = naive_block(blk, x, None, eps=1e-5)
        outs.append(x)
    outs[-1] = F.layer_norm(x, (D,), dec.dec_norm.weight, dec.dec_norm.bias, 1e-6)
    hooks = [outs[h] for h in cfg.hooks]
    results, start = [], 0
    for img, t in zip(views, tokens):
        sl = slice(start, start + t.shape[1])
        start += t.shape[1]
        result = {}
        for name, head in (("", model.downstream_head), ("_local", model.downstream_head_local)):
            raw = naive_dpt(head.dpt, [h[:, sl] for h in hooks], *img.shape[-2:]).permute(0, 2, 3, 1)
            d = raw[..., :3].norm(dim=-1, keepdim=True)
            result["pts3d_in_other_view" if not name else "pts3d_local"] = raw[..., :3] / d.clamp(min=1e-8) * torch.expm1(d)
            result["conf" + name] = 1 + raw[..., 3].exp()
        results.append(result)
    return results


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_forward_matches_a_naive_restatement_of_the_release(model):
    views = images((32, 48), (48, 32), (32, 48))
    ids = [0.0, 517.0, 3.5]
    with torch.no_grad():
        ours = model(views, image_ids=ids)
        naive = naive_forward(model, views, np.array(ids))
    for mine, theirs in zip(ours, naive):
        for key in KEYS:
            assert relative_error(mine[key], theirs[key]) < 1e-5, key


def test_output_shapes_with_batch_and_mixed_orientations(model):
    views = images((64, 48), (48, 64), (32, 32), batch=2)
    with torch.no_grad():
        out = model(views)
    for view, result in zip(views, out):
        _, _, H, W = view.shape
        assert result["pts3d_in_other_view"].shape == (2, H, W, 3)
        assert result["pts3d_local"].shape == (2, H, W, 3)
        assert result["conf"].shape == (2, H, W)
        assert (result["conf"] > 1).all() and (result["conf_local"] > 1).all()
        assert all(v.dtype == torch.float32 for v in result.values())


def test_three_dimensional_views_get_a_batch_of_one(model):
    view = images((32, 32))[0]
    with torch.no_grad():
        out = model([view[0], view[0]])
    assert out[0]["conf"].shape == (1, 32, 32)


def test_chunked_and_unchunked_runs_agree(model):
    views = images((32, 48), (32, 48), (48, 32), (32, 48), (32, 48))
    with torch.no_grad():
        whole = model(views, options=RunOptions(encoder_chunk_views=100, head_chunk_views=100, mlp_token_chunk=None))
        chunked = model(
            views,
            options=RunOptions(
                encoder_chunk_views=1, head_chunk_views=2, mlp_token_chunk=7, attention_query_chunk=5, output_device="cpu"
            ),
        )
    for a, b in zip(whole, chunked):
        for key in KEYS:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5)


def test_view_result_does_not_depend_on_position_in_the_batch(model):
    """A view's output must not leak between batch items (a chunking bug would mix them)."""
    a, b = images((32, 32), (32, 32), seed=1), images((32, 32), (32, 32), seed=2)
    with torch.no_grad():
        joint = model([torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])])
        alone = model(b)
    torch.testing.assert_close(joint[1]["pts3d_local"][1:], alone[1]["pts3d_local"], rtol=1e-5, atol=1e-5)


def test_explicit_image_ids_are_honoured(model):
    views = images((32, 32), (32, 32), (32, 32))
    with torch.no_grad():
        base = model(views, image_ids=[0, 10, 20])
        same = model(views, image_ids=torch.tensor([0, 10, 20]))
        other = model(views, image_ids=[0, 20, 10])
    torch.testing.assert_close(base[1]["conf"], same[1]["conf"])
    assert not torch.allclose(base[1]["conf"], other[1]["conf"])
    # swapping the indices of views 1 and 2 is not the same as swapping the views themselves
    assert not torch.allclose(base[1]["pts3d_in_other_view"], other[1]["pts3d_in_other_view"])


def test_default_image_ids_are_deterministic_and_spread(model):
    ids = model.image_ids(5, None)
    assert ids.tolist() == [0.0, 249.75, 499.5, 749.25, 999.0]
    assert model.image_ids(1500, None).shape == (1500,)
    views = images((32, 32), (32, 32))
    with torch.no_grad():
        torch.testing.assert_close(model(views)[1]["conf"], model(views)[1]["conf"])


def test_random_image_ids_follow_the_release_and_a_seed(model):
    ids = model.image_ids(20, "random", torch.Generator().manual_seed(3))
    again = model.image_ids(20, "random", torch.Generator().manual_seed(3))
    assert ids[0] == 0 and len(set(ids.tolist())) == 20
    assert ((ids[1:] >= 1) & (ids[1:] <= 999)).all()
    assert torch.equal(ids, again)
    with pytest.raises(ValueError, match="at most 1000"):
        model.image_ids(1001, "random")


def test_more_than_a_thousand_views_run(model):
    views = [torch.zeros(1, 3, 16, 16)] * 1001
    with torch.no_grad():
        out = model(views, options=RunOptions(output_device="cpu"))
    assert len(out) == 1001 and out[-1]["conf"].shape == (1, 16, 16)


def test_image_index_embedding_matches_the_table_formula():
    ids = torch.tensor([0.0, 1.0, 999.0, 12.25])
    emb = image_index_embedding(ids, 8)
    w = 1 / 10000 ** (np.arange(4) / 4)
    expected = np.concatenate([np.sin(np.outer(ids.numpy(), w)), np.cos(np.outer(ids.numpy(), w))], 1)
    np.testing.assert_allclose(emb.numpy(), expected, rtol=1e-6, atol=1e-7)


def test_bf16_stays_close_to_fp32(model):
    views = images((32, 48), (32, 48), (48, 32))
    low = Fast3R(model.config)
    low.load_state_dict(model.state_dict())
    low = low.to(torch.bfloat16).eval()
    with torch.no_grad():
        ref = model(views)
        out = low(views)
    for a, b in zip(out, ref):
        assert a["pts3d_in_other_view"].dtype == torch.float32
        assert relative_error(a["pts3d_in_other_view"], b["pts3d_in_other_view"]) < 0.05
        assert relative_error(a["conf"], b["conf"]) < 0.05


def test_fp16_runs(model):
    half = Fast3R(model.config)
    half.load_state_dict(model.state_dict())
    half = half.half().eval()
    with torch.no_grad():
        out = half(images((32, 32), (32, 32)))
    assert torch.isfinite(out[0]["pts3d_in_other_view"]).all()


def test_gradients_reach_every_parameter():
    model = Fast3R(Fast3RConfig.tiny())
    out = model(images((32, 32), (32, 48)))
    sum(o["pts3d_in_other_view"].mean() + o["conf"].mean() + o["pts3d_local"].mean() + o["conf_local"].mean() for o in out).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    # refinenet4 has no skip input, so its first residual unit is stored but unused, as in the release
    assert missing and all("refinenet4.resConfUnit1" in n for n in missing)
    assert len(missing) == 8


@pytest.mark.parametrize(
    "views, message",
    [
        ([], "empty"),
        ([torch.zeros(1, 4, 32, 32)], "expected \\(3, H, W\\)"),
        ([torch.zeros(3, 30, 32)], "multiples of 16"),
        ([torch.zeros(2, 3, 32, 32), torch.zeros(1, 3, 32, 32)], "batch size"),
        ([np.zeros((3, 32, 32))], "not a torch.Tensor"),
    ],
)
def test_bad_input_gets_a_clear_error(model, views, message):
    with pytest.raises((ValueError, TypeError), match=message):
        model(views)


def test_wrong_number_of_image_ids(model):
    with pytest.raises(ValueError, match="2 entries for 3 views"):
        model(images((32, 32), (32, 32), (32, 32)), image_ids=[0, 1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_rope_rotation_is_the_fp32_rotation_rounded_once(dtype):
    """RoPE2D.rotate computes in fp32 without an fp32 copy of x: bit-identical to rotating the copy."""
    from fast3r.model.layers import RoPE2D

    generator = torch.Generator().manual_seed(3)
    x = (torch.randn(2, 4, 30, 16, generator=generator) * 5).to(dtype)
    positions = torch.randint(0, 40, (30, 2), generator=generator)
    cos, sin = RoPE2D().cos_sin(positions, 16)
    x32 = x.float()
    y1, y2, x1, x2 = x32.chunk(4, dim=-1)
    expected = (x32 * cos + torch.cat([-y2, y1, -x2, x1], dim=-1) * sin).to(dtype)
    rotated = RoPE2D.rotate(x, cos, sin)
    assert rotated.dtype == dtype
    assert torch.equal(rotated, expected)



@pytest.mark.parametrize("size", [(1, 1), (7, 5), (14, 10)])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_upsampling_by_matrix_products_is_bilinear_with_aligned_corners(size, layout):
    """The GPU's bf16 path of the DPT upsampling (two matrix products) against `F.interpolate`: values and
    gradients in fp32, and within bf16's rounding in bf16; the output stays channels-last."""
    from fast3r.model.dpt import _upsample2x_by_products

    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, *size, generator=generator).to(memory_format=layout).requires_grad_()
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    upsampled = _upsample2x_by_products(x)
    assert upsampled.shape == expected.shape == (2, 6, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(upsampled, expected, rtol=1e-5, atol=1e-5)
    grad_out = torch.randn(expected.shape, generator=generator)
    (grad_expected,) = torch.autograd.grad(expected, x, grad_out)
    (grad,) = torch.autograd.grad(upsampled, x, grad_out)
    torch.testing.assert_close(grad, grad_expected, rtol=1e-5, atol=1e-5)
    low = _upsample2x_by_products(x.detach().bfloat16())
    # bf16 keeps 8 significant bits: weights, the width pass and the output are each rounded once.
    assert (low.float() - expected).abs().max() <= 3 * 2**-8 * x.abs().max()
    if layout == torch.channels_last:
        assert upsampled.is_contiguous(memory_format=torch.channels_last)


def test_upsampling_off_the_gpu_is_torchs_own():
    from fast3r.model.dpt import upsample2x

    x = torch.randn(2, 4, 6, 9).bfloat16()
    assert torch.equal(upsample2x(x), F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))
