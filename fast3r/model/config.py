"""Typed configuration of the Fast3R network, and the published `config.json` format.

The published checkpoint stores three dicts, `encoder_args`, `decoder_args` and `head_args`. We read
those keys into small dataclasses and write them back unchanged, so a saved ViT-L/512 config is
identical to the published one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration this implementation cannot build."""


@dataclass
class EncoderConfig:
    """Per-view ViT encoder with 2D RoPE."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    patch_size: int = 16
    img_size: int = 512
    rope_base: float = 100.0


@dataclass
class DecoderConfig:
    """Fusion transformer: plain self-attention over the tokens of all views."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    num_image_positions: int = 1000  # rows of the image-index sin/cos table
    random_image_idx_embedding: bool = True  # the release samples indices; kept for the config round trip


@dataclass
class HeadConfig:
    """Two DPT heads (global and local) reading four decoder hooks."""

    feature_dim: int = 256
    last_dim: int = 128
    layer_dims: tuple[int, int, int, int] = (96, 192, 384, 768)
    with_local_head: bool = True


@dataclass
class Fast3RConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    head: HeadConfig = field(default_factory=HeadConfig)

    @property
    def hooks(self) -> tuple[int, int, int, int]:
        """Decoder outputs the heads read: 0 is the raw encoder output, L the normed last block."""
        depth = self.decoder.depth
        return (0, depth * 2 // 4, depth * 3 // 4, depth)

    # ----- presets -----
    @classmethod
    def vitl512(cls) -> "Fast3RConfig":
        """The published `jedyang97/Fast3R_ViT_Large_512` model (647.6M parameters)."""
        return cls()

    @classmethod
    def small(cls) -> "Fast3RConfig":
        """An 18.4M-parameter model for training from scratch on one GPU (the bundled demo size)."""
        return cls(
            encoder=EncoderConfig(embed_dim=256, depth=8, num_heads=4, img_size=224),
            decoder=DecoderConfig(embed_dim=256, depth=8, num_heads=4),
            head=HeadConfig(feature_dim=96, last_dim=48, layer_dims=(48, 96, 192, 256)),
        )

    @classmethod
    def tiny(cls) -> "Fast3RConfig":
        """A few-hundred-thousand-parameter model for CPU tests."""
        return cls(
            encoder=EncoderConfig(embed_dim=64, depth=2, num_heads=2, img_size=64),
            decoder=DecoderConfig(embed_dim=96, depth=4, num_heads=2),
            head=HeadConfig(feature_dim=32, last_dim=16, layer_dims=(8, 16, 24, 32)),
        )

    # ----- published config.json -----
    def to_published(self) -> dict[str, Any]:
        """The three-dict layout of the published `config.json`."""
        enc, dec, head = self.encoder, self.decoder, self.head
        rope = f"RoPE{enc.rope_base:g}"
        encoder_args = {
            "attn_implementation": "flash_attention",
            "depth": enc.depth,
            "embed_dim": enc.embed_dim,
            "encoder_type": "croco",
            "img_size": enc.img_size,
            "mlp_ratio": int(enc.mlp_ratio) if float(enc.mlp_ratio).is_integer() else enc.mlp_ratio,
            "num_heads": enc.num_heads,
            "patch_embed_cls": "PatchEmbedDust3R",
            "patch_size": enc.patch_size,
            "pos_embed": rope,
        }
        decoder_args = {
            "attn_bias_for_inference_enabled": False,
            "attn_drop": 0.0,
            "attn_implementation": "flash_attention",
            "decoder_type": "fast3r",
            "depth": dec.depth,
            "drop": 0.0,
            "embed_dim": dec.embed_dim,
            "enc_embed_dim": enc.embed_dim,
            "mlp_ratio": float(dec.mlp_ratio),
            "num_heads": dec.num_heads,
            "qkv_bias": dec.qkv_bias,
            "random_image_idx_embedding": dec.random_image_idx_embedding,
        }
        if dec.num_image_positions != 1000:
            decoder_args["max_image_idx"] = dec.num_image_positions
        head_args = {
            "conf_mode": ["exp", 1, math.inf],
            "depth_mode": ["exp", -math.inf, math.inf],
            "head_type": "dpt",
            "landscape_only": False,
            "output_mode": "pts3d",
            "patch_size": enc.patch_size,
            "with_local_head": head.with_local_head,
        }
        # DPT widths are fixed in the release; written only when a variant changes them.
        default_head = HeadConfig()
        if (head.feature_dim, head.last_dim, tuple(head.layer_dims)) != (
            default_head.feature_dim,
            default_head.last_dim,
            default_head.layer_dims,
        ):
            head_args["feature_dim"] = head.feature_dim
            head_args["last_dim"] = head.last_dim
            head_args["layer_dims"] = list(head.layer_dims)
        return {"decoder_args": decoder_args, "encoder_args": encoder_args, "head_args": head_args}

    @classmethod
    def from_published(cls, config: dict[str, Any]) -> "Fast3RConfig":
        """Read the published layout; refuse settings whose computation differs from ours."""
        try:
            enc_args = dict(config["encoder_args"])
            dec_args = dict(config["decoder_args"])
            head_args = dict(config["head_args"])
        except (KeyError, TypeError) as err:
            raise ConfigError(
                "config must hold the dicts 'encoder_args', 'decoder_args' and 'head_args'"
            ) from err

        def require(args: dict, key: str, allowed: Any, where: str) -> None:
            if key in args and args[key] != allowed:
                raise ConfigError(f"{where}.{key}={args[key]!r} is not supported (expected {allowed!r})")

        require(enc_args, "encoder_type", "croco", "encoder_args")
        require(enc_args, "patch_embed_cls", "PatchEmbedDust3R", "encoder_args")
        require(dec_args, "decoder_type", "fast3r", "decoder_args")
        require(dec_args, "attn_bias_for_inference_enabled", False, "decoder_args")
        require(head_args, "head_type", "dpt", "head_args")
        require(head_args, "output_mode", "pts3d", "head_args")
        require(head_args, "landscape_only", False, "head_args")
        if list(head_args.get("depth_mode", ["exp", -math.inf, math.inf])) != ["exp", -math.inf, math.inf]:
            raise ConfigError(f"head_args.depth_mode={head_args['depth_mode']!r} is not supported")
        if list(head_args.get("conf_mode", ["exp", 1, math.inf])) != ["exp", 1, math.inf]:
            raise ConfigError(f"head_args.conf_mode={head_args['conf_mode']!r} is not supported")

        pos_embed = str(enc_args.get("pos_embed", "RoPE100"))
        if not pos_embed.startswith("RoPE"):
            raise ConfigError(f"encoder_args.pos_embed={pos_embed!r} is not supported (expected RoPE<base>)")
        enc_dim = int(enc_args.get("embed_dim", 1024))
        if "enc_embed_dim" in dec_args and int(dec_args["enc_embed_dim"]) != enc_dim:
            raise ConfigError(
                f"decoder_args.enc_embed_dim={dec_args['enc_embed_dim']} differs from encoder embed_dim={enc_dim}"
            )
        patch = int(enc_args.get("patch_size", 16))
        if int(head_args.get("patch_size", patch)) != patch:
            raise ConfigError("head_args.patch_size differs from encoder_args.patch_size")

        encoder = EncoderConfig(
            embed_dim=enc_dim,
            depth=int(enc_args.get("depth", 24)),
            num_heads=int(enc_args.get("num_heads", 16)),
            mlp_ratio=float(enc_args.get("mlp_ratio", 4.0)),
            patch_size=patch,
            img_size=int(enc_args.get("img_size", 512)),
            rope_base=float(pos_embed[4:] or 100),
        )
        decoder = DecoderConfig(
            embed_dim=int(dec_args.get("embed_dim", 1024)),
            depth=int(dec_args.get("depth", 24)),
            num_heads=int(dec_args.get("num_heads", 16)),
            mlp_ratio=float(dec_args.get("mlp_ratio", 4.0)),
            qkv_bias=bool(dec_args.get("qkv_bias", True)),
            num_image_positions=int(dec_args.get("max_image_idx", 1000)),
            random_image_idx_embedding=bool(dec_args.get("random_image_idx_embedding", True)),
        )
        default_head = HeadConfig()
        head = HeadConfig(
            feature_dim=int(head_args.get("feature_dim", default_head.feature_dim)),
            last_dim=int(head_args.get("last_dim", default_head.last_dim)),
            layer_dims=tuple(int(d) for d in head_args.get("layer_dims", default_head.layer_dims)),
            with_local_head=bool(head_args.get("with_local_head", True)),
        )
        config = cls(encoder=encoder, decoder=decoder, head=head)
        config.validate()
        return config

    def validate(self) -> None:
        for name, part in (("encoder", self.encoder), ("decoder", self.decoder)):
            if part.embed_dim % part.num_heads:
                raise ConfigError(f"{name}.embed_dim={part.embed_dim} is not divisible by num_heads={part.num_heads}")
        head_dim = self.encoder.embed_dim // self.encoder.num_heads
        if head_dim % 4:
            raise ConfigError(f"encoder head dim {head_dim} must be divisible by 4 for 2D RoPE")
        if self.decoder.embed_dim % 2:
            raise ConfigError("decoder.embed_dim must be even for the image-index embedding")
        if len(self.head.layer_dims) != 4:
            raise ConfigError("head.layer_dims must have 4 entries")
