import json
import struct
import sys

import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")
from scipy.spatial.transform import Rotation  # noqa: E402

from fast3r.io.frames import ExportFrame, camera_colors  # noqa: E402
from fast3r.io.glb import OPENCV_TO_GLTF, write_glb  # noqa: E402


def make_scene(num_cameras: int = 3, num_points: int = 400):
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, size=(num_points, 3)).astype(np.float32) + [0, 0, 4]
    colors = rng.integers(0, 256, size=(num_points, 3), dtype=np.uint8)
    frames = []
    for index, rotation in enumerate(Rotation.random(num_cameras, random_state=1).as_matrix()):
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = rotation, [index * 0.5, 0.1, -0.2]
        K = [[800.0, 0, 511.5], [0, 820.0, 383.5], [0, 0, 1]]
        frames.append(ExportFrame(f"photo_{index}.jpg", 1024, 768, K, c2w))
    return points, colors, frames


def glb_lines_colours(path) -> dict[str, np.ndarray]:
    """COLOR_0 of each LINES mesh, read straight from the GLB (trimesh drops line colours on load)."""
    data = path.read_bytes()
    json_length = struct.unpack("<I", data[12:16])[0]
    document = json.loads(data[20 : 20 + json_length])
    binary = data[20 + json_length + 8 :]
    colours = {}
    for mesh in document["meshes"]:
        primitive = mesh["primitives"][0]
        if primitive["mode"] != 1:
            continue
        accessor = document["accessors"][primitive["attributes"]["COLOR_0"]]
        view = document["bufferViews"][accessor["bufferView"]]
        raw = binary[view["byteOffset"] : view["byteOffset"] + view["byteLength"]]
        colours[mesh["name"]] = np.frombuffer(raw, dtype=np.uint8).reshape(accessor["count"], 4)
    return colours


def test_round_trip_points_colours_bounds_and_cameras(tmp_path):
    points, colors, frames = make_scene()
    path = tmp_path / "scene.glb"
    write_glb(path, points, colors, frames, frustum_scale=0.25)
    scene = trimesh.load(path)
    assert set(scene.geometry) == {"points", "camera_0000", "camera_0001", "camera_0002"}
    cloud = scene.geometry["points"]
    expected = points @ OPENCV_TO_GLTF.T
    np.testing.assert_allclose(cloud.vertices, expected, atol=1e-6)
    np.testing.assert_array_equal(cloud.colors[:, :3], colors)
    np.testing.assert_allclose(cloud.bounds, [expected.min(axis=0), expected.max(axis=0)], atol=1e-6)
    for index, frame in enumerate(frames):
        frustum = scene.geometry[f"camera_{index:04d}"]
        apex = OPENCV_TO_GLTF @ frame.center
        np.testing.assert_allclose(frustum.vertices[0], apex, atol=1e-6)
        # the far corners lie at z-depth 0.25 along the camera's viewing axis
        forward = OPENCV_TO_GLTF @ frame.c2w[:3, 2]
        np.testing.assert_allclose((frustum.vertices[1] - apex) @ forward, 0.25, atol=1e-6)
    colours = glb_lines_colours(path)
    for index, expected_colour in enumerate(camera_colors(3)):
        np.testing.assert_array_equal(np.unique(colours[f"camera_{index:04d}"][:, :3], axis=0), [expected_colour])


def test_gltf_axes_put_camera_up_along_plus_y(tmp_path):
    frame = ExportFrame("up.jpg", 64, 48, [[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]], np.eye(4))
    write_glb(tmp_path / "one.glb", np.zeros((0, 3)), np.zeros((0, 3), np.uint8), [frame], frustum_scale=1.0)
    frustum = trimesh.load(tmp_path / "one.glb").geometry["camera_0000"]
    top_left = frustum.vertices[1]  # pixel (-0.5, -0.5): top of the image
    assert top_left[1] > 0, "the top of an identity camera's image must be at +y in glTF"
    assert top_left[2] < 0, "an identity camera must look along -z in glTF"


def test_default_frustum_scale_follows_the_scene_size(tmp_path):
    points, colors, frames = make_scene()
    write_glb(tmp_path / "small.glb", points, colors, frames)
    scaled_frames = []
    for frame in frames:
        c2w = frame.c2w.copy()
        c2w[:3, 3] *= 10
        scaled_frames.append(ExportFrame(frame.file_name, frame.width, frame.height, frame.K, c2w))
    write_glb(tmp_path / "large.glb", points * 10, colors, scaled_frames)

    def frustum_depth(path):
        frustum = trimesh.load(path).geometry["camera_0000"]
        return np.linalg.norm(frustum.vertices[1] - frustum.vertices[0])

    assert frustum_depth(tmp_path / "large.glb") == pytest.approx(10 * frustum_depth(tmp_path / "small.glb"), rel=1e-4)


def test_failed_export_leaves_no_file(tmp_path, monkeypatch):
    points, colors, frames = make_scene()

    def broken_export(self, **kwargs):
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(trimesh.Scene, "export", broken_export)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        write_glb(tmp_path / "scene.glb", points, colors, frames)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_errors(tmp_path):
    points, colors, frames = make_scene()
    with pytest.raises(ValueError, match="frustum_scale must be a positive"):
        write_glb(tmp_path / "a.glb", points, colors, frames, frustum_scale=-1.0)
    with pytest.raises(ValueError, match="nothing to export"):
        write_glb(tmp_path / "b.glb", np.zeros((0, 3)), np.zeros((0, 3), np.uint8), [])
    with pytest.raises(ValueError, match="file names must be unique"):
        write_glb(tmp_path / "c.glb", points, colors, [frames[0], frames[0]])
    with pytest.raises(ValueError, match="colors must be uint8"):
        write_glb(tmp_path / "d.glb", points, colors / 255.0, frames)
    assert list(tmp_path.iterdir()) == []


def test_missing_trimesh_names_the_extra(tmp_path, monkeypatch):
    points, colors, frames = make_scene()
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(ImportError, match=r"pip install 'fast3r\[export\]'"):
        write_glb(tmp_path / "scene.glb", points, colors, frames)
