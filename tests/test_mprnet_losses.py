"""MPRNet's losses against direct numpy computations (explicit loops, border clamping by hand), and the
family's losses() as the trainer calls it."""

import contextlib
import types

import numpy as np
import pytest
import torch

from ipt.mprnet import MPRNet, charbonnier_loss, edge_loss, mprnet_loss
from ipt.mprnet.family import FAMILY
from ipt.mprnet.losses import laplacian
from ipt.tasks import get_task

TAPS = [0.05, 0.25, 0.4, 0.25, 0.05]


def blur_reference(images: np.ndarray) -> np.ndarray:
    """The 5x5 Gaussian (outer product of TAPS) of each channel, pixel by pixel, the nearest border pixel
    standing in for those outside the image."""
    _, _, height, width = images.shape
    out = np.zeros_like(images)
    for i in range(height):
        for j in range(width):
            for di in range(-2, 3):
                for dj in range(-2, 3):
                    row, col = min(max(i + di, 0), height - 1), min(max(j + dj, 0), width - 1)
                    out[:, :, i, j] += TAPS[di + 2] * TAPS[dj + 2] * images[:, :, row, col]
    return out


def laplacian_reference(images: np.ndarray) -> np.ndarray:
    blurred = blur_reference(images)
    expanded = np.zeros_like(images)
    expanded[:, :, ::2, ::2] = 4 * blurred[:, :, ::2, ::2]
    return images - blur_reference(expanded)


def charbonnier_reference(x: np.ndarray, y: np.ndarray, eps: float) -> float:
    return float(np.mean(np.sqrt((x - y) ** 2 + eps**2)))


def edge_reference(x: np.ndarray, y: np.ndarray, eps: float) -> float:
    return charbonnier_reference(laplacian_reference(x), laplacian_reference(y), eps)


@pytest.fixture
def pair():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 11, 14, generator=generator, dtype=torch.float64)
    y = torch.rand(2, 3, 11, 14, generator=generator, dtype=torch.float64)
    return x, y


def test_charbonnier_is_the_official_formula(pair):
    x, y = pair
    for eps in (1e-3, 0.1):
        assert charbonnier_loss(x, y, eps).item() == pytest.approx(charbonnier_reference(x.numpy(), y.numpy(), eps),
                                                                    rel=1e-12)
    assert charbonnier_loss(x, x).item() == pytest.approx(1e-3, rel=1e-12)  # eps where the images agree
    assert charbonnier_loss(x, x, eps=0.25).item() == pytest.approx(0.25, rel=1e-12)


@pytest.mark.parametrize("channels, size", [(3, (11, 14)), (1, (7, 5)), (4, (2, 9)), (3, (1, 1))])
def test_edge_loss_matches_a_direct_computation(channels, size):
    generator = torch.Generator().manual_seed(channels)
    x = torch.rand(2, channels, *size, generator=generator, dtype=torch.float64)
    y = torch.rand(2, channels, *size, generator=generator, dtype=torch.float64)
    np.testing.assert_allclose(laplacian(x).numpy(), laplacian_reference(x.numpy()), rtol=1e-12, atol=1e-12)
    assert edge_loss(x, y).item() == pytest.approx(edge_reference(x.numpy(), y.numpy(), 1e-3), rel=1e-12)
    assert edge_loss(x, y, eps=0.5).item() == pytest.approx(edge_reference(x.numpy(), y.numpy(), 0.5), rel=1e-12)


def test_the_laplacian_keeps_edges_only():
    flat = torch.full((1, 3, 16, 16), 0.7, dtype=torch.float64)
    # the kept pixels' taps sum to 1/4 of the kernel everywhere: a flat image has no detail, away from the border
    assert laplacian(flat)[..., 4:-4, 4:-4].abs().max() < 1e-12
    step = flat.clone()
    step[..., :, 8:] = 0.2
    detail = laplacian(step)[0, 0, 8]
    assert detail[7:9].abs().min() > 0.05 and detail[2:4].abs().max() < 1e-12  # 4 px: two 5-tap blurs


def test_losses_follow_the_input_dtype_and_device(device):
    x = torch.rand(1, 3, 8, 8, device=device, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)
    for loss in (charbonnier_loss(x, x * 0.5), edge_loss(x, x * 0.5)):
        assert loss.device == x.device and loss.dtype == x.dtype


def test_mprnet_loss_sums_the_three_stages(pair):
    x, y = pair
    outputs = [x, x * 0.5 + 0.1, x.flip(-1)]
    total, charbonnier, edge = mprnet_loss(outputs, y, edge_weight=0.05)
    char_expected = sum(charbonnier_reference(o.numpy(), y.numpy(), 1e-3) for o in outputs)
    edge_expected = sum(edge_reference(o.numpy(), y.numpy(), 1e-3) for o in outputs)
    assert charbonnier.item() == pytest.approx(char_expected, rel=1e-12)
    assert edge.item() == pytest.approx(edge_expected, rel=1e-12)
    assert total.item() == pytest.approx(char_expected + 0.05 * edge_expected, rel=1e-12)
    total, charbonnier, _ = mprnet_loss(outputs, y, edge_weight=0.05, eps=0.2)
    assert charbonnier.item() == pytest.approx(sum(charbonnier_reference(o.numpy(), y.numpy(), 0.2) for o in outputs),
                                               rel=1e-12)


def test_the_denoising_recipe_clamps_and_leaves_edges_out(pair):
    x, y = pair
    outputs = [(x * 3 - 1).requires_grad_() for _ in range(3)]  # values far outside [0, 1]
    total, charbonnier, edge = mprnet_loss(outputs, y, edge_weight=0.0, clamp=True)
    clipped = np.clip(outputs[0].detach().numpy(), 0, 1)
    assert charbonnier.item() == pytest.approx(3 * charbonnier_reference(clipped, y.numpy(), 1e-3), rel=1e-12)
    assert total.item() == charbonnier.item()
    assert edge.item() == pytest.approx(3 * edge_reference(clipped, y.numpy(), 1e-3), rel=1e-12)  # logged
    assert not edge.requires_grad  # but no part of the gradient
    total.backward()
    inside = (outputs[0] > 0) & (outputs[0] < 1)
    assert (outputs[0].grad[~inside] == 0).all() and (outputs[0].grad[inside] != 0).all()
    unclamped, _, _ = mprnet_loss([o.detach() for o in outputs], y, edge_weight=0.0)
    assert unclamped.item() > total.item()


def test_gradients_flow_through_both_terms(pair):
    x, y = pair
    outputs = [x.clone().requires_grad_() for _ in range(3)]
    total, _, _ = mprnet_loss(outputs, y, edge_weight=0.05)
    total.backward()
    char_only = [x.clone().requires_grad_() for _ in range(3)]
    mprnet_loss(char_only, y, edge_weight=0.0)[0].backward()
    for with_edges, without in zip(outputs, char_only):
        assert with_edges.grad.abs().sum() > 0
        assert not torch.allclose(with_edges.grad, without.grad)  # the edge term adds to the gradient


# --- the family's losses(), as the trainer calls it ---------------------------------------------------------


class Recorded(contextlib.AbstractContextManager):
    entered = 0

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        return None


@pytest.mark.parametrize("task, edge_weight, expected_weight, clamp", [
    ("deblur", None, 0.05, False), ("rain", None, 0.05, False), ("noise30", None, 0.0, True),
    ("denoise", 0.3, 0.3, True), ("deblur", 0.0, 0.0, False)])
def test_family_losses_follow_the_official_recipes(task, edge_weight, expected_weight, clamp):
    torch.manual_seed(0)
    model = MPRNet(task, "tiny")
    generator = torch.Generator().manual_seed(1)
    inputs = torch.rand(2, 3, 8, 8, generator=generator) * 255
    target = torch.rand(2, 3, 8, 8, generator=generator) * 255
    config = types.SimpleNamespace(edge_weight=edge_weight, charbonnier_eps=2e-3)
    autocast = Recorded()
    total, terms = FAMILY.losses(model, inputs, target, get_task(task), 0, config, autocast)
    assert autocast.entered == 1
    with torch.no_grad():
        outputs = [o.double() for o in model(inputs / 255)]
    y = (target / 255).double()
    if clamp:
        outputs = [o.clamp(0, 1) for o in outputs]
    char = sum(charbonnier_reference(o.numpy(), y.numpy(), 2e-3) for o in outputs)
    edge = sum(edge_reference(o.numpy(), y.numpy(), 2e-3) for o in outputs)
    assert terms.shape == (2,) and not terms.requires_grad
    assert terms[0].item() == pytest.approx(char, rel=1e-5) and terms[1].item() == pytest.approx(edge, rel=1e-5)
    assert total.item() == pytest.approx(char + expected_weight * edge, rel=1e-5)
    assert total.dtype == torch.float32
    total.backward()
    assert model.tail.weight.grad.abs().sum() > 0
