import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fast3r.io import atomic
from fast3r.io.cameras_json import read_cameras_json, write_cameras_json
from fast3r.io.frames import ExportFrame


def make_frames(width: int, height: int, focal: float) -> list[ExportFrame]:
    frames = []
    for index, rotation in enumerate(Rotation.random(3, random_state=7).as_matrix()):
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = rotation, [0.1 * index, 0.0, 1.0]
        K = [[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]]
        frames.append(ExportFrame(f"v{index}.jpg", width, height, K, c2w))
    return frames


def test_round_trip_with_model_intrinsics(tmp_path):
    frames = make_frames(4000, 3000, 3100.0)
    model_frames = make_frames(512, 384, 396.8)
    write_cameras_json(tmp_path / "cameras.json", frames, model_frames)
    views = json.loads((tmp_path / "cameras.json").read_text())["views"]
    assert [v["file"] for v in views] == ["v0.jpg", "v1.jpg", "v2.jpg"]
    assert (views[0]["width"], views[0]["model_width"]) == (4000, 512)
    loaded, loaded_model = read_cameras_json(tmp_path / "cameras.json")
    for original, back in zip(frames + model_frames, loaded + loaded_model):
        assert (back.file_name, back.width, back.height) == (original.file_name, original.width, original.height)
        np.testing.assert_array_equal(back.K, original.K)
        np.testing.assert_array_equal(back.c2w, original.c2w)


def test_without_model_frames(tmp_path):
    write_cameras_json(tmp_path / "cameras.json", make_frames(64, 48, 50.0))
    views = json.loads((tmp_path / "cameras.json").read_text())["views"]
    assert set(views[0]) == {"file", "width", "height", "K", "c2w"}
    assert read_cameras_json(tmp_path / "cameras.json")[1] is None


def test_errors_and_atomicity(tmp_path, monkeypatch):
    frames = make_frames(64, 48, 50.0)
    with pytest.raises(ValueError, match="same file names"):
        write_cameras_json(tmp_path / "a.json", frames, frames[:2])
    (tmp_path / "broken.json").write_text('{"views": [{"file": "x"}]}')
    with pytest.raises(ValueError, match="broken.json: not a valid cameras.json"):
        read_cameras_json(tmp_path / "broken.json")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_cameras_json(tmp_path / "b.json", frames)
    assert [p.name for p in tmp_path.iterdir()] == ["broken.json"]


def test_export_frame_geometry():
    frame = make_frames(640, 480, 500.0)[1]
    np.testing.assert_allclose(frame.w2c @ frame.c2w, np.eye(4), atol=1e-12)
    corners = frame.frustum_corners(2.0)  # (4, 3) world
    camera = corners @ frame.w2c[:3, :3].T + frame.w2c[:3, 3]
    np.testing.assert_allclose(camera[:, 2], 2.0)
    pixels = (camera @ frame.K.T)[:, :2] / camera[:, 2:]
    np.testing.assert_allclose(pixels, [[-0.5, -0.5], [639.5, -0.5], [639.5, 479.5], [-0.5, 479.5]], atol=1e-9)


@pytest.mark.parametrize(
    "width, K, c2w, message",
    [
        (0, np.eye(3), np.eye(4), "positive integers"),
        (64, [[50.0, 1.0, 32], [0, 50, 24], [0, 0, 1]], np.eye(4), "K must be"),
        (64, [[50.0, 0, 32], [0, 50, 24], [0, 0, 1]], np.diag([1.0, 1, 1, 2]), "last row"),
        (64, [[50.0, 0, 32], [0, 50, 24], [0, 0, 1]], np.diag([1.0, 1, -1, 1]), "proper rotation"),
        (64, [[50.0, 0, 32], [0, 50, 24], [0, 0, 1]], np.diag([2.0, 2, 2, 1]), "proper rotation"),
        (64, [[50.0, 0, 32], [0, 50, 24], [0, 0, 1]], np.full((4, 4), np.nan), "finite"),
    ],
)
def test_export_frame_refuses_bad_cameras(width, K, c2w, message):
    with pytest.raises(ValueError, match=message) as error:
        ExportFrame("bad.jpg", width, 48, K, c2w)
    assert "bad.jpg" in str(error.value)
