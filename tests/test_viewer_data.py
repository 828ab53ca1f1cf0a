import numpy as np
import pytest

from fast3r.viz.viewer_data import read_viewer_data, write_viewer_data


def sample_arrays(count: int = 1000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    points = (rng.normal(size=(count, 3)) * 50).astype(np.float32)  # tens of metres: float16 would round
    return {
        "points_global": points,
        "points_local": points + np.float32(1e-3),
        "colors": rng.integers(0, 256, (count, 3), dtype=np.uint8),
        "confidence": rng.uniform(1, 10, count).astype(np.float32),
        "view_index": rng.integers(0, 8, count).astype(np.int32),
    }


def test_round_trip_is_exact_and_atomic(tmp_path):
    arrays = sample_arrays()
    write_viewer_data(tmp_path / "viewer.npz", **arrays)
    data = read_viewer_data(tmp_path / "viewer.npz")
    assert len(data) == 1000
    for name, value in arrays.items():
        stored = getattr(data, name)
        assert stored.dtype == value.dtype
        np.testing.assert_array_equal(stored, value)
    assert [p.name for p in tmp_path.iterdir()] == ["viewer.npz"]
    assert (tmp_path / "viewer.npz").stat().st_size < 1000 * 37 + 2000  # 36 bytes a point, plus headers


def test_empty_scene_round_trips(tmp_path):
    arrays = {name: value[:0] for name, value in sample_arrays().items()}
    write_viewer_data(tmp_path / "viewer.npz", **arrays)
    assert len(read_viewer_data(tmp_path / "viewer.npz")) == 0


def test_wrong_dtype_or_length_is_refused_before_writing(tmp_path):
    arrays = sample_arrays()
    with pytest.raises(ValueError, match="points_local must be float32"):
        write_viewer_data(tmp_path / "a.npz", **{**arrays, "points_local": arrays["points_local"].astype(np.float16)})
    with pytest.raises(ValueError, match=r"view_index must be int32 \(1000,\)"):
        write_viewer_data(tmp_path / "b.npz", **{**arrays, "view_index": arrays["view_index"][:10]})
    assert list(tmp_path.iterdir()) == []


def test_a_file_without_the_arrays_is_named(tmp_path):
    np.savez(tmp_path / "other.npz", points=np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="not a fast3r viewer file"):
        read_viewer_data(tmp_path / "other.npz")
