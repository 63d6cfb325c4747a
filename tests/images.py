"""Real photographs for the tests: the colour images scikit-image ships (they load offline)."""

import functools

import numpy as np
import torch
from skimage import data

COLOUR_IMAGES = ("astronaut", "chelsea", "coffee", "rocket")


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8."""
    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def photo_batch(name: str, crop=None) -> torch.Tensor:
    """(1, 3, H, W) uint8 tensor, optionally the top-left (h, w) crop."""
    image = photo(name)
    if crop is not None:
        image = image[: crop[0], : crop[1]]
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].contiguous()
