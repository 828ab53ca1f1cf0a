"""The Fast3R network: ViT encoder, fusion transformer, DPT heads, and weight loading."""
from .config import ConfigError, DecoderConfig, EncoderConfig, Fast3RConfig, HeadConfig
from .fast3r import DTYPES, Fast3R, RunOptions
from .pretrained import WeightsError, load_pretrained, save_pretrained

__all__ = [
    "ConfigError",
    "DTYPES",
    "DecoderConfig",
    "EncoderConfig",
    "Fast3R",
    "Fast3RConfig",
    "HeadConfig",
    "RunOptions",
    "WeightsError",
    "load_pretrained",
    "save_pretrained",
]
