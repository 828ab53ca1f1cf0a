import cv2
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from fast3r.data.spann3r import (
    NRGBD_K,
    SEVEN_SCENES_K,
    load_dtu,
    load_nrgbd,
    load_seven_scenes,
    select_dtu,
    select_nrgbd,
    select_seven_scenes,
    stride_for,
)


def pose(index: int) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.random(random_state=index).as_matrix()
    matrix[:3, 3] = [index, 2.0 * index, -1.0]
    return matrix


def test_strides_follow_the_published_settings():
    assert [stride_for(name) for name in ("7scenes", "nrgbd", "dtu")] == [20, 40, 5]
    assert [stride_for(name, "pi3_dense") for name in ("7scenes", "nrgbd", "dtu")] == [40, 100, 5]
    with pytest.raises(ValueError, match="frame setting"):
        stride_for("dtu", "dense")


def test_seven_scenes_reads_test_split_every_20th_frame_and_millimetre_depth(tmp_path):
    scene = tmp_path / "chess"
    (scene / "seq-03").mkdir(parents=True)
    (scene / "seq-01").mkdir(parents=True)
    (scene / "TestSplit.txt").write_text("sequence3\n")
    depth = np.full((6, 8), 1500, np.uint16)
    depth[0, 0], depth[0, 1], depth[0, 2] = 65535, 20000, 0  # invalid, beyond 10 m, unknown
    for index in range(45):
        stem = scene / "seq-03" / f"frame-{index:06d}"
        Image.new("RGB", (16, 12), (index, 0, 0)).save(f"{stem}.color.png")
        cv2.imwrite(f"{stem}.depth.proj.png", depth)
        np.savetxt(f"{stem}.pose.txt", pose(index))
    selected = select_seven_scenes(tmp_path, stride=20)
    assert [(s.scene, s.frames) for s in selected] == [
        ("chess/seq-03", ["frame-000000", "frame-000020", "frame-000040"])
    ]
    views = load_seven_scenes(tmp_path, selected[0])
    assert views[1].image.shape == (6, 8, 3)  # colour resized to the depth's size
    assert views[1].image[0, 0, 0] == 20
    np.testing.assert_allclose(views[2].c2w, pose(40))
    np.testing.assert_allclose(views[0].K, SEVEN_SCENES_K)
    assert views[0].depth[1, 1] == pytest.approx(1.5)
    assert views[0].depth[0, 0] == 0 and views[0].depth[0, 1] == 0 and views[0].depth[0, 2] == 0


def test_nrgbd_converts_opengl_poses_and_skips_frames_without_pose(tmp_path):
    scene = tmp_path / "kitchen"
    (scene / "images").mkdir(parents=True)
    (scene / "depth").mkdir()
    blocks = []
    for index in range(90):
        Image.new("RGB", (8, 6), (index, 0, 0)).save(scene / "images" / f"img{index}.png")
        cv2.imwrite(str(scene / "depth" / f"depth{index}.png"), np.full((6, 8), 2000, np.uint16))
        matrix = np.full((4, 4), np.nan) if index == 40 else pose(index)
        blocks.append("\n".join(" ".join(f"{v:.17g}" for v in row) for row in matrix))
    (scene / "poses.txt").write_text("\n".join(blocks) + "\n")
    selected = select_nrgbd(tmp_path, stride=40)
    assert selected[0].frames == ["0", "80"]  # frame 40 has a nan pose
    views = load_nrgbd(tmp_path, selected[0])
    expected = pose(80)
    expected[:, 1:3] *= -1
    np.testing.assert_allclose(views[1].c2w, expected)
    # OpenGL -> OpenCV keeps the camera centre and flips the y and z axes
    np.testing.assert_allclose(views[1].c2w[:3, 2], -pose(80)[:3, 2])
    np.testing.assert_allclose(views[0].K, NRGBD_K)
    assert views[0].depth[3, 3] == pytest.approx(2.0)


def test_dtu_reads_mvsnet_cameras_and_erodes_the_mask(tmp_path):
    scan = tmp_path / "scan24"
    for sub in ("images", "depths", "binary_masks", "cams"):
        (scan / sub).mkdir(parents=True)
    K = np.array([[300.0, 0, 20], [0, 300.0, 15], [0, 0, 1]])
    mask = np.zeros((30, 40), np.uint8)
    mask[5:25, 5:35] = 255
    for index in range(12):
        stem = f"{index:08d}"
        Image.new("RGB", (40, 30), (index, 0, 0)).save(scan / "images" / f"{stem}.jpg")
        np.save(scan / "depths" / f"{stem}.npy", np.full((30, 40), 700.0, np.float32))
        cv2.imwrite(str(scan / "binary_masks" / f"{stem}.png"), mask)
        w2c = np.linalg.inv(pose(index))
        text = "extrinsic\n" + "\n".join(" ".join(f"{v:.17g}" for v in row) for row in w2c)
        text += "\n\nintrinsic\n" + "\n".join(" ".join(f"{v:.17g}" for v in row) for row in K) + "\n\n425.0 2.5\n"
        (scan / "cams" / f"{stem}_cam.txt").write_text(text)
    selected = select_dtu(tmp_path, stride=5)
    assert selected[0].frames == ["00000000", "00000005", "00000010"]
    views = load_dtu(tmp_path, selected[0])
    np.testing.assert_allclose(views[1].c2w, pose(5), atol=1e-12)
    np.testing.assert_allclose(views[1].K, K)
    valid = views[0].depth > 0
    assert valid[15, 20] and views[0].depth[15, 20] == pytest.approx(700.0)
    assert not valid[5, 5] and not valid[24, 20]  # eroded away from the mask border
    assert valid.sum() < (mask > 0).sum()


def test_missing_files_are_named(tmp_path):
    (tmp_path / "scanX" / "cams").mkdir(parents=True)
    (tmp_path / "scanX" / "images").mkdir()
    with pytest.raises(ValueError, match="no .jpg images"):
        select_dtu(tmp_path, stride=5)
    with pytest.raises(ValueError, match="TestSplit.txt"):
        select_seven_scenes(tmp_path, stride=20)
