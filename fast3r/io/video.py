"""Frames from a video file, sampled by time and/or count (PyAV, the `video` extra).

Frames are named after their index in presentation order (`frame_000123.png`), so a name says which
source frame it was. Rotation metadata (the container's display matrix, as in phone videos shot
upright) is applied when the installed PyAV exposes it as `VideoFrame.rotation`; older PyAV releases
return frames as stored. Only multiples of 90 degrees are applied; mirror flips are not.
"""
from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})

_ROTATIONS = {
    90: Image.Transpose.ROTATE_90,  # counter-clockwise, as the display-matrix angle is
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


class VideoReadError(ValueError):
    """A video that cannot be opened or holds no decodable frames; the message names the file."""


def is_video_path(path: str | os.PathLike) -> bool:
    """True if the file name has a recognised video extension (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def frame_name(index: int) -> str:
    """Name of the source frame `index` (0-based, presentation order)."""
    return f"frame_{index:06d}.png"


def _import_av():
    try:
        import av
    except ImportError as err:
        raise ImportError("Reading videos needs PyAV: pip install fast3r[video]") from err
    return av


class _RateSampler:
    """Keeps the first frame of every 1/fps-second interval, counted from the first frame's time."""

    def __init__(self, path: Path, fps: float | None):
        self.path = path
        self.rate = None if fps is None else Fraction(str(fps))
        self.start: Fraction | None = None
        self.last_slot = -1

    def accept(self, time: Fraction | None) -> bool:
        if self.rate is None:
            return True
        if time is None:
            raise VideoReadError(f"{self.path}: frames carry no timestamps to sample by fps")
        if self.start is None:
            self.start = time
        slot = math.floor((time - self.start) * self.rate)
        if slot <= self.last_slot:
            return False
        self.last_slot = slot
        return True


def _evenly_spaced(count: int, max_frames: int) -> list[int]:
    """At most `max_frames` positions out of `count`, evenly spread, first and last included."""
    if count <= max_frames:
        return list(range(count))
    return sorted({int(i) for i in np.rint(np.linspace(0, count - 1, max_frames))})


def _decode(path: Path, progress: bool) -> Iterator[tuple[int, Fraction | None, object]]:
    """Yield (index, time in seconds or None, av.VideoFrame) in presentation order."""
    av = _import_av()
    if path.is_file() and path.stat().st_size == 0:
        raise VideoReadError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path))
    except Exception as err:  # PyAV raises a family of FFmpeg errors and OSErrors
        raise VideoReadError(f"{path}: cannot open as a video: {err}") from err
    with container:
        if not container.streams.video:
            raise VideoReadError(f"{path}: contains no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        index = 0
        bar = tqdm(desc=f"Decoding {path.name}", total=stream.frames or None, unit="frame",
                   disable=not progress)
        try:
            for frame in container.decode(stream):
                time_base = frame.time_base or stream.time_base
                if frame.pts is not None and time_base is not None:
                    time = frame.pts * Fraction(time_base)
                elif rate:
                    time = Fraction(index) / Fraction(rate)
                else:
                    time = None
                yield index, time, frame
                index += 1
                bar.update(1)
        except Exception as err:  # FFmpeg errors from a damaged stream
            raise VideoReadError(f"{path}: decoding failed after {index} frames: {err}") from err
        finally:
            bar.close()
    if index == 0:
        raise VideoReadError(f"{path}: contains no decodable video frames")


def _to_image(frame) -> Image.Image:
    """RGB PIL image of a decoded frame, turned upright by its display rotation."""
    image = frame.to_image()
    rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
    if rotation in _ROTATIONS:
        image = image.transpose(_ROTATIONS[rotation])
    return image


def iter_video_frames(
    path: str | os.PathLike,
    fps: float | None = None,
    max_frames: int | None = None,
    progress: bool = False,
) -> Iterator[tuple[str, Image.Image]]:
    """Iterate (frame name, RGB image) for the sampled frames of a video, in order.

    fps: keep the first frame of every 1/fps seconds (by timestamps); None keeps all frames.
    max_frames: then keep at most this many, evenly spread (first and last kept). This needs the
    frame count, so the video is decoded twice (once to read timestamps, once to convert frames).
    """
    path = Path(path)
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    return _sampled_frames(path, fps, max_frames, progress)


def _sampled_frames(
    path: Path, fps: float | None, max_frames: int | None, progress: bool
) -> Iterator[tuple[str, Image.Image]]:
    sampler = _RateSampler(path, fps)
    if max_frames is None:
        for index, time, frame in _decode(path, progress):
            if sampler.accept(time):
                yield frame_name(index), _to_image(frame)
        return

    candidates = [index for index, time, _ in _decode(path, False) if sampler.accept(time)]
    chosen = [candidates[i] for i in _evenly_spaced(len(candidates), max_frames)]
    wanted = set(chosen)
    for index, _, frame in _decode(path, progress):
        if index in wanted:
            yield frame_name(index), _to_image(frame)
            if index == chosen[-1]:
                return


def read_video_frames(
    path: str | os.PathLike,
    fps: float | None = None,
    max_frames: int | None = None,
    progress: bool = False,
) -> list[tuple[str, Image.Image]]:
    """All sampled frames of a video as (name, RGB image); see `iter_video_frames`."""
    return list(iter_video_frames(path, fps=fps, max_frames=max_frames, progress=progress))
