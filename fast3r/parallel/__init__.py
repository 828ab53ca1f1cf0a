"""Inference over several GPUs: context parallelism (views and tokens split across ranks)."""
from .context import AllGatherAttention, ContextParallelFast3R, split_views
from .launch import predict_multi_gpu
from .ranks import PredictRanks

__all__ = ["AllGatherAttention", "ContextParallelFast3R", "PredictRanks", "predict_multi_gpu", "split_views"]
