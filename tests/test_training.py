"""Pretraining and fine-tuning: losses, the loop, distributed equivalence, checkpoints and resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ipt.data import load_training_images
from ipt.errors import ConfigError
from ipt.model import load_model
from ipt.train import PRESETS, Trainer, TrainConfig, contrastive_loss, load_config
from ipt.train import contrastive as contrastive_module
from ipt.train.contrastive import contrastive_loss_direct
from ipt.train.state import CheckpointWriteError, checkpoints

from images import photo

TINY = PRESETS["tiny"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_cli(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)


def log_rows(out: Path):
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def samples():
    return load_training_images(min_size=48)


# --- the contrastive loss ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape, chunk", [((3, 16, 8), 7), ((2, 256, 576), 100), ((5, 9, 4), 1000)])
def test_contrastive_loss_equals_the_formula(shape, chunk):
    tokens = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    ours = contrastive_loss(tokens, 0.07, chunk=chunk)
    direct = contrastive_loss_direct(tokens, 0.07)
    torch.testing.assert_close(ours, direct, rtol=1e-5, atol=1e-5)
    g_ours, = torch.autograd.grad(ours, tokens)
    g_direct, = torch.autograd.grad(direct, tokens)
    torch.testing.assert_close(g_ours, g_direct, rtol=1e-4, atol=1e-7)


def test_contrastive_loss_hand_computed():
    # Two images of two tokens each, orthogonal tokens within an image: s(a, p) = 0 for the positive,
    # and the anchor's denominator holds its positive and two negatives.
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    t = 0.5
    # anchor (image 0, token 0): others are (0,1): 0, (1,0): 1/t, (1,1): 0  -> log p(positive) = 0 - log(1 + e^2 + 1)
    expected = torch.log(torch.tensor(2 + torch.e**2))
    torch.testing.assert_close(contrastive_loss(z, t), expected)
    torch.testing.assert_close(contrastive_loss_direct(z, t), expected)


def test_contrastive_loss_works_in_bounded_blocks(monkeypatch):
    seen = []
    original = contrastive_module._logsumexp_without_self

    def spy(anchors, keys, index, temperature):
        seen.append((anchors.shape[0], keys.shape[0]))
        return original(anchors, keys, index, temperature)

    monkeypatch.setattr(contrastive_module, "_logsumexp_without_self", spy)
    tokens = torch.randn(8, 256, 32, requires_grad=True)  # 2048 tokens: the full matrix would be 2048 x 2048
    contrastive_loss(tokens, chunk=300).backward()
    assert max(rows for rows, _ in seen) == 300 and all(keys == 2048 for _, keys in seen)
    # forward blocks, then the same blocks recomputed in the backward pass (activation checkpointing)
    assert len(seen) == 2 * 7


def test_contrastive_loss_is_float32_for_low_precision_tokens():
    tokens = torch.randn(2, 16, 8)
    torch.testing.assert_close(contrastive_loss(tokens.bfloat16()), contrastive_loss(tokens.bfloat16().float()))
    with pytest.raises(ValueError, match="takes"):
        contrastive_loss(torch.randn(16, 8))


# --- the loop ------------------------------------------------------------------------------------------------


def test_loss_falls_within_a_few_dozen_steps(kernels, samples, tmp_path):
    config = TINY.updated(steps=40, batch_size=8, lr=2e-3, log_every=1, checkpoint_every=40, workers=1)
    summary = Trainer(config, samples, tmp_path, progress=False).run()
    losses = [float(r["loss"]) for r in log_rows(tmp_path)]
    assert len(losses) == 40 and summary["steps"] == 40
    assert sum(losses[-8:]) / 8 < 0.6 * sum(losses[:4]) / 4
    rows = log_rows(tmp_path)
    assert {"loss_sr2", "loss_noise50", "data_wait_s", "compute_s", "samples_per_s"} <= set(rows[0])
    assert load_model(tmp_path / "model.safetensors").task_names == list(TINY.tasks)


def test_one_task_per_step_and_gradient_accumulation(kernels, samples, tmp_path):
    no_con = TINY.updated(steps=3, batch_size=4, contrastive_weight=0.0, checkpoint_every=100, deterministic=True)
    whole = Trainer(no_con, samples, tmp_path / "a", progress=False)
    whole.run()
    split = Trainer(no_con.updated(micro_batch=2), samples, tmp_path / "b", progress=False)
    assert split.accumulation == 2
    split.run()
    for (name, a), b in zip(whole.model.state_dict().items(), split.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    plan = split.loader.plan(0)
    assert all(plan.tasks[2 * k] == plan.tasks[2 * k + 1] for k in range(len(plan) // 2))


def test_distributed_gloo_matches_one_process(kernels, tmp_path):
    common = ["--config", "tiny", "--steps", "4", "--batch-size", "4", "--checkpoint-every", "100", "--workers", "1",
              "--no-progress"]
    single = run_cli("ipt.pretrain", *common, "--out", "single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                            "29533", "-m", "ipt.pretrain", *common, "--out", "ddp"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600, env=ENV)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert "2 rank(s) x 2 x 1" in multi.stdout
    a, b = load_model(tmp_path / "single" / "model.safetensors"), load_model(tmp_path / "ddp" / "model.safetensors")
    # Per tensor, norm-wise: Adam divides by sqrt(v), so float noise in near-zero gradients (summed in
    # another order across ranks) moves single elements by up to lr; the tensors agree to ~1e-5.
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        x, y = x.double(), y.double()
        assert ((x - y).norm() / (x.norm() + 1e-12)).item() < 1e-4, name
    changed = sum(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), load_model(
        tmp_path / "single" / "checkpoints" / "step_00000004.pt").state_dict().values()))
    assert changed == 0
    # the same tasks were trained, step by step
    assert [r["loss_sr2"] != "nan" for r in log_rows(tmp_path / "single")] == [r["loss_sr2"] != "nan" for r in log_rows(tmp_path / "ddp")]


def test_killed_run_resumes_to_the_same_parameters(kernels, tmp_path):
    args = ["--config", "tiny", "--steps", "12", "--checkpoint-every", "3", "--no-progress"]
    config = tmp_path / "deterministic.json"
    config.write_text(json.dumps({"extends": "tiny", "deterministic": True, "log_every": 1}))
    args[1] = str(config)
    straight = run_cli("ipt.pretrain", *args, "--out", "straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    victim = subprocess.Popen([sys.executable, "-m", "ipt.pretrain", *args, "--out", "killed"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "checkpoints" / "step_00000006.pt").exists():
        assert victim.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists()  # it really was cut short

    refused = run_cli("ipt.pretrain", *args, "--out", "killed", cwd=tmp_path)
    assert refused.returncode == 2 and "pass --resume" in refused.stderr
    resumed = run_cli("ipt.pretrain", *args, "--out", "killed", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    a = load_model(tmp_path / "straight" / "model.safetensors").state_dict()
    b = load_model(tmp_path / "killed" / "model.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in checkpoints(tmp_path / "killed")] == ["step_00000006.pt", "step_00000009.pt",
                                                                   "step_00000012.pt"]  # keep the last 3


def test_full_disk_is_a_clear_error_that_keeps_the_last_checkpoint(kernels, samples, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = torch.save

    def failing_save(obj, path, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint hits a full disk
            raise OSError(28, "No space left on device")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(torch, "save", failing_save)
    trainer = Trainer(TINY.updated(steps=6, checkpoint_every=2), samples, tmp_path, progress=False)
    with pytest.raises(CheckpointWriteError, match=r"No space left on device.*last good checkpoint is .*step_00000002"):
        trainer.run()
    assert [p.name for p in checkpoints(tmp_path)] == ["step_00000002.pt"]
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))
    assert load_model(tmp_path / "checkpoints" / "step_00000002.pt").task_names == list(TINY.tasks)


@pytest.mark.parametrize("args, message", [
    (["--out", "file.txt/run"], "cannot write to the output folder"),
    (["--data", "no_such_folder"], "no such data folder"),
    (["--resume", "--out", "empty"], "no checkpoint in"),
    (["--batch-size", "0"], "batch_size must be an integer >= 1"),
    (["--config", "nope"], "unknown training config 'nope'"),
    (["--lr", "-1"], "lr must be > 0"),
    (["--batch-size", "4", "--micro-batch", "3"], "must be a multiple of micro_batch 3"),
    (["--batch-size", "64", "--workers", "1"], "does not fill one step of 64 images"),
    (["--amp", "fp16"], "invalid choice: 'fp16'"),
])
def test_bad_settings_are_clear_errors(tmp_path, args, message):
    (tmp_path / "file.txt").write_text("x")
    done = run_cli("ipt.pretrain", "--config", "tiny", "--no-progress", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_config_files_and_presets(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('extends = "ipt"\nbatch_size = 128\ntasks = ["sr2", "noise30"]\n')
    config = load_config(toml)
    assert config.batch_size == 128 and config.tasks == ("sr2", "noise30") and config.lr == 5e-5
    ipt = PRESETS["ipt"]
    assert (ipt.batch_size, ipt.epochs, ipt.lr, ipt.lr_milestones, ipt.lr_gamma * ipt.lr) == (256, 300, 5e-5, (200,), 2e-5)
    assert (ipt.contrastive_weight, ipt.temperature, ipt.betas, ipt.grad_clip) == (0.1, 0.07, (0.9, 0.999), 1.0)
    assert json.loads(json.dumps(config.to_dict()))["tasks"] == ["sr2", "noise30"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"batchsize": 3}')
    with pytest.raises(ConfigError, match="unknown training config keys"):
        load_config(bad)
    with pytest.raises(ConfigError, match="unknown task"):
        TrainConfig(tasks=("sr2", "dehaze"))
    bad.write_text('{"lr_gamma": "fast", "lr_milestones": 3, "seed": 1.5}')  # wrong types: errors, not crashes
    with pytest.raises(ConfigError, match="lr_milestones must be a list of integers, got 3; lr_gamma must be a finite "
                                          "number, got 'fast'; seed must be an integer, got 1.5"):
        load_config(bad)
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(bad)


@pytest.mark.parametrize("steps", [None, 10**6], ids=["step-budget", "epoch-budget"])
def test_the_final_weights_are_validated_once(kernels, samples, tmp_path, steps):
    # 8 images, batch 8, repeat 1: one step per epoch, so both runs end at the end of epoch 1 -- by the
    # step budget (epochs x steps per epoch) or by the epoch budget (far fewer steps than `steps`).
    seen = []

    def validate(model, epoch):
        seen.append((epoch, [p.detach().clone() for p in model.parameters()]))

    config = TINY.updated(steps=steps, epochs=2, batch_size=8, repeat=1, checkpoint_every=100)
    trainer = Trainer(config, samples, tmp_path, validate=validate, progress=False)
    summary = trainer.run()
    assert summary["steps"] == 2
    assert [epoch for epoch, _ in seen] == [0, 1]  # once per epoch; the last one sees the final weights
    final = load_model(tmp_path / "model.safetensors").state_dict()
    assert all(torch.equal(a, final[name]) for (name, _), a in zip(trainer.model.named_parameters(), seen[-1][1]))
    assert not all(torch.equal(a, b) for a, b in zip(seen[0][1], seen[1][1]))


def test_lr_steps_down_at_the_milestone(kernels, samples, tmp_path):
    config = TINY.updated(steps=None, epochs=3, lr_milestones=(1,), lr_gamma=0.4, batch_size=8, repeat=1,
                          checkpoint_every=100, log_every=1)
    Trainer(config, samples, tmp_path, progress=False).run()
    lrs = {int(r["epoch"]): float(r["lr"]) for r in log_rows(tmp_path)}
    assert lrs == {0: 1e-3, 1: pytest.approx(4e-4), 2: pytest.approx(4e-4)}


def test_warm_up_then_cosine_decay(kernels, samples, tmp_path):
    import math

    config = TINY.updated(steps=9, lr=1e-3, lr_min=1e-4, lr_decay="cosine", warmup_steps=3, batch_size=4, repeat=4,
                          checkpoint_every=100, log_every=1)
    Trainer(config, samples, tmp_path, progress=False).run()
    lrs = [float(r["lr"]) for r in log_rows(tmp_path)]
    # the rate of step k (0-based): min(1, (k+1)/3) * (1e-4 + 0.9e-3 * (1 + cos(pi k / 8)) / 2)
    expected = [min(1, (k + 1) / 3) * (1e-4 + 0.9e-3 * (1 + math.cos(math.pi * k / 8)) / 2) for k in range(9)]
    assert lrs == pytest.approx(expected, rel=1e-6)
    assert lrs[-1] == pytest.approx(1e-4)


def test_learning_rate_continues_exactly_after_resume(kernels, samples, tmp_path):
    config = TINY.updated(steps=8, lr=1e-3, lr_decay="cosine", warmup_steps=2, batch_size=4, repeat=4,
                          checkpoint_every=4, log_every=1)
    Trainer(config, samples, tmp_path / "whole", progress=False).run()
    Trainer(config.updated(steps=4), samples, tmp_path / "split", progress=False).run()
    Trainer(config, samples, tmp_path / "split", resume=True, progress=False).run()
    whole = [float(r["lr"]) for r in log_rows(tmp_path / "whole")]
    # the first half's schedule was for 4 steps; the resumed run follows the 8-step one from step 4 on
    assert [float(r["lr"]) for r in log_rows(tmp_path / "split")][-4:] == whole[-4:]


@pytest.mark.parametrize("bad, message", [({"lr_decay": "linear"}, "lr_decay must be one of"),
                                          ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
                                          ({"lr_min": 1.0}, "lr_min must be in"),
                                          ({"validate_every": 0}, "validate_every must be an integer >= 1")])
def test_schedule_settings_are_checked(bad, message):
    with pytest.raises(ConfigError, match=message):
        TINY.updated(**bad)


def test_validation_every_n_steps(kernels, samples, tmp_path):
    seen = []
    config = TINY.updated(steps=7, epochs=1000, batch_size=4, repeat=1, checkpoint_every=100, validate_every=3)
    trainer = Trainer(config, samples, tmp_path, validate=lambda model, epoch, step: seen.append(step),
                      progress=False)
    trainer.run()
    assert trainer.steps_per_epoch < 7  # epochs end on the way, and do not validate
    assert seen == [3, 6, 7]  # every 3 steps, and the final weights


# --- fine-tuning ---------------------------------------------------------------------------------------------


def test_finetune_keeps_one_task_validates_and_restores(kernels, tmp_path):
    pre = run_cli("ipt.pretrain", "--config", "tiny", "--steps", "2", "--out", "pre", "--no-progress", cwd=tmp_path)
    assert pre.returncode == 0, pre.stderr
    from ipt.data.images import write_image

    for name in ("astronaut", "coffee"):
        write_image(tmp_path / "val" / f"{name}.png", photo(name)[:40, :40])
    done = run_cli("ipt.finetune", "--task", "sr3", "--init", "pre/model.safetensors", "--val", "val", "--config", "tiny",
                   "--steps", "4", "--out", "ft", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    model = load_model(tmp_path / "ft" / "model.safetensors")
    assert model.task_names == ["sr3"] and model.body.query_embed.weight.shape[0] == 1
    pretrained = load_model(tmp_path / "pre" / "model.safetensors")
    assert model.head[0][0].weight.shape == pretrained.head[1][0].weight.shape
    rows = list(csv.DictReader(open(tmp_path / "ft" / "validation.csv")))
    assert rows and float(rows[-1]["psnr_y"]) > 0
    # every validation, per image and on average, beside the baseline (bicubic for SR)
    history = json.loads((tmp_path / "ft" / "validation.json").read_text())
    assert [h["step"] for h in history] == [int(r["step"]) for r in rows]
    last = history[-1]
    assert sorted(r["image"] for r in last["images"]) == ["astronaut", "coffee"]
    assert float(rows[-1]["baseline_psnr_y"]) == pytest.approx(sum(r["baseline_psnr_y"] for r in last["images"]) / 2)
    assert float(rows[-1]["gain_psnr_y"]) == pytest.approx(float(rows[-1]["psnr_y"]) - float(rows[-1]["baseline_psnr_y"]))
    assert "validating on 2 images of val: astronaut, coffee" in done.stdout
    assert "(bicubic" in done.stdout and "\nastronaut " in done.stdout and "\nMEAN " in done.stdout
    restored = run_cli("ipt.restore", "--task", "sr3", "--weights", "ft/model.safetensors", "--input", "val/coffee.png",
                       "--output", "out.png", cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    evaluated = run_cli("ipt.evaluate", "--task", "sr3", "--weights", "ft/checkpoints/step_00000004.pt", "--data", "val",
                        "--out", "ev", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr


def test_finetune_on_pairs(kernels, tmp_path):
    from ipt.data.images import write_image
    from ipt.model import IPT

    IPT(["noise30", "sr2"], "tiny").save(tmp_path / "init.safetensors")
    for name in ("astronaut", "coffee", "rocket"):
        clean = photo(name)[:60, :60]
        write_image(tmp_path / "pairs" / "target" / f"{name}.png", clean)
        write_image(tmp_path / "pairs" / "input" / f"{name}.png", 255 - clean)
    args = ["ipt.finetune", "--task", "noise30", "--init", "init.safetensors", "--data", "pairs", "--val", "pairs",
            "--config", "tiny", "--steps", "3", "--batch-size", "2", "--no-progress"]
    refused = run_cli(*args, "--out", "ft0", cwd=tmp_path)  # validating on the training pairs: only when asked
    assert refused.returncode == 2 and "also training images" in refused.stderr and "--allow-val-overlap" in refused.stderr
    done = run_cli(*args, "--out", "ft", "--allow-val-overlap", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "input/target items" in done.stdout and "validating on 3 images of pairs" in done.stdout


def test_deprecated_training_names_still_work_with_a_warning():
    import ipt.train
    from ipt.train import distributed

    with pytest.warns(DeprecationWarning, match="test oracle"):
        assert ipt.train.contrastive_loss_direct is contrastive_loss_direct
    with pytest.warns(DeprecationWarning, match="all_ranks_agree"):
        assert distributed.all_ranks_agree(True) is True and distributed.all_ranks_agree(False) is False
    with pytest.warns(DeprecationWarning, match="barrier"):
        distributed.barrier()  # one process, no job: returns at once
