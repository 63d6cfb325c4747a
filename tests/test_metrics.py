"""PSNR / SSIM against scikit-image on the same images."""

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ipt import metrics
from ipt.errors import ConfigError, IPTError

from images import COLOUR_IMAGES, photo


def _noisy(clean, sigma, seed):
    return np.clip(clean + np.random.default_rng(seed).normal(0, sigma, clean.shape), 0, 255)


def _y(rgb_hwc):
    """Independent Y: the BT.601 formula on (H, W, 3) float64."""
    r, g, b = (rgb_hwc[..., k].astype(np.float64) for k in range(3))
    return (65.481 * r + 128.553 * g + 24.966 * b) / 255 + 16


def _skimage_ssim(a, b, **kw):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=255, **kw)


@pytest.mark.parametrize("name", COLOUR_IMAGES)
@pytest.mark.parametrize("shave", [0, 4])
def test_y_channel_equals_skimage(name, shave):
    clean = photo(name).astype(np.float64)
    output = _noisy(clean, 12, 1)
    quantised = np.round(np.clip(output, 0, 255))
    crop = (slice(shave, -shave), slice(shave, -shave)) if shave else (slice(None), slice(None))
    y_out, y_ref = _y(quantised)[crop], _y(clean)[crop]
    assert metrics.psnr(output, clean, shave=shave) == pytest.approx(peak_signal_noise_ratio(y_ref, y_out, data_range=255), abs=1e-6)
    assert metrics.ssim(output, clean, shave=shave) == pytest.approx(_skimage_ssim(y_ref, y_out), abs=1e-6)


@pytest.mark.parametrize("name", COLOUR_IMAGES[:2])
def test_rgb_equals_skimage(name):
    clean = photo(name).astype(np.float64)
    output = _noisy(clean, 20, 2)
    quantised = np.round(np.clip(output, 0, 255))
    assert metrics.psnr(output, clean, y_channel=False) == pytest.approx(
        peak_signal_noise_ratio(clean, quantised, data_range=255), abs=1e-6)
    assert metrics.ssim(output, clean, y_channel=False) == pytest.approx(
        _skimage_ssim(clean, quantised, channel_axis=2), abs=1e-6)


def test_output_is_quantised_before_comparing():
    clean = photo("coffee").astype(np.float64)
    output = clean + 0.3  # rounds back to the clean image
    assert metrics.psnr(output, clean) == float("inf")
    assert metrics.ssim(output, clean) == pytest.approx(1.0)
    assert metrics.psnr(clean - 300, clean) == metrics.psnr(np.zeros_like(clean), clean)


def test_batches_and_tensors():
    clean = torch.from_numpy(np.stack([photo(n)[:64, :64] for n in COLOUR_IMAGES])).permute(0, 3, 1, 2).double()
    output = torch.from_numpy(_noisy(clean.numpy(), 10, 3))
    per_image_psnr, per_image_ssim = metrics.psnr(output, clean, shave=2), metrics.ssim(output, clean, shave=2)
    assert per_image_psnr.shape == per_image_ssim.shape == (4,)
    for i in range(4):  # each image of the batch against scikit-image on that image alone
        hwc_out = np.round(np.clip(output[i].permute(1, 2, 0).numpy(), 0, 255))
        y_out, y_ref = _y(hwc_out)[2:-2, 2:-2], _y(clean[i].permute(1, 2, 0).numpy())[2:-2, 2:-2]
        assert per_image_psnr[i].item() == pytest.approx(peak_signal_noise_ratio(y_ref, y_out, data_range=255), abs=1e-6)
        assert per_image_ssim[i].item() == pytest.approx(_skimage_ssim(y_ref, y_out), abs=1e-6)


def test_paper_noise_psnr_is_in_the_expected_range():
    # sigma-30 noise on a real photo: about 20 dB RGB PSNR (10 log10(255^2 / 30^2) = 18.6 before clipping)
    clean = photo("astronaut").astype(np.float64)
    value = metrics.psnr(_noisy(clean, 30, 4), clean, y_channel=False)
    assert 18.0 < value < 21.0


# Images too small for the measure come from a user's data set (ipt.evaluate): ConfigErrors. Arrays
# of the wrong shape are the calling code's bug: plain ValueErrors.
@pytest.mark.parametrize("call, error, match", [
    (lambda: metrics.psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3))), ValueError, "differ in shape"),
    (lambda: metrics.psnr(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), shave=4), ConfigError, "cannot shave"),
    (lambda: metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3))), ConfigError, "at least 11 px"),
    (lambda: metrics.psnr(np.zeros((8, 8)), np.zeros((8, 8))), ValueError, "expected RGB images"),
])
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match) as caught:
        call()
    assert isinstance(caught.value, IPTError) == (error is ConfigError)
