"""The built-in sample data: the colour photographs scikit-image ships, which load offline. Every
command falls back to them when given no data, so everything runs on a fresh machine."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .images import to_rgb_uint8, write_image

SAMPLE_NAMES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
                "immunohistochemistry", "stereo_motorcycle")


def sample_image(name: str) -> np.ndarray:
    """(H, W, 3) uint8 of one sample photograph."""
    from skimage import data  # on use: scikit-image takes a second to import, and only the samples need it

    if name not in SAMPLE_NAMES:
        raise ConfigError(f"unknown sample image {name!r}; the samples are {list(SAMPLE_NAMES)}")
    image = getattr(data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    return to_rgb_uint8(image, name)


def default_cache_dir() -> Path:
    return Path(os.environ.get("IPT_CACHE", Path.home() / ".cache" / "ipt"))


def sample_images_dir(folder=None) -> Path:
    """A folder holding the sample photographs as PNG files (written once, then reused)."""
    folder = Path(folder) if folder is not None else default_cache_dir() / "samples"
    for name in SAMPLE_NAMES:
        path = folder / f"{name}.png"
        if not path.is_file():
            write_image(path, sample_image(name))
    return folder
