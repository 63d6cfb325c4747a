"""The precision a run trains in: which autocast, whether gradients are loss-scaled, and the one line that
says so when it is not what was asked for.

amp "fp32" trains in float32; "auto" trains in bfloat16 autocast on a CUDA GPU, in float32 elsewhere;
"bf16" in bfloat16 autocast on any device. A CUDA GPU without native bfloat16 (compute capability below
8.0: V100, T4; ipt.devices.native_bf16) computes bfloat16 only by slow emulation, so there "auto" and
"bf16" take the model family's choice (ipt.families: fp16_training): float16 autocast with loss scaling
(IPT: its authors trained it so, on V100s) or float32 (MPRNet).

Float16 holds values up to 65504 only. Its gradients are scaled up (torch.amp.GradScaler) so that small ones
do not vanish; a step whose scaled gradients overflow is skipped and the scale lowered (the trainer does not
count it as a non-finite step). A forward pass that overflows is another matter: the trainer recomputes
that step in float32 and, if float32 is finite, trains in float32 from then on (FLOAT32_FALLBACK).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .. import devices
from ..families import ModelFamily, describe_family

# The loss scale float16 runs start from: torch's default. A module constant so that tests can start from a
# scale that overflows.
INITIAL_LOSS_SCALE = 2.0 ** 16

# The dtypes of the forward pass by the names checkpoints record them under.
DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None = None  # the autocast dtype of the forward pass; None: float32, no autocast
    loss_scaling: bool = False  # gradients scaled by a GradScaler (float16's)
    note: str | None = None  # the line that says why the run does not train as asked; None when it does
    fallback: bool = False  # float32 because float16 overflowed in this run's forward pass

    @property
    def name(self) -> str:
        """float32, bfloat16 or float16: as checkpoints record it (DTYPES)."""
        return next(name for name, dtype in DTYPES.items() if dtype == self.dtype)

    def autocast(self, device_type: str):
        """The context of the forward pass."""
        return torch.autocast(device_type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    def scaler(self, device_type: str) -> torch.amp.GradScaler | None:
        """A new GradScaler for a run in this precision, None without loss scaling."""
        return torch.amp.GradScaler(device_type, init_scale=INITIAL_LOSS_SCALE) if self.loss_scaling else None


FLOAT32 = Precision()
BFLOAT16 = Precision(torch.bfloat16)
# Where a float16 forward pass overflowed (the trainer's fallback, kept on resume).
FLOAT32_FALLBACK = Precision(note="amp: this run fell back to float32 when float16 overflowed in the forward "
                                  "pass: it goes on in float32", fallback=True)


def resolve(amp: str, device: torch.device, family: ModelFamily, native_bf16: bool,
            gpu: str | None = None) -> Precision:
    """The precision of a run (pure: the device's facts are arguments). amp: TrainConfig.amp; native_bf16:
    whether `device` computes in bfloat16 natively (ipt.devices.native_bf16); gpu: how the note names the
    device (ipt.devices.describe_gpu), when it has no native bfloat16."""
    if amp == "fp32" or (amp == "auto" and device.type != "cuda"):
        return FLOAT32
    if native_bf16:
        return BFLOAT16
    lead = f"amp: {gpu or device} has no native bfloat16"
    if family.fp16_training:
        return Precision(torch.float16, loss_scaling=True,
                         note=f"{lead}: training with float16 autocast and loss scaling")
    return Precision(note=f"{lead}: training in float32 ({describe_family(family.name)}: {family.fp32_reason})")


def for_device(amp: str, device: torch.device, family: ModelFamily) -> Precision:
    """resolve() with the facts of this machine's `device`."""
    native = devices.native_bf16(device)
    return resolve(amp, device, family, native, gpu=None if native else devices.describe_gpu(device))


def checkpoint_state(precision: Precision, scaler: torch.amp.GradScaler | None) -> dict:
    """What a checkpoint records of a run's precision: the autocast dtype's name, whether it is float32 after
    a float16 overflow, and the loss scaler's state."""
    return {"dtype": precision.name, "fallback": precision.fallback,
            "scaler": scaler.state_dict() if scaler is not None else None}


def on_resume(precision: Precision, saved: dict | None) -> Precision:
    """The precision a resumed run trains in: this machine's (`precision`), unless that is float16 and the
    run fell back from float16 to float32 before its checkpoint (`saved`: checkpoint_state(); None for checkpoints that
    predate it). A run started in float32 for another reason (amp fp32, a CPU) is not such a run."""
    if precision.dtype == torch.float16 and saved and saved.get("fallback"):
        return FLOAT32_FALLBACK
    return precision
