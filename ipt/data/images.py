"""Reading and writing images as RGB uint8, whatever the file holds, and finding them in folders.

Grayscale, palette, CMYK, RGBA, 16-bit and float images are converted to (H, W, 3) uint8; a file that
cannot be decoded raises UnreadableImageError naming it, and one of more pixels than the toolkit reads
(max_image_pixels, set by $IPT_MAX_IMAGE_PIXELS) ImageTooLargeError. Pillow decodes and encodes.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..files import atomic_write
from .errors import DataLayoutError, ImageTooLargeError, MissingFolderError, UnreadableImageError  # noqa: F401 (DataLayoutError: importable from here too)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CHANNEL_COUNTS = (1, 2, 3, 4)  # grey, grey + alpha, RGB, RGBA

PIXEL_LIMIT_VARIABLE = "IPT_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int | None:
    """The most pixels an image may have for the toolkit to read it (None: no limit): $IPT_MAX_IMAGE_PIXELS,
    a whole number or "none"; unset, where Pillow itself refuses, twice PIL.Image.MAX_IMAGE_PIXELS
    (178,956,970 pixels unless changed). Larger images are refused before any pixel is decoded: a small
    file can claim a size that would fill the memory once decoded (a "decompression bomb")."""
    value = os.environ.get(PIXEL_LIMIT_VARIABLE, "").strip()
    if not value:
        return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS
    if value.lower() == "none":
        return None
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ConfigError(f"{PIXEL_LIMIT_VARIABLE}={value!r}: expected a number of pixels (e.g. 500000000) or 'none'")
    return limit


def _too_large(path, pixels: int | None, limit: int) -> ImageTooLargeError:
    size = f"of {pixels:,} pixels, more than" if pixels is not None else "of more pixels than"
    return ImageTooLargeError(f"{path}: an image {size} the {limit:,} the toolkit reads; if the file is trusted, "
                              f"set {PIXEL_LIMIT_VARIABLE} to a larger number (or to none: no limit)")


def _claimed_pixels(error: Exception) -> int | None:
    """The pixel count in Pillow's DecompressionBombError message ("Image size (N pixels) exceeds ...")."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    return int(found.group(1)) if found else None


def open_image(path, data=None) -> Image.Image:
    """The image file opened by Pillow: its header read, not yet its pixels (data: the file's bytes, read
    already, or a seekable file object to read instead of the file `path`, which then only names it). A
    file that is not an image raises UnreadableImageError; one over max_image_pixels() ImageTooLargeError."""
    limit = max_image_pixels()
    pillow = Image.MAX_IMAGE_PIXELS
    if pillow is not None and (limit is None or limit > 2 * pillow):
        # Pillow's own limit (process-wide; Image.open and some decoders refuse images over twice it) would
        # refuse what the user allowed: lifted to ours, so it still refuses beyond twice ours.
        Image.MAX_IMAGE_PIXELS = limit
    try:
        img = Image.open(path if data is None else data if hasattr(data, "read") else io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise _too_large(path, _claimed_pixels(error), limit) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # UnidentifiedImageError is an OSError
        raise UnreadableImageError(f"{path}: cannot decode the image ({error})") from None
    if limit is not None and img.width * img.height > limit:
        img.close()
        raise _too_large(path, img.width * img.height, limit)
    return img


def image_size(path) -> tuple[int, int]:
    """(width, height) of an image file, from its header."""
    with open_image(path) as img:
        return img.size


def to_rgb_uint8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """(H, W[, C]) of any integer or float type -> (H, W, 3) uint8.

    The layout is never guessed from the sizes: an array is (H, W) or (H, W, C) with 1-4 channels (grey,
    grey + alpha, RGB, RGBA), as Pillow and scikit-image give images, whatever its height (a 3-pixel-high
    RGB image is (3, W, 3)). Only an array that cannot be that -- its last axis longer than 4 -- is
    taken as channels-first (C, H, W), when its first axis is 1-4 channels; so no array has two readings.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] not in CHANNEL_COUNTS and a.shape[0] in CHANNEL_COUNTS:
        a = np.moveaxis(a, 0, -1)  # channels first, the only reading there is
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in CHANNEL_COUNTS or a.shape[0] == 0 or a.shape[1] == 0:
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


def read_image(path, data: bytes | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (data: its bytes, read already: decoded instead of the file)."""
    path = Path(path)
    if data is None and not path.is_file():
        raise UnreadableImageError(f"{path}: no such image file")
    with open_image(path, data) as img:
        try:
            img.load()
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA" else "RGB")
            array = np.array(img)
        except Image.DecompressionBombError as error:  # a frame or tile larger than the image says (GIF, TIFF)
            raise _too_large(path, _claimed_pixels(error), max_image_pixels()) from None
        except (OSError, ValueError, SyntaxError, EOFError) as error:
            raise UnreadableImageError(f"{path}: cannot decode the image ({error})") from None
    return to_rgb_uint8(array, str(path))


def image_format(path) -> str | None:
    """The Pillow format that writes files named like `path` (by its extension), or None."""
    Image.init()  # the plugins register their extensions when loaded
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    return fmt if fmt in Image.SAVE else None


def write_image(path, image: np.ndarray) -> Path:
    """Writes (H, W, 3) uint8 in the format the name says; makes parent folders. The file appears whole
    or not at all (ipt.files.atomic_write), so processes that share a folder (the ranks of a job writing
    the sample photographs) never read each other's half-written files."""
    path = Path(path)
    fmt = image_format(path)
    if fmt is None:
        raise ConfigError(f"{path}: unknown image file extension {path.suffix!r}")
    pixels = Image.fromarray(to_rgb_uint8(image, str(path)))
    atomic_write(path, lambda tmp: pixels.save(tmp, format=fmt))
    return path


def list_images(folder, recursive: bool = False) -> list[Path]:
    """Image files in a folder, sorted by path (recursive: also in its sub-folders, links to folders
    included). Each real folder is listed once, under the first path that reaches it in sorted order, so
    a link loop ends. What is left out -- broken links, links to a folder already listed, folders that
    cannot be read -- is said in one counted warning."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFolderError(f"{folder}: no such folder")
    found, left_out, listed = [], defaultdict(list), set()
    pending = [folder]  # a stack: depth first, in sorted order
    while pending:
        current = pending.pop()
        try:
            real = os.stat(current)  # through links: the folder itself
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError:
            left_out["folders that cannot be read"].append(current)
            continue
        if (real.st_dev, real.st_ino) in listed:
            left_out["links to a folder already listed"].append(current)
            continue
        listed.add((real.st_dev, real.st_ino))
        subfolders = []
        for entry in entries:
            path = current / entry.name
            try:
                kind = "folder" if entry.is_dir() else "file" if entry.is_file() else None  # through links
            except OSError:  # a link to where we may not look
                kind = None
            if kind == "folder" and recursive:
                subfolders.append(path)
            elif kind == "file" and path.suffix.lower() in IMAGE_SUFFIXES:
                found.append(path)
            elif kind is None and entry.is_symlink() and (recursive or path.suffix.lower() in IMAGE_SUFFIXES):
                left_out["broken links"].append(path)  # it could have been a folder or an image
        pending.extend(reversed(subfolders))
    if left_out:
        parts = [f"{reason}: {len(paths)} (e.g. {paths[0]})" for reason, paths in sorted(left_out.items())]
        warnings.warn(f"{folder}: left out {sum(map(len, left_out.values()))} entries: " + "; ".join(parts),
                      RuntimeWarning, stacklevel=2)
    return sorted(found)
