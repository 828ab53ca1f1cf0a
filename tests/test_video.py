"""Video frame sampling (fast3r.io.video) and videos as load_images inputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from fast3r.io.images import ImageReadError  # noqa: E402
from fast3r.io.loader import load_images  # noqa: E402
from fast3r.io.video import VideoReadError, iter_video_frames, read_video_frames  # noqa: E402

NUM_FRAMES = 30
FRAME_RATE = 10


def frame_colour(index: int) -> np.ndarray:
    """A colour per frame, far enough apart to survive compression."""
    return np.array([index * 8, 255 - index * 8, (index * 97) % 256], dtype=np.uint8)


def write_video(path: Path, width: int = 64, height: int = 48, rotation: int | None = None,
                left_colour: tuple[int, int, int] | None = None) -> Path:
    """NUM_FRAMES frames at FRAME_RATE fps, frame i filled with frame_colour(i)."""
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FRAME_RATE)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for index in range(NUM_FRAMES):
            pixels = np.empty((height, width, 3), dtype=np.uint8)
            pixels[:] = frame_colour(index)
            if left_colour is not None:
                pixels[:, : width // 2] = left_colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decoded_index(image) -> int:
    """Which frame_colour the image shows."""
    mean = np.asarray(image, dtype=float).reshape(-1, 3).mean(axis=0)
    distances = [np.abs(mean - frame_colour(i)).sum() for i in range(NUM_FRAMES)]
    return int(np.argmin(distances))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "colours.mp4")


def check_frames(frames, expected_indices):
    assert [name for name, _ in frames] == [f"frame_{i:06d}.png" for i in expected_indices]
    assert [decoded_index(image) for _, image in frames] == expected_indices
    assert all(image.mode == "RGB" and image.size == (64, 48) for _, image in frames)


def test_all_frames(video):
    check_frames(read_video_frames(video), list(range(NUM_FRAMES)))


@pytest.mark.parametrize("fps, expected", [
    (2, [0, 5, 10, 15, 20, 25]),
    (3, [0, 4, 7, 10, 14, 17, 20, 24, 27]),  # first frame at or after each k/3 s
    (0.5, [0, 20]),
    (25, list(range(NUM_FRAMES))),  # faster than the video: every frame
])
def test_fps_sampling_by_timestamps(video, fps, expected):
    check_frames(read_video_frames(video, fps=fps), expected)


@pytest.mark.parametrize("fps, max_frames, expected", [
    (None, 4, [0, 10, 19, 29]),
    (None, 1, [0]),
    (None, 100, list(range(NUM_FRAMES))),
    (2, 3, [0, 10, 25]),  # evenly over the fps picks 0, 5, ..., 25
])
def test_max_frames_spreads_evenly(video, fps, max_frames, expected):
    check_frames(read_video_frames(video, fps=fps, max_frames=max_frames), expected)


def test_bad_arguments_fail_before_decoding(video):
    with pytest.raises(ValueError, match="fps"):
        iter_video_frames(video, fps=0)
    with pytest.raises(ValueError, match="max_frames"):
        iter_video_frames(video, max_frames=0)
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        iter_video_frames(video.parent / "nope.mp4")


def test_unreadable_videos_name_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoReadError, match="empty.mp4.*empty file"):
        read_video_frames(empty)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="garbage.mp4"):
        read_video_frames(garbage)


@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation")
                    or not hasattr(av.VideoFrame, "rotation"),
                    reason="this PyAV cannot write or read display rotation")
def test_rotation_metadata_is_applied(tmp_path):
    path = write_video(tmp_path / "rotated.mp4", width=64, height=32, rotation=90,
                       left_colour=(255, 255, 255))
    name, image = read_video_frames(path, max_frames=1)[0]
    pixels = np.asarray(image, dtype=int)
    assert image.size == (32, 64)  # upright: portrait
    # turned 90 degrees counter-clockwise, the stored left half (white) ends at the bottom
    assert pixels[36:].min() > 230
    assert np.abs(pixels[:28] - frame_colour(0)).max() < 30


def test_load_images_samples_videos(video, tmp_path):
    loaded = load_images([video], video_fps=2, max_frames=4)
    assert [item.name for item in loaded] == ["frame_000000.png", "frame_000010.png",
                                              "frame_000015.png", "frame_000025.png"]
    assert all(item.path == video for item in loaded)
    assert all(tuple(item.tensor.shape) == (3, 384, 512) for item in loaded)
    assert loaded[0].transform.original_size == (64, 48)

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.mp4"):
        load_images([video, empty])
