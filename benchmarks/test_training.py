"""Training throughput (samples/s) through the whole loop: data, degradation, forward, losses, backward,
optimizer.

- CPU: the small config, DataLoader vs DALI pipeline (same number of workers / threads).
- GPU (when present): the paper's config in bf16, DALI pipeline vs synthetic in-memory batches; the
  ratio is what the data path costs (target >= 0.95). Model FLOP utilisation is reported.
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ipt.data import Batch, load_training_images
from ipt.model import get_config
from ipt.tasks import get_task
from ipt.train import PRESETS, Trainer

from conftest import CUDA

# Dense bf16 peak of the GPUs we report on (TFLOP/s), for model FLOP utilisation.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


class SyntheticLoader:
    """The same batch over and over from memory: training with a free data path."""

    backend = "synthetic"

    def __init__(self, tasks, crops, batch_size, device, batches=1000):
        self.tasks, self.batches = tasks, batches
        self.hr = {i: torch.randint(0, 256, (batch_size, 3, c, c), dtype=torch.uint8, device=device)
                   for i, c in enumerate(crops)}
        self.ids = torch.arange(batch_size, device=device)

    def __len__(self):
        return self.batches

    def epoch(self, epoch, start=0):
        for k in range(start, self.batches):
            task = k % len(self.tasks)
            yield Batch(self.hr[task], task, self.ids, epoch, k)


def _flops_per_sample(trainer) -> float:
    """Forward + backward FLOPs of one training sample (task 0), counted by torch."""
    model, cfg = trainer.model, trainer.model.config
    x = torch.rand(2, 3, cfg.patch_size, cfg.patch_size, device=trainer.dist.device) * 255
    with FlopCounterMode(display=False) as counter:
        out, tokens = model(x, 0, return_features=True)
        (out.float().mean() + tokens.float().mean()).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def _peak(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v * 1e12 for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


@pytest.mark.parametrize("setup, loader", [
    ("small-cpu", "torch"), ("small-cpu", "dali"),
    pytest.param("ipt-bf16-cuda", "dali", marks=CUDA), pytest.param("ipt-bf16-cuda", "synthetic", marks=CUDA),
])
def test_training_throughput(measure, benchmark, tmp_path, setup, loader):
    steps = 40
    if setup == "small-cpu":
        config = PRESETS["small"].updated(steps=steps, loader="dali" if loader == "dali" else "torch", workers=2,
                                          checkpoint_every=10**6, log_every=10**6)
        device = "cpu"
    else:
        config = PRESETS["ipt"].updated(steps=steps, batch_size=64, loader="dali", workers=8, amp="bf16",
                                        checkpoint_every=10**6, log_every=10**6)
        device = "cuda"
    patch_size = get_config(config.model).patch_size
    data = load_training_images(min_size=max(get_task(t).hr_crop_for(patch_size) for t in config.tasks))
    runs = iter(range(10**6))

    def train():
        trainer = Trainer(config, data, tmp_path / f"run{next(runs)}", device=device, progress=False)
        if loader == "synthetic":
            crops = [t.hr_crop_for(trainer.model.config.patch_size) for t in trainer.model.tasks]
            trainer.loader = SyntheticLoader(trainer.loader.tasks, crops, trainer.micro_batch, trainer.dist.device)
        trainer.run()
        return trainer

    trainer = train()  # warm-up, and the model for the FLOP count
    flops = _flops_per_sample(trainer)
    measure(train, group=f"training {setup}", role=loader, device=device, items=steps * config.batch_size, rounds=3,
            speedup_targets=({"synthetic": 0.95} if device == "cuda" else {"torch": 1.0}) if loader == "dali" else {})
    if benchmark.stats is not None:
        samples_per_s = steps * config.batch_size / benchmark.stats.stats.median
        benchmark.extra_info["model_tflops_per_s"] = round(samples_per_s * flops / 1e12, 4)
        peak = _peak(trainer.dist.device)
        if peak:
            benchmark.extra_info["mfu"] = round(samples_per_s * flops / peak, 4)
