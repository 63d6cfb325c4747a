"""Rain streaks: kernel vs reference, determinism, and that the layers follow their parameters."""

import math

import numpy as np
import pytest
import torch

import ipt.ops
from ipt.ops import HEAVY_RAIN, LIGHT_RAIN, RainConfig, reference

from images import photo_batch

CUSTOM = RainConfig(amount=(0.01, 0.02), thickness=(0.5, 1.5), length=(5.0, 12.0), angle=(30.0, 45.0), alpha=(1.0, 1.0))
CONFIGS = {"light": LIGHT_RAIN, "heavy": HEAVY_RAIN, "custom": CUSTOM}


def _fixed(angle=0.0, length=0.0, thickness=0.05, amount=0.01) -> RainConfig:
    return RainConfig(amount=(amount, amount), thickness=(thickness, thickness), length=(length, length),
                      angle=(angle, angle), alpha=(1.0, 1.0))


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("size", [(48, 48), (37, 61), (1, 1), (2, 3)])
def test_streak_layers_equal_reference(kernels, device, name, size):
    config, ids = CONFIGS[name], torch.tensor([0, 5, 123456789012])
    out = ipt.ops.rain_streaks(ids.to(device), *size, 2024, config)
    assert out.shape == (3, 1, *size) and out.dtype == torch.float32
    expected = reference.rain_streaks(ids, *size, 2024, *config.ranges(with_alpha=False))
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64, torch.bfloat16])
def test_add_rain_equals_reference(kernels, device, name, dtype):
    x = photo_batch("coffee", crop=(40, 56)).repeat(2, 1, 1, 1)
    x = x if dtype == torch.uint8 else x.to(dtype)
    ids = torch.tensor([3, 9])
    config = CONFIGS[name]
    out = ipt.ops.add_rain(x.to(device), 77, ids.to(device), config)
    assert out.dtype == (torch.float32 if dtype == torch.uint8 else dtype)
    expected = reference.add_rain(x, ids, 77, *config.ranges())
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=0)


def test_add_rain_is_the_layer_blended_with_the_drawn_alpha(kernels):
    x = photo_batch("astronaut", crop=(64, 64)).float().repeat(2, 1, 1, 1)
    ids = torch.tensor([4, 8])
    layers = ipt.ops.rain_streaks(ids, 64, 64, 5, "heavy")
    alphas = [reference.rain_sample(HEAVY_RAIN.ranges(), 5, int(i))["alpha"] for i in ids]
    expected = torch.stack([(x[b] + alphas[b] * layers[b]).clamp(0, 255) for b in range(2)])
    torch.testing.assert_close(ipt.ops.add_rain(x, 5, ids, "heavy"), expected, rtol=0, atol=1e-4)
    assert all(HEAVY_RAIN.alpha[0] <= a <= HEAVY_RAIN.alpha[1] for a in alphas)


def test_layers_are_normalised_to_0_255(kernels):
    layers = ipt.ops.rain_streaks(4, 96, 96, 1, "light")
    for layer in layers:
        assert layer.min() == 0 and layer.max() == 255
    assert torch.equal(ipt.ops.rain_streaks(2, 32, 32, 1, _fixed(amount=0.0)), torch.zeros(2, 1, 32, 32))


def test_deterministic_per_seed_and_sample_id(kernels):
    ids = torch.tensor([10, 20, 30])
    a = ipt.ops.rain_streaks(ids, 48, 48, 9)
    torch.testing.assert_close(ipt.ops.rain_streaks(ids[[2, 0]], 48, 48, 9), a[[2, 0]], rtol=0, atol=0)
    assert not torch.equal(a, ipt.ops.rain_streaks(ids, 48, 48, 10))
    assert not torch.equal(a[0], a[1])


@pytest.mark.parametrize("amount", [0.01, 0.05])
def test_density_follows_amount(kernels, amount):
    # length 0 and a vanishing width leave each seed a single pixel: the layer's non-zero fraction is
    # the seed density (binomial, 5 standard deviations).
    layers = ipt.ops.rain_streaks(4, 128, 128, 3, _fixed(amount=amount))
    n = layers.numel()
    fraction = (layers > 0).float().mean().item()
    assert abs(fraction - amount) < 5 * math.sqrt(amount * (1 - amount) / n)


def _streak_angle(layer: np.ndarray) -> float:
    """Dominant streak direction in degrees from vertical (positive leaning right going down), from
    the structure tensor: streaks run along its smallest-eigenvalue eigenvector."""
    gy, gx = np.gradient(layer.astype(np.float64))
    j = np.array([[np.sum(gx * gx), np.sum(gx * gy)], [np.sum(gx * gy), np.sum(gy * gy)]])
    values, vectors = np.linalg.eigh(j)
    dx, dy = vectors[:, 0]
    if dy < 0:
        dx, dy = -dx, -dy
    return math.degrees(math.atan2(dx, dy))


@pytest.mark.parametrize("angle", [-35.0, 0.0, 20.0, 50.0])
def test_orientation_follows_angle(kernels, angle):
    # Smooth (3 px) streaks: the gradient estimate is biased on aliased 1-px lines, not on these.
    layer = ipt.ops.rain_streaks(1, 160, 160, 11, _fixed(angle=angle, length=60.0, thickness=3.0, amount=0.001))
    assert abs(_streak_angle(layer[0, 0].numpy()) - angle) < 2.5


@pytest.mark.parametrize("length", [10.0, 30.0, 55.0])
def test_length_follows_parameter(kernels, length):
    # The streak kernel of a vertical streak: the centre column is lit over `length` pixels.
    config = _fixed(length=length, thickness=1.0)
    p = reference.rain_sample(config.ranges(), 0, 0)
    column = reference.streak_kernel(p)[:, p["radius"]]
    lit = (column >= reference.WEIGHT_ONE // 2).nonzero().flatten()
    assert abs((lit.max() - lit.min() + 1).item() - length) <= 2


def test_given_streak_layer_is_blended(kernels):
    x = photo_batch("chelsea", crop=(32, 48)).repeat(2, 1, 1, 1)
    layer = torch.rand(2, 1, 32, 48) * 255
    out = ipt.ops.add_rain(x, streak=layer)
    torch.testing.assert_close(out, (x.float() + layer).clamp(0, 255))
    torch.testing.assert_close(ipt.ops.add_rain(x, streak=layer[:1], alpha=0.5), (x.float() + 0.5 * layer[:1]).clamp(0, 255))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ipt.ops.add_rain(torch.zeros(1, 3, 8, 8)), ValueError, "a seed is needed"),
        (lambda: ipt.ops.add_rain(torch.zeros(1, 3, 8, 8), 1, streak=torch.zeros(1, 1, 8, 8)), ValueError, "not both"),
        (lambda: ipt.ops.add_rain(torch.zeros(1, 3, 8, 8), 1, alpha=0.5), ValueError, "alpha is drawn"),
        (lambda: ipt.ops.add_rain(torch.zeros(1, 3, 8, 8), 1, rain="drizzle"), ValueError, "unknown rain preset"),
        (lambda: ipt.ops.add_rain(torch.zeros(1, 3, 8, 8), 1, rain=3), TypeError, "preset name or a RainConfig"),
        (lambda: ipt.ops.add_rain(torch.zeros(1, 3, 8, 8), 1, rain=RainConfig((0.5, 0.1), (1, 2), (1, 2), (0, 0), (1, 1))),
         ValueError, r"amount range \(0.5, 0.1\)"),
        (lambda: ipt.ops.add_rain(torch.zeros(1, 3, 8, 8), 1, rain=RainConfig((0.1, 2.0), (1, 2), (1, 2), (0, 0), (1, 1))),
         ValueError, "amount range"),
        (lambda: ipt.ops.add_rain(torch.zeros(1, 3, 8, 8), streak=torch.zeros(1, 3, 8, 8)), ValueError, r"\(B, 1, H, W\) layer"),
        (lambda: ipt.ops.add_rain(torch.zeros(1, 3, 8, 8), streak=torch.zeros(1, 1, 8, 9)), ValueError, "does not fit"),
        (lambda: ipt.ops.add_rain(torch.zeros(3, 8, 8), 1), ValueError, "must be 4-D"),
        (lambda: ipt.ops.rain_streaks(1, 0, 8, 1), ValueError, "height must be an integer >= 1, got 0"),
        (lambda: ipt.ops.rain_streaks(1, 8, 8, -1), ValueError, "seed must be"),
    ],
)
def test_bad_input_is_a_clear_error(kernels, call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("impl", [torch.ops.ipt.rain_streaks, reference.rain_streaks], ids=["kernel", "reference"])
def test_op_level_range_errors(kernels, impl):
    with pytest.raises(ValueError, match="thickness range"):
        impl(torch.arange(1), 8, 8, 1, [0.1, 0.2], [0.0, 1.0], [1.0, 2.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="length range"):
        impl(torch.arange(1), 8, 8, 1, [0.1, 0.2], [1.0, 1.0], [1.0, 1000.0], [0.0, 0.0])


def test_opcheck_and_compile(kernels):
    ids = torch.arange(2)
    ranges = LIGHT_RAIN.ranges()
    torch.library.opcheck(torch.ops.ipt.rain_streaks.default, (ids, 24, 20, 3, *ranges[:4]))
    x = photo_batch("rocket", crop=(24, 20)).float().repeat(2, 1, 1, 1)
    torch.library.opcheck(torch.ops.ipt.add_rain.default, (x, ids, 3, *ranges))
    compiled = torch.compile(lambda t: ipt.ops.add_rain(t, 3) / 255, fullgraph=True)
    torch.testing.assert_close(compiled(x), ipt.ops.add_rain(x, 3) / 255)


def test_empty_batch_and_non_contiguous(kernels, device):
    assert ipt.ops.rain_streaks(torch.arange(0, device=device), 16, 16, 1).shape == (0, 1, 16, 16)
    assert ipt.ops.add_rain(torch.zeros(0, 3, 16, 16, device=device), 1).shape == (0, 3, 16, 16)
    x = photo_batch("rocket", crop=(32, 40)).float().repeat(2, 1, 1, 1).to(device)
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ipt.ops.add_rain(cl, 4), ipt.ops.add_rain(x, 4), rtol=0, atol=0)
    ids = torch.tensor([[5, 6], [7, 8]], device=device)[:, 0]  # a strided id vector
    torch.testing.assert_close(ipt.ops.add_rain(x, 4, ids), ipt.ops.add_rain(x, 4, ids.contiguous()), rtol=0, atol=0)


def test_sample_ids_on_another_device_are_rejected(kernels):
    with pytest.raises(ValueError, match="same device"):
        ipt.ops.add_rain(torch.zeros(1, 3, 8, 8), 1, torch.zeros(1, dtype=torch.int64, device="meta"))
