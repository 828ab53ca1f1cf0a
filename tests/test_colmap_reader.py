"""COLMAP reader: tiny reconstructions written here, by hand, in both formats, from a synthetic scene."""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from fast3r.data.colmap_reader import load_colmap_views, read_depth_map, read_model
from fast3r.data.synthetic import render_scene
from fast3r.data.views import View

MODEL_IDS = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "OPENCV": 4, "OPENCV_FISHEYE": 5}


def colmap_params(model: str, K: np.ndarray, distortion: list[float]) -> list[float]:
    """COLMAP parameters of an OpenCV K: principal point moved to COLMAP's +0.5 pixel centres."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5
    return {
        "SIMPLE_PINHOLE": [fx, cx, cy],
        "PINHOLE": [fx, fy, cx, cy],
        "SIMPLE_RADIAL": [fx, cx, cy, *distortion[:1]],
        "OPENCV": [fx, fy, cx, cy, *distortion],
        "OPENCV_FISHEYE": [fx, fy, cx, cy, *distortion],
    }[model]


def world_to_camera_quaternion(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w2c = np.linalg.inv(c2w)
    x, y, z, w = Rotation.from_matrix(w2c[:3, :3]).as_quat()
    return np.array([w, x, y, z]), w2c[:3, 3]


def write_model(
    folder: Path,
    views: list[View],
    models: list[str],
    fmt: str,
    points: np.ndarray,
    distortion: list[float] | None = None,
) -> None:
    """cameras / images / points3D in COLMAP's .bin or .txt layout, one camera per view.

    Every point is observed by the first image only (its 2D point i is 3D point 100 + i), so the model
    is consistent enough for COLMAP itself to load.
    """
    folder.mkdir(parents=True, exist_ok=True)
    w2c = np.linalg.inv(views[0].c2w)
    in_first = points @ w2c[:3, :3].T + w2c[:3, 3]
    observed = in_first[:, :2] / in_first[:, 2:] * np.diag(views[0].K)[:2] + views[0].K[:2, 2] + 0.5  # COLMAP pixels
    distortion = distortion or [0.0, 0.0, 0.0, 0.0]
    cameras = [(i + 1, model, view.width, view.height, colmap_params(model, view.K, distortion)) for i, (view, model) in enumerate(zip(views, models))]
    images = [(10 + i, *world_to_camera_quaternion(view.c2w), i + 1, view.name) for i, view in enumerate(views)]
    rgb = (np.arange(len(points) * 3).reshape(-1, 3) % 256).astype(np.uint8)
    if fmt == "bin":
        data = struct.pack("<Q", len(cameras))
        for camera_id, model, width, height, params in cameras:
            data += struct.pack("<iiQQ", camera_id, MODEL_IDS[model], width, height) + struct.pack(f"<{len(params)}d", *params)
        (folder / "cameras.bin").write_bytes(data)
        data = struct.pack("<Q", len(images))
        for image_id, qvec, tvec, camera_id, name in images:
            data += struct.pack("<i4d3di", image_id, *qvec, *tvec, camera_id) + name.encode() + b"\0"
            points2d = observed if image_id == images[0][0] else np.zeros((0, 2))
            data += struct.pack("<Q", len(points2d))
            data += b"".join(struct.pack("<ddq", x, y, 100 + i) for i, (x, y) in enumerate(points2d))
        (folder / "images.bin").write_bytes(data)
        data = struct.pack("<Q", len(points))
        for i, point in enumerate(points):
            data += struct.pack("<Q3d3BdQ", 100 + i, *point, *rgb[i], 0.25 * i, 1) + struct.pack("<2i", images[0][0], i)
        (folder / "points3D.bin").write_bytes(data)
    else:
        lines = ["# Camera list with one line of data per camera:"]
        lines += [f"{camera_id} {model} {width} {height} " + " ".join(repr(float(p)) for p in params) for camera_id, model, width, height, params in cameras]
        (folder / "cameras.txt").write_text("\n".join(lines) + "\n")
        lines = ["# Image list with two lines of data per image:", "#   POINTS2D[] as (X, Y, POINT3D_ID)"]
        for index, (image_id, qvec, tvec, camera_id, name) in enumerate(images):
            pose = " ".join(repr(float(x)) for x in (*qvec, *tvec))
            points2d = " ".join(f"{x!r} {y!r} {100 + i}" for i, (x, y) in enumerate(observed.tolist())) if index == 0 else ""
            lines += [f"{image_id} {pose} {camera_id} {name}", points2d]
        (folder / "images.txt").write_text("\n".join(lines) + "\n")
        lines = ["# 3D point list"]
        lines += [f"{100 + i} " + " ".join(repr(float(c)) for c in point) + f" {rgb[i, 0]} {rgb[i, 1]} {rgb[i, 2]} {0.25 * i!r} {images[0][0]} {i}" for i, point in enumerate(points)]
        (folder / "points3D.txt").write_text("\n".join(lines) + "\n")


def write_depth_bin(path: Path, depth: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = depth.shape
    path.write_bytes(f"{width}&{height}&1&".encode() + depth.astype("<f4").tobytes())


@pytest.fixture(scope="module")
def scene_views() -> list[View]:
    views = render_scene(seed=4, num_views=3, height=48, width=64, trajectory="walk")
    for i, view in enumerate(views):
        view.name = f"frame_{2 - i}.png"  # stored out of order: the reader sorts by name
    return views


def write_reconstruction(root: Path, views: list[View], fmt: str, models: list[str], distortion=None) -> np.ndarray:
    points = views[0].points_world()[::9, ::11].reshape(-1, 3).astype(np.float64)
    write_model(root / "sparse" / "0", views, models, fmt, points, distortion)
    for view in views:
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(view.image).save(root / "images" / view.name)
        write_depth_bin(root / "stereo" / "depth_maps" / f"{view.name}.geometric.bin", view.depth)
    return points


@pytest.mark.parametrize("fmt", ["bin", "txt"])
def test_views_round_trip_exactly(tmp_path: Path, scene_views: list[View], fmt: str) -> None:
    write_reconstruction(tmp_path, scene_views, fmt, ["PINHOLE", "SIMPLE_PINHOLE", "OPENCV"])
    views = load_colmap_views(tmp_path, depth_dir=tmp_path / "stereo" / "depth_maps")
    truth = sorted(scene_views, key=lambda view: view.name)
    assert [view.name for view in views] == [view.name for view in truth]
    for view, expected in zip(views, truth):
        np.testing.assert_allclose(view.K, expected.K, rtol=0, atol=1e-12)
        np.testing.assert_allclose(view.c2w, expected.c2w, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(view.image, expected.image)
        np.testing.assert_array_equal(view.depth, expected.depth)
        np.testing.assert_allclose(view.points_world(), expected.points_world(), atol=1e-5)


@pytest.mark.parametrize("fmt", ["bin", "txt"])
def test_points3d_round_trip(tmp_path: Path, scene_views: list[View], fmt: str) -> None:
    points = write_reconstruction(tmp_path, scene_views, fmt, ["PINHOLE"] * 3)
    model = read_model(tmp_path / "sparse" / "0")
    assert sorted(model.cameras) == [1, 2, 3] and sorted(model.images) == [10, 11, 12]
    np.testing.assert_array_equal(model.points.xyz, points)
    np.testing.assert_array_equal(model.points.ids, 100 + np.arange(len(points)))
    np.testing.assert_array_equal(model.points.error, 0.25 * np.arange(len(points)))
    assert model.points.rgb.dtype == np.uint8 and model.points.rgb[1].tolist() == [3, 4, 5]


def test_colmap_pixel_centres_become_opencv(tmp_path: Path, scene_views: list[View]) -> None:
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    (sparse / "cameras.txt").write_text("1 PINHOLE 64 48 50.0 51.0 32.0 24.0\n")
    (sparse / "images.txt").write_text(f"1 1 0 0 0 0 0 0 1 {scene_views[0].name}\n\n")
    (tmp_path / "images").mkdir()
    Image.fromarray(scene_views[0].image).save(tmp_path / "images" / scene_views[0].name)
    (view,) = load_colmap_views(tmp_path)
    np.testing.assert_array_equal(view.K, [[50.0, 0, 31.5], [0, 51.0, 23.5], [0, 0, 1]])
    np.testing.assert_array_equal(view.c2w, np.eye(4))
    assert view.depth is None


def test_downscaled_images_scale_intrinsics(tmp_path: Path, scene_views: list[View]) -> None:
    write_reconstruction(tmp_path, scene_views, "bin", ["PINHOLE"] * 3)
    for view in scene_views:  # replace the images by half-size copies, as in an images_2 folder
        Image.fromarray(cv2.resize(view.image, (32, 24), interpolation=cv2.INTER_AREA)).save(tmp_path / "images" / view.name)
    view = load_colmap_views(tmp_path)[0]
    K = sorted(scene_views, key=lambda v: v.name)[0].K
    np.testing.assert_allclose(view.K[0], [K[0, 0] / 2, 0, (K[0, 2] + 0.5) / 2 - 0.5])
    np.testing.assert_allclose(view.K[1], [0, K[1, 1] / 2, (K[1, 2] + 0.5) / 2 - 0.5])


def test_depth_from_npy_and_png_with_scale(tmp_path: Path, scene_views: list[View]) -> None:
    write_reconstruction(tmp_path, scene_views, "txt", ["PINHOLE"] * 3)
    (tmp_path / "depth").mkdir()
    for view in scene_views:
        stem = Path(view.name).stem
        if view.name == "frame_0.png":
            np.save(tmp_path / "depth" / f"{stem}.npy", view.depth * 2.0)
        else:
            Image.fromarray(np.round(view.depth * 2000.0).astype(np.uint16)).save(tmp_path / "depth" / f"{stem}.png")
    views = load_colmap_views(tmp_path, depth_dir=tmp_path / "depth", depth_scale=2.0)
    truth = sorted(scene_views, key=lambda view: view.name)
    np.testing.assert_allclose(views[0].depth, truth[0].depth, rtol=1e-6)
    views = load_colmap_views(tmp_path, depth_dir=tmp_path / "depth", depth_scale=2000.0)
    np.testing.assert_allclose(views[1].depth, truth[1].depth, atol=0.5 / 2000.0 + 1e-6)


def test_distortion_rejected_ignored_or_undistorted(tmp_path: Path, scene_views: list[View]) -> None:
    truth = sorted(scene_views, key=lambda view: view.name)
    distortion = [-0.25, 0.05, 0.001, -0.002]
    write_reconstruction(tmp_path, scene_views, "bin", ["OPENCV"] * 3, distortion)
    for view in truth:  # photograph the scene through the distorting lens
        height, width = view.depth.shape
        grid = np.stack(np.meshgrid(np.arange(width), np.arange(height)), -1).reshape(-1, 1, 2).astype(np.float64)
        ideal = cv2.undistortPoints(grid, view.K, np.array(distortion), P=view.K).reshape(height, width, 2).astype(np.float32)
        distorted = cv2.remap(view.image, ideal[..., 0], ideal[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        Image.fromarray(distorted).save(tmp_path / "images" / view.name)
    with pytest.raises(ValueError, match=r"camera 3 \(OPENCV\) has lens distortion \[-0.25"):
        load_colmap_views(tmp_path)
    ignored = load_colmap_views(tmp_path, distortion="ignore")
    undistorted = load_colmap_views(tmp_path, distortion="undistort")
    np.testing.assert_allclose(undistorted[0].K, truth[0].K, atol=1e-12)
    def blur(image: np.ndarray) -> np.ndarray:  # compare blurred: resampling twice softens fine texture
        return cv2.GaussianBlur(image.astype(np.float32), (5, 5), 1.5)[2:-2, 2:-2]

    def error(image: np.ndarray) -> float:
        return float(np.abs(blur(image) - blur(truth[0].image)).mean())

    assert error(undistorted[0].image) < 0.3 * error(ignored[0].image)


def test_bad_inputs_get_clear_errors(tmp_path: Path, scene_views: list[View]) -> None:
    write_reconstruction(tmp_path, scene_views, "bin", ["OPENCV_FISHEYE"] * 3)
    with pytest.raises(ValueError, match="OPENCV_FISHEYE model"):
        load_colmap_views(tmp_path)
    write_reconstruction(tmp_path, scene_views, "bin", ["PINHOLE"] * 3)
    (tmp_path / "images" / scene_views[1].name).unlink()
    with pytest.raises(FileNotFoundError, match=scene_views[1].name):
        load_colmap_views(tmp_path)
    images_bin = tmp_path / "sparse" / "0" / "images.bin"
    images_bin.write_bytes(images_bin.read_bytes()[:-30])
    with pytest.raises(ValueError, match="images.bin: truncated"):
        load_colmap_views(tmp_path)
    bad_depth = tmp_path / "bad.geometric.bin"
    bad_depth.write_bytes(b"4&3&1&" + np.zeros(5, "<f4").tobytes())
    with pytest.raises(ValueError, match="bad.geometric.bin: expected 4x3x1 floats"):
        read_depth_map(bad_depth)
    with pytest.raises(FileNotFoundError, match="no COLMAP model"):
        load_colmap_views(tmp_path / "images")


@pytest.mark.parametrize("fmt", ["bin", "txt"])
def test_agrees_with_colmap_itself(tmp_path: Path, scene_views: list[View], fmt: str) -> None:
    """pycolmap (COLMAP's own code; optional) loads these fixtures, and models it writes read the same here."""
    pycolmap = pytest.importorskip("pycolmap")
    points = write_reconstruction(tmp_path, scene_views, fmt, ["PINHOLE", "SIMPLE_PINHOLE", "OPENCV"])
    reconstruction = pycolmap.Reconstruction(str(tmp_path / "sparse" / "0"))
    assert reconstruction.num_points3D() == len(points)
    written = tmp_path / "by_colmap"
    written.mkdir()
    (reconstruction.write_binary if fmt == "bin" else reconstruction.write_text)(str(written))
    ours, theirs = read_model(tmp_path / "sparse" / "0"), read_model(written)
    for image_id, image in ours.images.items():
        assert theirs.images[image_id].name == image.name
        np.testing.assert_allclose(theirs.images[image_id].camera_to_world(), image.camera_to_world(), atol=1e-12)
        cam_from_world = np.vstack([reconstruction.images[image_id].cam_from_world().matrix(), [0, 0, 0, 1]])
        np.testing.assert_allclose(np.linalg.inv(cam_from_world), image.camera_to_world(), atol=1e-12)
    for camera_id, camera in ours.cameras.items():
        assert (theirs.cameras[camera_id].model, theirs.cameras[camera_id].width) == (camera.model, camera.width)
        np.testing.assert_array_equal(theirs.cameras[camera_id].params, camera.params)
    order = np.argsort(theirs.points.ids)
    np.testing.assert_array_equal(theirs.points.xyz[order], ours.points.xyz)
    np.testing.assert_array_equal(theirs.points.rgb[order], ours.points.rgb)
