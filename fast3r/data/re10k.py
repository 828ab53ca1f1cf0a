"""RealEstate10K reader: the released camera files plus the frames a user extracted from the videos.

Layout read here (the camera files are the public release's; the frame folders follow the usual
practice of naming each extracted frame by its timestamp, since the release ships no images):

    ROOT/{split}/{video_id}.txt                 the released camera file
    ROOT/{split}/{video_id}/{timestamp}.png     frames (.png, .jpg or .jpeg), timestamp in microseconds

Camera file: line 1 is the YouTube URL; then one line per frame with 19 numbers:
    timestamp fx fy cx cy k1 k2 r00 r01 r02 t0 r10 r11 r12 t1 r20 r21 r22 t2
fx, fy, cx, cy are normalised by the image width / height (image corner at 0, so pixel-centre
OpenCV coordinates are cx * W - 0.5); k1, k2 are 0; the 3x4 matrix is world-to-camera in OpenCV
axes, row-major. Frames without an image file are left out.

Selection (`select_re10k`): videos in sorted order, `num_frames` (10) of each video's available
frames drawn with one numpy RandomState(seed=0) stream, without replacement, kept in drawn order —
the same rule as the CO3D VGGT protocol, since the papers do not publish theirs for RealEstate10K.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fast3r.data.views import View
from fast3r.io.images import read_image

FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
VALUES_PER_LINE = 19


@dataclass
class Re10kFrame:
    timestamp: int
    intrinsics_normalised: np.ndarray  # (4,) fx / W, fy / H, cx / W, cy / H
    w2c: np.ndarray  # (4, 4) float64, OpenCV axes


@dataclass
class Re10kSample:
    split: str
    video_id: str
    frames: list[Re10kFrame]

    @property
    def sample_id(self) -> str:
        return f"{self.video_id}/" + "-".join(str(frame.timestamp) for frame in self.frames)


def read_re10k_cameras(path: str | Path) -> tuple[str, list[Re10kFrame]]:
    """(URL, frames) of one RealEstate10K camera file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: camera file not found")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: empty camera file")
    frames = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        if len(fields) != VALUES_PER_LINE:
            raise ValueError(f"{path}:{number}: expected {VALUES_PER_LINE} numbers, got {len(fields)}")
        try:
            values = np.array([float(field) for field in fields[1:]])
            timestamp = int(fields[0])
        except ValueError as err:
            raise ValueError(f"{path}:{number}: not a number ({err})") from err
        w2c = np.eye(4)
        w2c[:3, :] = values[6:].reshape(3, 4)
        frames.append(Re10kFrame(timestamp=timestamp, intrinsics_normalised=values[:4], w2c=w2c))
    return lines[0], frames


def frame_path(root: str | Path, split: str, video_id: str, timestamp: int) -> Path | None:
    """The image file of a frame, or None when it was not extracted."""
    folder = Path(root) / split / video_id
    for extension in FRAME_EXTENSIONS:
        candidate = folder / f"{timestamp}{extension}"
        if candidate.is_file():
            return candidate
    return None


def select_re10k(
    root: str | Path, *, split: str = "test", num_frames: int = 10, seed: int = 0
) -> list[Re10kSample]:
    """One sample of `num_frames` frames per video with at least that many extracted frames."""
    camera_files = sorted((Path(root) / split).glob("*.txt"))
    if not camera_files:
        raise ValueError(f"{Path(root) / split}: no RealEstate10K camera files (*.txt)")
    rng = np.random.RandomState(seed)
    samples = []
    for camera_file in camera_files:
        video_id = camera_file.stem
        _, frames = read_re10k_cameras(camera_file)
        available = [frame for frame in frames if frame_path(root, split, video_id, frame.timestamp) is not None]
        if len(available) < num_frames:
            continue
        chosen = rng.choice(len(available), num_frames, replace=False)
        samples.append(Re10kSample(split, video_id, [available[i] for i in chosen]))
    return samples


def load_re10k(root: str | Path, sample: Re10kSample) -> list[View]:
    views = []
    for frame in sample.frames:
        path = frame_path(root, sample.split, sample.video_id, frame.timestamp)
        if path is None:
            raise ValueError(f"{Path(root) / sample.split / sample.video_id}: frame {frame.timestamp} not found")
        image = np.asarray(read_image(path))
        height, width = image.shape[:2]
        fx, fy, cx, cy = frame.intrinsics_normalised
        K = np.array([[fx * width, 0.0, cx * width - 0.5], [0.0, fy * height, cy * height - 0.5], [0.0, 0.0, 1.0]])
        views.append(View(image=image, K=K, c2w=np.linalg.inv(frame.w2c), name=path.name))
    return views
