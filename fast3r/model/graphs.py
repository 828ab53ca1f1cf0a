"""Replay of a whole Fast3R forward pass as one CUDA graph, for few views where kernel launches dominate.

    graphed = GraphedFast3R(model)       # shares the model's weights
    out = graphed(views, image_ids)      # first call per view shapes captures, later calls replay

A graph is captured per (view shapes, dtype) and cached; image indices are an input of the graph, so
they may change between calls. Off CUDA, or above `max_views`, the call is the model's eager forward.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch

from .fast3r import Fast3R, ImageIds, RunOptions


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    views: list[torch.Tensor]  # static inputs, N x (B, 3, H, W)
    image_ids: torch.Tensor  # static input, (N,) float64
    outputs: list[dict[str, torch.Tensor]]  # static outputs, overwritten by each replay


class GraphedFast3R:
    """`Fast3R.forward` through cached CUDA graphs; outputs equal the eager pass (same kernels)."""

    def __init__(self, model: Fast3R, max_views: int = 8, max_graphs: int = 4, warmup: int = 2):
        self.model = model
        self.max_views = max_views
        self.max_graphs = max_graphs
        self.warmup = warmup
        self.graphs: OrderedDict[tuple, _Graph] = OrderedDict()  # least recently used first

    def applies(self, views: Sequence[torch.Tensor]) -> bool:
        """Whether a call replays a graph: a CUDA model, at most `max_views` views, no autograd."""
        device = next(self.model.parameters()).device
        return device.type == "cuda" and 0 < len(views) <= self.max_views and not torch.is_grad_enabled()

    def __call__(
        self,
        views: Sequence[torch.Tensor],
        image_ids: ImageIds = None,
        generator: torch.Generator | None = None,
        options: RunOptions | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """As `Fast3R.forward` (under torch.no_grad() for the graph path); outputs are fresh tensors."""
        if not self.applies(views):
            return self.model(views, image_ids=image_ids, generator=generator, options=options)
        images = self.model.check_views(views)
        ids = self.model.image_ids(len(images), image_ids, generator)
        key = tuple(tuple(image.shape) for image in images) + (images[0].dtype,)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self._capture(images, ids)
            self.graphs[key] = entry
            if len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        else:
            self.graphs.move_to_end(key)
            for static, image in zip(entry.views, images):
                static.copy_(image)
            entry.image_ids.copy_(ids)
            entry.graph.replay()
        device = (options or RunOptions()).output_device
        return [{name: value.to(device or value.device, copy=True) for name, value in out.items()} for out in entry.outputs]

    def _run(self, images: list[torch.Tensor], ids: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        options = RunOptions()  # outputs stay on the device, in the graph's memory
        sizes = [tuple(image.shape[-2:]) for image in images]
        return self.model.decode(self.model.encode(images, options), sizes, ids, options)

    def _capture(self, images: list[torch.Tensor], ids: torch.Tensor) -> _Graph:
        """Warm up on a side stream (kernel choice, workspaces), capture, and replay once for this
        call's outputs (capturing records kernels without running them)."""
        static_views = [image.clone() for image in images]
        static_ids = ids.to(images[0].device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self._run(static_views, static_ids)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = self._run(static_views, static_ids)
        graph.replay()
        return _Graph(graph, static_views, static_ids, outputs)
