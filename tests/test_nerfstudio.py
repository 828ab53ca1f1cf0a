import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fast3r.io.frames import ExportFrame
from fast3r.io.nerfstudio import write_transforms_json

jsonschema = pytest.importorskip("jsonschema")

NUMBER = {"type": "number"}
POSITIVE = {"type": "number", "exclusiveMinimum": 0}
ROW = {"type": "array", "items": NUMBER, "minItems": 4, "maxItems": 4}
INTRINSICS = {"fl_x": POSITIVE, "fl_y": POSITIVE, "cx": NUMBER, "cy": NUMBER,
              "w": {"type": "integer", "minimum": 1}, "h": {"type": "integer", "minimum": 1}}  # fmt: skip
# Written by hand from the Nerfstudio data format (docs: "Data conventions", "Using custom data").
TRANSFORMS_SCHEMA = {
    "type": "object",
    "required": ["camera_model", "frames"],
    "properties": {
        "camera_model": {"enum": ["OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "OPENCV_FISHEYE"]},
        "k1": NUMBER, "k2": NUMBER, "p1": NUMBER, "p2": NUMBER,
        "ply_file_path": {"type": "string"},
        **INTRINSICS,
        "frames": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["file_path", "transform_matrix", *INTRINSICS],
                "properties": {
                    "file_path": {"type": "string", "minLength": 1},
                    "transform_matrix": {"type": "array", "items": ROW, "minItems": 4, "maxItems": 4},
                    **INTRINSICS,
                },
            },
        },
    },
}  # fmt: skip


def make_frames(sizes: list[tuple[int, int]]) -> list[ExportFrame]:
    frames = []
    rotations = Rotation.random(len(sizes), random_state=4).as_matrix()
    for index, ((width, height), rotation) in enumerate(zip(sizes, rotations)):
        c2w = np.eye(4)
        c2w[:3, :3], c2w[:3, 3] = rotation, [index, -2.0, 0.5]
        K = [[1.2 * width, 0, width / 2 - 0.5], [0, 1.2 * width, height / 2 - 0.5], [0, 0, 1]]
        frames.append(ExportFrame(f"frame_{index:03d}.png", width, height, K, c2w))
    return frames


def test_matches_schema_and_matrices_invert_to_opencv(tmp_path):
    frames = make_frames([(640, 480), (640, 480), (800, 600)])
    path = tmp_path / "transforms.json"
    write_transforms_json(path, frames, ply_file_path="points.ply")
    meta = json.loads(path.read_text())
    jsonschema.validate(meta, TRANSFORMS_SCHEMA)
    assert meta["ply_file_path"] == "points.ply"
    assert "fl_x" not in meta, "top-level intrinsics only when every frame shares them"
    for frame, entry in zip(frames, meta["frames"]):
        assert entry["file_path"] == f"images/{frame.file_name}"
        transform = np.array(entry["transform_matrix"])
        np.testing.assert_allclose(transform @ np.diag([1.0, -1.0, -1.0, 1.0]), frame.c2w, atol=1e-12)
        np.testing.assert_allclose(-transform[:3, 2], frame.c2w[:3, 2], atol=1e-12)  # OpenGL looks along -z
        assert (entry["w"], entry["h"]) == (frame.width, frame.height)
        assert (entry["fl_x"], entry["fl_y"]) == (frame.K[0, 0], frame.K[1, 1])
        # Nerfstudio casts rays through pixel centres at +0.5: centred principal point = w / 2
        assert (entry["cx"], entry["cy"]) == (frame.width / 2, frame.height / 2)


def test_shared_intrinsics_are_repeated_at_top_level(tmp_path):
    frames = make_frames([(320, 240)] * 2)
    write_transforms_json(tmp_path / "t.json", frames, image_dir_prefix="")
    meta = json.loads((tmp_path / "t.json").read_text())
    jsonschema.validate(meta, TRANSFORMS_SCHEMA)
    assert (meta["w"], meta["h"], meta["cx"], meta["cy"]) == (320, 240, 160.0, 120.0)
    assert meta["camera_model"] == "OPENCV" and meta["k1"] == meta["p2"] == 0.0
    assert "ply_file_path" not in meta
    assert [entry["file_path"] for entry in meta["frames"]] == ["frame_000.png", "frame_001.png"]


def test_bad_input_errors_and_no_partial_file(tmp_path):
    frames = make_frames([(64, 48)])
    with pytest.raises(ValueError, match="no frames"):
        write_transforms_json(tmp_path / "a.json", [])
    with pytest.raises(ValueError, match="file names must be unique"):
        write_transforms_json(tmp_path / "b.json", frames * 2)
    with pytest.raises(TypeError, match="expected ExportFrame"):
        write_transforms_json(tmp_path / "c.json", [{"file_path": "x"}])
    assert list(tmp_path.iterdir()) == []
