"""The IPT tasks as data: what each one is called, its scale, and how its input is made from a clean
image. The official six are in the official index order (head i, tail i and task-embedding row i of
the pretrained model); other tasks, e.g. the paper's noise levels 10 and 70, are made on demand.

    task = get_task("sr2")                      # or get_task(0)
    crop = task.hr_crop_for(model.config.patch_size)   # the clean crop for one model input: 96 for the paper's model
    lr = task.degrade(hr_uint8, seed=7)         # float32 (B, C, H/2, W/2) from (B, C, H, W)
    get_task("noise70")                         # a custom task: GaussianNoise(70), scale 1
    get_task("deblur")                          # camera-shake blur (also trained and evaluated on GoPro's real pairs)
    get_task("denoise")                         # a task of real pairs only (SIDD): no synthetic degradation

Every task has a kind -- "sr", "denoise", "derain" or "deblur" -- which says what a model restores, whatever
makes its inputs: a model family picks its sizes and its loss by it (MPRNet's deblur/denoise/derain presets).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from .errors import ConfigError
from .ops import BlurConfig, RainConfig, add_gaussian_noise, add_motion_blur, add_rain, bicubic_downsample
from .ops.blur import resolve_blur


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype == torch.uint8 else x


KINDS = ("sr", "denoise", "derain", "deblur")  # what a task restores (Task.kind)


@dataclass(frozen=True)
class BicubicDownsample:
    """MATLAB bicubic downscaling; uint8 images take MATLAB's uint8 path, as SR benchmarks did."""

    scale: int
    kind = "sr"

    def __call__(self, hr: torch.Tensor, seed: int, sample_ids=None) -> torch.Tensor:
        return _as_float(bicubic_downsample(hr, self.scale))


@dataclass(frozen=True)
class GaussianNoise:
    sigma: float
    kind = "denoise"

    def __call__(self, hr: torch.Tensor, seed: int, sample_ids=None) -> torch.Tensor:
        return add_gaussian_noise(hr, self.sigma, seed, sample_ids)


@dataclass(frozen=True)
class Rain:
    rain: str | RainConfig = "light"
    kind = "derain"

    def __call__(self, hr: torch.Tensor, seed: int, sample_ids=None) -> torch.Tensor:
        return add_rain(hr, seed, sample_ids, self.rain)


@dataclass(frozen=True)
class MotionBlur:
    """Camera shake (SPEC section 7): each sample blurred by its own seeded trajectory PSF, mirrored borders."""

    blur: str | BlurConfig = "light"
    kind = "deblur"

    def __call__(self, hr: torch.Tensor, seed: int, sample_ids=None) -> torch.Tensor:
        return add_motion_blur(hr, seed, sample_ids, self.blur)

    @property
    def config(self) -> BlurConfig:
        return resolve_blur(self.blur)

    @property
    def min_size(self) -> int:
        """The kernel's side: the op refuses images smaller than that."""
        return self.config.size

    @property
    def margin(self) -> int:
        """Clean pixels a training crop holds on each side beyond the model input: the kernel's reach, so that
        every input pixel is blurred from the photograph, as in a tile of a blurred photo, and never from the
        mirrored border (Task.pair trims the margin off again)."""
        return self.config.size // 2


@dataclass(frozen=True)
class RealPairsOnly:
    """The degradation of a task whose inputs only come from real pairs (SIDD's camera noise, the rain of
    Rain13k): there is nothing to synthesise, so clean images cannot be used for it."""

    kind: str
    example: str  # a data set of such pairs, for the message

    def __call__(self, hr: torch.Tensor, seed: int, sample_ids=None) -> torch.Tensor:
        raise ConfigError(f"this {self.kind} task has no synthetic degradation: train and evaluate it on real pairs "
                          f"(input/ + target/ folders, e.g. {self.example}), not on clean images")


Degradation = Callable[..., torch.Tensor]  # (hr, seed, sample_ids=None) -> degraded float image


@dataclass(frozen=True)
class Task:
    name: str
    scale: int  # output / input size of the model: 2, 3, 4 for SR, 1 for restoration
    degradation: Degradation
    index: int | None = None  # position in the official six; None for custom tasks

    @property
    def kind(self) -> str:
        """What the task restores: "sr", "denoise", "derain" or "deblur" (see KINDS)."""
        return self.degradation.kind

    @property
    def synthetic(self) -> bool:
        """Whether the task can make its inputs from clean images (else it needs real pairs)."""
        return not isinstance(self.degradation, RealPairsOnly)

    @property
    def min_size(self) -> int:
        """The smallest side of a clean image the degradation takes (the blur kernel's, for deblurring)."""
        return getattr(self.degradation, "min_size", 1)

    def check_size(self, side: int, what: str) -> None:
        """A clear error when clean images of this side (`what` they are, for the message) are too small
        for the degradation."""
        if side < self.min_size:
            raise ConfigError(f"task {self.name!r} needs clean images of at least {self.min_size} px (the smallest "
                              f"its degradation takes), got {what} of {side} px")

    @property
    def channel(self) -> str:
        """The channel a result is judged on first: "rgb" for deblurring (the GoPro convention of the
        deblurring literature, MPRNet's and IPT's appendix A), "y" otherwise (the official IPT code's).
        Evaluation always reports both."""
        return "rgb" if self.kind == "deblur" else "y"

    @property
    def margin(self) -> int:
        """Pixels a clean training crop holds on each side beyond its target (the blur kernel's reach, for
        deblurring; 0 for the others), which Task.pair trims off the input and the target."""
        return getattr(self.degradation, "margin", 0)

    def hr_crop_for(self, patch_size: int) -> int:
        """Side of the clean crop whose degraded version is one model input of patch_size x patch_size
        (patch_size: model.config.patch_size), after Task.pair trims the margin."""
        return patch_size * self.scale + 2 * self.margin

    @property
    def hr_crop(self) -> int:
        """Deprecated: the crop for the paper's input size only; use hr_crop_for(model.config.patch_size)."""
        warnings.warn("Task.hr_crop assumes the paper's input size and is wrong for other models; use "
                      "task.hr_crop_for(model.config.patch_size)", DeprecationWarning, stacklevel=2)
        # Imported here, not at the top: the model package imports this module, and this deprecated
        # alias is the only thing here that needs a model size.
        from .model.config import IPTConfig

        return self.hr_crop_for(IPTConfig.patch_size)

    def degrade(self, hr: torch.Tensor, seed: int, sample_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The model input for clean images hr (B, C, H, W) in [0, 255] (uint8 or float), on hr's
        device: float (float32 for uint8 input), (H, W) / scale. Deterministic in (seed, sample ids)."""
        return self.degradation(hr, seed, sample_ids)

    @property
    def baseline_name(self) -> str:
        """What the model is measured against: "bicubic" for SR, "input" for restoration."""
        return "bicubic" if self.scale > 1 else "input"

    def baseline(self, degraded: torch.Tensor) -> torch.Tensor:
        """The result without a model, which a model has to beat: for SR the input as an 8-bit image
        enlarged by MATLAB bicubic (imresize(lr, scale), the "Bicubic" rows of the SR literature), for
        denoising and deraining the degraded input itself. (B, C, h, w) -> float (B, C, h*s, w*s)."""
        if self.scale == 1:
            return _as_float(degraded)
        lr = degraded if degraded.dtype == torch.uint8 else degraded.clamp(0, 255).round().to(torch.uint8)
        size = (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
        return bicubic_downsample(lr, size=size).float()

    def pair(self, hr: torch.Tensor, seed: int, sample_ids: torch.Tensor | None = None):
        """(degraded input, clean float target) for a batch of clean training crops (hr_crop_for's side),
        both without the margin."""
        degraded, target = self.degrade(hr, seed, sample_ids), _as_float(hr)
        m = self.margin
        if m:
            degraded, target = degraded[..., m:-m, m:-m], target[..., m:-m, m:-m]
        return degraded, target


TASKS: tuple[Task, ...] = (
    Task("sr2", 2, BicubicDownsample(2), 0),
    Task("sr3", 3, BicubicDownsample(3), 1),
    Task("sr4", 4, BicubicDownsample(4), 2),
    Task("rain", 1, Rain("light"), 3),
    Task("noise30", 1, GaussianNoise(30.0), 4),
    Task("noise50", 1, GaussianNoise(50.0), 5),
)
TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)
# Named as MPRNet names its three (Deblurring, Denoising, Deraining). Deblurring trains on GoPro's or HIDE's
# real pairs, or on clean images blurred on the fly; SIDD and DND camera noise and the Rain13k mixture of
# rain have no synthetic counterpart here: those two tasks take real pairs only.
DEBLUR = Task("deblur", 1, MotionBlur("light"))
PAIR_TASKS: tuple[Task, ...] = (
    Task("denoise", 1, RealPairsOnly("denoise", "SIDD/train")),
    Task("derain", 1, RealPairsOnly("derain", "Rain13k/train")),
)
_BY_NAME = {t.name: t for t in (*TASKS, DEBLUR, *PAIR_TASKS)}


def noise_task(sigma: float) -> Task:
    """A denoising task at another noise level (the paper's Table 4 uses 10 and 70)."""
    return Task(f"noise{sigma:g}", 1, GaussianNoise(float(sigma)))


def sr_task(scale: int) -> Task:
    """Super-resolution at another integer scale."""
    return Task(f"sr{scale}", scale, BicubicDownsample(scale))


def get_task(task: str | int | Task) -> Task:
    """A task by name ('sr2', 'noise30', ... a custom 'noise10', 'sr8', 'rain-heavy', 'deblur', 'deblur-heavy',
    or one of the real-pair tasks 'denoise', 'derain'), by official index (0-5), or a Task given as is."""
    if isinstance(task, Task):
        return task
    if isinstance(task, int) and not isinstance(task, bool):
        if not 0 <= task < len(TASKS):
            raise ConfigError(f"task index {task} is out of range: the official tasks are 0-5 {list(TASK_NAMES)}")
        return TASKS[task]
    if not isinstance(task, str):
        raise TypeError(f"a task is a name, an index or a Task, got {type(task).__name__}")
    if task in _BY_NAME:
        return _BY_NAME[task]
    if task == "rain-heavy":
        return Task("rain-heavy", 1, Rain("heavy"))
    if task == "deblur-heavy":
        return Task("deblur-heavy", 1, MotionBlur("heavy"))
    if m := re.fullmatch(r"noise(\d+(?:\.\d+)?)", task):
        return noise_task(float(m.group(1)))
    if (m := re.fullmatch(r"sr(\d+)", task)) and int(m.group(1)) >= 2:
        return sr_task(int(m.group(1)))
    raise ConfigError(
        f"unknown task {task!r}: use one of {list(TASK_NAMES)}, 'rain-heavy', 'noise<sigma>', 'sr<scale>', 'deblur', "
        f"'deblur-heavy', or a task of real pairs: {[t.name for t in PAIR_TASKS]}"
    )


def __getattr__(name):
    # LR_PATCH (48) was the model input size stated a second time; IPTConfig.patch_size is the one place.
    if name == "LR_PATCH":
        from .model.config import IPTConfig  # lazily, as in Task.hr_crop: the model package imports this module

        warnings.warn("ipt.tasks.LR_PATCH is deprecated: use IPTConfig.patch_size (or model.config.patch_size)",
                      DeprecationWarning, stacklevel=2)
        return IPTConfig.patch_size
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
