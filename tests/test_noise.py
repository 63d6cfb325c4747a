"""add_gaussian_noise: Philox known answers, kernel vs reference, statistics, and seeding semantics."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import ipt.ops
from ipt.ops import reference

# Random123's tests/kat_vectors, "philox4x32 10" lines: counter (4 words), key (2 words) -> output.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", PHILOX_KAT)
def test_philox_known_answers(counter, key, expected):
    words = reference.philox4x32_10([torch.tensor([c], dtype=torch.int64) for c in counter], key)
    assert [int(w) for w in words] == list(expected)


def test_normal_transform_matches_scipy():
    # AS241 as implemented, against an independent quantile function, over the whole range of
    # uniforms that 32-bit words give: the extremes, both branch boundaries, and a dense grid.
    from scipy.special import ndtri

    bits = torch.cat([torch.tensor([0, 1, 2**31, 2**32 - 2, 2**32 - 1]), torch.randint(0, 2**32, (200_000,))])
    p = reference.uniform_open01(bits)
    p = torch.cat([p, torch.tensor([0.075, 0.925, 0.5 - 0.425, 0.5 + 0.425, 0.07499999, 0.92500001])])
    ours = reference.normal_quantile(p).numpy()
    np.testing.assert_allclose(ours, ndtri(p.numpy()), rtol=1e-14, atol=1e-14)
    assert np.abs(ours).max() < 6.34  # the most extreme uniform, 2^-33, is 6.338 standard deviations out


def _images(shape, dtype, seed=0):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 255
    return x.round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (3, 1, 5, 7), (1, 4, 3, 3), (2, 3, 1, 1)])
def test_kernel_equals_reference(kernels, device, dtype, shape):
    x = _images(shape, dtype)
    ids = torch.tensor([7, 3, 11][: shape[0]])
    out = ipt.ops.add_gaussian_noise(x.to(device), 30.0, 1234, ids.to(device))
    assert out.dtype == (torch.float32 if dtype == torch.uint8 else dtype) and out.shape == x.shape
    expected = reference.add_gaussian_noise(x, 30.0, 1234, ids)
    # The reference's vectorised log/cos may differ from libm in the last bit of a double (and CUDA's
    # libm from both): invisible after rounding to 32 bits or fewer, a few 1e-14 in float64.
    tolerance = 1e-4 if device.type == "cuda" else (1e-12 if dtype == torch.float64 else 0)
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=tolerance)


def test_statistics_match_a_standard_normal(kernels):
    # Mid-grey images: clipping at 0 and 255 is > 4 sigma away, so the noise is unclipped.
    sigma = 30.0
    x = torch.full((64, 3, 64, 64), 127.5)
    noise = ((ipt.ops.add_gaussian_noise(x, sigma, 99) - x) / sigma).flatten().double()
    n = noise.numel()
    assert abs(noise.mean().item()) < 5 / math.sqrt(n)
    assert abs(noise.std().item() - 1) < 5 / math.sqrt(2 * n)
    assert stats.kstest(noise[:200_000].numpy(), "norm").pvalue > 1e-3
    # independent samples, independent neighbouring elements
    per_sample = noise.reshape(64, -1)
    assert abs(np.corrcoef(per_sample[0].numpy(), per_sample[1].numpy())[0, 1]) < 0.02
    assert abs(np.corrcoef(noise[:-1].numpy(), noise[1:].numpy())[0, 1]) < 0.01


def test_clips_to_0_255_and_is_not_rounded(kernels):
    x = torch.cat([torch.zeros(1, 3, 32, 32), torch.full((1, 3, 32, 32), 255.0)])
    out = ipt.ops.add_gaussian_noise(x, 50.0, 5)
    assert out.min() == 0 and out.max() == 255
    assert 0.45 < (out[0] == 0).float().mean() < 0.55 and 0.45 < (out[1] == 255).float().mean() < 0.55
    inside = out[(out > 0) & (out < 255)]
    assert (inside != inside.round()).float().mean() > 0.99


def test_same_sample_id_same_noise_in_any_batch(kernels):
    x = _images((6, 3, 10, 10), torch.float32)
    ids = torch.tensor([10, 11, 12, 13, 14, 15])
    full = ipt.ops.add_gaussian_noise(x, 30, 42, ids)
    order = torch.tensor([4, 1, 5, 0, 3, 2])
    torch.testing.assert_close(ipt.ops.add_gaussian_noise(x[order], 30, 42, ids[order]), full[order], rtol=0, atol=0)
    halves = torch.cat([ipt.ops.add_gaussian_noise(x[:2], 30, 42, ids[:2]), ipt.ops.add_gaussian_noise(x[2:], 30, 42, ids[2:])])
    torch.testing.assert_close(halves, full, rtol=0, atol=0)
    # the default ids are 0 .. B-1
    torch.testing.assert_close(ipt.ops.add_gaussian_noise(x, 30, 42), ipt.ops.add_gaussian_noise(x, 30, 42, torch.arange(6)))


def test_seed_and_sample_id_change_the_noise(kernels):
    x = torch.full((2, 1, 16, 16), 128.0)
    a = ipt.ops.add_gaussian_noise(x, 30, 1)
    assert not torch.equal(a, ipt.ops.add_gaussian_noise(x, 30, 2))
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[1], ipt.ops.add_gaussian_noise(x, 30, 1, torch.tensor([0, 2**40]))[1])


def test_sigma_zero_is_identity(kernels):
    x = _images((2, 3, 6, 6), torch.uint8)
    torch.testing.assert_close(ipt.ops.add_gaussian_noise(x, 0.0, 3), x.float(), rtol=0, atol=0)


def test_non_contiguous_and_empty(kernels, device):
    x = _images((2, 3, 8, 8), torch.float32).to(device)
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ipt.ops.add_gaussian_noise(cl, 30, 8), ipt.ops.add_gaussian_noise(x, 30, 8), rtol=0, atol=0)
    assert ipt.ops.add_gaussian_noise(torch.empty(0, 3, 8, 8, device=device), 30, 8).shape == (0, 3, 8, 8)


@pytest.mark.parametrize("impl", [ipt.ops.add_gaussian_noise, reference.add_gaussian_noise], ids=["kernel", "reference"])
@pytest.mark.parametrize(
    "args, error, match",
    [
        ((torch.zeros(3, 8, 8), 30.0, 1, torch.arange(3)), ValueError, "must be 4-D"),
        ((torch.zeros(1, 3, 8, 8, dtype=torch.int16), 30.0, 1, torch.arange(1)), TypeError, "supported dtypes"),
        ((torch.zeros(1, 3, 8, 8), -1.0, 1, torch.arange(1)), ValueError, "sigma must be finite and >= 0"),
        ((torch.zeros(1, 3, 8, 8), float("inf"), 1, torch.arange(1)), ValueError, "sigma must be finite"),
        ((torch.zeros(1, 3, 8, 8), 30.0, -5, torch.arange(1)), ValueError, "seed must be"),
        ((torch.zeros(2, 3, 8, 8), 30.0, 1, torch.arange(3)), ValueError, r"sample_ids must have shape \(B,\) = \(2,\)"),
        ((torch.zeros(2, 3, 8, 8), 30.0, 1, torch.arange(2).int()), TypeError, "sample_ids has dtype torch.int32; supported dtypes are int64"),
        ((torch.zeros(2, 3, 8, 8), 30.0, 1, torch.arange(2, device="meta")), ValueError, "same device"),
    ],
)
def test_bad_input_is_a_clear_error(kernels, impl, args, error, match):
    with pytest.raises(error, match=match):
        impl(*args)


def test_opcheck_and_compile(kernels):
    x = _images((2, 3, 6, 6), torch.float32)
    torch.library.opcheck(torch.ops.ipt.add_gaussian_noise.default, (x, 30.0, 3, torch.arange(2)))
    compiled = torch.compile(lambda t: ipt.ops.add_gaussian_noise(t, 30.0, 3) / 255, fullgraph=True)
    torch.testing.assert_close(compiled(x), ipt.ops.add_gaussian_noise(x, 30.0, 3) / 255)
