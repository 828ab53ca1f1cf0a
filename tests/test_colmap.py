import sys
from pathlib import Path

import numpy as np
import pytest

pycolmap = pytest.importorskip("pycolmap")
from scipy.spatial.transform import Rotation  # noqa: E402

from fast3r.io.colmap import read_colmap, write_colmap  # noqa: E402
from fast3r.io.frames import ExportFrame  # noqa: E402


def make_frames(intrinsics: list[tuple[int, int, float, float, float, float]]) -> list[ExportFrame]:
    """One frame per (width, height, fx, fy, cx, cy) with a random pose."""
    rotations = Rotation.random(len(intrinsics), random_state=2).as_matrix()
    rng = np.random.default_rng(2)
    frames = []
    for index, ((width, height, fx, fy, cx, cy), rotation) in enumerate(zip(intrinsics, rotations)):
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = rotation, rng.normal(size=3)
        K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
        frames.append(ExportFrame(f"IMG_{index:04d}.JPG", width, height, K, c2w))
    return frames


SHARED = (4032, 3024, 3000.0, 3000.0, 2015.5, 1511.5)
OTHER = (1920, 1080, 1500.0, 1490.0, 950.0, 541.0)


def make_points(num_points: int = 300):
    rng = np.random.default_rng(5)
    return rng.normal(size=(num_points, 3)).astype(np.float32), rng.integers(0, 256, (num_points, 3), dtype=np.uint8)


def test_round_trip_through_pycolmap(tmp_path):
    frames = make_frames([SHARED, SHARED, OTHER])
    points, colors = make_points()
    errors = np.linspace(0.1, 2.0, len(points))
    sparse = tmp_path / "sparse" / "0"
    write_colmap(sparse, frames, points, colors, point_errors=errors)
    assert {"cameras.bin", "images.bin", "points3D.bin"} <= {p.name for p in sparse.iterdir()}

    model = pycolmap.Reconstruction(str(sparse))
    assert model.num_cameras() == 2, "identical intrinsics must share one camera"
    assert model.num_points3D() == len(points)
    by_name = {image.name: image for image in model.images.values()}
    assert set(by_name) == {frame.file_name for frame in frames}
    for frame in frames:
        image = by_name[frame.file_name]
        camera = model.cameras[image.camera_id]
        assert camera.model_name == "PINHOLE"
        assert (camera.width, camera.height) == (frame.width, frame.height)
        np.testing.assert_allclose(
            camera.params, [frame.K[0, 0], frame.K[1, 1], frame.K[0, 2] + 0.5, frame.K[1, 2] + 0.5]
        )
        np.testing.assert_allclose(image.projection_center(), frame.center, atol=1e-9)
    stored = sorted((tuple(np.round(p.xyz, 5)), tuple(p.color), p.error) for p in model.points3D.values())
    expected = sorted(zip(map(tuple, np.round(points.astype(np.float64), 5)), map(tuple, colors), errors))
    assert [s[:2] for s in stored] == [e[:2] for e in expected]
    np.testing.assert_allclose([s[2] for s in stored], [e[2] for e in expected])


def test_colmap_projection_matches_opencv_plus_half_pixel(tmp_path):
    frames = make_frames([OTHER])
    write_colmap(tmp_path / "model", frames, *make_points(1))
    model = pycolmap.Reconstruction(str(tmp_path / "model"))
    image = model.images[1]
    world = frames[0].c2w[:3, :3] @ [0.3, -0.2, 2.0] + frames[0].c2w[:3, 3]  # a point in front of the camera
    camera_point = frames[0].w2c[:3, :3] @ world + frames[0].w2c[:3, 3]
    opencv_pixel = (frames[0].K @ camera_point)[:2] / camera_point[2]
    np.testing.assert_allclose(image.project_point(world), opencv_pixel + 0.5, atol=1e-6)


def test_read_colmap_gives_back_the_frames(tmp_path):
    frames = make_frames([SHARED, OTHER, OTHER, SHARED])
    write_colmap(tmp_path / "model", frames, *make_points())
    loaded = read_colmap(tmp_path / "model")
    assert [f.file_name for f in loaded] == [f.file_name for f in frames]
    for original, back in zip(frames, loaded):
        assert (back.width, back.height) == (original.width, original.height)
        np.testing.assert_allclose(back.K, original.K, atol=1e-9)
        np.testing.assert_allclose(back.c2w, original.c2w, atol=1e-9)


def test_replaces_an_old_model_but_never_other_files(tmp_path):
    sparse = tmp_path / "sparse"
    write_colmap(sparse, make_frames([SHARED, SHARED]), *make_points(10))
    write_colmap(sparse, make_frames([OTHER]), *make_points(7))
    model = pycolmap.Reconstruction(str(sparse))
    assert (model.num_images(), model.num_points3D()) == (1, 7)
    assert [p.name for p in tmp_path.iterdir()] == ["sparse"], "no staging or backup folder may remain"
    (sparse / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="more than a COLMAP model"):
        write_colmap(sparse, make_frames([OTHER]), *make_points(7))
    assert (sparse / "notes.txt").read_text() == "mine"


def test_crash_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def crash(self, path):
        (Path(path) / "cameras.bin").write_bytes(b"half")
        raise RuntimeError("crashed while writing")

    monkeypatch.setattr(pycolmap.Reconstruction, "write_binary", crash)
    with pytest.raises(RuntimeError, match="crashed while writing"):
        write_colmap(tmp_path / "sparse" / "0", make_frames([SHARED]), *make_points(5))
    assert list((tmp_path / "sparse").iterdir()) == []


def test_bad_input_errors(tmp_path):
    frames = make_frames([SHARED, OTHER])
    points, colors = make_points(4)
    with pytest.raises(ValueError, match="point_errors must be"):
        write_colmap(tmp_path / "a", frames, points, colors, point_errors=np.ones(3))
    with pytest.raises(ValueError, match="file names must be unique"):
        write_colmap(tmp_path / "b", [frames[0], frames[0]], points, colors)
    with pytest.raises(FileNotFoundError, match="no COLMAP model"):
        read_colmap(tmp_path / "missing")
    assert list(tmp_path.iterdir()) == []


def test_read_refuses_distorted_cameras(tmp_path):
    model = pycolmap.Reconstruction()
    camera = pycolmap.Camera(camera_id=1, model="SIMPLE_RADIAL", width=100, height=80, params=[90, 50, 40, 0.1])
    model.add_camera_with_trivial_rig(camera)
    model.add_image_with_trivial_frame(pycolmap.Image(name="a.jpg", camera_id=1, image_id=1), pycolmap.Rigid3d())
    (tmp_path / "model").mkdir()
    model.write_binary(str(tmp_path / "model"))
    with pytest.raises(ValueError, match="SIMPLE_RADIAL"):
        read_colmap(tmp_path / "model")


def test_missing_pycolmap_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycolmap", None)
    with pytest.raises(ImportError, match=r"pip install 'fast3r\[export\]'"):
        write_colmap(tmp_path / "model", make_frames([SHARED]), *make_points(2))
