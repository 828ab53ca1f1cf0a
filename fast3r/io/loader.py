"""Load many inputs fast: photos decoded on all cores, in input order, a bounded number in flight.

    paths -> [thread pool: decode (reduced JPEG scale) + resize + crop] -> LoadedImage, in order

Pillow releases the GIL while it decodes and resamples, so threads scale with the cores. Only the
preprocessed pixels (uint8) are kept; at most `workers * 4` full-resolution photos are in memory at once.
Videos are decoded in one pool thread each (PyAV uses its own threads), frame by frame.
"""
from __future__ import annotations

import os
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from fast3r.io.images import (
    ImageReadError,
    LoadedImage,
    check_size,
    collect_inputs,
    decode_image,
    preprocess_image,
)
from fast3r.io.video import is_video_path, iter_video_frames


@dataclass(frozen=True)
class LoadOptions:
    """How inputs become model images.

    size: 512 (long side) or 224 (centre square); exact: decode every JPEG at full resolution (the release's
    pixels exactly) instead of at a reduced scale (about one grey level apart, ~4x faster at 12 MP).
    skip_bad: skip unreadable inputs with a warning instead of failing. workers: decoding threads
    (default: all cores). video_fps / max_frames: how videos are sampled (per video).
    """

    size: int = 512
    square_ok: bool = False
    exact: bool = False
    skip_bad: bool = False
    workers: int | None = None
    video_fps: float | None = None
    max_frames: int | None = None


@dataclass
class LoadReport:
    """What a load met: each unusable input's problem, in input order."""

    total: int = 0
    problems: list[str] = field(default_factory=list)

    def raise_if_failed(self, skip_bad: bool, loaded: int) -> None:
        """One ImageReadError listing every bad input (unless skipped), or none loaded at all."""
        if self.problems and not skip_bad:
            listing = "\n  ".join(self.problems)
            raise ImageReadError(f"{len(self.problems)} of {self.total} inputs cannot be used "
                                 f"(--skip-bad skips them):\n  {listing}")
        if loaded == 0:
            raise ImageReadError(f"none of the {self.total} inputs could be loaded")


def evenly_spread(count: int, keep: int) -> np.ndarray:
    """Indices of `keep` items spread evenly over `count` (first and last included)."""
    return np.unique(np.linspace(0, count - 1, keep).round().astype(int))


def _load_photo(path: Path, options: LoadOptions) -> list[LoadedImage]:
    decoded = decode_image(path, reduce_for_size=None if options.exact else options.size)
    return [preprocess_image(decoded.image, options.size, options.square_ok, name=path.name, path=path,
                             original_size=decoded.original_size)]


def _load_video(path: Path, options: LoadOptions) -> list[LoadedImage]:
    frames = iter_video_frames(path, fps=options.video_fps, max_frames=options.max_frames)
    return [preprocess_image(image, options.size, options.square_ok, name=name, path=path) for name, image in frames]


def stream_images(
    paths: Sequence[Path],
    options: LoadOptions,
    report: LoadReport,
    on_file: Callable[[], None] | None = None,
) -> Iterator[LoadedImage]:
    """Yield the model images of `paths` in order while later files are still being decoded.

    Unusable inputs are recorded in `report` (and warned about with `options.skip_bad`); the caller
    decides at the end (`report.raise_if_failed`). on_file: called once per input file done.
    """
    check_size(options.size)
    report.total = len(paths)
    workers = options.workers or min(32, os.cpu_count() or 1)
    in_flight: deque[tuple[Path, Future[list[LoadedImage]]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fast3r-decode") as pool:
        pending = iter(paths)
        try:
            while True:
                while len(in_flight) < 4 * workers and (path := next(pending, None)) is not None:
                    load = _load_video if is_video_path(path) else _load_photo
                    in_flight.append((path, pool.submit(load, path, options)))
                if not in_flight:
                    return
                path, future = in_flight.popleft()
                try:
                    images = future.result()
                except ValueError as err:  # ImageReadError, VideoReadError, unusable aspect ratio
                    report.problems.append(str(err))
                    if options.skip_bad:
                        warnings.warn(f"skipping {err}", stacklevel=2)
                    images = []
                if on_file is not None:
                    on_file()
                yield from images
        finally:  # a consumer that stops early (an error, Ctrl-C) does not wait for queued files
            for _, future in in_flight:
                future.cancel()


def load_images(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    size: int = 512,
    square_ok: bool = False,
    skip_bad: bool = False,
    video_fps: float | None = None,
    max_frames: int | None = None,
    exact: bool = False,
) -> list[LoadedImage]:
    """Collect, decode and preprocess every input (see `collect_inputs`, `preprocess_image`), in order.

    Bad files: with `skip_bad` each gives a warning naming it and is skipped; otherwise one
    ImageReadError lists every bad file with its problem, after all inputs were tried.
    """
    options = LoadOptions(size=size, square_ok=square_ok, exact=exact, skip_bad=skip_bad,
                          video_fps=video_fps, max_frames=max_frames)
    report = LoadReport()
    loaded = list(stream_images(collect_inputs(inputs), options, report))
    report.raise_if_failed(skip_bad, len(loaded))
    return loaded
