import json

import cv2
import numpy as np
import pytest

from fast3r.io import depth as depth_module
from fast3r.io.depth import PNG_MAX, read_depth_png, write_depth_maps


def make_depths():
    rng = np.random.default_rng(0)
    first = rng.uniform(0.5, 4.0, size=(24, 32)).astype(np.float32)
    first[0, 0], first[0, 1], first[0, 2] = 0.0, np.nan, -1.0  # unknown
    second = rng.uniform(1.0, 8.0, size=(12, 20)).astype(np.float32)
    second[5, 5] = 8.0  # the largest valid depth of the call
    second[6, 6] = 1e-6  # valid but far below one quantisation step
    return ["IMG_1.jpg", "sub/IMG_2.png"], [first, second]


def test_npy_exact_png_within_quantisation(tmp_path):
    names, depths = make_depths()
    scale_path = write_depth_maps(tmp_path, names, depths)
    meta = json.loads(scale_path.read_text())
    assert meta["png_scale"] == pytest.approx(8.0 / PNG_MAX)
    assert meta["files"]["sub/IMG_2.png"]["png"] == "sub/IMG_2.png"
    for name, depth, stem in zip(names, depths, ["IMG_1", "sub/IMG_2"]):
        valid = np.isfinite(depth) & (depth > 0)
        exact = np.load(tmp_path / f"{stem}.npy")
        assert exact.dtype == np.float32
        np.testing.assert_array_equal(exact, np.where(valid, depth, 0))
        png = cv2.imread(str(tmp_path / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == depth.shape
        assert ((png > 0) == valid).all(), "0 must mean exactly 'no depth'"
        decoded = read_depth_png(tmp_path, name)
        representable = valid & (depth >= meta["png_scale"] / 2)
        error = np.abs(decoded[representable] - depth[representable])
        assert error.max() <= meta["png_scale"] / 2 + 1e-6  # plus float32 rounding
        np.testing.assert_allclose(decoded[valid & ~representable], meta["png_scale"], rtol=1e-6)
    assert cv2.imread(str(tmp_path / "sub/IMG_2.png"), cv2.IMREAD_UNCHANGED).max() == PNG_MAX


def test_confidences_written_beside(tmp_path):
    names, depths = make_depths()
    confidences = [np.full(d.shape, 2.5, np.float32) for d in depths]
    write_depth_maps(tmp_path, names, depths, confidences)
    np.testing.assert_array_equal(np.load(tmp_path / "IMG_1_conf.npy"), confidences[0])
    files = json.loads((tmp_path / "depth_scale.json").read_text())["files"]
    assert files["IMG_1.jpg"]["confidence"] == "IMG_1_conf.npy"


def test_all_invalid_maps_still_write(tmp_path):
    write_depth_maps(tmp_path, ["a.jpg"], [np.zeros((4, 4), np.float32)])
    assert read_depth_png(tmp_path, "a.jpg").max() == 0


@pytest.mark.parametrize(
    "names, depths, confidences, message",
    [
        (["a.jpg", "a.png"], [np.ones((2, 2))] * 2, None, "same depth file names"),
        (["a.jpg"], [np.ones((2, 2))] * 2, None, "1 names but 2 depth maps"),
        (["a.jpg"], [np.ones((2, 2, 1))], None, "must be \\(H, W\\)"),
        (["a.jpg"], [np.ones((2, 2))], [np.ones((3, 2))], "confidence for 'a.jpg' has shape"),
        (["../escape.jpg"], [np.ones((2, 2))], None, "relative image name"),
    ],
)
def test_bad_input_errors(tmp_path, names, depths, confidences, message):
    with pytest.raises(ValueError, match=message):
        write_depth_maps(tmp_path / "depth", names, depths, confidences)
    assert not (tmp_path / "depth").exists()


def test_failure_part_way_leaves_no_scale_file_and_no_temp(tmp_path, monkeypatch):
    names, depths = make_depths()
    real_encode = cv2.imencode
    calls = []

    def encode_once(*args):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("encoder crashed")
        return real_encode(*args)

    monkeypatch.setattr(depth_module.cv2, "imencode", encode_once)
    with pytest.raises(RuntimeError, match="encoder crashed"):
        write_depth_maps(tmp_path, names, depths)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["IMG_1.npy", "IMG_1.png"], "only whole files of the finished view; no depth_scale.json"
