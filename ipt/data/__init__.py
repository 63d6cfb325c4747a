"""Data: image files, the built-in sample photographs, checked data sets, and the loaders.

    data = load_training_images("imagenet/train", min_size=192)     # or None: the built-in samples
    loader = make_loader("dali", data, tasks=TASKS, batch_size=64, seed=0, device="cuda")
    for batch in loader.epoch(0):                                    # ipt.data.batch.Batch
        lr, hr = degrade_batch(batch, loader.tasks, seed=0)
"""

from .batch import Batch, degrade_batch
from .datasets import ImagePairs, TrainingImages, load_image_pairs, load_training_images
from .folders import DataLayoutError
from .images import IMAGE_SUFFIXES, UnreadableImageError, list_images, read_image, to_rgb_uint8, write_image
from .samples import SAMPLE_NAMES, sample_image, sample_images_dir

BACKENDS = ("torch", "dali")

__all__ = ["IMAGE_SUFFIXES", "UnreadableImageError", "list_images", "read_image", "to_rgb_uint8", "write_image",
           "SAMPLE_NAMES", "sample_image", "sample_images_dir", "Batch", "degrade_batch", "TrainingImages",
           "ImagePairs", "load_training_images", "load_image_pairs", "DataLayoutError", "make_loader", "BACKENDS"]


def make_loader(backend: str, data, tasks, batch_size: int, seed: int = 0, *, lr_patch: int = 48, workers: int = 2,
                device="cpu", **options):
    """A loader of training batches: backend 'dali' (ipt.pipelines.DaliLoader) or 'torch'
    (ipt.data.loader.TorchLoader); both yield the same batches for the same seed.

    tasks: the tasks batches are drawn for (one per batch, shared by all ranks). Clean images are cut
    into each task's HR crop (lr_patch * scale); pairs into lr_patch crops of the inputs (one task).
    workers: DALI threads or DataLoader worker processes. options: repeat, last_batch, augment, rank, world.
    """
    from ..tasks import get_task

    tasks = [get_task(t) for t in tasks]
    if isinstance(data, ImagePairs):
        if len(tasks) != 1 or tasks[0].scale != data.scale:
            raise ValueError(f"pairs of scale {data.scale} train exactly one task of that scale, got {[t.name for t in tasks]}")
        crops = (lr_patch,)
    else:
        crops = tuple(lr_patch * t.scale for t in tasks)
    if backend == "dali":
        from ..pipelines import DaliLoader

        loader = DaliLoader(data, crops, batch_size, seed, workers=workers, device=device, **options)
    elif backend == "torch":
        from .loader import TorchLoader

        loader = TorchLoader(data, crops, batch_size, seed, workers=workers, device=device, **options)
    else:
        raise ValueError(f"unknown loader backend {backend!r}; choose one of {BACKENDS}")
    loader.tasks = tasks
    return loader
