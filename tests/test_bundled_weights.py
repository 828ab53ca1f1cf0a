"""The small model that ships inside the package."""
import torch

from fast3r.model import Fast3R, Fast3RConfig
from fast3r.pipeline import BUNDLED_WEIGHTS


def test_bundled_weights_fit_the_size_limits_and_load():
    files = sorted(BUNDLED_WEIGHTS.glob("*.safetensors"))
    assert files and all(f.stat().st_size <= 16_000_000 for f in files)
    assert sum(f.stat().st_size for f in BUNDLED_WEIGHTS.iterdir()) <= 40_000_000
    model = Fast3R.from_pretrained(str(BUNDLED_WEIGHTS))
    assert model.config == Fast3RConfig.small()
    assert sum(p.numel() for p in model.parameters()) <= 25_000_000


def test_bundled_model_predicts_sensible_geometry():
    """A trained model: local points lie in front of the camera, confidence varies over the image."""
    model = Fast3R.from_pretrained(str(BUNDLED_WEIGHTS))
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 28, 28, generator=generator)
    views = [torch.nn.functional.interpolate(base.roll(i * 3, dims=3), size=(224, 224), mode="bilinear") * 2 - 1 for i in range(2)]
    with torch.no_grad():
        out = model(views)
    assert (out[0]["pts3d_local"][..., 2] > 0).float().mean() > 0.99
    assert out[0]["conf"].std() > 0
