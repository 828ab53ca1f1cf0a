import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from fast3r.data.re10k import load_re10k, read_re10k_cameras, select_re10k


def write_video(root, video_id, num_frames, extracted, height=18, width=32):
    """A camera file with `num_frames` lines; images only for the indices in `extracted`."""
    (root / "test" / video_id).mkdir(parents=True)
    lines = [f"https://www.youtube.com/watch?v={video_id}"]
    poses = {}
    for index in range(num_frames):
        timestamp = 1000 * (index + 1)
        w2c = np.eye(4)
        w2c[:3, :3] = Rotation.random(random_state=index).as_matrix()
        w2c[:3, 3] = [0.1 * index, -0.2, 0.3]
        poses[timestamp] = w2c
        numbers = [0.9, 1.6, 0.5, 0.5, 0.0, 0.0, *w2c[:3, :].ravel()]
        lines.append(" ".join([str(timestamp)] + [repr(float(n)) for n in numbers]))
        if index in extracted:
            Image.new("RGB", (width, height), (index, 0, 0)).save(root / "test" / video_id / f"{timestamp}.png")
    (root / "test" / f"{video_id}.txt").write_text("\n".join(lines) + "\n")
    return poses


def test_camera_file_parsing_and_view_conversion(tmp_path):
    poses = write_video(tmp_path, "vid_a", 12, extracted=range(12))
    url, frames = read_re10k_cameras(tmp_path / "test" / "vid_a.txt")
    assert url.endswith("vid_a") and len(frames) == 12
    np.testing.assert_allclose(frames[3].w2c, poses[4000])
    sample = select_re10k(tmp_path)[0]
    views = load_re10k(tmp_path, sample)
    assert len(views) == 10
    for frame, view in zip(sample.frames, views):
        np.testing.assert_allclose(view.c2w @ poses[frame.timestamp], np.eye(4), atol=1e-12)
        np.testing.assert_allclose(view.K, [[0.9 * 32, 0, 15.5], [0, 1.6 * 18, 8.5], [0, 0, 1]])
        assert view.image.shape == (18, 32, 3) and view.depth is None


def test_selection_uses_only_extracted_frames_and_one_seeded_stream(tmp_path):
    write_video(tmp_path, "vid_b", 30, extracted=range(0, 30, 2))  # 15 frames on disk
    write_video(tmp_path, "vid_a", 12, extracted=range(12))
    write_video(tmp_path, "vid_c", 20, extracted=range(5))  # too few frames: left out
    samples = select_re10k(tmp_path)
    assert [s.video_id for s in samples] == ["vid_a", "vid_b"]
    stream = np.random.RandomState(0)
    first = stream.choice(12, 10, replace=False)
    second = stream.choice(15, 10, replace=False)
    assert [f.timestamp for f in samples[0].frames] == [1000 * (i + 1) for i in first]
    assert [f.timestamp for f in samples[1].frames] == [1000 * (2 * i + 1) for i in second]


def test_malformed_camera_line_names_file_and_line(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "bad.txt").write_text("url\n1000 0.5 0.5\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 19 numbers"):
        read_re10k_cameras(tmp_path / "test" / "bad.txt")
    with pytest.raises(ValueError, match="no RealEstate10K camera files"):
        select_re10k(tmp_path, split="train")
