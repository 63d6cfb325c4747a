"""Motion blur: the kernels vs the reference (bit for bit), blur vs scipy.ndimage, and that the camera-shake
kernels follow their parameters."""

import math

import numpy as np
import pytest
import scipy.ndimage
import torch

import ipt.ops
from ipt.ops import HEAVY_BLUR, LIGHT_BLUR, BlurConfig, reference

from images import photo_batch

SHAKE = dict(centripetal=(0.0, 0.7), big_shake=(0.0, 0.2), gaussian_shake=(0.0, 10.0), angle=(-180.0, 180.0))
# Short trajectories with many jerks, of an even size: exercises the impulsive turns and even centring.
JERKY = BlurConfig(size=12, steps=300, length=(4.0, 10.0), exposure=(0.0, 1.0), anxiety=(0.5, 1.0),
                   **{**SHAKE, "big_shake": (0.5, 1.0)})
CONFIGS = {"light": LIGHT_BLUR, "heavy": HEAVY_BLUR, "jerky": JERKY}
IDS = torch.tensor([0, 5, 123456789012, 2**62])


def _line(length: float, angle: float, size: int = 41, exposure: float = 1.0) -> BlurConfig:
    """A straight path (no shake) of `length` pixels at `angle` degrees."""
    fixed = dict(length=(length, length), exposure=(exposure, exposure), anxiety=(0.0, 0.0), centripetal=(0.0, 0.0),
                 big_shake=(0.0, 0.0), gaussian_shake=(0.0, 0.0), angle=(angle, angle))
    return BlurConfig(size=size, steps=1000, **fixed)


def _scipy_blur(x: torch.Tensor, kernels: torch.Tensor) -> np.ndarray:
    """scipy.ndimage.convolve per image and channel: mode 'reflect' mirrors with the edge repeated."""
    x, k = x.double().numpy(), kernels.double().numpy()
    return np.stack([np.stack([scipy.ndimage.convolve(plane, k[b], mode="reflect") for plane in x[b]])
                     for b in range(x.shape[0])])


# --- motion_blur_kernels ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONFIGS))
def test_kernels_equal_reference(kernels, device, name):
    config = CONFIGS[name]
    out = ipt.ops.motion_blur_kernels(IDS.to(device), None, 2024, config)
    assert out.shape == (4, config.size, config.size) and out.dtype == torch.float32 and out.device.type == device.type
    expected = reference.motion_blur_kernels(IDS, config.size, 2024, config.steps, *config.ranges())
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_kernels_are_centred_psfs(kernels, name):
    config = CONFIGS[name]
    psfs = ipt.ops.motion_blur_kernels(64, None, 11, config).double()
    assert (psfs >= 0).all()
    torch.testing.assert_close(psfs.sum(dim=(1, 2)), torch.ones(64, dtype=torch.float64), rtol=0, atol=1e-6)
    centre = config.size // 2  # the anchor blur uses
    for psf in psfs:
        rows, cols = psf.sum(1).nonzero().flatten(), psf.sum(0).nonzero().flatten()
        # the path's bounding box is centred; its splat adds at most one pixel on the far side
        assert abs((rows.min() + rows.max()) / 2 - centre) <= 0.5 + 1e-9
        assert abs((cols.min() + cols.max()) / 2 - centre) <= 0.5 + 1e-9


@pytest.mark.parametrize("length, angle", [(20.0, 0.0), (30.0, 90.0), (16.0, 37.0), (25.0, -120.0)])
def test_a_steady_hand_draws_a_line(kernels, length, angle):
    """With no shake the path is a straight segment: the PSF's principal axis is its direction, its
    variance along it that of a uniform segment (L^2 / 12) plus the bilinear splat's, and across it only
    the splat's (under a quarter of a pixel squared)."""
    psf = ipt.ops.motion_blur_kernels(1, None, 0, _line(length, angle))[0].double()
    y, x = torch.meshgrid(torch.arange(41.0, dtype=torch.float64), torch.arange(41.0, dtype=torch.float64),
                          indexing="ij")
    mx, my = (psf * x).sum(), (psf * y).sum()
    cxx, cyy, cxy = (psf * (x - mx) ** 2).sum(), (psf * (y - my) ** 2).sum(), (psf * (x - mx) * (y - my)).sum()
    eigen, vectors = torch.linalg.eigh(torch.tensor([[cxx, cxy], [cxy, cyy]]))
    along, across = float(eigen[1]), float(eigen[0])
    direction = math.degrees(math.atan2(float(vectors[1, 1]), float(vectors[0, 1])))
    assert abs((direction - angle + 90) % 180 - 90) < 0.5  # the same line, either way along it
    assert length**2 / 12 < along < length**2 / 12 + 0.5
    assert across < 0.25
    assert abs(mx - 20) <= 0.5 and abs(my - 20) <= 0.5  # centred


def test_exposure_shortens_the_path(kernels):
    full = ipt.ops.motion_blur_kernels(1, None, 0, _line(30.0, 0.0, exposure=1.0))[0]
    half = ipt.ops.motion_blur_kernels(1, None, 0, _line(30.0, 0.0, exposure=0.5))[0]
    point = ipt.ops.motion_blur_kernels(1, None, 0, _line(30.0, 0.0, exposure=0.0))[0]
    width = {name: int((psf.sum(0) > 0).sum()) for name, psf in (("full", full), ("half", half), ("point", point))}

    def columns(path_length):  # of a horizontal path centred on column 20, splatted bilinearly
        return math.ceil(20 + path_length / 2) - math.floor(20 - path_length / 2) + 1

    half_length = 30.0 / 999 * 499  # 1 + floor(0.5 * 999) of 1000 positions, 30 / 999 px apart
    assert width == {"full": 31, "half": columns(half_length), "point": 1} and columns(half_length) == 17
    assert point[20, 20] == 1.0


def test_kernels_depend_only_on_seed_and_sample_id(kernels):
    ids = torch.tensor([10, 20, 30])
    a = ipt.ops.motion_blur_kernels(ids, None, 9, "heavy")
    torch.testing.assert_close(ipt.ops.motion_blur_kernels(ids[[2, 0]], None, 9, "heavy"), a[[2, 0]], rtol=0, atol=0)
    assert not torch.equal(a, ipt.ops.motion_blur_kernels(ids, None, 10, "heavy"))
    assert not torch.equal(a[0], a[1])
    # a larger kernel holds the same path, centred: the small kernel padded
    big = ipt.ops.motion_blur_kernels(ids, 41, 9, "heavy")
    torch.testing.assert_close(big[:, 5:36, 5:36], a, rtol=0, atol=0)
    assert big.sum(dim=(1, 2)).sub(1).abs().max() < 1e-6


def test_parameters_stay_in_their_ranges(kernels):
    for sample in range(200):
        p = reference.blur_sample(HEAVY_BLUR.ranges(), 3, sample)
        for name, (low, high) in zip(ipt.ops.contract.BLUR_PARAMS, HEAVY_BLUR.ranges()):
            assert low <= p[name] <= high


def test_config_checks():
    with pytest.raises(ValueError, match=r"^BlurConfig: length range \(3, 20\) must end at most at 14, the longest path a 15x15 kernel "):
        ipt.ops.motion_blur_kernels(2, None, 0, BlurConfig(**{**LIGHT_BLUR.__dict__, "length": (3.0, 20.0)}))
    with pytest.raises(ValueError, match=r"^unknown blur preset 'medium'"):
        ipt.ops.add_motion_blur(torch.zeros(1, 3, 16, 16), 0, blur="medium")
    with pytest.raises(ValueError, match=r"^motion_blur_kernels: length range \(12, 30\) must end at most at 14, the longest"):
        ipt.ops.motion_blur_kernels(2, 15, 0, "heavy")


# --- blur -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(3, 3), (4, 4), (15, 15), (16, 10), (31, 31), (2, 7), (1, 1)])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_blur_equals_reference(kernels, device, size, dtype):
    x = photo_batch("coffee", crop=(40, 48)).repeat(2, 1, 1, 1)
    x = x if dtype == torch.uint8 else x.to(dtype)
    weights = torch.rand(2, *size, generator=torch.Generator().manual_seed(sum(size)))
    weights[weights < 0.6] = 0  # sparse, as camera-shake kernels are
    weights[:, size[0] // 2, size[1] // 2] = 0.5
    out = ipt.ops.blur(x.to(device), weights.to(device))
    assert out.dtype == (torch.float32 if dtype == torch.uint8 else dtype)
    torch.testing.assert_close(out.cpu(), reference.blur(x, weights), rtol=0, atol=0)


@pytest.mark.parametrize("size", [3, 4, 15, 16, 31, 63])
def test_blur_equals_scipy(kernels, size):
    """scipy.ndimage.convolve is the independent definition: same anchor, same mirrored border."""
    x = photo_batch("astronaut", crop=(64, 70)).double()[:, :2].repeat(2, 1, 1, 1)
    weights = ipt.ops.motion_blur_kernels(2, size, 4, _line(min(2 * ((size - 1) // 2), 20.0), 30.0, size)).double()
    out = ipt.ops.blur(x, weights)
    np.testing.assert_allclose(out.numpy(), _scipy_blur(x, weights), rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape, kernel", [((1, 1, 1, 1), (1, 1)), ((1, 4, 5, 3), (5, 3)), ((3, 1, 9, 2), (4, 2))])
def test_blur_edge_sizes_equal_scipy(kernels, shape, kernel):
    """Kernels as large as the image (the most mirrored border), any channel count, single pixels."""
    x = torch.rand(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 255
    weights = torch.rand(shape[0], *kernel, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(ipt.ops.blur(x, weights).numpy(), _scipy_blur(x, weights), rtol=0, atol=1e-10)


def test_blur_takes_any_layout(kernels):
    x = photo_batch("chelsea", crop=(32, 40)).float().repeat(2, 1, 1, 1)
    weights = ipt.ops.motion_blur_kernels(2, None, 1, "light")
    expected = ipt.ops.blur(x, weights)
    torch.testing.assert_close(ipt.ops.blur(x.contiguous(memory_format=torch.channels_last), weights), expected,
                               rtol=0, atol=0)
    torch.testing.assert_close(ipt.ops.blur(x.transpose(2, 3).contiguous().transpose(2, 3), weights.transpose(1, 2)
                                            .contiguous().transpose(1, 2)), expected, rtol=0, atol=0)


def test_a_centred_point_is_the_identity(kernels):
    x = photo_batch("rocket", crop=(24, 24))
    point = torch.zeros(1, 5, 5)
    point[0, 2, 2] = 1.0
    assert torch.equal(ipt.ops.blur(x, point), x.float())
    for size in (12, 15):  # a still camera's kernel sits on blur's anchor, even sizes too: nothing moves
        still = ipt.ops.motion_blur_kernels(1, size, 0, _line(0.0, 0.0, size))
        assert still[0, size // 2, size // 2] == 1.0 and torch.equal(ipt.ops.blur(x, still), x.float())
    shift = torch.zeros(1, 3, 3)
    shift[0, 1, 2] = 1.0  # convolution: out(y, x) = in(y, x - 1), the image moves right, its first column mirrored
    assert torch.equal(ipt.ops.blur(x, shift)[..., 1:], x[..., :-1].float())
    assert torch.equal(ipt.ops.blur(x, shift)[..., 0], x[..., 0].float())


def test_blur_refuses_kernels_that_do_not_fit(kernels):
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"^blur: kernels of shape \[2, 9, 9\] do not fit images of shape \[2, 3, 8, 8\]"):
        ipt.ops.blur(x, torch.ones(2, 9, 9) / 81)
    with pytest.raises(ValueError, match=r"^blur: kernels must hold one kernel per image: got 1 for a batch of 2"):
        ipt.ops.blur(x, torch.ones(1, 3, 3) / 9)
    with pytest.raises(ValueError, match=r"^blur: kernel 1 sums to 2, not 1"):
        ipt.ops.blur(x, torch.stack([torch.ones(3, 3) / 9, torch.ones(3, 3) * 2 / 9]), check_sum=True)
    with pytest.raises(ValueError, match=r"^blur: kernel 0 sums to nan, not 1"):
        ipt.ops.blur(x, torch.full((2, 3, 3), float("nan")), check_sum=True)
    ipt.ops.blur(x, torch.ones(2, 3, 3) / 9, check_sum=True)  # sums to 1: accepted
    # the blur task's images must hold the kernel: a crop below the preset's 15 px is refused in one line
    with pytest.raises(ValueError, match=r"^add_motion_blur: images of shape \[1, 3, 12, 20\] are smaller than the "
                                         r"15x15 blur kernel; use crops of at least 15 pixels$"):
        ipt.ops.add_motion_blur(torch.zeros(1, 3, 12, 20, dtype=torch.uint8), 0)
    with pytest.raises(ValueError, match=r"^add_motion_blur: sample_ids must have shape \(B,\) = \(2,\), got \[3\]"):
        ipt.ops.add_motion_blur(torch.zeros(2, 3, 16, 16), 0, torch.arange(3))


# --- add_motion_blur --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["light", "heavy"])
def test_add_motion_blur_is_blur_by_the_samples_kernels(kernels, device, name):
    x = photo_batch("astronaut", crop=(64, 64)).repeat(3, 1, 1, 1).to(device)
    ids = torch.tensor([7, 1, 40], device=device)
    out = ipt.ops.add_motion_blur(x, 5, ids, name)
    assert out.dtype == torch.float32 and 0 <= float(out.min()) and float(out.max()) <= 255
    psfs = reference.motion_blur_kernels(ids.cpu(), CONFIGS[name].size, 5, CONFIGS[name].steps, *CONFIGS[name].ranges())
    torch.testing.assert_close(out.cpu(), reference.blur(x.cpu(), psfs), rtol=0, atol=0)
    # a sample's blur does not depend on its batch or position in it
    torch.testing.assert_close(ipt.ops.add_motion_blur(x[1:2], 5, ids[1:2], name), out[1:2], rtol=0, atol=0)


def test_blur_lowers_sharpness_and_keeps_brightness(kernels):
    x = photo_batch("astronaut", crop=(128, 128)).float().repeat(8, 1, 1, 1)
    out = ipt.ops.add_motion_blur(x, 3, blur="heavy")

    def gradient_energy(t):
        return float((t[..., 1:, :] - t[..., :-1, :]).abs().mean() + (t[..., :, 1:] - t[..., :, :-1]).abs().mean())

    assert gradient_energy(out) < 0.8 * gradient_energy(x)
    assert abs(float(out.mean()) - float(x.mean())) < 1.0  # a PSF summing to 1 moves no light


def test_opcheck_and_compile(kernels):
    ids = torch.arange(2)
    torch.library.opcheck(torch.ops.ipt.motion_blur_kernels.default, (ids, 15, 3, 100, *LIGHT_BLUR.ranges()))
    x = photo_batch("coffee", crop=(20, 24)).repeat(2, 1, 1, 1)
    torch.library.opcheck(torch.ops.ipt.blur.default, (x, ipt.ops.motion_blur_kernels(ids, 7, 3, _line(6.0, 10.0, 7))))
    torch.library.opcheck(torch.ops.ipt.blur.default, (x.double(), torch.rand(2, 4, 3, dtype=torch.float64)))

    def degrade(images, sample_ids):
        return ipt.ops.add_motion_blur(images, 3, sample_ids, "light")

    torch._dynamo.reset()
    compiled = torch.compile(degrade, fullgraph=True)
    torch.testing.assert_close(compiled(x, ids), degrade(x, ids), rtol=0, atol=0)
