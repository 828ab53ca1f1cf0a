"""Input collection, decoding and the release's preprocessing (fast3r.io.images)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fast3r.io.images import (
    ImageReadError,
    ImageTransform,
    check_size,
    collect_inputs,
    preprocess_image,
    read_image,
)
from fast3r.io.loader import load_images

RNG = np.random.default_rng(0)


def noise_image(width: int, height: int) -> Image.Image:
    return Image.fromarray(RNG.integers(0, 256, (height, width, 3), dtype=np.uint8))


def smooth_image(width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 gradients, friendly to lossy codecs."""
    v, u = np.mgrid[0:height, 0:width]
    return np.stack([u * 255 // max(width - 1, 1), v * 255 // max(height - 1, 1),
                     np.full_like(u, 90)], axis=-1).astype(np.uint8)


def release_rule(img: Image.Image, size: int, square_ok: bool = False) -> np.ndarray:
    """The released loader's rule written out by hand (floats and PIL's crop rounding included)."""
    width, height = img.size
    long_edge = round(size * max(width / height, height / width)) if size == 224 else size
    longest = max(width, height)
    interp = Image.LANCZOS if longest > long_edge else Image.BICUBIC
    img = img.resize(tuple(int(round(x * long_edge / longest)) for x in img.size), interp)
    width, height = img.size
    cx, cy = width // 2, height // 2
    if size == 224:
        half = min(cx, cy)
        return np.asarray(img.crop((cx - half, cy - half, cx + half, cy + half)))
    halfw, halfh = ((2 * cx) // 16) * 8, ((2 * cy) // 16) * 8
    if not square_ok and width == height:
        halfh = 3 * halfw / 4
    return np.asarray(img.crop((cx - halfw, cy - halfh, cx + halfw, cy + halfh)))


# ----------------------------------------------------------------------------- collect_inputs


def test_collect_directory_natural_order_images_only(tmp_path):
    for name in ["img10.png", "img2.jpg", "img1.PNG", "b.webp", ".hidden.jpg", "notes.txt",
                 "clip.mp4"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "img0.jpg").write_bytes(b"x")
    names = [p.name for p in collect_inputs(tmp_path)]
    assert names == ["b.webp", "img1.PNG", "img2.jpg", "img10.png"]


def test_collect_glob_list_and_video(tmp_path):
    for name in ["a3.jpg", "a20.jpg", "a100.jpg", "c.txt", "v.MOV"]:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in collect_inputs(str(tmp_path / "a*.jpg"))] == ["a3.jpg", "a20.jpg",
                                                                          "a100.jpg"]
    assert [p.name for p in collect_inputs(str(tmp_path / "*"))] == ["a3.jpg", "a20.jpg",
                                                                     "a100.jpg", "v.MOV"]
    listed = collect_inputs([tmp_path / "a100.jpg", str(tmp_path / "a3.jpg"), tmp_path / "v.MOV"])
    assert [p.name for p in listed] == ["a100.jpg", "a3.jpg", "v.MOV"]


def test_collect_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        collect_inputs(tmp_path / "missing.jpg")
    with pytest.raises(FileNotFoundError, match="no files match"):
        collect_inputs(str(tmp_path / "*.png"))
    (tmp_path / "only.txt").write_text("hello")
    with pytest.raises(ValueError, match="none of them an image"):
        collect_inputs(str(tmp_path / "*.txt"))
    with pytest.raises(ValueError, match="unsupported file type"):
        collect_inputs(tmp_path / "only.txt")
    with pytest.raises(ValueError, match="holds no images"):
        collect_inputs(tmp_path)
    with pytest.raises(ValueError, match="no inputs"):
        collect_inputs([])


# ----------------------------------------------------------------------------- read_image


@pytest.mark.parametrize("suffix, tolerance", [
    (".jpg", 4.0), (".jpeg", 4.0), (".png", 0.0), (".webp", 4.0), (".tif", 0.0), (".tiff", 0.0),
    (".bmp", 0.0),
])
def test_read_formats(tmp_path, suffix, tolerance):
    pixels = smooth_image(40, 30)
    path = tmp_path / f"img{suffix}"
    Image.fromarray(pixels).save(path)
    image = read_image(path)
    assert image.mode == "RGB" and image.size == (40, 30)
    assert np.abs(np.asarray(image, dtype=float) - pixels).mean() <= tolerance


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_read_16bit_grey_is_scaled_not_clipped(tmp_path, suffix):
    levels = np.array([[0, 1000, 128 * 257, 65535]], dtype=np.uint16)
    path = tmp_path / f"grey16{suffix}"
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = np.asarray(read_image(path))
    assert rgb.shape == (1, 4, 3)
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 4, 128, 255])
    assert (rgb == rgb[..., :1]).all()


def test_read_16bit_rgb_png(tmp_path):
    levels = np.array([[[65535, 32896, 0], [1000, 20000, 60000]]], dtype=np.uint16)  # RGB
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), levels[..., ::-1])
    rgb = np.asarray(read_image(path)).astype(int)
    assert np.abs(rgb - levels / 257.0).max() <= 1.0


def test_read_grey_palette_and_alpha(tmp_path):
    Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8)).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "grey.png"))[0],
                                  [[0, 0, 0], [77, 77, 77], [255, 255, 255]])

    palette = Image.new("P", (3, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    palette.putdata([0, 1, 2])
    palette.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "palette.png"))[0],
                                  [[255, 0, 0], [0, 255, 0], [0, 0, 255]])
    palette.save(tmp_path / "palette_transparent.png", transparency=1)  # green is transparent
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "palette_transparent.png"))[0],
                                  [[255, 0, 0], [255, 255, 255], [0, 0, 255]])

    rgba = np.array([[[10, 20, 30, 255], [0, 0, 0, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    composited = np.asarray(read_image(tmp_path / "rgba.png")).astype(int)
    np.testing.assert_array_equal(composited[0, :2], [[10, 20, 30], [255, 255, 255]])
    assert np.abs(composited[0, 2] - 127).max() <= 1  # half-transparent black on white

    Image.fromarray(np.array([[[50, 255], [50, 0]]], dtype=np.uint8), "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(np.asarray(read_image(tmp_path / "la.png"))[0],
                                  [[50, 50, 50], [255, 255, 255]])


def test_read_applies_exif_orientation(tmp_path):
    stored = np.zeros((60, 80, 3), dtype=np.uint8)
    stored[:, :40] = (255, 0, 0)  # left half red
    stored[:, 40:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    upright = np.asarray(read_image(path)).astype(int)
    assert upright.shape == (80, 60, 3)
    assert np.abs(upright[:35] - (255, 0, 0)).max() < 40  # the left edge went to the top
    assert np.abs(upright[45:] - (0, 0, 255)).max() < 40
    loaded = load_images(path)[0]
    assert loaded.tensor.shape == (3, 512, 384) and loaded.transform.original_size == (60, 80)


def bad_files(tmp_path: Path) -> list[Path]:
    """Files that look like photos but cannot be read (empty, text, noise, truncated JPEG and PNG)."""
    good = tmp_path / "good.jpg"
    Image.fromarray(smooth_image(64, 48)).save(good)
    png = tmp_path / "good.png"
    Image.fromarray(smooth_image(64, 48)).save(png)
    paths = {
        "zero.jpg": b"",
        "text.png": b"this is not an image\n",
        "garbage.jpg": RNG.integers(0, 256, 2000, dtype=np.uint8).tobytes(),
        "truncated.jpg": good.read_bytes()[: len(good.read_bytes()) // 2],
        "truncated.png": png.read_bytes()[: len(png.read_bytes()) // 2],
    }
    bad = []
    for name, data in paths.items():
        (tmp_path / name).write_bytes(data)
        bad.append(tmp_path / name)
    return bad


def test_read_errors_name_the_file(tmp_path):
    for path in bad_files(tmp_path):
        with pytest.raises(ImageReadError, match=path.name) as info:
            read_image(path)
        assert isinstance(info.value, ValueError)
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(tmp_path / "zero.jpg")
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "truncated.jpg")


# ----------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize("original, size, square_ok, model", [
    ((640, 480), 512, False, (512, 384)),    # 4:3
    ((4000, 3000), 512, False, (512, 384)),
    ((1920, 1080), 512, False, (512, 288)),  # 16:9
    ((480, 640), 512, False, (384, 512)),    # portrait 3:4
    ((1080, 1920), 512, False, (288, 512)),
    ((300, 300), 512, False, (512, 384)),    # square, enlarged
    ((700, 700), 512, True, (512, 512)),
    ((640, 480), 224, False, (224, 224)),
    ((480, 1000), 224, False, (224, 224)),
    ((1024, 768), 320, False, (320, 240)),
    ((960, 960), 320, False, (320, 240)),
])
def test_output_sizes(original, size, square_ok, model):
    loaded = preprocess_image(noise_image(*original), size=size, square_ok=square_ok)
    width, height = model
    assert loaded.tensor.shape == (3, height, width)
    assert loaded.rgb.shape == (height, width, 3) and loaded.rgb.dtype == np.uint8
    assert loaded.transform.model_size == model
    assert width % 16 == 0 and height % 16 == 0


@pytest.mark.parametrize("original, size, square_ok", [
    ((640, 480), 512, False), ((1001, 333), 512, False), ((333, 1001), 512, False),
    ((700, 700), 512, False), ((700, 700), 512, True), ((300, 200), 512, False),
    ((517, 389), 512, False), ((640, 480), 224, False), ((500, 1200), 224, False),
    ((250, 250), 224, False), ((1024, 768), 320, False),
])
def test_pixels_match_release_rule(original, size, square_ok):
    image = noise_image(*original)
    loaded = preprocess_image(image, size=size, square_ok=square_ok)
    np.testing.assert_array_equal(loaded.rgb, release_rule(image, size, square_ok))
    expected = (torch.from_numpy(loaded.rgb).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert loaded.tensor.dtype == torch.float32
    torch.testing.assert_close(loaded.tensor, expected, rtol=0, atol=1e-6)
    assert loaded.tensor.min() >= -1 and loaded.tensor.max() <= 1


def test_pixel_values_map_to_minus_one_one():
    bands = np.zeros((48, 64, 3), dtype=np.uint8)
    bands[:, 16:32], bands[:, 32:] = 128, 255
    tensor = preprocess_image(Image.fromarray(bands), size=64).tensor  # no resize, no crop
    assert tensor.shape == (3, 48, 64)
    assert (tensor[:, :, :16] == -1).all() and (tensor[:, :, 32:] == 1).all()
    torch.testing.assert_close(tensor[:, :, 16:32], torch.full((3, 48, 16), 1 / 255),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("original, size, resized, box", [
    # worked by hand from the rule: round(x * size / long), half-sizes ((2 * (W // 2)) // 16) * 8
    ((1001, 333), 512, (512, 170), (0, 5, 512, 165)),
    ((4000, 3000), 512, (512, 384), (0, 0, 512, 384)),
    ((700, 700), 512, (512, 512), (0, 64, 512, 448)),
    ((341, 1000), 512, (175, 512), (7, 0, 167, 512)),
    # 224 mode: long side round(224 * 4 / 3) = 299, then round(480 * 299 / 640) = 224
    ((640, 480), 224, (299, 224), (37, 0, 261, 224)),
])
def test_transform_fields_by_hand(original, size, resized, box):
    transform = preprocess_image(noise_image(*original), size=size).transform
    assert transform.original_size == original
    assert transform.resized_size == resized
    assert transform.crop_box == box


def test_size_validation_and_extreme_aspect():
    for size in (512, 224, 320, 64):
        check_size(size)
    for size in (100, 500, 48, 513, 0, 512.0):
        with pytest.raises(ValueError, match="size"):
            check_size(size)
    with pytest.raises(ValueError, match="panorama.png.*too extreme"):
        preprocess_image(noise_image(2000, 20), name="panorama.png")


def test_grey_pil_input_is_converted():
    loaded = preprocess_image(Image.new("L", (64, 48), 200))
    assert loaded.rgb.shape == (384, 512, 3) and (loaded.rgb == 200).all()


# ----------------------------------------------------------------------------- ImageTransform


TRANSFORMS = [
    preprocess_image(noise_image(*size), size=model_size).transform
    for size, model_size in [((1001, 333), 512), ((640, 480), 224), ((300, 200), 512),
                             ((333, 1001), 512)]
]


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_intrinsics_round_trip_and_projection(transform: ImageTransform):
    width0, height0 = transform.original_size
    K_orig = np.array([[1.1 * width0, 0.0, width0 / 2 - 3.0],
                       [0.0, 1.05 * width0, height0 / 2 + 2.0],
                       [0.0, 0.0, 1.0]])
    K_model = transform.K_from_original(K_orig)
    np.testing.assert_allclose(transform.K_to_original(K_model), K_orig, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(transform.K_from_original(transform.K_to_original(K_model)),
                               K_model, rtol=1e-12, atol=1e-9)
    assert K_model[2].tolist() == [0.0, 0.0, 1.0] and K_model[0, 1] == 0.0

    points = RNG.uniform([-1, -1, 2], [1, 1, 6], size=(50, 3))  # (N, 3) camera frame
    uv_orig = (points @ K_orig.T)[:, :2] / points[:, 2:]
    uv_model = (points @ K_model.T)[:, :2] / points[:, 2:]
    np.testing.assert_allclose(transform.pixel_to_original(uv_model), uv_orig, atol=1e-9)


@pytest.mark.parametrize("original, size", [((1000, 750), 512), ((256, 200), 512),
                                            ((640, 480), 224)])
def test_pixel_centres_agree_with_the_resampling(original, size):
    """A linear ramp resampled by PIL reads back the original coordinate the transform predicts."""
    transform = preprocess_image(noise_image(*original), size=size).transform
    width0, height0 = original
    ramps = {axis: Image.fromarray(np.meshgrid(np.arange(width0), np.arange(height0))[axis]
                                   .astype(np.float32), "F") for axis in (0, 1)}
    longest = max(original)
    method = Image.LANCZOS if longest > max(transform.resized_size) else Image.BICUBIC
    height, width = transform.model_size[1], transform.model_size[0]
    v, u = np.mgrid[8:height - 8, 8:width - 8]  # away from borders, where kernels are clipped
    expected = transform.pixel_to_original(np.stack([u, v], axis=-1))
    for axis, ramp in ramps.items():
        sampled = np.asarray(ramp.resize(transform.resized_size, method).crop(transform.crop_box))
        np.testing.assert_allclose(sampled[8:height - 8, 8:width - 8], expected[..., axis],
                                   atol=0.02)
