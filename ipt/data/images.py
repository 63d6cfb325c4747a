"""Reading and writing images as RGB uint8, whatever the file holds.

Grayscale, palette, CMYK, RGBA, 16-bit and float images are converted to (H, W, 3) uint8; a file that
cannot be decoded raises UnreadableImageError naming it. Pillow decodes and encodes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError
from ..files import atomic_write
from .errors import DataLayoutError, MissingFolderError, UnreadableImageError  # noqa: F401 (DataLayoutError: importable from here too)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def to_rgb_uint8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """(H, W[, C]) of any integer or float type -> (H, W, 3) uint8."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # channels first
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise UnreadableImageError(f"{source}: not an image of shape (H, W[, 1-4 channels]): {a.shape}")
    if a.dtype == np.uint8:
        pass
    elif a.dtype == np.uint16:
        a = (a.astype(np.float64) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0  # float images in [0, 1] (or already 0-255)
        a = np.clip(a * scale, 0, 255).round().astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.integer):
        a = np.clip(a, 0, 255).astype(np.uint8)
    else:
        raise UnreadableImageError(f"{source}: unsupported pixel type {a.dtype}")
    channels = a.shape[-1]
    if channels in (1, 2):  # grey (+ alpha): drop alpha, replicate grey
        a = np.repeat(a[..., :1], 3, axis=-1)
    elif channels == 4:  # RGBA: drop alpha (pretraining images are opaque photos)
        a = a[..., :3]
    return np.ascontiguousarray(a)


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableImageError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
            array = np.array(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UnreadableImageError(f"{path}: cannot decode the image ({error})") from None
    return to_rgb_uint8(array, str(path))


def write_image(path, image: np.ndarray) -> Path:
    """Writes (H, W, 3) uint8 in the format the name says; makes parent folders. The file appears whole
    or not at all (ipt.files.atomic_write), so processes that share a folder (the ranks of a job writing
    the sample photographs) never read each other's half-written files."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{path}: unknown image file extension {path.suffix!r}")
    pixels = Image.fromarray(to_rgb_uint8(image, str(path)))
    atomic_write(path, lambda tmp: pixels.save(tmp, format=fmt))
    return path


def list_images(folder, recursive: bool = False) -> list[Path]:
    """Image files in a folder, sorted by name (recursive: also in sub-folders)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFolderError(f"{folder}: no such folder")
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
