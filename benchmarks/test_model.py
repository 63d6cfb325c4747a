"""The IPT model: training-step throughput of the fused vs the plain body path, and tiled inference.

- forward + backward, batch 64 of inputs of the paper's size (48x48): a narrow, shallow body on CPU;
  the paper's config in bf16 on GPU. Reported in samples/s.
- a 512x512 image through tiled inference, "official" (forward_chop) vs "fast" mode.
  Target: fast >= 5x official.
"""

import pytest
import torch

from ipt.inference import tiled_forward
from ipt.model import IPT, IPTConfig

from conftest import CUDA

BATCH = 64
SMALL_BODY = IPTConfig(n_feats=16, num_heads=4, num_layers=2)  # the paper's patch_size and patch_dim


def _setup(setup: str, train: bool):
    """(device, model, autocast) for 'small-cpu' (fp32) or 'ipt-bf16-cuda'."""
    device = "cuda" if setup.endswith("cuda") else "cpu"
    torch.manual_seed(0)
    model = IPT(["sr2"], SMALL_BODY if setup.startswith("small") else IPTConfig()).to(device).train(train)
    return device, model, torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")


def _train_step(model, x, target):
    out, features = model(x, 0, return_features=True)
    loss = (out - target).abs().mean() + 1e-3 * features.square().mean()
    loss.backward()


@pytest.mark.parametrize("path", ["fused", "plain"])
@pytest.mark.parametrize("setup", [pytest.param("small-cpu"), pytest.param("ipt-bf16-cuda", marks=CUDA)])
def test_forward_backward(measure, setup, path):
    device, model, autocast = _setup(setup, train=True)
    model.fused = path == "fused"
    p, scale = model.config.patch_size, model.tasks[0].scale
    x = torch.rand(BATCH, 3, p, p, device=device) * 255
    target = torch.rand(BATCH, 3, p * scale, p * scale, device=device) * 255

    def step():
        model.zero_grad(set_to_none=True)
        with autocast:
            _train_step(model, x, target)

    measure(step, group=f"forward+backward {setup} batch {BATCH}", role=path, device=device, items=BATCH,
            speedup_targets={"plain": 1.0} if path == "fused" else {}, rounds=5)


@pytest.mark.parametrize("mode", ["fast", "official"])
@pytest.mark.parametrize("setup", [pytest.param("small-cpu"), pytest.param("ipt-bf16-cuda", marks=CUDA)])
def test_tiled_inference_512(measure, setup, mode):
    device, model, autocast = _setup(setup, train=False)
    image = torch.rand(3, 512, 512, device=device) * 255

    def model_fn(tiles):
        with autocast:
            return model(tiles, 0)

    measure(lambda: tiled_forward(model_fn, image, model.tasks[0].scale, patch_size=model.config.patch_size,
                                  mode=mode, progress=False),
            group=f"tiled inference 512x512 x2 {setup}", role=mode, device=device, items=1,
            speedup_targets={"official": 5.0} if mode == "fast" else {}, rounds=3)
