"""Cross-view completion: pretraining the encoder before Fast3R training, as CroCo did for DUSt3R.

    pair of views of one scene -> mask 90% of view A's patches -> encoder(visible A), encoder(all of B)
        -> decoder: A's tokens (mask tokens where hidden) attend to themselves and across to B's
        -> pixels of every hidden patch of A (MSE against per-patch normalised targets)

Filling in A's hidden patches needs B's pixels from the same places in the scene: correspondence
across views, which relative pose rests on. Only the encoder is kept; a training config starts from
it with `model.init_encoder = "DIR/encoder.safetensors"`.

    fast3r train-crossview configs/small_crossview_224.toml --out runs/crossview
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fast3r.io.atomic import write_text_atomic
from fast3r.model.encoder import ViTEncoder, patch_positions
from fast3r.model.layers import Attention, Mlp, RoPE2D, attention

from .data import training_batches
from .distributed import choose_device
from .logs import TrainLog
from .optim import build_optimizer, build_scheduler, optimiser_step

ENCODER_FILE = "encoder.safetensors"


@dataclass
class CrossViewSpec:
    """`fast3r train-crossview` settings: the share of view A's patches hidden, and the decoder's depth
    (its width and heads are the encoder's). The run's steps, data, optimiser and model are the config's."""

    mask_ratio: float = 0.9
    decoder_depth: int = 4

    def validate(self) -> None:
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"crossview.mask_ratio must lie in (0, 1), got {self.mask_ratio}")
        if self.decoder_depth < 1:
            raise ValueError(f"crossview.decoder_depth must be >= 1, got {self.decoder_depth}")


class CrossAttention(nn.Module):
    """Queries from x, keys and values from y; both rotated by their patch positions (RoPE)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        batch, length, dim = x.shape
        head_dim = dim // self.num_heads
        q = self.q(x).view(batch, length, self.num_heads, head_dim).transpose(1, 2)  # (B, heads, L, head_dim)
        k, v = self.kv(y).view(batch, y.shape[1], 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = RoPE2D.rotate(q, *rope), RoPE2D.rotate(k, *rope)
        out = attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class CrossBlock(nn.Module):
    """x += self_attn(LN(x)); x += cross_attn(LN(x), LN(y)); x += mlp(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim, eps=1e-6)
        self.self_attn = Attention(dim, num_heads)
        self.norm_query = nn.LayerNorm(dim, eps=1e-6)
        self.norm_context = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm_mlp = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, y: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.self_attn(self.norm_self(x), rope)
        x = x + self.cross_attn(self.norm_query(x), self.norm_context(y), rope)
        return x + self.mlp(self.norm_mlp(x))


class CrossViewCompletion(nn.Module):
    """A Fast3R encoder (trained, shared by both views) with a small completion decoder."""

    def __init__(self, encoder: ViTEncoder, spec: CrossViewSpec):
        super().__init__()
        config = encoder.config
        self.encoder = encoder
        self.mask_ratio = spec.mask_ratio
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.blocks = nn.ModuleList(CrossBlock(config.embed_dim, config.num_heads) for _ in range(spec.decoder_depth))
        self.norm = nn.LayerNorm(config.embed_dim, eps=1e-6)
        self.to_pixels = nn.Linear(config.embed_dim, config.patch_size**2 * 3)

    def forward(
        self, masked_view: torch.Tensor, reference_view: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Views (B, 3, H, W) of one size -> predicted pixels of every patch of `masked_view`
        (B, P, patch^2 * 3) and which patches were hidden (P,) bool (the same for the whole batch)."""
        patch = self.encoder.config.patch_size
        grid_h, grid_w = masked_view.shape[-2] // patch, masked_view.shape[-1] // patch
        count = grid_h * grid_w
        visible = max(1, round(count * (1 - self.mask_ratio)))
        keep = torch.randperm(count, generator=generator, device="cpu")[:visible].sort().values.to(masked_view.device)
        hidden = torch.ones(count, dtype=torch.bool, device=masked_view.device)
        hidden[keep] = False

        seen = self.encoder(masked_view, keep)  # (B, visible, D)
        context = self.encoder(reference_view)  # (B, P, D)
        x = self.mask_token.to(seen.dtype).expand(seen.shape[0], count, -1).clone()
        x[:, keep] = seen
        head_dim = self.encoder.config.embed_dim // self.encoder.config.num_heads
        rope = self.encoder.rope.cos_sin(patch_positions(grid_h, grid_w, x.device), head_dim)
        for block in self.blocks:
            x = block(x, context, rope)
        return self.to_pixels(self.norm(x)), hidden


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, P, patch * patch * 3), patches row-major as the encoder orders them."""
    batch, channels, height, width = images.shape
    grid = images.reshape(batch, channels, height // patch, patch, width // patch, patch)
    return grid.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // patch) * (width // patch), patch * patch * channels)


def completion_loss(predicted: torch.Tensor, images: torch.Tensor, hidden: torch.Tensor, patch: int) -> torch.Tensor:
    """Mean squared error over the hidden patches, against targets normalised per patch (as MAE and CroCo)."""
    target = patchify(images.float(), patch)
    mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
    target = (target - mean) / (var + 1e-6).sqrt()
    return ((predicted.float() - target) ** 2).mean(dim=-1)[:, hidden].mean()


@dataclass
class CrossViewResult:
    out_dir: Path
    steps_done: int
    stopped_early: bool
    final_loss: float | None
    seconds: float


def train_crossview(config) -> CrossViewResult:
    """Pretrain the encoder of `config.model` on pairs drawn from `config.data` (the first two views of
    each sample) for `config.steps` steps (or `time_limit_minutes`); one process. Writes
    `encoder.safetensors` (the encoder in the published key layout), `train_log.csv` and `summary.json`."""
    from safetensors.torch import save_file

    config.validate()
    config.crossview.validate()
    out_dir = Path(config.out_dir)
    if (out_dir / ENCODER_FILE).exists():
        raise ValueError(f"{out_dir} already holds a pretrained encoder: choose another --out")
    device = choose_device(config.device)
    torch.manual_seed(config.seed)
    model = CrossViewCompletion(config.model.build().encoder, config.crossview).to(device).train()
    optimizer = build_optimizer(model, config.optim, fused=device.type == "cuda")
    scheduler = build_scheduler(optimizer, config.optim, config.steps)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.bf16 and device.type == "cuda")
    data = dataclasses.replace(config.data, num_views=[2], curriculum_steps=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.json", json.dumps(config.to_dict(), indent=2))
    log = TrainLog(out_dir, None, False)
    generator = torch.Generator().manual_seed(config.seed)
    patch = model.encoder.config.patch_size

    began = time.perf_counter()
    step, stopped_early, loss_value = 0, False, None
    for batch in training_batches(data, config.seed, 0, config.steps, 0, 1, device):
        masked_view, reference_view = (view["img"].to(device, non_blocking=True) for view in batch.views[:2])
        with autocast:
            predicted, hidden = model(masked_view, reference_view, generator)
        loss = completion_loss(predicted, masked_view, hidden, patch)
        optimiser_step(loss, model, optimizer, scheduler, config.optim.grad_clip)
        step = batch.step + 1
        if step % config.log_every == 0 or step == config.steps:
            loss_value = loss.item()
            log.write({"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0], "time_s": time.perf_counter() - began})
        if config.time_limit_minutes and time.perf_counter() - began > 60 * config.time_limit_minutes:
            stopped_early = step < config.steps
            break
    log.close()
    seconds = time.perf_counter() - began
    encoder = {f"encoder.{key}": value.detach().float().cpu().contiguous() for key, value in model.encoder.state_dict().items()}
    save_file(encoder, str(out_dir / ENCODER_FILE))
    summary = {"steps_done": step, "steps_planned": config.steps, "stopped_early": stopped_early,
               "final_loss": loss_value, "train_seconds": seconds, "device": str(device)}
    write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2))
    return CrossViewResult(out_dir, step, stopped_early, loss_value, seconds)
