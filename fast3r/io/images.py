"""Model inputs: collect files, decode them robustly, preprocess exactly as the release does.
(`fast3r.io.loader` runs these over many files in parallel.)

Preprocessing (the released Fast3R / DUSt3R loader):
- long-side mode (size 512, or any other multiple of 16 >= 64): the long side is resized to `size`
  (each side `round(x * size / long)`; LANCZOS when shrinking, BICUBIC when enlarging), then centre
  cropped to multiples of 16 (`cx = W // 2`, half-width `((2 * cx) // 16) * 8`, same for y).
  4:3 -> 512x384, 16:9 -> 512x288, 3:4 -> 384x512. An image that is square after resizing keeps
  a height of 3/4 of its width (512x512 -> 512x384) unless `square_ok`; for sizes that are not
  multiples of 64 that height is rounded down to a multiple of 16 (the release leaves it unrounded;
  identical at 512).
- 224 mode (size == 224): the short side is resized to 224 and the centre 224x224 is kept.
- pixels become float32 `(x / 255 - 0.5) / 0.5` in [-1, 1], shape (3, H, W).

Decoding differs from the release's plain `convert("RGB")` only where that loses information:
16-bit greyscale is scaled to 8 bits (x / 257, rounded) instead of clipped; transparent images
(RGBA, LA, palette or colour-key transparency) are composited on white rather than having their
alpha dropped, so they look as any viewer shows them. 16-bit RGB(A) files keep Pillow's reduction
(the high byte, within one level of exact scaling). Float images ("F") are read as [0, 1].
"""
from __future__ import annotations

import glob
import math
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from fast3r.io.video import VIDEO_EXTENSIONS, is_video_path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})
SHORT_SIDE_SIZE = 224  # the one size that means "short side to 224, centre square crop"
PATCH_SIZE = 16
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class ImageReadError(ValueError):
    """An input that cannot be decoded or used; the message names the file and the problem."""


# ---------------------------------------------------------------------------------------------
# Collecting input files


def is_image_path(path: str | os.PathLike) -> bool:
    """True if the file name has a recognised image extension (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def natural_sort_key(text: str) -> tuple:
    """Sort key that orders embedded numbers by value: img2 < img10."""
    parts = re.split(r"(\d+)", text)
    return tuple(int(part) if i % 2 else part.lower() for i, part in enumerate(parts)), text


def _expand_entry(entry: str | os.PathLike) -> list[Path]:
    text = os.path.expanduser(os.fspath(entry))
    path = Path(text)
    if path.is_dir():
        images = [p for p in path.iterdir()
                  if p.is_file() and is_image_path(p) and not p.name.startswith(".")]
        if not images:
            raise ValueError(f"{path}: directory holds no images "
                             f"(recognised: {', '.join(sorted(IMAGE_EXTENSIONS))})")
        return sorted(images, key=lambda p: natural_sort_key(p.name))
    if path.is_file():
        if not (is_image_path(path) or is_video_path(path)):
            raise ValueError(f"{path}: unsupported file type '{path.suffix}' (recognised: "
                             f"{', '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))})")
        return [path]
    if path.exists():
        raise ValueError(f"{path}: not a regular file or directory")
    if glob.has_magic(text):
        matches = [Path(m) for m in glob.glob(text, recursive=True)]
        if not matches:
            raise FileNotFoundError(f"no files match the pattern {text!r}")
        usable = [p for p in matches if p.is_file() and (is_image_path(p) or is_video_path(p))]
        if not usable:
            raise ValueError(f"the pattern {text!r} matches {len(matches)} paths, "
                             "none of them an image or video file")
        return sorted(usable, key=lambda p: natural_sort_key(str(p)))
    raise FileNotFoundError(f"input not found: {path}")


def collect_inputs(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Input files, in order, from a directory, a glob pattern, an image or video file, or a list.

    A directory gives its image files (not videos, not hidden files, not sub-directories), sorted
    naturally by name; a glob gives its image and video matches sorted naturally by path; a list
    keeps its order, expanding each entry by the same rules.
    """
    if isinstance(inputs, (str, os.PathLike)):
        entries = [inputs]
    else:
        entries = list(inputs)
        if not entries:
            raise ValueError("no inputs given")
    return [path for entry in entries for path in _expand_entry(entry)]


# ---------------------------------------------------------------------------------------------
# Decoding


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB version of a decoded image of any mode (see the module docstring)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "I" or mode.startswith("I;16"):
        levels = np.asarray(image).astype(np.float64)  # 16-bit range, 0..65535
        grey = np.clip(np.rint(levels / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        grey = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


# Pillow refuses images over 2 x 89.5 megapixels as possible decompression bombs, which rejects honest
# 100-200 MP photos. Ours: a header may promise many pixels only if the file is large enough to hold them.
_BOMB_CHECK_ABOVE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
_MAX_PIXELS_PER_FILE_BYTE = 1024  # flat-colour JPEGs/PNGs reach a few hundred; crafted bombs far more
_HEADER_LOCK = threading.Lock()  # Pillow's own limit is a module global, lifted only while we open


@dataclass(frozen=True)
class DecodedImage:
    """An upright 8-bit RGB image, possibly decoded at a reduced scale, and its full upright size (W, H)."""

    image: Image.Image
    original_size: tuple[int, int]


def _open(path: Path) -> Image.Image:
    with _HEADER_LOCK:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            image = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    width, height = image.size
    file_bytes = path.stat().st_size
    if width * height > _BOMB_CHECK_ABOVE_PIXELS and width * height > _MAX_PIXELS_PER_FILE_BYTE * file_bytes:
        image.close()
        raise ImageReadError(f"{path}: header claims {width}x{height} pixels, more than a {file_bytes}-byte "
                             "file can hold (a decompression bomb?)")
    return image


def _upright_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def decode_image(path: str | os.PathLike, reduce_for_size: int | None = None) -> DecodedImage:
    """Decode an image file into an upright 8-bit RGB image (EXIF orientation applied).

    reduce_for_size: the model size (512, 224, ...) the image is for. JPEGs are then decoded at 1/2, 1/4 or
    1/8 scale (libjpeg's DCT scaling) as long as the long side stays at least 1.5 times the one the model
    image is resized to: ~4x faster for 12 MP photos going to 512 pixels, and the preprocessed pixels
    differ from the full decode's by about one grey level (tests/test_images.py).
    Raises ImageReadError naming the file for missing, empty, truncated, corrupt or non-image files.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with _open(path) as image:
            original_size = _upright_size(image)
            if reduce_for_size is not None and image.format == "JPEG":
                scale = 1.5 * model_long_side(reduce_for_size, original_size) / max(original_size)
                image.draft("RGB", (math.ceil(image.size[0] * scale), math.ceil(image.size[1] * scale)))
            image.load()  # a full decode, so truncated files fail here rather than later
            upright = ImageOps.exif_transpose(image)
    except (MemoryError, ImageReadError):
        raise
    except Image.UnidentifiedImageError as err:
        raise ImageReadError(f"{path}: not a recognised image format") from err
    except Exception as err:  # Pillow's decoders raise OSError, SyntaxError, ValueError, EOFError
        raise ImageReadError(f"{path}: corrupt or truncated image ({err})") from err
    return DecodedImage(_to_rgb(upright), original_size)


def read_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image file fully into an upright 8-bit RGB PIL image (see `decode_image`)."""
    return decode_image(path).image


# ---------------------------------------------------------------------------------------------
# Preprocessing


@dataclass(frozen=True)
class ImageTransform:
    """How a model image was cut from its original: resize, then crop (pixel centres at integers).

    original_size: (W0, H0) of the upright original; resized_size: (W1, H1) after resizing;
    crop_box: (x0, y0, x1, y1) in resized pixels, exclusive end; the model image is the crop.
    """

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    crop_box: tuple[int, int, int, int]

    @property
    def model_size(self) -> tuple[int, int]:
        """(W, H) of the model image."""
        x0, y0, x1, y1 = self.crop_box
        return x1 - x0, y1 - y0

    def model_to_original(self) -> np.ndarray:
        """(3, 3) float64 affine map from model pixels to original pixels (homogeneous)."""
        scale_x = self.original_size[0] / self.resized_size[0]
        scale_y = self.original_size[1] / self.resized_size[1]
        x0, y0 = self.crop_box[:2]
        # u_orig = (u_resized + 0.5) * W0 / W1 - 0.5, with u_resized = u_model + x0
        return np.array([
            [scale_x, 0.0, scale_x * (x0 + 0.5) - 0.5],
            [0.0, scale_y, scale_y * (y0 + 0.5) - 0.5],
            [0.0, 0.0, 1.0],
        ])

    def K_to_original(self, K_model: np.ndarray) -> np.ndarray:
        """Intrinsics (..., 3, 3) of the model image -> intrinsics of the original image."""
        return self.model_to_original() @ np.asarray(K_model, dtype=np.float64)

    def K_from_original(self, K_orig: np.ndarray) -> np.ndarray:
        """Intrinsics (..., 3, 3) of the original image -> intrinsics of the model image."""
        return np.linalg.inv(self.model_to_original()) @ np.asarray(K_orig, dtype=np.float64)

    def pixel_to_original(self, uv: np.ndarray) -> np.ndarray:
        """Model-image pixel coordinates (..., 2) -> original-image pixel coordinates (..., 2)."""
        uv = np.asarray(uv, dtype=np.float64)
        affine = self.model_to_original()
        return uv @ affine[:2, :2].T + affine[:2, 2]


@dataclass
class LoadedImage:
    """One preprocessed model input.

    path: source file (the video for video frames), None for in-memory images.
    name: original file name, or frame name (`frame_000123.png`) for video frames.
    rgb: (H, W, 3) uint8, the model's pixels; `tensor` gives them as the model reads them.
    """

    path: Path | None
    name: str
    rgb: np.ndarray
    transform: ImageTransform

    @property
    def from_photo(self) -> bool:
        """Whether these pixels come from a photo file (not a video frame or an in-memory image)."""
        return self.path is not None and not is_video_path(self.path)

    @property
    def tensor(self) -> torch.Tensor:
        """(3, H, W) float32 in [-1, 1] (made on demand: a thousand views keep only their uint8 pixels)."""
        return to_model_range(torch.from_numpy(self.rgb))


def check_size(size: int) -> None:
    """Raise ValueError unless `size` is 224 (short-side mode) or a multiple of 16 >= 64."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
        raise ValueError(f"size must be an integer, got {size!r}")
    if size != SHORT_SIDE_SIZE and (size < 64 or size % PATCH_SIZE):
        raise ValueError(f"size must be 224 or a multiple of {PATCH_SIZE} >= 64 "
                         f"(the released model uses 512), got {size}")


def model_long_side(size: int, original_size: tuple[int, int]) -> int:
    """Long side the image is resized to before the crop: `size`, or in 224 mode what makes the short side 224."""
    width0, height0 = original_size
    if size == SHORT_SIDE_SIZE:
        return round(size * max(width0 / height0, height0 / width0))
    return size


def _resize_long_side(image: Image.Image, long_side: int, original_size: tuple[int, int]) -> Image.Image:
    """The release's resize: each side round(x * long_side / long) of the original size, LANCZOS down,
    BICUBIC up. `image` may be the original or a reduced decode of it (same framing)."""
    longest = max(original_size)
    new_size = tuple(int(round(x * long_side / longest)) for x in original_size)
    if new_size == image.size:
        return image
    resample = Image.Resampling.LANCZOS if max(image.size) > long_side else Image.Resampling.BICUBIC
    return image.resize(new_size, resample)


def _crop_box(width: int, height: int, size: int, square_ok: bool) -> tuple[int, int, int, int]:
    """The release's centre crop of a resized (width, height) image."""
    center_x, center_y = width // 2, height // 2
    if size == SHORT_SIDE_SIZE:
        half_w = half_h = min(center_x, center_y)
    else:
        half_w = ((2 * center_x) // PATCH_SIZE) * (PATCH_SIZE // 2)
        half_h = ((2 * center_y) // PATCH_SIZE) * (PATCH_SIZE // 2)
        if width == height and not square_ok:
            half_h = (3 * half_w // 4) // (PATCH_SIZE // 2) * (PATCH_SIZE // 2)
    return center_x - half_w, center_y - half_h, center_x + half_w, center_y + half_h


def _describe(path: Path | None, name: str) -> str:
    """How an error names an input: its path, plus the frame name for video frames."""
    if path is None:
        return name or "image"
    return str(path) if name in ("", path.name) else f"{path} [{name}]"


def to_model_range(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1]: `(x / 255 - 0.5) / 0.5`, the release's."""
    return rgb.movedim(-1, -3).to(torch.float32).div(255.0).sub(0.5).div(0.5)


def preprocess_image(
    img: Image.Image,
    size: int = 512,
    square_ok: bool = False,
    name: str = "",
    path: Path | None = None,
    original_size: tuple[int, int] | None = None,
) -> LoadedImage:
    """Resize and crop an (upright) image exactly as the released model's loader does.

    original_size: (W, H) of the full image when `img` is a reduced decode of it (`decode_image`); the
    resize and the recorded transform then follow the full image."""
    check_size(size)
    image = _to_rgb(img)
    original_size = original_size or image.size
    width0, height0 = original_size
    resized = _resize_long_side(image, model_long_side(size, original_size), original_size)
    box = _crop_box(*resized.size, size, square_ok)
    crop_w, crop_h = box[2] - box[0], box[3] - box[1]
    if crop_w < PATCH_SIZE or crop_h < PATCH_SIZE:
        raise ValueError(f"{_describe(path, name)}: aspect ratio of {width0}x{height0} is too "
                         f"extreme; at size {size} it would crop to {crop_w}x{crop_h}")
    rgb = np.array(resized.crop(box), dtype=np.uint8)  # (H, W, 3)
    transform = ImageTransform(original_size=original_size, resized_size=resized.size, crop_box=box)
    return LoadedImage(path=path, name=name, rgb=rgb, transform=transform)
