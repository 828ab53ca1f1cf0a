"""Images -> model -> per-view predictions, on one GPU (photos decode while the encoder runs) or several.

    one GPU:  decode threads -> encoder chunks as photos arrive -> fusion over all views -> heads
    N GPUs:   ranks start while all photos decode -> `fast3r.parallel.PredictRanks` (views and tokens split)
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .interrupt import check_interrupted
from .io.images import LoadedImage, collect_inputs, to_model_range
from .io.loader import LoadOptions, LoadReport, evenly_spread, stream_images
from .io.video import is_video_path
from .model import Fast3R, RunOptions
from .model.fast3r import view_image_ids
from .progress import RunProgress


class PredictError(RuntimeError):
    """Predictions that cannot be made (too few views), with what to do about it."""


def _to_model_input(image: LoadedImage, param: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) on the model's device and dtype; uint8 pixels travel, the float conversion runs there."""
    rgb = torch.from_numpy(image.rgb).to(param.device, non_blocking=True)
    return to_model_range(rgb)[None].to(param.dtype)


def plan_inputs(inputs, max_views: int | None) -> tuple[list[Path], int | None]:
    """Input files (photos already spread under `max_views`), and the `max_views` still to apply once
    loaded: videos, whose frame count is unknown until they are decoded."""
    paths = collect_inputs(inputs)
    if max_views is None or len(paths) <= max_views or any(is_video_path(p) for p in paths):
        return paths, max_views
    warnings.warn(f"{len(paths)} photos found; keeping {max_views} evenly spread (--max-views)", stacklevel=3)
    return [paths[i] for i in evenly_spread(len(paths), max_views)], None


def run_model(
    model: Fast3R,
    paths: Sequence[Path],
    load: LoadOptions,
    max_views_after: int | None,
    image_ids: Sequence[float] | str | None,
    progress: RunProgress,
) -> tuple[list[LoadedImage], list[dict[str, torch.Tensor]], np.ndarray]:
    """Decode photos on all cores while the encoder runs on the chunks already decoded; then the fusion
    transformer and heads. Outputs stay on the model's device."""
    param = next(model.parameters())
    chunk = RunOptions().encoder_chunk_views
    images: list[LoadedImage] = []
    tokens: list[torch.Tensor | None] = []
    pending: dict[tuple[int, int], list[int]] = {}  # views of one size waiting for a full encoder chunk
    report = LoadReport()

    def encode(indices: list[int]) -> None:
        views = model.check_views([_to_model_input(images[i], param) for i in indices])
        for index, view_tokens in zip(indices, model.encode(views)):
            tokens[index] = view_tokens
        indices.clear()

    progress.start("images + encoder", total=len(paths), unit="file")
    with torch.no_grad():
        for image in stream_images(paths, load, report, on_file=progress.advance):
            images.append(image)
            tokens.append(None)
            if report.problems and not load.skip_bad:
                continue  # the run will fail once every file is tried: spend no more GPU time
            group = pending.setdefault(image.rgb.shape[:2], [])
            group.append(len(images) - 1)
            if len(group) == chunk:
                encode(group)
            check_interrupted()
        report.raise_if_failed(load.skip_bad, len(images))
        for group in pending.values():
            if group:
                encode(group)
        keep = _chosen_views(images, max_views_after)
        images, tokens = [images[i] for i in keep], [tokens[i] for i in keep]
        ids = model.image_ids(len(images), image_ids)
        depth = model.config.decoder.depth
        progress.start("fusion + heads", total=depth + len(images), unit="step")
        options = RunOptions(on_step=lambda stage, count: progress.advance(count if stage == "heads" else 1))
        sizes = [image.rgb.shape[:2] for image in images]
        outputs = model.decode(tokens, sizes, ids, options)
    return images, outputs, ids.numpy()


def _chosen_views(images: list[LoadedImage], max_views: int | None) -> list[int]:
    """Indices of the views to use (evenly spread under `max_views`); names made unique; two at least."""
    keep = list(range(len(images)))
    if max_views is not None and len(images) > max_views:
        keep = evenly_spread(len(images), max_views).tolist()
        warnings.warn(f"{len(images)} views found; keeping {len(keep)} evenly spread (--max-views)", stacklevel=4)
    if len(keep) < 2:
        raise PredictError(f"need at least two views, got {len(keep)}")
    _unique_names([images[i] for i in keep])
    return keep


def run_model_multi_gpu(
    weights: str,
    model_config,
    paths: Sequence[Path],
    load: LoadOptions,
    max_views_after: int | None,
    image_ids: Sequence[float] | str | None,
    gpus: int,
    device_type: str,
    dtype: torch.dtype,
    progress: RunProgress,
) -> tuple[list[LoadedImage], list[dict[str, torch.Tensor]], np.ndarray]:
    """The ranks start (processes, NCCL, weights) while every photo decodes; then one joint pass over
    `gpus` GPUs (`fast3r.parallel.PredictRanks`), outputs gathered on the first GPU (device_type "cpu":
    gloo processes, outputs on the CPU)."""
    from .parallel import PredictRanks

    with PredictRanks(weights, gpus, dtype, device_type) as ranks:
        progress.start("images + encoder", total=len(paths), unit="file")
        report = LoadReport()
        images = list(stream_images(paths, load, report, on_file=progress.advance))
        report.raise_if_failed(load.skip_bad, len(images))
        check_interrupted()
        images = [images[i] for i in _chosen_views(images, max_views_after)]
        ids = view_image_ids(len(images), image_ids, model_config.decoder.num_image_positions)
        progress.start("start GPUs")  # what is left of the ranks' start once the photos are in
        ranks.wait_ready()
        steps = model_config.decoder.depth + len(images)
        progress.start("fusion + heads", total=steps, unit="step")  # the ranks' encoders first

        def on_step(stage: str, count: int) -> None:
            if stage != "encoder":
                progress.advance(count if stage == "heads" else 1)

        output_device = "cuda:0" if device_type == "cuda" else "cpu"
        options = RunOptions(output_device=output_device, on_step=on_step)
        outputs = ranks.predict([torch.from_numpy(image.rgb) for image in images], ids.tolist(), options)
    return images, outputs, ids.numpy()


def _unique_names(images: list[LoadedImage]) -> None:
    """Make view names unique (two folders may hold the same file name): 'a.jpg', 'a_1.jpg', ..."""
    seen: set[str] = set()
    for image in images:
        name, stem, suffix, count = image.name, Path(image.name).stem, Path(image.name).suffix, 0
        while name in seen:
            count += 1
            name = f"{stem}_{count}{suffix}"
        seen.add(name)
        image.name = name


