"""Data pipelines: images/s of the DALI pipeline vs the torch DataLoader twin, with the same number of
CPU threads / worker processes, on ImageNet-sized JPEGs (~500x375) cut from the sample photographs, at
crop sizes 96/144/192, with and without the degradation step.

Target (CPU): DALI >= 1.5x the DataLoader path. On a GPU the DALI pipeline decodes with nvJPEG.
"""

import numpy as np
import pytest
from PIL import Image

from ipt.data import degrade_batch, load_training_images
from ipt.data.samples import sample_image, SAMPLE_NAMES
from ipt.loaders import make_loader
from ipt.model.config import IPTConfig
from ipt.tasks import get_task

from conftest import DEVICES

N_IMAGES = 256
REPEAT = 4  # 1024 crops per epoch, so per-epoch set-up is amortised as in real training
BATCH = 64  # the batch of the other benchmarks; training batches are 64-256
WORKERS = 2


@pytest.fixture(scope="module")
def jpeg_set(tmp_path_factory):
    """N_IMAGES JPEGs of 500x375 (or 375x500), quality 90, from random crops of the samples."""
    root = tmp_path_factory.mktemp("imagenet_like")
    rng = np.random.default_rng(0)
    photos = [sample_image(n) for n in SAMPLE_NAMES]
    for i in range(N_IMAGES):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        size = (500, 375) if i % 3 else (375, 500)
        Image.fromarray(photo[top : top + ch, left : left + cw]).resize(size, Image.BICUBIC).save(
            root / f"img_{i:04d}.jpg", quality=90)
    return load_training_images(root, min_size=max(CROP_TASK), cache=None)


# The SR tasks' crops for the paper's model input (96, 144, 192): decoding and augmenting at each, with
# the degradation step at one.
CROP_TASK = {get_task(t).hr_crop_for(IPTConfig.patch_size): t for t in ("sr2", "sr3", "sr4")}
SMALLEST = min(CROP_TASK)
CROPS = [*(pytest.param(c, False, id=str(c)) for c in CROP_TASK),
         pytest.param(SMALLEST, True, id=f"{SMALLEST}-with-degradation")]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("crop, degrade", CROPS)
@pytest.mark.parametrize("backend", ["dali", "torch"])
def test_pipeline_throughput(measure, jpeg_set, backend, crop, degrade, device):
    task = CROP_TASK[crop]
    loader = make_loader(backend, jpeg_set, [task], batch_size=BATCH, seed=0, workers=WORKERS, device=device,
                         repeat=REPEAT)
    epoch = iter(range(10**6))

    def one_epoch():
        for batch in loader.epoch(next(epoch)):
            if degrade:
                degrade_batch(batch, loader.tasks, seed=0)

    measure(one_epoch, group=f"pipeline crop {crop} {'+degrade ' if degrade else ''}{device}", role=backend,
            device=device, items=len(loader) * BATCH, rounds=3,
            speedup_targets={"torch": 1.5} if backend == "dali" and device == "cpu" else {})
