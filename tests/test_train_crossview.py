"""Cross-view completion pretraining (fast3r.train.crossview) and starting training from its encoder."""
import pytest
import torch

from fast3r.model import Fast3R, Fast3RConfig
from fast3r.train.config import TrainConfigError, load_train_config
from fast3r.train.crossview import CrossViewCompletion, CrossViewSpec, completion_loss, patchify, train_crossview


def test_patchify_orders_patches_as_the_encoder_does():
    images = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    patches = patchify(images, 2)  # 2 x 3 grid of 2x2 patches
    assert patches.shape == (2, 6, 12)
    # patch (row 1, col 2) of image 1, channel 0, pixel (0, 1) -> image[1, 0, 2, 5]
    assert patches[1, 1 * 3 + 2, (0 * 2 + 1) * 3 + 0] == images[1, 0, 2, 5]


def test_the_loss_counts_only_hidden_patches():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 8, 8)
    target = patchify(images, 4)
    normalised = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    hidden = torch.tensor([True, False, True, False])
    predicted = normalised.clone()
    predicted[:, ~hidden] += 5.0  # wrong only where the patches were visible
    assert completion_loss(predicted, images, hidden, 4).item() == pytest.approx(0.0, abs=1e-6)
    predicted[:, hidden] += 1.0
    assert completion_loss(predicted, images, hidden, 4).item() == pytest.approx(1.0, rel=1e-5)


def test_masking_hides_the_configured_share_and_the_encoder_sees_only_the_rest():
    model = CrossViewCompletion(Fast3R(Fast3RConfig.tiny()).encoder, CrossViewSpec(mask_ratio=0.75))
    seen = []
    model.encoder.enc_norm.register_forward_hook(lambda module, args, out: seen.append(out.shape[1]))
    views = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    predicted, hidden = model(*views, torch.Generator().manual_seed(0))
    patches = (64 // 16) ** 2
    assert predicted.shape == (2, patches, 16 * 16 * 3)
    assert int(hidden.sum()) == patches * 3 // 4
    assert seen == [patches // 4, patches]  # view A: visible patches only; view B: all


def test_the_completion_learns_a_pair_it_sees_again():
    """A real gradient path: on one fixed pair the loss falls quickly (encoder, decoder and head train)."""
    torch.manual_seed(0)
    model = CrossViewCompletion(Fast3R(Fast3RConfig.tiny()).encoder, CrossViewSpec(mask_ratio=0.5, decoder_depth=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    views = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    losses = []
    for _ in range(40):
        predicted, hidden = model(*views, torch.Generator().manual_seed(1))  # the same mask each time
        loss = completion_loss(predicted, views[0], hidden, 16)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_pretrained_encoder_starts_training_and_a_mismatch_is_named(tmp_path):
    config = load_train_config("configs/tiny_cpu.toml", [f'out_dir="{tmp_path / "crossview"}"', "steps=3", "log_every=1"])
    result = train_crossview(config)
    assert result.steps_done == 3 and (tmp_path / "crossview" / "train_log.csv").read_text().count("\n") == 4
    saved = tmp_path / "crossview" / "encoder.safetensors"
    started = load_train_config("configs/tiny_cpu.toml", [f'model.init_encoder="{tmp_path / "crossview"}"']).model.build()
    from safetensors.torch import load_file

    for key, value in load_file(str(saved)).items():
        assert torch.equal(started.state_dict()[key], value), key
    fresh = load_train_config("configs/tiny_cpu.toml").model.build()
    assert not torch.equal(fresh.encoder.patch_embed.proj.weight, started.encoder.patch_embed.proj.weight)
    with pytest.raises(TrainConfigError, match="does not fit this model's encoder"):
        load_train_config("configs/tiny_cpu.toml", [f'model.init_encoder="{saved}"', 'model.preset="small"']).model.build()


def test_the_shipped_crossview_config_is_valid():
    config = load_train_config("configs/small_crossview_224.toml")
    config.validate()
    config.crossview.validate()
    assert config.model.preset == "small" and config.data.num_views == [2]
