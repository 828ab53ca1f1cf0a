import json
import math
from pathlib import Path

import pytest
import torch

from fast3r.model import ConfigError, Fast3R, Fast3RConfig

def read_key_table(path: Path) -> dict[str, tuple[tuple[int, ...], bool]]:
    rows = {}
    for line in path.read_text().splitlines()[1:]:
        key, shape, _dtype, stored = line.split("\t")
        dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
        rows[key] = (dims, stored == "yes")
    return rows


def test_vitl512_preset_has_exactly_the_published_keys_and_shapes(reference):
    table = read_key_table(reference / "fast3r_vitl512_state_dict.tsv")
    with torch.device("meta"):
        model = Fast3R(Fast3RConfig.vitl512())
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(state) == 720
    assert state == {k: shape for k, (shape, _) in table.items()}
    assert sum(p.numel() for p in model.parameters()) == 647_551_368


def test_vitl512_preset_writes_the_published_config(reference):
    published = json.loads((reference / "fast3r_vitl512_config.json").read_text())
    assert Fast3RConfig.vitl512().to_published() == published
    assert Fast3RConfig.from_published(published) == Fast3RConfig.vitl512()


def test_published_config_keeps_infinities_through_json(tmp_path):
    text = json.dumps(Fast3RConfig.vitl512().to_published())
    assert "Infinity" in text
    assert json.loads(text)["head_args"]["depth_mode"] == ["exp", -math.inf, math.inf]


@pytest.mark.parametrize("preset", [Fast3RConfig.tiny, Fast3RConfig.small])
def test_presets_round_trip_through_the_published_layout(preset):
    config = preset()
    assert Fast3RConfig.from_published(json.loads(json.dumps(config.to_published()))) == config


def test_hooks_follow_decoder_depth():
    assert Fast3RConfig.vitl512().hooks == (0, 12, 18, 24)
    assert Fast3RConfig.tiny().hooks == (0, 2, 3, 4)


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("head_args", "head_type", "linear"),
        ("decoder_args", "attn_bias_for_inference_enabled", True),
        ("head_args", "conf_mode", ["exp", 0, math.inf]),
        ("encoder_args", "pos_embed", "cosine"),
    ],
)
def test_unsupported_settings_are_refused_by_name(section, key, value):
    config = Fast3RConfig.vitl512().to_published()
    config[section][key] = value
    with pytest.raises(ConfigError, match=key):
        Fast3RConfig.from_published(config)


def test_missing_sections_are_refused():
    with pytest.raises(ConfigError, match="encoder_args"):
        Fast3RConfig.from_published({"decoder_args": {}})
