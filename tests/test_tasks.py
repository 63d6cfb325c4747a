"""ipt.tasks: the official six in order, their degradations, and custom tasks."""

import pytest
import torch

import ipt.ops
from ipt.tasks import TASK_NAMES, TASKS, Task, GaussianNoise, get_task

from images import photo_batch


def test_official_order_names_and_scales():
    assert TASK_NAMES == ("sr2", "sr3", "sr4", "rain", "noise30", "noise50")
    assert [t.scale for t in TASKS] == [2, 3, 4, 1, 1, 1]
    assert [t.hr_crop for t in TASKS] == [96, 144, 192, 48, 48, 48]
    for i, task in enumerate(TASKS):
        assert task.index == i and get_task(i) is task and get_task(task.name) is task


@pytest.mark.parametrize("name", TASK_NAMES)
def test_degrade_gives_the_48px_model_input(kernels, name):
    task = get_task(name)
    hr = photo_batch("astronaut", crop=(task.hr_crop, task.hr_crop)).repeat(3, 1, 1, 1)
    lr, target = task.pair(hr, seed=5, sample_ids=torch.tensor([1, 2, 3]))
    assert lr.shape == (3, 3, 48, 48) and lr.dtype == torch.float32
    assert target.dtype == torch.float32 and torch.equal(target, hr.float())
    assert lr.min() >= 0 and lr.max() <= 255
    torch.testing.assert_close(task.degrade(hr, 5, torch.tensor([1, 2, 3])), lr, rtol=0, atol=0)


def test_degradations_are_the_ops(kernels):
    hr = photo_batch("coffee", crop=(96, 96)).repeat(2, 1, 1, 1)
    ids = torch.tensor([0, 1])
    torch.testing.assert_close(get_task("sr2").degrade(hr, 0), ipt.ops.bicubic_downsample(hr, 2).float(), rtol=0, atol=0)
    hr48 = hr[..., :48, :48]
    torch.testing.assert_close(get_task("noise50").degrade(hr48, 9, ids), ipt.ops.add_gaussian_noise(hr48, 50, 9, ids))
    torch.testing.assert_close(get_task("rain").degrade(hr48, 9, ids), ipt.ops.add_rain(hr48, 9, ids, "light"))
    assert not torch.equal(get_task("noise30").degrade(hr48, 9), get_task("noise30").degrade(hr48, 10))


def test_custom_tasks():
    assert get_task("noise10").degradation == GaussianNoise(10.0) and get_task("noise10").index is None
    assert get_task("noise70").scale == 1
    assert get_task("sr8").scale == 8 and get_task("sr8").hr_crop == 384
    assert get_task("rain-heavy").degradation.rain == "heavy"
    mine = Task("blur", 1, lambda hr, seed, sample_ids=None: hr.float() * 0.5)
    assert get_task(mine) is mine
    assert torch.equal(mine.degrade(torch.full((1, 3, 4, 4), 8, dtype=torch.uint8), 0), torch.full((1, 3, 4, 4), 4.0))


@pytest.mark.parametrize("bad, error", [("sr1", ValueError), ("denoise", ValueError), (6, ValueError), (-1, ValueError),
                                        (1.5, TypeError), (True, TypeError)])
def test_unknown_tasks_are_clear_errors(bad, error):
    with pytest.raises(error, match="task"):
        get_task(bad)
