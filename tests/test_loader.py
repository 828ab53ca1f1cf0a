"""Loading photos for the model (fast3r.io.loader): order, bad files, reduced JPEG decoding, large photos."""
from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
from PIL import Image

from fast3r.io.images import ImageReadError
from fast3r.io.loader import load_images
from test_images import bad_files, smooth_image


# ----------------------------------------------------------------------------- load_images


def test_load_mixed_orientations_in_natural_order(tmp_path):
    Image.fromarray(smooth_image(640, 480)).save(tmp_path / "view10.jpg")
    Image.fromarray(smooth_image(480, 640)).save(tmp_path / "view2.png")
    Image.fromarray(smooth_image(1920, 1080)).save(tmp_path / "view1.webp")
    loaded = load_images(tmp_path)
    assert [item.name for item in loaded] == ["view1.webp", "view2.png", "view10.jpg"]
    assert [tuple(item.tensor.shape) for item in loaded] == [(3, 288, 512), (3, 512, 384),
                                                             (3, 384, 512)]
    assert loaded[1].path == tmp_path / "view2.png"
    small = load_images(tmp_path, size=224)
    assert all(tuple(item.tensor.shape) == (3, 224, 224) for item in small)


def test_load_reports_every_bad_file_at_once(tmp_path):
    bad = bad_files(tmp_path)
    with pytest.raises(ImageReadError) as info:
        load_images(tmp_path)
    message = str(info.value)
    assert f"{len(bad)} of {len(bad) + 2} inputs" in message
    for path in bad:
        assert path.name in message
    assert "good.jpg" not in message and "good.png" not in message


def test_load_skip_bad_warns_and_keeps_the_good(tmp_path):
    bad = bad_files(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_images(tmp_path, skip_bad=True)
    assert sorted(item.name for item in loaded) == ["good.jpg", "good.png"]
    messages = [str(w.message) for w in caught]
    assert len(messages) == len(bad)
    for path in bad:
        assert any(path.name in message for message in messages)


def test_load_all_bad_with_skip_bad_still_fails(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageReadError, match="none of the 1 inputs"):
            load_images(tmp_path, skip_bad=True)


# ----------------------------------------------------------------------------- reduced decoding and large photos


@pytest.mark.parametrize("photo", ["coffee", "astronaut", "chelsea"])
def test_reduced_jpeg_decoding_matches_the_exact_path(tmp_path, photo):
    """Real photos (scikit-image's) at 12 MP: the reduced decode keeps the transform and stays within
    the stated tolerance of the release's full decode + LANCZOS (measured: mean 0.25-0.37, max 2-7 levels)."""
    from skimage import data

    big = cv2.resize(getattr(data, photo)(), (4032, 3024), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / f"{photo}.jpg"
    Image.fromarray(big).save(path, quality=95)
    exact = load_images(path, exact=True)[0]
    reduced = load_images(path)[0]
    assert reduced.transform == exact.transform and reduced.rgb.shape == (384, 512, 3)
    difference = np.abs(reduced.rgb.astype(float) - exact.rgb)
    psnr = 10 * np.log10(255**2 / np.mean(difference**2))
    assert difference.mean() <= 0.5 and difference.max() <= 12 and psnr >= 48
    rolled = np.abs(np.roll(reduced.rgb, 1, axis=1).astype(float) - exact.rgb).mean()
    assert rolled > 4 * difference.mean()  # a one-pixel shift would be caught


def test_reduced_decoding_follows_exif_rotation_and_224_mode(tmp_path):
    stored = cv2.resize(smooth_image(80, 60), (1600, 1200), interpolation=cv2.INTER_CUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    for size, shape in ((512, (512, 384, 3)), (224, (224, 224, 3))):
        exact, reduced = load_images(path, size=size, exact=True)[0], load_images(path, size=size)[0]
        assert reduced.transform == exact.transform and reduced.rgb.shape == shape
        assert reduced.transform.original_size == (1200, 1600)
        assert np.abs(reduced.rgb.astype(float) - exact.rgb).mean() <= 1.0


def test_honest_large_photos_are_accepted_and_bombs_refused(tmp_path):
    from fast3r.io.images import decode_image

    honest = tmp_path / "honest.jpg"  # 192 MP of real-looking texture: Pillow alone calls it a bomb
    pixels = cv2.resize(smooth_image(160, 120), (16000, 12000), interpolation=cv2.INTER_LINEAR)
    Image.fromarray(pixels).save(honest, quality=90)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw DecompressionBombWarning either
        decoded = decode_image(honest, reduce_for_size=512)
    assert decoded.original_size == (16000, 12000) and max(decoded.image.size) <= 2000
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own guard is left in place

    bomb = tmp_path / "bomb.png"  # 900 MP in about 110 kB: ~8000 pixels per byte
    Image.new("1", (30000, 30000)).save(bomb)
    with pytest.raises(ImageReadError, match="bomb.png.*more than a"):
        decode_image(bomb)
