"""ipt.tasks: the official six in order, their degradations, and custom tasks."""

import numpy as np
import pytest
import torch

from ipt.errors import ConfigError
from ipt.model import PRESETS
from ipt.ops import BLUR_PRESETS, blur, motion_blur_kernels
from ipt.tasks import TASK_NAMES, TASKS, GaussianNoise, MotionBlur, Task, get_task

from images import photo_batch
from matlab_imresize import imresize


def test_official_order_names_and_scales():
    assert TASK_NAMES == ("sr2", "sr3", "sr4", "rain", "noise30", "noise50")
    assert [t.scale for t in TASKS] == [2, 3, 4, 1, 1, 1]
    for i, task in enumerate(TASKS):
        assert task.index == i and get_task(i) is task and get_task(task.name) is task


def test_hr_crop_follows_the_model_input_size():
    assert [t.hr_crop_for(48) for t in TASKS] == [96, 144, 192, 48, 48, 48]
    assert [t.hr_crop_for(24) for t in TASKS] == [48, 72, 96, 24, 24, 24]  # the "small" preset's input
    with pytest.warns(DeprecationWarning, match=r"hr_crop_for\(model.config.patch_size\)"):
        assert get_task("sr3").hr_crop == 144  # the deprecated alias: the paper's size only


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("name", TASK_NAMES)
def test_degrading_the_hr_crop_gives_one_model_input(kernels, preset, name):
    task, patch_size = get_task(name), PRESETS[preset].patch_size
    crop = task.hr_crop_for(patch_size)
    tiles = -(-crop // 512)  # the photograph is 512 px: tiled for the crops of larger models (ipt-deblur: 1024)
    hr = photo_batch("astronaut").repeat(3, 1, tiles, tiles)[..., :crop, :crop]
    lr, target = task.pair(hr, seed=5, sample_ids=torch.tensor([1, 2, 3]))
    assert lr.shape == (3, 3, patch_size, patch_size) and lr.dtype == torch.float32
    assert target.dtype == torch.float32 and torch.equal(target, hr.float())
    assert lr.min() >= 0 and lr.max() <= 255


@pytest.mark.parametrize("name, scale", [("sr2", 2), ("sr3", 3), ("sr4", 4)])
def test_sr_degradation_is_matlab_bicubic(kernels, name, scale):
    hr = photo_batch("coffee", crop=(96, 120))
    expected = imresize(hr[0].permute(1, 2, 0).numpy(), scale=1 / scale)  # the independent numpy port
    lr = get_task(name).degrade(hr, seed=0)
    assert lr.dtype == torch.float32
    np.testing.assert_array_equal(lr[0].permute(1, 2, 0).numpy(), expected.astype(np.float32))


@pytest.mark.parametrize("name, scale", [("sr2", 2), ("sr3", 3), ("sr4", 4)])
def test_sr_baseline_is_matlab_bicubic_upsampling_of_the_8_bit_input(kernels, name, scale):
    task = get_task(name)
    lr = task.degrade(photo_batch("coffee", crop=(96, 120)), seed=0)  # float32 holding whole numbers
    expected = imresize(lr[0].permute(1, 2, 0).numpy().astype(np.uint8), scale=float(scale))  # MATLAB imresize(lr, s)
    baseline = task.baseline(lr)
    assert task.baseline_name == "bicubic" and baseline.dtype == torch.float32
    assert baseline.shape == (1, 3, 96 // scale * scale, 120 // scale * scale)
    np.testing.assert_array_equal(baseline[0].permute(1, 2, 0).numpy(), expected.astype(np.float32))
    # an uint8 input (an image read from a file) gives the same, and a float one is rounded to 8 bits first
    assert torch.equal(task.baseline(lr.byte()), baseline)
    assert torch.equal(task.baseline(lr + 0.3), baseline)


@pytest.mark.parametrize("name", ["noise30", "noise50", "rain"])
def test_restoration_baseline_is_the_degraded_input(kernels, name):
    task = get_task(name)
    noisy = task.degrade(photo_batch("coffee", crop=(48, 48)), seed=3, sample_ids=torch.tensor([0]))
    assert task.baseline_name == "input" and torch.equal(task.baseline(noisy), noisy)


@pytest.mark.parametrize("name, sigma", [("noise30", 30), ("noise50", 50)])
def test_noise_degradation_has_its_sigma(kernels, name, sigma):
    hr = torch.full((2, 3, 64, 64), 128, dtype=torch.uint8)  # mid-grey: clipping at 0/255 is rare
    task, ids = get_task(name), torch.tensor([0, 1])
    noisy = task.degrade(hr, 9, ids)
    residual = (noisy - 128)[(noisy > 0) & (noisy < 255)]
    assert abs(residual.mean().item()) < 0.05 * sigma
    assert residual.std().item() == pytest.approx(sigma, rel=0.05)
    assert torch.equal(task.degrade(hr, 9, ids), noisy)  # seeded: the same seed, the same noise
    assert not torch.equal(task.degrade(hr, 10, ids), noisy)
    assert torch.equal(task.degrade(hr[1:], 9, ids[1:]), noisy[1:])  # a sample's noise is its own


def test_rain_degradation_adds_grey_streaks(kernels):
    hr = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)  # black: the output is the streak layer itself
    task, ids = get_task("rain"), torch.tensor([0, 1])
    rain = task.degrade(hr, 9, ids)
    assert (rain >= 0).all() and (rain <= 255).all() and (rain > 0).any()
    assert torch.equal(rain[:, 0], rain[:, 1]) and torch.equal(rain[:, 0], rain[:, 2])  # grey: one layer
    assert not torch.equal(rain[0], rain[1])  # each sample its own streaks
    heavy = get_task("rain-heavy").degrade(hr, 9, ids)
    assert heavy.mean() > rain.mean()  # heavy rain covers more


def _detail(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of horizontal neighbours, per sample: what blur takes away."""
    return (x[..., 1:] - x[..., :-1]).abs().float().mean(dim=(1, 2, 3))


def test_motion_blur_degradation_blurs_each_sample_with_its_own_psf(kernels):
    hr = photo_batch("astronaut", (96, 96)).repeat(2, 1, 1, 1)  # the same image twice
    task, ids = get_task("deblur"), torch.tensor([3, 4])
    blurred = task.degrade(hr, 9, ids)
    assert blurred.dtype == torch.float32 and blurred.shape == hr.shape
    # The op's own kernels for (seed, sample id), applied by the op: the task adds nothing of its own.
    torch.testing.assert_close(blurred, blur(hr, motion_blur_kernels(ids, 15, 9, "light")), rtol=0, atol=1e-4)
    assert not torch.equal(blurred[0], blurred[1])  # each sample its own shake
    torch.testing.assert_close(task.degrade(hr[1:], 9, ids[1:]), blurred[1:])  # whatever batch it sits in
    assert (_detail(blurred) < 0.8 * _detail(hr)).all()  # detail is lost ...
    inner = (..., slice(16, -16), slice(16, -16))  # ... but not light: PSFs sum to 1 (borders aside)
    torch.testing.assert_close(blurred[inner].mean(), hr[inner].float().mean(), rtol=0.02, atol=0)
    heavy = get_task("deblur-heavy").degrade(hr, 9, ids)
    assert (_detail(heavy) < _detail(blurred)).all()  # heavy shake blurs more


def test_custom_tasks():
    assert get_task("noise10").degradation == GaussianNoise(10.0) and get_task("noise10").index is None
    assert get_task("noise70").scale == 1
    assert get_task("sr8").scale == 8 and get_task("sr8").hr_crop_for(48) == 384
    assert get_task("rain-heavy").degradation.rain == "heavy"
    for name in ("denoise", "derain"):  # real pairs only: nothing to synthesise
        task = get_task(name)
        assert (task.kind, task.scale, task.synthetic, task.baseline_name) == (name, 1, False, "input")
        with pytest.raises(ConfigError, match="real pairs"):
            task.degrade(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), seed=0)
    for name, blur in (("deblur", "light"), ("deblur-heavy", "heavy")):  # real pairs (GoPro) or synthetic blur
        task = get_task(name)
        assert (task.kind, task.scale, task.synthetic, task.baseline_name, task.index) == ("deblur", 1, True, "input", None)
        assert task.degradation == MotionBlur(blur) and task.min_size == BLUR_PRESETS[blur].size
    assert [get_task(n).kind for n in ("sr2", "noise30", "rain", "rain-heavy")] == ["sr", "denoise", "derain", "derain"]
    # What a result is judged on first: RGB for deblurring (the GoPro convention), Y for the rest.
    assert [get_task(n).channel for n in ("deblur", "deblur-heavy", "sr2", "noise30", "rain", "denoise")] == \
        ["rgb", "rgb", "y", "y", "y", "y"]
    mine = Task("blur", 1, lambda hr, seed, sample_ids=None: hr.float() * 0.5)
    assert get_task(mine) is mine
    assert torch.equal(mine.degrade(torch.full((1, 3, 4, 4), 8, dtype=torch.uint8), 0), torch.full((1, 3, 4, 4), 4.0))


@pytest.mark.parametrize("bad, error", [("sr1", ConfigError), ("dehaze", ConfigError), (6, ConfigError), (-1, ConfigError),
                                        (1.5, TypeError), (True, TypeError)])
def test_unknown_tasks_are_clear_errors(bad, error):
    with pytest.raises(error, match="task"):
        get_task(bad)


def test_lr_patch_is_a_deprecated_alias_of_the_config_default():
    import ipt.tasks
    from ipt.model import IPTConfig

    with pytest.warns(DeprecationWarning, match="LR_PATCH"):
        assert ipt.tasks.LR_PATCH == IPTConfig().patch_size == 48
