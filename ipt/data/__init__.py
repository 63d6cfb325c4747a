"""Data: image files, the built-in sample photographs, checked data sets, and the batches loaders yield.

    data = load_training_images("imagenet/train", min_size=192)     # or None: the built-in samples
    loader = ipt.loaders.make_loader("dali", data, tasks=TASKS, batch_size=64, seed=0, device="cuda")
    for batch in loader.epoch(0):                                    # ipt.data.batch.Batch
        lr, hr = degrade_batch(batch, loader.tasks, seed=0)

Choosing a loader (make_loader, BACKENDS) lives in ipt.loaders, above this package and ipt.pipelines;
the old names here still work, with a DeprecationWarning.
"""

import warnings

from .batch import Batch, degrade_batch
from .datasets import ImagePairs, TrainingImages, load_image_pairs, load_task_data, load_training_images
from .folders import DataLayoutError
from .images import (IMAGE_SUFFIXES, ImageTooLargeError, UnreadableImageError, list_images, read_image, to_rgb_uint8,
                     write_image)
from .samples import SAMPLE_NAMES, TRAINING_SAMPLES, VALIDATION_SAMPLES, sample_image, sample_images_dir

__all__ = ["IMAGE_SUFFIXES", "ImageTooLargeError", "UnreadableImageError", "list_images", "read_image", "to_rgb_uint8", "write_image",
           "SAMPLE_NAMES", "TRAINING_SAMPLES", "VALIDATION_SAMPLES", "sample_image", "sample_images_dir", "Batch", "degrade_batch", "TrainingImages",
           "ImagePairs", "load_training_images", "load_image_pairs", "load_task_data", "DataLayoutError"]

_MOVED_TO_LOADERS = ("make_loader", "BACKENDS")


def __getattr__(name):
    """ipt.data.make_loader and ipt.data.BACKENDS: deprecated aliases of ipt.loaders'."""
    if name in _MOVED_TO_LOADERS:
        warnings.warn(f"ipt.data.{name} moved to ipt.loaders.{name}", DeprecationWarning, stacklevel=2)
        # Imported on use: ipt.loaders imports this package (and ipt.pipelines, which does too), so an
        # import at the top would be the cycle the move removed.
        from .. import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
