import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from fast3r.model import Fast3R, Fast3RConfig, WeightsError
from fast3r.model.pretrained import alias_keys, convert_torch_checkpoint, load_pretrained, resolve_source


@pytest.fixture(scope="module")
def tiny() -> Fast3R:
    torch.manual_seed(1)
    return Fast3R(Fast3RConfig.tiny()).eval()


def test_vitl512_alias_bookkeeping():
    with torch.device("meta"):
        model = Fast3R(Fast3RConfig.vitl512())
    assert len(alias_keys(model)) == 8
    stored = [k for k in model.state_dict() if k not in alias_keys(model)]
    assert len(stored) == 712
    assert "downstream_head.dpt.scratch.layer_rn.0.weight" in alias_keys(model)


def test_round_trip_is_identical_and_aliases_are_tied(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    file_keys = load_file(str(tmp_path / "model.safetensors")).keys()
    assert len(file_keys) == len(tiny.state_dict()) - 8
    assert not any(".layer_rn." in k for k in file_keys)
    loaded = Fast3R.from_pretrained(str(tmp_path))
    for key, value in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    scratch = loaded.downstream_head.dpt.scratch
    assert scratch.layer_rn[2].weight is scratch.layer3_rn.weight
    views = [torch.rand(3, 32, 32) * 2 - 1, torch.rand(3, 32, 32) * 2 - 1]
    with torch.no_grad():
        torch.testing.assert_close(loaded(views)[1]["pts3d_in_other_view"], tiny(views)[1]["pts3d_in_other_view"])
    assert json.loads((tmp_path / "config.json").read_text()) == tiny.config.to_published()


def test_sharded_fp16_weights_load(tiny, tmp_path):
    tiny.save_pretrained(tmp_path, dtype=torch.float16, max_shard_bytes=200_000)
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and not (tmp_path / "model.safetensors").exists()
    assert all(p.stat().st_size < 400_000 for p in shards)
    loaded = load_pretrained(tmp_path)
    weight = tiny.decoder.dec_blocks[0].attn.qkv.weight
    torch.testing.assert_close(loaded.decoder.dec_blocks[0].attn.qkv.weight, weight.half().float())


def test_full_state_dict_with_alias_keys_also_loads(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    save_file({k: v.contiguous().clone() for k, v in tiny.state_dict().items()}, str(tmp_path / "model.safetensors"))
    load_pretrained(tmp_path)


def corrupt(tiny, tmp_path, edit):
    tiny.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(tmp_path / "model.safetensors"))


def test_missing_unexpected_and_misshaped_keys_are_listed_together(tiny, tmp_path):
    def edit(tensors):
        del tensors["encoder.enc_norm.weight"]
        tensors["decoder.extra.weight"] = torch.zeros(2)
        tensors["decoder.dec_norm.bias"] = torch.zeros(5)

    corrupt(tiny, tmp_path, edit)
    with pytest.raises(WeightsError) as info:
        load_pretrained(tmp_path)
    text = str(info.value)
    assert "missing keys: encoder.enc_norm.weight" in text
    assert "unexpected keys: decoder.extra.weight" in text
    assert "decoder.dec_norm.bias: file (5,), model (96,)" in text


def test_nan_in_weights_is_refused_by_key(tiny, tmp_path):
    def edit(tensors):
        tensors["decoder.decoder_embed.bias"][3] = float("nan")

    corrupt(tiny, tmp_path, edit)
    with pytest.raises(WeightsError, match="NaN or infinite values: decoder.decoder_embed.bias"):
        load_pretrained(tmp_path)


def test_missing_files_and_bad_sources(tmp_path):
    with pytest.raises(WeightsError, match="config.json is missing"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(Fast3RConfig.tiny().to_published()))
    with pytest.raises(WeightsError, match="neither model.safetensors"):
        load_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_pretrained(tmp_path)
    with pytest.raises(WeightsError, match="neither a local directory nor"):
        resolve_source(str(tmp_path / "does" / "not" / "exist"))


def test_hub_id_offline_gives_advice(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError, match="Offline.*--weights DIR.*--weights small"):
        resolve_source("jedyang97/Fast3R_ViT_Large_512")


def test_hub_id_resolves_through_the_hub_cache_layout(tiny, tmp_path, monkeypatch):
    """A hub id is looked up in the huggingface_hub cache; fill one offline and load from it."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-fast3r" / "snapshots" / ("a" * 40)
    tiny.save_pretrained(snapshot)
    (cache / "models--someone--tiny-fast3r" / "refs").mkdir(parents=True)
    (cache / "models--someone--tiny-fast3r" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    loaded = Fast3R.from_pretrained("someone/tiny-fast3r")
    assert torch.equal(loaded.encoder.enc_norm.weight, tiny.encoder.enc_norm.weight)


def test_convert_reference_torch_checkpoint(tiny, tmp_path):
    state = {"state_dict": {"model." + k: v.clone() for k, v in tiny.state_dict().items()}}
    torch.save(state, tmp_path / "last.ckpt")
    convert_torch_checkpoint(tmp_path / "last.ckpt", tiny.config, tmp_path / "converted")
    loaded = load_pretrained(tmp_path / "converted")
    assert torch.equal(loaded.encoder.patch_embed.proj.weight, tiny.encoder.patch_embed.proj.weight)


def test_published_size_round_trip_writes_712_tensors(tmp_path):
    """The ViT-L/512 preset itself (fp16, 1.3 GB) saved and loaded back, aliases tied."""
    from safetensors import safe_open

    with torch.device("meta"):
        model = Fast3R(Fast3RConfig.vitl512())
    model = model.to_empty(device="cpu").half()
    with torch.no_grad():
        for index, param in enumerate(model.parameters()):
            param.fill_((index % 7) / 100)
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert len(keys) == 712 and not any(".layer_rn." in k for k in keys)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o044  # readable by others, as usual
    loaded = load_pretrained(tmp_path, dtype=torch.float16)
    scratch = loaded.downstream_head_local.dpt.scratch
    assert scratch.layer_rn[3].weight is scratch.layer4_rn.weight
    assert torch.equal(scratch.layer4_rn.weight, model.downstream_head_local.dpt.scratch.layer4_rn.weight)
    assert torch.equal(loaded.decoder.dec_blocks[23].mlp.fc2.bias, model.decoder.dec_blocks[23].mlp.fc2.bias)
