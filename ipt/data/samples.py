"""The built-in sample data: the photographs scikit-image ships, which load offline (grey ones as RGB).
Every command falls back to them when given no data, so everything runs on a fresh machine.

They come in two disjoint splits, so that what a demo model is measured on is never what it learnt
from: "validation" holds three natural photographs (two colour, one grey) that no default training
run sees, "train" the rest -- photographs of scenes, textures, documents, the sky and microscopy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .images import to_rgb_uint8, write_image

VALIDATION_SAMPLES = ("astronaut", "coffee", "camera")
TRAINING_SAMPLES = ("chelsea", "rocket", "stereo_motorcycle", "hubble_deep_field", "retina", "immunohistochemistry",
                    "brick", "cell", "clock", "coins", "grass", "gravel", "moon", "page", "text")
SAMPLE_SPLITS = {"train": TRAINING_SAMPLES, "validation": VALIDATION_SAMPLES}
SAMPLE_NAMES = TRAINING_SAMPLES + VALIDATION_SAMPLES


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


def sample_images_dir(folder=None, split: str = "train") -> Path:
    """A folder holding one split of the sample photographs as PNG files (written once, then reused):
    FOLDER/<split>/, by default under $IPT_CACHE/samples/. split: "train" (what the tools train on by
    default) or "validation" (what they validate and evaluate on by default)."""
    if split not in SAMPLE_SPLITS:
        raise ConfigError(f"unknown sample split {split!r}; the splits are {list(SAMPLE_SPLITS)}")
    root = Path(folder) if folder is not None else default_cache_dir() / "samples"
    folder = root / split
    for name in SAMPLE_SPLITS[split]:
        path = folder / f"{name}.png"
        if not path.is_file():
            write_image(path, sample_image(name))
    return folder
