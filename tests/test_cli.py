"""The `fast3r` command end to end on CPU with a tiny model."""
import numpy as np
import pytest
import torch
from PIL import Image

from fast3r.cli import main
from fast3r.model import Fast3R


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index, (width, height) in enumerate([(320, 240), (240, 320), (320, 240)]):
        pixels = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((width, height), Image.BICUBIC)
        exif = Image.Exif()
        if index == 2:
            exif[0x0112] = 8  # stored rotated: shown after a 90-degree turn
            image = image.transpose(Image.Transpose.ROTATE_270)
        image.save(folder / f"photo_{index}.jpg", exif=exif, quality=95)
    return folder


def test_reconstruct_command_prints_a_summary_and_writes_files(tiny_weights, photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        ["reconstruct", str(photos), "-o", str(out), "--weights", str(tiny_weights), "--size", "224", "--quiet",
         "--export", "ply", "cameras", "colmap", "images"]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "3 views at 224x224" in text and "points exported" in text and "model" in text
    assert (out / "points.ply").is_file() and (out / "sparse" / "0" / "cameras.bin").is_file()
    with Image.open(out / "images" / "photo_2.jpg") as saved:
        assert saved.size == (320, 240)  # EXIF applied


def test_bad_input_is_a_one_line_error_not_a_traceback(tiny_weights, tmp_path, capsys):
    missing = tmp_path / "nothing_here"
    code = main(["reconstruct", str(missing), "-o", str(tmp_path / "o"), "--weights", str(tiny_weights), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "nothing_here" in err and "Traceback" not in err


def test_missing_weights_directory_is_explained(photos, tmp_path, capsys):
    code = main(["reconstruct", str(photos), "-o", str(tmp_path / "o"), "--weights", str(tmp_path / "w"), "--quiet"])
    assert code == 1
    assert "neither a local directory nor a Hugging Face hub id" in capsys.readouterr().err


def test_convert_command(tiny_weights, tmp_path, capsys):
    model = Fast3R.from_pretrained(str(tiny_weights))
    torch.save({"model": model.state_dict()}, tmp_path / "ref.pth")
    code = main(["convert", str(tmp_path / "ref.pth"), str(tiny_weights / "config.json"), str(tmp_path / "conv")])
    assert code == 0
    converted = Fast3R.from_pretrained(str(tmp_path / "conv"))
    assert torch.equal(converted.decoder.dec_norm.weight, model.decoder.dec_norm.weight)


def test_reconstruct_real_photos_with_exif_rotation_and_mixed_orientations(tiny_weights, shared_data, tmp_path, capsys):
    """Middlebury temple photos: one stored sideways with an EXIF rotation, one cropped to portrait."""
    source = sorted((shared_data / "templering" / "images").glob("*.png"))[:3]
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.open(source[0]).save(folder / "landscape.png")
    Image.open(source[1]).crop((160, 0, 480, 480)).save(folder / "portrait.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown after a 90-degree clockwise turn
    Image.open(source[2]).convert("RGB").transpose(Image.Transpose.ROTATE_90).save(folder / "sideways.jpg", exif=exif, quality=95)
    out = tmp_path / "out"
    assert main(["reconstruct", str(folder), "-o", str(out), "--weights", str(tiny_weights), "--size", "512", "--quiet"]) == 0
    import json

    views = {v["file"]: v for v in json.loads((out / "cameras.json").read_text())["views"]}
    assert (views["landscape.png"]["width"], views["landscape.png"]["height"]) == (640, 480)
    assert (views["portrait.png"]["width"], views["portrait.png"]["height"]) == (320, 480)
    assert (views["sideways.jpg"]["width"], views["sideways.jpg"]["height"]) == (640, 480)
    assert "3 views at 336x512, 512x384" in capsys.readouterr().out
