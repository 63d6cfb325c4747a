"""MPRNet through the shared trainer: its loss, pairs and on-the-fly degradations, checkpoints and exact
resume, official weights as a start, DDP, bf16, the recipes, and python -m ipt.train."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ipt.data import load_image_pairs, load_training_images
from ipt.data.images import write_image
from ipt.errors import ConfigError
from ipt.families import load_model
from ipt.model.checkpoint import CheckpointError
from ipt.model import load_model as load_ipt
from ipt.mprnet import MPRNet, mprnet_loss
from ipt.train import PRESETS, Trainer, TrainConfig
from ipt.train.schedule import LRSchedule

from images import photo

TINY = PRESETS["mprnet-tiny"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_cli(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def log_rows(out: Path):
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


def write_pairs(root: Path, size: int = 72) -> Path:
    """input/ + target/ pairs: the target a crop of a photograph, the input the same crop darkened and
    blocky (a degradation no kernel of the toolkit makes, so only the pairs can teach it)."""
    for name in ("astronaut", "coffee", "rocket", "chelsea"):
        clean = photo(name)[:size, :size]
        blocky = torch.from_numpy(clean).float().permute(2, 0, 1)[None]
        blocky = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(blocky, 4), scale_factor=4)
        degraded = (0.7 * blocky[0].permute(1, 2, 0)).round().byte().numpy()
        write_image(root / "target" / f"{name}.png", clean)
        write_image(root / "input" / f"{name}.png", degraded)
    return root


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return load_image_pairs(write_pairs(tmp_path_factory.mktemp("pairs") / "train"), min_size=32)


@pytest.fixture(scope="module")
def samples():
    return load_training_images(min_size=32)


def test_the_recipes_are_the_official_ones():
    for kind, crop, epochs in (("deblur", 256, 3000), ("denoise", 128, 80), ("derain", 256, 250)):
        recipe = PRESETS[f"mprnet-{kind}"]
        assert (recipe.family, recipe.model, recipe.tasks, recipe.crop, recipe.epochs) == ("mprnet", kind, (kind,),
                                                                                           crop, epochs)
        assert (recipe.batch_size, recipe.lr, recipe.lr_min, recipe.lr_decay) == (16, 2e-4, 1e-6, "cosine")
        assert (recipe.warmup_epochs, recipe.betas, recipe.grad_clip, recipe.edge_weight) == (3, (0.9, 0.999), 0.0,
                                                                                             None)


def test_warm_up_in_epochs_then_cosine():
    schedule = LRSchedule(PRESETS["mprnet-deblur"], total_steps=3000 * 10, steps_per_epoch=10)
    assert schedule.warmup_steps == 30
    assert schedule.rate(0, 0) == pytest.approx(2e-4 / 30)
    assert schedule.rate(29, 2) == pytest.approx(2e-4, rel=1e-4)
    assert schedule.rate(30 * 1000 - 1, 2999) == pytest.approx(1e-6)
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(warmup_steps=5, warmup_epochs=1)


def test_mprnet_settings_are_checked():
    with pytest.raises(ConfigError, match="preset of the mprnet family"):
        TrainConfig(family="mprnet", model="ipt")
    with pytest.raises(ConfigError, match="family must be one of"):
        TrainConfig(family="swinir")
    with pytest.raises(ConfigError, match="edge_weight must be >= 0"):
        TINY.updated(edge_weight=-1.0)
    with pytest.raises(ConfigError, match="crop must be an integer >= 1"):
        TINY.updated(crop=0)


def test_the_trainer_minimises_the_mprnet_loss_of_its_batches(kernels, pairs, tmp_path):
    config = TINY.updated(tasks=("deblur",), steps=1, batch_size=2, deterministic=True)
    trainer = Trainer(config, pairs, tmp_path, progress=False)
    batch = next(iter(trainer.loader.epoch(0)))
    expected = mprnet_loss(trainer.model(batch.lr.float() / 255), batch.hr.float() / 255, edge_weight=0.05)
    total, terms = trainer._losses(trainer.model, batch)
    torch.testing.assert_close(total, expected[0])
    torch.testing.assert_close(terms, torch.stack(expected[1:]))
    assert trainer.loader.crops == (32,) and trainer.family.find_unused_parameters is False


def test_training_on_pairs_lowers_the_loss_and_writes_an_mprnet_model(kernels, pairs, tmp_path):
    # one epoch of 30 steps (DataLoader workers start once)
    config = TINY.updated(tasks=("deblur",), steps=30, batch_size=4, lr=3e-3, warmup_steps=0, log_every=1,
                          checkpoint_every=30, repeat=30)
    summary = Trainer(config, pairs, tmp_path, progress=False).run()
    rows = log_rows(tmp_path)
    assert len(rows) == 30 and {"charbonnier", "edge", "loss_deblur"} <= set(rows[0]) and "l1" not in rows[0]
    losses = [float(r["loss"]) for r in rows]
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:3]) / 3
    for row in rows:  # the logged loss is Charbonnier + 0.05 x edge
        assert float(row["loss"]) == pytest.approx(float(row["charbonnier"]) + 0.05 * float(row["edge"]), rel=1e-5)
    model = load_model(summary["model"])
    assert isinstance(model, MPRNet) and model.task_names == ["deblur"] and model.config.to_dict() == \
        MPRNet(["deblur"], "tiny").config.to_dict()
    with pytest.raises(CheckpointError, match="--model mprnet"):  # the IPT loader names the family to use
        load_ipt(summary["model"])


def test_denoising_trains_on_the_fly_with_charbonnier_only(kernels, samples, tmp_path):
    config = TINY.updated(steps=2, log_every=1)  # tasks ("noise30",): clean photographs, seeded noise
    Trainer(config, samples, tmp_path, progress=False).run()
    assert all(float(r["edge"]) > 0 and float(r["loss"]) == pytest.approx(float(r["charbonnier"]))
               for r in log_rows(tmp_path))


def test_a_resumed_run_ends_with_the_same_weights(kernels, pairs, tmp_path):
    config = TINY.updated(tasks=("deblur",), steps=4, batch_size=2, checkpoint_every=2, deterministic=True)
    straight = Trainer(config, pairs, tmp_path / "straight", progress=False)
    straight.run()
    Trainer(config.updated(steps=2), pairs, tmp_path / "split", progress=False).run()
    resumed = Trainer(config, pairs, tmp_path / "split", resume=True, progress=False)
    resumed.run()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["step"] for r in log_rows(tmp_path / "split")] == ["1", "2", "3", "4"]


def test_a_run_of_one_family_does_not_resume_as_another(kernels, pairs, samples, tmp_path):
    Trainer(TINY.updated(steps=2), samples, tmp_path, progress=False).run()
    with pytest.raises(CheckpointError, match="holds an MPRNet model"):
        Trainer(PRESETS["tiny"].updated(tasks=("noise30",), steps=4), samples, tmp_path, resume=True, progress=False)


def test_bf16_autocast_trains(kernels, pairs, tmp_path):
    summary = Trainer(TINY.updated(tasks=("deblur",), steps=2, amp="bf16"), pairs, tmp_path, progress=False).run()
    assert summary["steps"] == 2 and all(torch.isfinite(torch.tensor(float(r["loss"]))) for r in log_rows(tmp_path))


def test_dali_and_torch_loaders_train_the_same_steps(kernels, pairs, tmp_path):
    pytest.importorskip("nvidia.dali")
    config = TINY.updated(tasks=("deblur",), steps=3, batch_size=2, log_every=1, deterministic=True, workers=1)
    runs = {}
    for loader in ("torch", "dali"):
        runs[loader] = Trainer(config.updated(loader=loader), pairs, tmp_path / loader, progress=False)
        runs[loader].run()
    for (name, a), b in zip(runs["torch"].model.state_dict().items(), runs["dali"].model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_cli_trains_from_official_weights(kernels, tmp_path):
    write_pairs(tmp_path / "GoPro" / "train")
    write_pairs(tmp_path / "GoPro" / "test", size=48)
    model = MPRNet(["deblur"], "tiny")
    # as the official release ships them: under "state_dict", saved from DataParallel (module. prefix)
    torch.save({"epoch": 3000, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "optimizer": {}}, tmp_path / "model_deblurring.pth")
    args = ["ipt.train", "--model", "mprnet", "--task", "deblur", "--data", "GoPro/train", "--val", "GoPro/test",
            "--init", "model_deblurring.pth", "--config", "mprnet-tiny", "--steps", "2", "--no-progress"]
    done = run_cli(*args, "--out", "run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training MPRNet" in done.stdout and "from model_deblurring.pth" in done.stdout
    assert "validating on 4 images of GoPro/test" in done.stdout and "input/target items" in done.stdout
    trained = load_model(tmp_path / "run" / "model.safetensors", family="mprnet")
    assert trained.config == model.config and not all(
        torch.equal(a, b) for a, b in zip(trained.state_dict().values(), model.state_dict().values()))
    assert (tmp_path / "run" / "validation.csv").is_file()
    again = run_cli(*args, "--out", "run", cwd=tmp_path)  # never over another run's checkpoints
    assert again.returncode == 2 and "--resume" in again.stderr


def test_cli_trains_deblurring_on_clean_images_blurred_on_the_fly(kernels, tmp_path):
    write_image(tmp_path / "val" / "coffee.png", photo("coffee")[40:104, 60:124])
    done = run_cli("ipt.train", "--model", "mprnet", "--task", "deblur", "--config", "mprnet-tiny", "--steps", "2",
                   "--val", "val", "--out", "run", "--no-progress", cwd=tmp_path)  # the sample photographs: clean
    assert done.returncode == 0, done.stderr[-3000:]
    assert "for deblur on" in done.stdout and "clean items" in done.stdout and "crops of 32 px" in done.stdout
    assert "PSNR-RGB" in done.stdout  # judged on RGB, beside the blurred input
    assert load_model(tmp_path / "run" / "model.safetensors", family="mprnet").task_names == ["deblur"]
    rows = log_rows(tmp_path / "run")
    assert len(rows) == 2 and all(float(r["loss_deblur"]) > 0 for r in rows)
    validation = list(csv.DictReader(open(tmp_path / "run" / "validation.csv")))
    assert float(validation[-1]["baseline_psnr_rgb"]) < 40  # the blurred input, measured against the photograph


@pytest.mark.parametrize("args, message", [
    (["--task", "denoise"], "trains on real pairs"),  # the built-in samples are clean images
    (["--task", "sr2"], "MPRNet"),
    (["--task", "noise30", "--config", "tiny"], "--model ipt"),
    (["--task", "noise30", "--crop", "30"], "multiple of 8"),
])
def test_cli_errors_are_one_line(kernels, tmp_path, args, message):
    result = run_cli("ipt.train", "--model", "mprnet", *args, "--steps", "1", "--out", "run", cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_pretrain_and_finetune_refuse_mprnet_recipes(kernels, tmp_path):
    result = run_cli("ipt.pretrain", "--config", "mprnet-tiny", "--out", "run", cwd=tmp_path)
    assert result.returncode == 2 and "python -m ipt.train --model mprnet" in result.stderr


def test_distributed_gloo_matches_one_process(kernels, tmp_path):
    common = ["--model", "mprnet", "--task", "noise30", "--config", "mprnet-tiny", "--steps", "3", "--batch-size", "4",
              "--checkpoint-every", "100", "--workers", "1", "--no-progress"]
    single = run_cli("ipt.train", *common, "--out", "single", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                            "29541", "-m", "ipt.train", *common, "--out", "ddp"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600, env=ENV)
    assert multi.returncode == 0, multi.stderr[-3000:]
    a, b = (load_model(tmp_path / run / "model.safetensors") for run in ("single", "ddp"))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        x, y = x.double(), y.double()
        assert ((x - y).norm() / (x.norm() + 1e-12)).item() < 1e-4, name
