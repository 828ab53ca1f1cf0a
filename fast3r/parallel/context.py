"""Context-parallel inference: one Fast3R forward pass spread over the ranks of a process group.

    views 0..N-1 -> contiguous runs of whole views, one run per rank, balanced by token count
    rank r: encoder(its views) -> fusion transformer over its tokens, where every layer's attention
            reads the keys and values of ALL tokens (all-gathered per layer) -> heads(its views)
    outputs: per-view dicts sent to rank 0, or left on the rank that computed them

Only attention needs communication: LayerNorm, the MLPs, the projections, the image-index embedding
(added per view, from each view's global index) and the heads act per token or per view; the fusion
blocks have no RoPE. The exchange lives in `AllGatherAttention`, swapped into copies of the fusion
blocks that share the model's weights; ring attention would be another module with its call signature.
"""
from __future__ import annotations

import dataclasses

import bisect
import copy
from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn

from fast3r.model import Fast3R, RunOptions
from fast3r.model.fast3r import ImageIds, _chunks_of_equal_size, _to
from fast3r.model.layers import Attention, attention

# torch 2.13 renames all_gather_into_tensor (same arguments) and warns on the old name
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def split_views(tokens_per_view: Sequence[int], world_size: int) -> list[range]:
    """Contiguous runs of views, one per rank, as close to equal token counts as whole views allow."""
    num_views = len(tokens_per_view)
    if num_views < world_size:
        raise ValueError(f"{num_views} views cannot be split over {world_size} ranks: give at least one view per rank")
    cumulative = [0]
    for count in tokens_per_view:
        cumulative.append(cumulative[-1] + count)
    starts = [0]
    for rank in range(1, world_size):
        target = cumulative[-1] * rank / world_size
        cut = bisect.bisect_left(cumulative, target)  # nearest view boundary to the target
        if cut > 0 and target - cumulative[cut - 1] <= cumulative[cut] - target:
            cut -= 1
        starts.append(min(max(cut, starts[-1] + 1), num_views - (world_size - rank)))
    starts.append(num_views)
    return [range(start, end) for start, end in zip(starts, starts[1:])]


def replace_modules(module: nn.Module, **children: nn.Module) -> nn.Module:
    """A shallow copy of `module` with the named children replaced; everything else (weights included)
    is shared with the original, which is left unchanged."""
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    clone._parameters = dict(module._parameters)
    clone._buffers = dict(module._buffers)
    for name, child in children.items():
        if name not in clone._modules:
            raise KeyError(f"{type(module).__name__} has no child module {name!r}")
        clone._modules[name] = child
    return clone


class SequenceAllGather:
    """All-gather along dim 0 with known per-rank lengths, concatenated in rank order.

    `lengths` (tokens per rank) is set before each forward pass. Equal lengths gather straight into
    the result; unequal ones are padded to the longest and compacted afterwards.
    """

    def __init__(self, group: dist.ProcessGroup | None = None):
        self.group = group
        self.lengths: list[int] = []

    def __call__(self, local: torch.Tensor) -> torch.Tensor:
        longest = max(self.lengths)
        if local.shape[0] == longest:
            send = local.contiguous()
        else:
            send = local.new_empty((longest, *local.shape[1:]))
            send[: local.shape[0]] = local
        out = local.new_empty((len(self.lengths) * longest, *local.shape[1:]))
        _all_gather_single(out, send, group=self.group)
        if min(self.lengths) == longest:
            return out
        return torch.cat([part[:length] for part, length in zip(out.split(longest), self.lengths)])


class AllGatherAttention(nn.Module):
    """`Attention` of this rank's queries against the keys and values of every rank's tokens.

    Reuses `attn`'s weights; the same call signature, so it drops into `Block` in its place.
    """

    def __init__(self, attn: Attention, gather: SequenceAllGather):
        super().__init__()
        self.attn = attn
        self.gather = gather

    def forward(
        self,
        x: torch.Tensor,  # (B, L_r, D): this rank's tokens
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        query_chunk: int | None = None,
    ) -> torch.Tensor:
        if rope is not None:
            raise ValueError("context-parallel attention has no RoPE (the fusion blocks use none)")
        batch, length, dim = x.shape
        heads = self.attn.num_heads
        qkv = self.attn.qkv(x).view(batch, length, 3, heads, dim // heads)
        q = qkv[:, :, 0].transpose(1, 2)  # (B, heads, L_r, head_dim)
        # sequence first, so each rank's block is contiguous: (L_r, B, 2, heads, head_dim) -> (L, ...)
        kv = self.gather(qkv[:, :, 1:].transpose(0, 1))
        k, v = kv.permute(2, 1, 3, 0, 4).unbind(0)  # each (B, heads, L, head_dim)
        out = attention(q, k, v, query_chunk)  # (B, heads, L_r, head_dim)
        return self.attn.proj(out.transpose(1, 2).reshape(batch, length, dim))


class ContextParallelFast3R:
    """`Fast3R.forward` over the ranks of `group` (default: the whole world); the model is not changed.

    Every rank holds the same weights and calls with the same views and image ids. A rank reads only
    the shapes of views it does not own, so those may be placeholders on the meta device. Inference
    only: no gradient flows through the all-gather.
    """

    def __init__(self, model: Fast3R, group: dist.ProcessGroup | None = None):
        self.model = model
        self.group = group
        self.gather = SequenceAllGather(group)
        decoder = model.decoder
        blocks = nn.ModuleList(
            replace_modules(block, attn=AllGatherAttention(block.attn, self.gather)) for block in decoder.dec_blocks
        )
        self.parallel = replace_modules(model, decoder=replace_modules(decoder, dec_blocks=blocks))
        self.device = next(model.parameters()).device  # where collectives run (CUDA for NCCL)

    def split(self, views: Sequence[torch.Tensor]) -> list[range]:
        """Which views each rank computes."""
        return split_views([self._tokens(view.shape[-2:]) for view in views], dist.get_world_size(self.group))

    def __call__(
        self,
        views: Sequence[torch.Tensor],
        image_ids: ImageIds = None,
        generator: torch.Generator | None = None,
        options: RunOptions | None = None,
        gather: bool = True,
    ) -> list[dict[str, torch.Tensor] | None]:
        """Views, ids and options as `Fast3R.forward`. Returns one entry per view: with `gather`, rank 0
        has every view's dict and other ranks None throughout; without, each rank has the dicts of its
        own views (`split`) and None elsewhere."""
        options = options or RunOptions()
        batches = {view.shape[0] if view.ndim == 4 else 1 for view in views}
        if len(batches) > 1:
            raise ValueError(f"views have different batch sizes {sorted(batches)}")
        sizes = [tuple(view.shape[-2:]) for view in views]
        split = self.split(views)
        own = split[dist.get_rank(self.group)]
        self.gather.lengths = [sum(self._tokens(sizes[i]) for i in views_of_rank) for views_of_rank in split]

        error, tokens, ids = None, None, None
        try:
            images = self.model.check_views([views[i] for i in own])
            ids = self.model.image_ids(len(views), image_ids, generator)
            tokens = self.model.encode(images, options)  # |own| x (B, P_i, D_enc)
        except Exception as err:  # noqa: BLE001 - re-raised below, after the other ranks learn of it
            error = err
        self._agree(error, "checking and encoding its views")
        ids = ids.to(self.device)
        dist.broadcast(ids, src=self._global_rank(0), group=self.group)  # "random" ids agree everywhere

        local = None
        try:
            # gathered outputs reach output_device on rank 0 only; every rank decodes onto its own device
            decode_options = dataclasses.replace(options, output_device=None) if gather else options
            local = self.parallel.decode(tokens, [sizes[i] for i in own], ids[own.start : own.stop], decode_options)
        except Exception as err:  # noqa: BLE001 - an error in the heads; one inside fusion cannot be caught
            error = err
        self._agree(error, "decoding its views")
        results: list[dict[str, torch.Tensor] | None] = [None] * len(views)
        results[own.start : own.stop] = local
        if gather:
            if dist.get_rank(self.group) == 0:
                results[own.start : own.stop] = [
                    {key: _to(value, options.output_device) for key, value in result.items()} for result in local
                ]
            self._gather_to_rank0(results, split, sizes, batches.pop(), options)
        return results

    def _tokens(self, size: Sequence[int]) -> int:
        patch = self.model.config.encoder.patch_size
        return (size[0] // patch) * (size[1] // patch)

    def _global_rank(self, group_rank: int) -> int:
        return group_rank if self.group is None else dist.get_global_rank(self.group, group_rank)

    def _agree(self, error: Exception | None, stage: str) -> None:
        """Every rank raises if any rank failed, so none is left waiting in a collective."""
        failed = torch.tensor([0 if error is None else 1], device=self.device)
        dist.all_reduce(failed, op=dist.ReduceOp.MAX, group=self.group)
        if error is not None:
            raise error
        if failed.item():
            raise RuntimeError(f"another rank failed while {stage}; its error is in its own output")

    def _gather_to_rank0(
        self,
        results: list[dict[str, torch.Tensor] | None],
        split: list[range],
        sizes: list[tuple[int, int]],
        batch: int,
        options: RunOptions,
    ) -> None:
        """Each rank sends its outputs to rank 0 in chunks of `head_chunk_views` views of one size, one
        flat fp32 buffer per chunk; rank 0 unpacks them as views moved to `output_device`."""
        rank = dist.get_rank(self.group)
        keys = ["pts3d_in_other_view", "conf"]
        if self.model.downstream_head_local is not None:
            keys += ["pts3d_local", "conf_local"]
        for source in range(1, len(split)):
            if rank not in (0, source):
                continue
            views = list(split[source])
            for chunk in _chunks_of_equal_size([sizes[i] for i in views], options.head_chunk_views):
                shapes = [  # (view, key, shape) in packing order
                    (views[p], key, (batch, *sizes[views[p]]) + ((3,) if key.startswith("pts3d") else ()))
                    for p in chunk
                    for key in keys
                ]
                if rank == source:
                    flat = torch.cat([results[view][key].to(self.device).flatten() for view, key, _ in shapes])
                    dist.send(flat, dst=self._global_rank(0), group=self.group)
                    continue
                numels = [torch.Size(shape).numel() for _, _, shape in shapes]
                flat = torch.empty(sum(numels), dtype=torch.float32, device=self.device)
                dist.recv(flat, src=self._global_rank(source), group=self.group)
                for (view, key, shape), part in zip(shapes, flat.split(numels)):
                    results[view] = results[view] or {}
                    results[view][key] = _to(part.view(shape), options.output_device)
        if rank != 0:
            results[:] = [None] * len(results)
