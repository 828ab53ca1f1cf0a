"""The reconstruct pipeline end to end on CPU with a tiny random model and real-looking photos."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fast3r.io.colmap import read_colmap
from fast3r.pipeline import EXPORTS, ReconstructError, reconstruct


def textured(width, height, seed):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BICUBIC)


@pytest.fixture
def photos(tmp_path):
    """Three photos: landscape, portrait, and a landscape JPEG stored sideways with EXIF rotation 6."""
    folder = tmp_path / "photos"
    folder.mkdir()
    textured(320, 240, 0).save(folder / "a.png")
    textured(240, 320, 1).save(folder / "b.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    textured(240, 320, 2).save(folder / "c.jpg", exif=exif, quality=95)  # stored 240x320, shown 320x240
    return folder


def test_reconstruct_writes_every_export_readable_by_its_tools(tiny_weights, photos, tmp_path):
    out = tmp_path / "out"
    result = reconstruct(photos, out, weights=tiny_weights, size=128, exports=list(EXPORTS), progress=False)
    assert [img.name for img in result.images] == ["a.png", "b.jpg", "c.jpg"]
    assert [img.rgb.shape[:2] for img in result.images] == [(96, 128), (128, 96), (96, 128)]
    assert {p.name for p in result.files} == {
        "points.ply", "scene.glb", "sparse", "transforms.json", "cameras.json", "depth", "predictions.npz",
        "preview.png", "images", "viewer.npz",
    }
    assert set(result.timings) == {
        "load model", "images + encoder", "fusion + heads", "cameras", "point cloud", "to host (during export)", "export"
    }

    import pycolmap
    import trimesh

    cloud = trimesh.load(out / "points.ply")
    points, colors = result.point_cloud()  # under the default budget: every confident point
    assert len(cloud.vertices) == len(points) > 0
    np.testing.assert_allclose(cloud.vertices, points, rtol=1e-6)
    assert len(trimesh.load(out / "scene.glb").geometry) >= 2  # points and camera frusta

    model = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert {img.name for img in model.images.values()} == {"a.png", "b.jpg", "c.jpg"}
    read_back = {frame.file_name: frame for frame in read_colmap(out / "sparse" / "0")}
    for frame in result.frames():  # same camera centres and intrinsics, at the original resolution
        again = read_back[frame.file_name]
        assert (again.width, again.height) == (frame.width, frame.height)
        np.testing.assert_allclose(again.K, frame.K, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(again.center, frame.center, rtol=1e-5, atol=1e-5)
    # original photo sizes, EXIF rotation applied
    assert [(f.width, f.height) for f in result.frames()] == [(320, 240), (240, 320), (320, 240)]
    with Image.open(out / "images" / "c.jpg") as saved:
        assert saved.size == (320, 240)

    transforms = json.loads((out / "transforms.json").read_text())
    assert len(transforms["frames"]) == 3
    cameras = json.loads((out / "cameras.json").read_text())
    assert len(cameras["views"] if isinstance(cameras, dict) else cameras) == 3
    with np.load(out / "predictions.npz") as npz:
        assert "c2w" in npz and npz["c2w"].shape == (3, 4, 4)
        assert npz["K_original"].shape == (3, 3, 3)
    assert len(list((out / "depth").glob("*.png"))) == 3
    assert len(list((out / "depth").glob("*_conf.npy"))) == 3
    assert not list(out.rglob("*.tmp"))


def test_intrinsics_map_back_to_the_original_photo(tiny_weights, photos):
    result = reconstruct(photos, None, weights=tiny_weights, size=128, progress=False)
    for image, frame, K_model in zip(result.images, result.frames(), result.cameras.K):
        # the model-image centre is the photo centre after the release's centred crop
        scale = frame.width / image.transform.resized_size[0]
        assert frame.K[0, 0] == pytest.approx(K_model[0, 0] * scale, rel=1e-6)
        assert frame.K[0, 2] == pytest.approx((frame.width - 1) / 2, abs=0.6 * scale)


def test_existing_output_needs_overwrite(tiny_weights, photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty; pass --overwrite"):
        reconstruct(photos, out, weights=tiny_weights, size=128, exports=["cameras"], progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    reconstruct(photos, out, weights=tiny_weights, size=128, exports=["cameras"], overwrite=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["cameras.json", "run.json"]  # replaced, not merged


def test_bad_files_are_named_or_skipped(tiny_weights, photos, tmp_path):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (photos / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="broken.jpg") as info:
        reconstruct(photos, None, weights=tiny_weights, size=128, progress=False)
    assert "empty.png" in str(info.value)
    with pytest.warns(UserWarning, match="broken.jpg"):
        result = reconstruct(photos, None, weights=tiny_weights, size=128, skip_bad=True, progress=False)
    assert len(result.images) == 3


def test_fewer_than_two_views_is_refused(tiny_weights, photos, tmp_path):
    with pytest.raises(ReconstructError, match="at least two views"):
        reconstruct([photos / "a.png"], None, weights=tiny_weights, size=128, progress=False)


def test_max_views_keeps_an_even_spread(tiny_weights, photos):
    for index in range(3, 7):
        textured(320, 240, index).save(photos / f"z{index}.png")
    with pytest.warns(UserWarning, match="keeping 3"):
        result = reconstruct(photos, None, weights=tiny_weights, size=128, max_views=3, progress=False)
    assert [img.name for img in result.images] == ["a.png", "z3.png", "z6.png"]


def test_unknown_export_is_refused(tiny_weights, photos, tmp_path):
    with pytest.raises(ReconstructError, match="--export: unknown obj"):
        reconstruct(photos, tmp_path / "o", weights=tiny_weights, size=128, exports=["obj"], progress=False)
    assert "obj" not in EXPORTS


def test_gpu_out_of_memory_gives_advice(tiny_weights, photos, monkeypatch):
    from fast3r.model import Fast3R

    def out_of_memory(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(Fast3R, "decode", out_of_memory)
    with pytest.raises(ReconstructError, match="fewer views.*--size 224.*bf16"):
        reconstruct(photos, None, weights=tiny_weights, size=128, progress=False)


def test_video_input_exports_frames_at_model_resolution(tiny_weights, tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "walk.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for index in range(20):
            pixels = np.asarray(textured(160, 120, index))
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    out = tmp_path / "out"
    result = reconstruct(path, out, weights=tiny_weights, size=128, max_frames=4, exports=["images", "cameras"], progress=False)
    assert len(result.images) == 4
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == [image.name for image in result.images] and all(n.startswith("frame_") for n in names)
    views = json.loads((out / "cameras.json").read_text())["views"]
    assert {(v["width"], v["height"]) for v in views} == {(128, 96)}
    with Image.open(out / "images" / names[0]) as frame:
        assert frame.size == (128, 96)


def test_empty_video_is_a_clear_error(tiny_weights, tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.mp4"):
        reconstruct(tmp_path / "empty.mp4", None, weights=tiny_weights, size=128, progress=False)
