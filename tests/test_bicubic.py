"""bicubic_downsample: MATLAB imresize semantics, kernel vs reference vs an independent numpy port."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ipt.ops
from ipt.ops import reference

from images import COLOUR_IMAGES, photo, photo_batch
from matlab_imresize import imresize

FLOAT_DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-9, torch.bfloat16: 2.0, torch.float16: 0.25}


def _kernel(x, scale=None, size=None):
    return ipt.ops.bicubic_downsample(x, scale, size=size)


def _numpy_matlab(x_bchw: torch.Tensor, scale=None, size=None) -> np.ndarray:
    """Applies the numpy port image by image, channels last, as MATLAB would see them."""
    out = []
    for image in x_bchw.cpu().numpy():
        hwc = np.moveaxis(image, 0, -1)
        r = imresize(hwc, scale=None if scale is None else 1.0 / scale, output_shape=size)
        out.append(np.moveaxis(r, -1, 0))
    return np.stack(out)


@pytest.mark.parametrize("name", COLOUR_IMAGES)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_uint8_is_identical_to_matlab_on_photos(kernels, device, name, scale):
    x = photo_batch(name).to(device)
    out = _kernel(x, scale)
    expected = _numpy_matlab(x, scale)
    assert out.dtype == torch.uint8 and tuple(out.shape[2:]) == expected.shape[2:]
    np.testing.assert_array_equal(out.cpu().numpy(), expected)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_float_is_within_1e3_of_matlab_on_photos(kernels, device, scale):
    x = photo_batch("coffee").to(device).float()
    out = _kernel(x, scale)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.cpu().numpy(), _numpy_matlab(x.double(), scale), rtol=0, atol=1e-3)


def test_reference_matches_numpy_port(kernels):
    x = photo_batch("rocket", crop=(97, 130))
    for scale in (2, 3, 4):
        size = [-(-97 // scale), -(-130 // scale)]
        np.testing.assert_array_equal(reference.bicubic_resize(x, size, [1 / scale] * 2).numpy(), _numpy_matlab(x, scale))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_interior_agrees_with_torch_antialias(scale):
    # An independent implementation: PyTorch's antialiased bicubic uses the same kernel (a = -0.5)
    # but truncates instead of mirroring at the border, so only the interior is expected to agree.
    x = photo_batch("astronaut", crop=(504, 504)).double()  # a multiple of 2, 3, 4: torch floors sizes
    ours = _kernel(x, scale)
    theirs = F.interpolate(x, scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    band = 3
    torch.testing.assert_close(ours[..., band:-band, band:-band], theirs[..., band:-band, band:-band], rtol=0, atol=1e-9)
    assert (ours - theirs).abs().max() > 0.5  # ...and the border really differs


SHAPES = [  # (B, C, H, W, scale): H or W not a multiple of scale, tiny images, 1/3/4 channels
    (2, 3, 17, 23, 2),
    (1, 1, 30, 31, 3),
    (3, 4, 13, 9, 4),
    (1, 3, 1, 1, 2),
    (1, 3, 2, 2, 2),
    (1, 3, 1, 7, 3),
    (2, 3, 5, 2, 4),
    (1, 3, 24, 24, 1),
    (1, 2, 40, 33, 5),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_uint8_kernel_equals_reference_and_numpy(kernels, device, shape):
    b, c, h, w, s = shape
    x = torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(h * w))
    out = _kernel(x.to(device), s)
    assert tuple(out.shape) == (b, c, -(-h // s), -(-w // s))
    expected = reference.bicubic_resize(x, list(out.shape[2:]), [1 / s] * 2)
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=0)
    np.testing.assert_array_equal(out.cpu().numpy(), _numpy_matlab(x, s))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_float_kernel_equals_reference(kernels, device, dtype, shape):
    b, c, h, w, s = shape
    x = (torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(1)) * 255).to(dtype)
    out = _kernel(x.to(device), s)
    assert out.dtype == dtype
    expected = reference.bicubic_resize(x, list(out.shape[2:]), [1 / s] * 2)
    torch.testing.assert_close(out.cpu().double(), expected.double(), rtol=0, atol=TOLERANCE[dtype])


def test_identity_at_scale_one(kernels, device):
    x = photo_batch("chelsea", crop=(64, 80)).to(device)
    torch.testing.assert_close(_kernel(x, 1), x, rtol=0, atol=0)


def test_saturation_at_0_and_255(kernels, device):
    # A sharp black/white edge makes the cubic overshoot below 0 and above 255: uint8 saturates,
    # float does not.
    x = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    x[..., :, 8:] = 255
    x[..., ::2, 4] = 255
    assert _kernel(x.to(device), 2).min() == 0 and _kernel(x.to(device), 2).max() == 255
    f = _kernel(x.float().to(device), 2)
    assert f.min() < 0 and f.max() > 255
    np.testing.assert_array_equal(_kernel(x.to(device), 2).cpu().numpy(), _numpy_matlab(x, 2))


@pytest.mark.parametrize("size", [(10, 13), (7, 7), (30, 50), (3, 40), (1, 1)])
def test_explicit_output_size(kernels, device, size):
    x = photo_batch("coffee", crop=(30, 40)).to(device)
    out = _kernel(x, size=size)
    assert tuple(out.shape[2:]) == size
    np.testing.assert_array_equal(out.cpu().numpy(), _numpy_matlab(x, size=size))
    f = _kernel(x.double(), size=size)
    np.testing.assert_allclose(f.cpu().numpy(), _numpy_matlab(x.double(), size=size), rtol=0, atol=1e-9)


def test_non_integer_scale(kernels):
    # At non-integer factors some outputs are mathematically exactly k + 0.5; which way they round then
    # depends on the last bit of the weight normalisation, i.e. on the order a library sums the taps'
    # weights in (numpy and torch sum pairwise, the kernels in order; MATLAB does not document its
    # order). So: the float result to 1e-9, and uint8 to within those ties.
    x = photo_batch("chelsea", crop=(45, 60))
    out = _kernel(x, 1.5)
    assert tuple(out.shape[2:]) == (30, 40)
    expected = _numpy_matlab(x, 1.5).astype(np.int64)
    diff = np.abs(out.numpy().astype(np.int64) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.002
    np.testing.assert_allclose(_kernel(x.double(), 1.5).numpy(), _numpy_matlab(x.double(), 1.5), rtol=0, atol=1e-9)


def test_non_contiguous_and_channels_last(kernels, device):
    x = photo_batch("astronaut", crop=(64, 64)).to(device)
    expected = _kernel(x, 2)
    torch.testing.assert_close(_kernel(x.contiguous(memory_format=torch.channels_last), 2), expected, rtol=0, atol=0)
    wide = torch.cat([x, x], dim=3)[..., ::2]
    torch.testing.assert_close(_kernel(wide, 2), _kernel(wide.contiguous(), 2), rtol=0, atol=0)


def test_empty_batch(kernels, device):
    assert _kernel(torch.empty(0, 3, 10, 10, dtype=torch.uint8, device=device), 2).shape == (0, 3, 5, 5)


def test_batch_of_images_equals_one_by_one(kernels):
    x = torch.cat([photo_batch(n, crop=(96, 96)) for n in COLOUR_IMAGES])
    out = _kernel(x, 3)
    for i in range(len(COLOUR_IMAGES)):
        torch.testing.assert_close(out[i : i + 1], _kernel(x[i : i + 1], 3), rtol=0, atol=0)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: _kernel(torch.zeros(3, 8, 8), 2), ValueError, "must be 4-D"),
        (lambda: _kernel(torch.zeros(1, 3, 8, 8, dtype=torch.int32), 2), TypeError, "supported dtypes are uint8"),
        (lambda: _kernel(torch.zeros(1, 3, 8, 8), 0), ValueError, "scale must be a number >= 1"),
        (lambda: _kernel(torch.zeros(1, 3, 8, 8), 0.5), ValueError, "scale must be a number >= 1"),
        (lambda: _kernel(torch.zeros(1, 3, 8, 8), float("nan")), ValueError, "scale must be a number >= 1"),
        (lambda: _kernel(torch.zeros(1, 3, 8, 8)), ValueError, "exactly one of scale"),
        (lambda: _kernel(torch.zeros(1, 3, 8, 8), 2, size=(4, 4)), ValueError, "exactly one of scale"),
        (lambda: _kernel(torch.zeros(1, 3, 8, 8), size=(0, 4)), ValueError, "size must be two integers >= 1"),
        (lambda: _kernel(torch.zeros(1, 3, 0, 8), 2), ValueError, "H and W must be >= 1"),
        (lambda: _kernel([[1]], 2), TypeError, "must be a torch.Tensor"),
    ],
)
def test_bad_input_is_a_clear_error(kernels, call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("impl", [torch.ops.ipt.bicubic_resize, reference.bicubic_resize], ids=["kernel", "reference"])
def test_op_level_errors(kernels, impl):
    with pytest.raises(ValueError, match="scale must be two"):
        impl(torch.zeros(1, 3, 8, 8), [4, 4], [0.0, 0.5])
    with pytest.raises(ValueError, match="size must be two output lengths"):
        impl(torch.zeros(1, 3, 8, 8), [0, 4], [0.5, 0.5])


def test_opcheck(kernels):
    x = photo_batch("astronaut", crop=(20, 26))
    torch.library.opcheck(torch.ops.ipt.bicubic_resize.default, (x, [10, 13], [0.5, 0.5]))
    torch.library.opcheck(torch.ops.ipt.bicubic_resize.default, (x.float(), [7, 9], [1 / 3, 1 / 3]))


def test_works_under_torch_compile(kernels):
    x = photo_batch("coffee", crop=(48, 48)).float()
    compiled = torch.compile(lambda t: ipt.ops.bicubic_downsample(t, 2) * 2, fullgraph=True)
    torch.testing.assert_close(compiled(x), _kernel(x, 2) * 2)


def test_photo_helper_is_real_data():
    assert photo("astronaut").shape == (512, 512, 3) and photo("astronaut").std() > 30
