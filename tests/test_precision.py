"""Training precision on GPUs without native bfloat16 (V100 sm_70, T4 sm_75): the choice (ipt.train.precision),
float16 training with loss scaling, its overflows (of the scale: skipped; of the forward pass: float32 from
then on), checkpoints and exact resume, and inference's fallback to fp32.

There is no GPU here: a V100 is stood in for by ipt.devices.native_bf16 answering False, so that amp "bf16"
on the CPU takes the path a V100 takes (float16 autocast and a GradScaler, both of which torch runs on CPUs).
"""

import csv

import numpy as np
import pytest
import torch

import ipt.devices
from ipt.data import load_training_images
from ipt.families import get_family
from ipt.inference import Restorer
from ipt.train import PRESETS, DivergedError, Trainer
from ipt.train import loop as loop_module
from ipt.train import precision
from ipt.train.state import checkpoints

from images import photo

TINY = PRESETS["tiny"]
V100 = "Tesla V100-SXM2-32GB (sm_70)"


@pytest.fixture(scope="module")
def samples():
    return load_training_images(min_size=48)


@pytest.fixture
def v100(monkeypatch):
    """This machine's devices answer as a V100 does: no native bfloat16."""
    monkeypatch.setattr(ipt.devices, "native_bf16", lambda device: False)
    monkeypatch.setattr(ipt.devices, "describe_gpu", lambda device: V100)


def amp_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("amp:")]


def scaler_skips(text: str) -> list[str]:
    return [line for line in text.splitlines() if "skipped by the loss scaler" in line]


def adam_steps(trainer) -> int:
    """How many times the optimizer stepped (Adam counts them per parameter)."""
    return max(int(s["step"]) for s in trainer.optimizer.state.values()) if trainer.optimizer.state else 0


def same_weights(a, b) -> bool:
    a, b = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(a[k], b[k]) for k in a)


# --- the choice --------------------------------------------------------------------------------------------


GPUS = {(7, 0): "Tesla V100-SXM2-32GB", (7, 5): "Tesla T4", (8, 0): "NVIDIA A100-SXM4-80GB", (9, 0): "NVIDIA H100"}
FLOAT16_LINE = "has no native bfloat16: training with float16 autocast and loss scaling"
FLOAT32_LINE = "has no native bfloat16: training in float32"
# (device, family, amp) -> (autocast dtype, loss scaling, the note's words): written out, not derived.
EXPECTED = {}
for _family in ("ipt", "mprnet"):
    for _device in ("cpu", *GPUS):
        EXPECTED[(_device, _family, "fp32")] = (None, False, None)
    EXPECTED[("cpu", _family, "auto")] = (None, False, None)
    EXPECTED[("cpu", _family, "bf16")] = (torch.bfloat16, False, None)
    for _cap in ((8, 0), (9, 0)):
        for _amp in ("auto", "bf16"):
            EXPECTED[(_cap, _family, _amp)] = (torch.bfloat16, False, None)
    for _cap in ((7, 0), (7, 5)):
        for _amp in ("auto", "bf16"):
            EXPECTED[(_cap, _family, _amp)] = ((torch.float16, True, FLOAT16_LINE) if _family == "ipt"
                                               else (None, False, FLOAT32_LINE))


@pytest.mark.parametrize("where, family, amp", list(EXPECTED), ids=str)
def test_the_precision_of_every_device_family_and_amp(monkeypatch, where, family, amp):
    # The real lookups (ipt.devices.native_bf16 and describe_gpu), with torch.cuda answering as that GPU
    # does -- including is_bf16_supported's True on every one of them, which must not decide.
    if where != "cpu":
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: where)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: GPUS[where])
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    device = torch.device("cpu" if where == "cpu" else "cuda")
    chosen = precision.for_device(amp, device, get_family(family))
    dtype, scaling, words = EXPECTED[(where, family, amp)]
    assert (chosen.dtype, chosen.loss_scaling) == (dtype, scaling)
    if words is None:
        assert chosen.note is None
    else:
        assert chosen.note == f"amp: {GPUS[where]} (sm_{where[0]}{where[1]}) {words}" + (
            " (MPRNet: its official recipe trains in float32 on V100s)" if family == "mprnet" else "")
    assert (chosen.scaler("cpu") is not None) == scaling


def test_native_bf16_is_compute_capability_8_or_more(monkeypatch):
    for capability, native in (((6, 1), False), ((7, 0), False), ((7, 5), False), ((8, 0), True), ((8, 6), True),
                               ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        assert ipt.devices.native_bf16(torch.device("cuda", 0)) is native, capability
    assert ipt.devices.native_bf16(torch.device("cpu"))  # CPUs: bf16 as before


# --- float16 training ----------------------------------------------------------------------------------------


def test_ipt_trains_in_float16_with_loss_scaling_without_native_bf16(kernels, samples, tmp_path, v100, capsys):
    trainer = Trainer(TINY.updated(steps=8, amp="bf16", checkpoint_every=8, log_every=1), samples, tmp_path,
                      progress=False)
    seen = []
    trainer.model.body.mlp_head.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    out = capsys.readouterr().out
    assert amp_lines(out) == [f"amp: {V100} {FLOAT16_LINE}"]
    assert set(seen) == {torch.float16}  # the forward pass ran in float16
    with open(tmp_path / "log.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 8 and np.isfinite(losses).all()
    # Steps the scaler skipped (the first, at torch's initial scale) are the only ones not applied.
    skipped = len(scaler_skips(out))
    assert adam_steps(trainer) == 8 - skipped >= 1
    after = trainer.model.state_dict()
    assert not all(torch.equal(before[k], after[k]) for k in before)
    saved = torch.load(checkpoints(tmp_path)[-1], weights_only=True)["precision"]
    assert (saved["dtype"], saved["fallback"]) == ("float16", False)
    assert saved["scaler"] == trainer.scaler.state_dict()
    assert saved["scaler"]["scale"] == precision.INITIAL_LOSS_SCALE / 2 ** skipped


def test_a_float16_run_resumes_exactly(kernels, samples, tmp_path, v100):
    # The scale changes in the first steps (the initial one overflows): a resume that lost it would overflow
    # again where the uninterrupted run does not, and end with other weights.
    config = TINY.updated(steps=8, amp="bf16", checkpoint_every=4, deterministic=True)
    straight = Trainer(config, samples, tmp_path / "straight", progress=False)
    straight.run()
    first = Trainer(config.updated(steps=4), samples, tmp_path / "split", progress=False)
    first.run()
    resumed = Trainer(config, samples, tmp_path / "split", resume=True, progress=False)
    assert resumed.scaler.get_scale() == first.scaler.get_scale() < precision.INITIAL_LOSS_SCALE
    resumed.run()
    assert same_weights(straight, resumed)
    assert resumed.scaler.state_dict() == straight.scaler.state_dict()


def test_a_checkpoint_without_a_precision_entry_resumes(kernels, samples, tmp_path, v100):
    """Checkpoints written before loss scaling: no scaler state, so the resumed run starts a new scale."""
    config = TINY.updated(steps=4, amp="bf16", checkpoint_every=2)
    Trainer(config.updated(steps=2), samples, tmp_path, progress=False).run()
    path = checkpoints(tmp_path)[-1]
    old = torch.load(path, weights_only=True)
    del old["precision"]
    torch.save(old, path)
    resumed = Trainer(config, samples, tmp_path, resume=True, progress=False)
    assert resumed.precision.dtype == torch.float16 and resumed.scaler.get_scale() == precision.INITIAL_LOSS_SCALE
    assert resumed.run()["steps"] == 4


def test_clipping_sees_the_unscaled_gradients(kernels, samples, tmp_path, v100, monkeypatch):
    # The same first step in float32 and in float16 at a loss scale of 256 (which does not overflow): the
    # gradients' norm that clipping sees is the same but for float16's rounding, not 256 times larger.
    monkeypatch.setattr(precision, "INITIAL_LOSS_SCALE", 2.0 ** 8)
    norms = {}
    real_grad_norm = loop_module.Trainer._grad_norm

    def grad_norm(self):
        norm = real_grad_norm(self)
        norms.setdefault(self.config.amp, norm.item())
        return norm

    monkeypatch.setattr(loop_module.Trainer, "_grad_norm", grad_norm)
    for amp in ("fp32", "bf16"):
        trainer = Trainer(TINY.updated(steps=1, amp=amp), samples, tmp_path / amp, progress=False)
        trainer.run()
        assert adam_steps(trainer) == 1
    assert trainer.precision.loss_scaling  # the bf16 run was the float16 one
    assert norms["bf16"] == pytest.approx(norms["fp32"], rel=0.05)


def test_steps_the_loss_scaler_overflows_are_skipped_without_counting(kernels, samples, tmp_path, v100, monkeypatch,
                                                                       capsys):
    monkeypatch.setattr(precision, "INITIAL_LOSS_SCALE", 2.0 ** 30)  # far too high: overflows for many steps
    config = TINY.updated(steps=12, amp="bf16", checkpoint_every=100, max_nonfinite_steps=1)
    trainer = Trainer(config, samples, tmp_path, progress=False)
    summary = trainer.run()  # no DivergedError, though most steps are skipped
    skipped = scaler_skips(capsys.readouterr().out)
    assert summary["steps"] == 12 and len(skipped) > config.max_nonfinite_steps + 1
    assert skipped[0] == ("step 1: float16 gradients overflowed: step skipped by the loss scaler, scale lowered to "
                          f"{2.0 ** 29:g}")
    assert trainer.scaler.get_scale() == 2.0 ** (30 - len(skipped))  # halved at each, raised at none
    assert adam_steps(trainer) == 12 - len(skipped)


def test_gradients_that_overflow_below_scale_1_count_as_not_finite(kernels, samples, tmp_path, v100, monkeypatch,
                                                                   capsys):
    # Infinite gradients with a finite loss, at every step: the scaler takes the first for its own
    # overflows (scales 4, 2, 1), then they are what they are -- non-finite steps, and the run diverges.
    monkeypatch.setattr(precision, "INITIAL_LOSS_SCALE", 4.0)
    real_losses = loop_module.Trainer._losses

    def losses(self, forward, batch):
        total, terms = real_losses(self, forward, batch)
        total.register_hook(lambda grad: grad * float("inf"))
        return total, terms

    monkeypatch.setattr(loop_module.Trainer, "_losses", losses)
    config = TINY.updated(steps=20, amp="bf16", checkpoint_every=100, max_nonfinite_steps=2)
    with pytest.raises(DivergedError, match=r"not finite for the last 3 steps \(up to step 6,"):
        Trainer(config, samples, tmp_path, progress=False).run()
    assert [line.split(":")[0] for line in scaler_skips(capsys.readouterr().out)] == ["step 1", "step 2", "step 3"]


def _overflowing_model():
    """A tiny IPT whose first convolution is scaled up so that its outputs reach ~1e6: beyond float16
    (65504), well within float32."""
    model = get_family("ipt").build(TINY.tasks, TINY.model)
    with torch.no_grad():
        for head in model.head:
            head[0].weight *= 1e4
    return model


def test_a_float16_forward_overflow_falls_back_to_float32_for_good(kernels, samples, tmp_path, v100, capsys):
    config = TINY.updated(steps=4, amp="bf16", checkpoint_every=2, log_every=1)
    first = Trainer(config.updated(steps=2), samples, tmp_path, model=_overflowing_model(), progress=False)
    seen = []
    first.model.body.mlp_head.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    first.run()
    out = capsys.readouterr().out
    line = ("step 1: float16 overflowed in the forward pass (loss not finite in float16, finite in float32): "
            "training in float32 from here")
    assert [l for l in out.splitlines() if "overflowed in the forward pass" in l] == [line]
    assert seen == [torch.float16, torch.float32, torch.float32]  # step 1 twice, step 2 in float32 only
    assert (first.precision.dtype, first.scaler) == (None, None)
    assert adam_steps(first) == 2  # the step that overflowed was applied, in float32
    saved = torch.load(checkpoints(tmp_path)[-1], weights_only=True)["precision"]
    assert saved == {"dtype": "float32", "fallback": True, "scaler": None}

    resumed = Trainer(config, samples, tmp_path, resume=True, progress=False)
    out = capsys.readouterr().out
    assert amp_lines(out) == [precision.FLOAT32_FALLBACK.note]
    assert (resumed.precision.dtype, resumed.scaler) == (None, None)
    resumed.run()
    assert all(torch.isfinite(v).all() for v in resumed.model.state_dict().values() if v.is_floating_point())
    assert "overflowed in the forward pass" not in capsys.readouterr().out


def test_a_run_started_in_float32_by_choice_resumes_in_float16(kernels, samples, tmp_path, v100, capsys):
    # Only a fallback is kept on resume: float32 that amp asked for, changed on resume, is not one.
    Trainer(TINY.updated(steps=2, amp="fp32", checkpoint_every=2), samples, tmp_path, progress=False).run()
    resumed = Trainer(TINY.updated(steps=4, amp="bf16", checkpoint_every=2), samples, tmp_path, resume=True,
                      progress=False, allow_config_changes=True)
    assert amp_lines(capsys.readouterr().out) == [f"amp: {V100} {FLOAT16_LINE}"]
    assert resumed.precision.dtype == torch.float16 and resumed.scaler is not None


def test_mprnet_trains_in_float32_without_native_bf16(kernels, tmp_path, v100, capsys):
    config = PRESETS["mprnet-tiny"].updated(steps=1, amp="bf16")
    trainer = Trainer(config, load_training_images(min_size=32), tmp_path, progress=False)
    seen = []
    trainer.model.register_forward_hook(lambda module, args, output: seen.append(output[0].dtype))
    trainer.run()
    assert amp_lines(capsys.readouterr().out) == [
        f"amp: {V100} {FLOAT32_LINE} (MPRNet: its official recipe trains in float32 on V100s)"]
    assert (trainer.precision.dtype, trainer.scaler, seen) == (None, None, [torch.float32])


# --- inference ---------------------------------------------------------------------------------------------


def test_restorer_bf16_runs_in_fp32_on_a_gpu_without_native_bf16(monkeypatch):
    model = get_family("ipt").build(["noise30"], "tiny").eval()
    image = photo("astronaut")[:40, :40]
    fp32 = Restorer.from_model(model, "noise30", precision="fp32").restore(image)
    bf16 = Restorer.from_model(model, "noise30", precision="bf16").restore(image)
    assert not np.array_equal(bf16, fp32)  # bf16 does differ, where the device has it

    monkeypatch.setattr(ipt.devices, "native_bf16", lambda device: False)
    monkeypatch.setattr(ipt.devices, "describe_gpu", lambda device: V100)
    with pytest.warns(RuntimeWarning) as warned:
        restorer = Restorer.from_model(model, "noise30", precision="bf16")
    assert [str(w.message) for w in warned] == [f"precision bf16: {V100} has no native bfloat16; restoring in fp32"]
    assert restorer.precision == "fp32"
    assert np.array_equal(restorer.restore(image), fp32)
