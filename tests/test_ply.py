import builtins

import numpy as np
import pytest

from fast3r.io import ply
from fast3r.io.ply import read_ply, voxel_downsample, write_ply


def random_cloud(num_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(num_points, 3)).astype(np.float32)
    colors = rng.integers(0, 256, size=(num_points, 3), dtype=np.uint8)
    return points, colors


def test_round_trip_with_and_without_normals(tmp_path):
    points, colors = random_cloud(1000)
    normals = points / np.linalg.norm(points, axis=1, keepdims=True)
    write_ply(tmp_path / "plain.ply", points, colors)
    write_ply(tmp_path / "normals.ply", points, colors, normals=normals)
    plain = read_ply(tmp_path / "plain.ply")
    with_normals = read_ply(tmp_path / "normals.ply")
    np.testing.assert_array_equal(plain.points, points)
    np.testing.assert_array_equal(plain.colors, colors)
    assert plain.normals is None
    np.testing.assert_array_equal(with_normals.normals, normals.astype(np.float32))
    header, body = (tmp_path / "plain.ply").read_bytes().split(b"end_header\n", 1)
    assert b"format binary_little_endian 1.0" in header
    assert len(body) == 1000 * (3 * 4 + 3)  # float32 x y z + uchar r g b, nothing else


def test_trimesh_reads_counts_colours_and_bounds(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    points, colors = random_cloud(500, seed=1)
    write_ply(tmp_path / "cloud.ply", points, colors)
    cloud = trimesh.load(tmp_path / "cloud.ply")
    assert len(cloud.vertices) == 500
    np.testing.assert_array_equal(cloud.colors[:, :3], colors)
    np.testing.assert_allclose(cloud.bounds, [points.min(axis=0), points.max(axis=0)], rtol=1e-6)


def test_reads_ascii_and_big_endian_files(tmp_path):
    header = "ply\nformat {}\nelement vertex 2\nproperty double x\nproperty double y\nproperty double z\n"
    header += "property uchar red\nproperty uchar green\nproperty uchar blue\nelement face 0\n"
    header += "property list uchar int vertex_indices\nend_header\n"
    (tmp_path / "ascii.ply").write_text(header.format("ascii 1.0") + "1 2 3 10 20 30\n-1 0.5 2 255 0 7\n")
    table = np.array(
        [(1, 2, 3, 10, 20, 30), (-1, 0.5, 2, 255, 0, 7)],
        dtype=[("x", ">f8"), ("y", ">f8"), ("z", ">f8"), ("r", "u1"), ("g", "u1"), ("b", "u1")],
    )
    (tmp_path / "big.ply").write_bytes(header.format("binary_big_endian 1.0").encode() + table.tobytes())
    for name in ("ascii.ply", "big.ply"):
        loaded = read_ply(tmp_path / name)
        np.testing.assert_allclose(loaded.points, [[1, 2, 3], [-1, 0.5, 2]])
        np.testing.assert_array_equal(loaded.colors, [[10, 20, 30], [255, 0, 7]])


def test_read_rejects_truncated_and_foreign_files(tmp_path):
    points, colors = random_cloud(10)
    write_ply(tmp_path / "cloud.ply", points, colors)
    data = (tmp_path / "cloud.ply").read_bytes()
    (tmp_path / "short.ply").write_bytes(data[:-5])
    with pytest.raises(ValueError, match="short.ply.*truncated"):
        read_ply(tmp_path / "short.ply")
    (tmp_path / "other.ply").write_bytes(b"solid stl\n")
    with pytest.raises(ValueError, match="not a PLY"):
        read_ply(tmp_path / "other.ply")


@pytest.mark.parametrize(
    "points, colors, message",
    [
        (np.zeros((4, 2)), np.zeros((4, 2), np.uint8), "points must be a numeric \\(M, 3\\)"),
        (np.zeros((4, 3)), np.zeros((3, 3), np.uint8), "colors must have the points' shape"),
        (np.zeros((4, 3)), np.zeros((4, 3), np.float32), "colors must be uint8"),
        (np.array([[0, 0, 0]] * 3 + [[0, 0, np.inf]]), np.zeros((4, 3), np.uint8), "1 of 4 points are NaN"),
    ],
)
def test_bad_input_is_refused_and_names_the_file(tmp_path, points, colors, message):
    with pytest.raises(ValueError, match=message) as error:
        write_ply(tmp_path / "bad.ply", points, colors)
    assert "bad.ply" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "cloud.ply"
    target.write_bytes(b"previous")
    points, colors = random_cloud(100)

    class BrokenStream:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def write(self, data):
            self.stream.write(data[: len(data) // 2])
            raise OSError("disk full")

    monkeypatch.setattr(ply, "open", lambda *args: BrokenStream(builtins.open(*args)), raising=False)
    with pytest.raises(OSError, match="disk full"):
        write_ply(target, points, colors)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["cloud.ply"]


def test_voxel_downsample_matches_a_plain_per_voxel_average():
    points, colors = random_cloud(5000, seed=3)
    voxel_size = 0.5
    down_points, down_colors = voxel_downsample(points, colors, voxel_size)
    cells = np.floor((points - points.min(axis=0)) / voxel_size).astype(int)
    groups: dict[tuple, list[int]] = {}
    for index, cell in enumerate(map(tuple, cells)):
        groups.setdefault(cell, []).append(index)
    expected = {
        tuple(np.round(points[idx].astype(np.float64).mean(axis=0), 4)): np.round(colors[idx].mean(axis=0))
        for idx in groups.values()
    }
    assert len(down_points) == len(groups)
    for point, color in zip(down_points, down_colors):
        np.testing.assert_array_equal(color, expected[tuple(np.round(point.astype(np.float64), 4))])


def test_voxel_downsample_merges_a_cluster_and_keeps_isolated_points():
    points = np.array([[0.01, 0.01, 0.01], [0.03, 0.05, 0.02], [5.0, 5.0, 5.0]], dtype=np.float32)
    colors = np.array([[0, 0, 0], [100, 50, 255], [7, 8, 9]], dtype=np.uint8)
    down_points, down_colors = voxel_downsample(points, colors, 0.1)
    assert len(down_points) == 2
    np.testing.assert_allclose(down_points[0], [0.02, 0.03, 0.015], atol=1e-6)
    np.testing.assert_array_equal(down_colors, [[50, 25, 128], [7, 8, 9]])


def test_voxel_downsample_refuses_bad_sizes():
    points, colors = random_cloud(10)
    with pytest.raises(ValueError, match="positive"):
        voxel_downsample(points, colors, 0.0)
    with pytest.raises(ValueError, match="too small"):
        voxel_downsample(points * 1e6, colors, 1e-3)
