"""python -m ipt.restore and python -m ipt.evaluate, end to end, and their errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ipt.data.images import read_image, write_image
from ipt.model import IPT, IPTConfig

from images import photo

TINY = IPTConfig(n_feats=8, patch_size=12, patch_dim=3, num_heads=2, num_layers=1)


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    IPT(["sr2", "noise30"], TINY).save(root / "tiny.safetensors")
    torch.save(IPT(["sr3"], TINY).state_dict(), root / "IPT_sr3.pt")  # an official-style file
    for name in ("astronaut", "coffee"):
        write_image(root / "clean" / f"{name}.png", photo(name)[:60, :72])
    return root


def test_restore_file_with_comparison(kernels, workdir):
    from ipt.compare import detail_window

    done = run("ipt.restore", "--task", "sr2", "--weights", "tiny.safetensors", "--input", "clean/coffee.png",
               "--output", "out/coffee_x2.png", "--compare", cwd=workdir)
    assert done.returncode == 0, done.stderr
    result = read_image(workdir / "out" / "coffee_x2.png")
    assert result.shape == (120, 144, 3)
    picture = read_image(workdir / "out" / "coffee_x2_compare.png")
    # input | bicubic | model: a 120-px window (the height) zoomed 2x (the most within 320 px), 4-px gaps
    assert picture.shape[1] == 3 * 240 + 2 * 4 and picture.shape[0] > 240
    assert (picture[:, 240:244] == 255).all() and (picture[:, 484:488] == 255).all()
    top, left = detail_window(result, 120)  # without a target the model's result is the reference
    np.testing.assert_array_equal(picture[-240:, 488:], result[top:top + 120, left:left + 120].repeat(2, 0).repeat(2, 1))


def test_restore_folder_with_official_file(kernels, workdir):
    # The file is a 2-head "tiny" model in the official layout: its head count is not in the file.
    refused = run("ipt.restore", "--task", "sr3", "--weights", "IPT_sr3.pt", "--input", "clean", "--output", "out3",
                  cwd=workdir)
    assert refused.returncode == 2 and "num_heads" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (workdir / "out3").exists()
    done = run("ipt.restore", "--task", "sr3", "--weights", "IPT_sr3.pt", "--input", "clean", "--output", "out3",
               "--mode", "official", "--num-heads", "2", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (workdir / "out3").iterdir()) == ["astronaut.png", "coffee.png"]
    assert read_image(workdir / "out3" / "astronaut.png").shape == (180, 216, 3)


def test_evaluate_clean_folder(kernels, workdir):
    done = run("ipt.evaluate", "--task", "noise30", "--weights", "tiny.safetensors", "--data", "clean", "--out", "ev",
               cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "astronaut" in done.stdout and "MEAN" in done.stdout
    report = json.loads((workdir / "ev" / "metrics.json").read_text())
    assert report["layout"] == "clean" and report["shave"] == 0 and len(report["images"]) == 2
    mean = np.mean([r["psnr_y"] for r in report["images"]])
    assert report["mean"]["psnr_y"] == pytest.approx(mean)
    assert (workdir / "ev" / "metrics.csv").read_text().splitlines()[0] == (
        "image,psnr_y,ssim_y,psnr_rgb,ssim_rgb,baseline_psnr_y,baseline_ssim_y,baseline_psnr_rgb,baseline_ssim_rgb,"
        "gain_psnr_y,gain_psnr_rgb")
    # Denoising's baseline is the noisy input itself: sigma 30 noise alone scores 18.6 dB.
    assert report["baseline"] == "input" and "baseline: input" in done.stdout
    for row in report["images"]:
        assert 17.5 < row["baseline_psnr_rgb"] < 21.5  # (clipping at 0 and 255 takes some noise away)
        assert row["gain_psnr_y"] == pytest.approx(row["psnr_y"] - row["baseline_psnr_y"])


def test_evaluate_pairs_gives_the_metric_of_the_pairs(kernels, workdir):
    from ipt import metrics
    from ipt.inference import Restorer

    root = workdir / "benchmark"
    hr = photo("chelsea")[:48, :60]
    lr = torch.from_numpy(hr).permute(2, 0, 1)[None]
    import ipt.ops

    lr = ipt.ops.bicubic_downsample(lr, 2)[0].permute(1, 2, 0).numpy()
    write_image(root / "HR" / "cat.png", hr)
    write_image(root / "LR_bicubic" / "X2" / "catx2.png", lr)
    done = run("ipt.evaluate", "--task", "sr2", "--weights", "tiny.safetensors", "--data", "benchmark",
               "--out", "ev2", cwd=workdir)
    assert done.returncode == 0, done.stderr
    report = json.loads((workdir / "ev2" / "metrics.json").read_text())
    assert report["layout"] == "HR/LR_bicubic" and report["shave"] == 2
    sr = Restorer(task="sr2", weights=workdir / "tiny.safetensors", device="cpu").restore(lr)
    assert report["images"][0]["psnr_y"] == pytest.approx(metrics.psnr(sr, hr, shave=2), abs=1e-9)
    # SR's baseline: MATLAB imresize(lr, 2, 'bicubic') of the 8-bit input (an independent numpy version).
    from matlab_imresize import imresize

    bicubic = imresize(lr, 2.0)
    assert report["baseline"] == "bicubic"
    assert report["images"][0]["baseline_psnr_y"] == pytest.approx(metrics.psnr(bicubic, hr, shave=2), abs=1e-6)


@pytest.mark.parametrize("args, message", [
    (["ipt.restore", "--task", "sr2", "--weights", "missing.pt", "--input", "clean", "--output", "o"], "does not exist"),
    (["ipt.restore", "--task", "sr4", "--weights", "tiny.safetensors", "--input", "clean", "--output", "o"],
     "no task 'sr4'"),
    (["ipt.restore", "--task", "sr2", "--weights", "IPT_sr3.pt", "--input", "clean", "--output", "o"],
     "needs a x2 tail but the file's tail is x3"),
    (["ipt.restore", "--task", "sr2", "--weights", "tiny.safetensors", "--input", "nothing.png", "--output", "o"],
     "no such file or folder"),
    (["ipt.evaluate", "--task", "sr2", "--weights", "tiny.safetensors", "--data", "no_such_dir"], "no such data folder"),
    (["ipt.restore", "--task", "nonsense", "--weights", "tiny.safetensors", "--input", "clean", "--output", "o"],
     "unknown task"),
])
def test_errors_are_one_clear_line(workdir, args, message):
    done = run(*args, cwd=workdir)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_unreadable_image_and_unpaired_data(workdir):
    bad = workdir / "bad"
    (bad / "input").mkdir(parents=True, exist_ok=True)
    (bad / "target").mkdir(exist_ok=True)
    write_image(bad / "target" / "a.png", photo("coffee")[:20, :20])
    done = run("ipt.evaluate", "--task", "noise30", "--weights", "tiny.safetensors", "--data", "bad", cwd=workdir)
    assert done.returncode == 2 and "unpaired images" in done.stderr
    (workdir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    done = run("ipt.restore", "--task", "noise30", "--weights", "tiny.safetensors", "--input", "broken.png",
               "--output", "x.png", cwd=workdir)
    assert done.returncode == 2 and "broken.png: cannot decode" in done.stderr


# --- the training tools' options and the one-line errors ---------------------------------------------------

# Every training option of ipt.pretrain / ipt.finetune that sets a TrainConfig field, as users spell it.
TRAINING_FLAGS = {"--steps": "steps", "--epochs": "epochs", "--batch-size": "batch_size", "--micro-batch": "micro_batch",
                  "--lr": "lr", "--workers": "workers", "--seed": "seed", "--amp": "amp", "--compile": "compile",
                  "--checkpoint-every": "checkpoint_every", "--dist-timeout": "dist_timeout",
                  "--heartbeat-timeout": "heartbeat_timeout", "--wait-timeout": "wait_timeout", "--dali": "loader",
                  "--lr-decay": "lr_decay", "--warmup-steps": "warmup_steps", "--validate-every": "validate_every",
                  "--warmup-epochs": "warmup_epochs", "--crop": "crop"}


def _training_parser():
    import argparse

    from ipt.cli import add_training_arguments

    parser = argparse.ArgumentParser()
    add_training_arguments(parser, default_out="runs/test")
    return parser


def test_training_options_are_generated_from_the_config_fields():
    from ipt.train.config import flags

    options = {s: a.dest for a in _training_parser()._actions for s in a.option_strings}
    assert {s: options.get(s) for s in TRAINING_FLAGS} == TRAINING_FLAGS
    assert sorted(TRAINING_FLAGS.values()) == sorted(name for name, _ in flags())  # and nothing else
    assert {"--out", "--resume", "--device", "--no-progress"} <= set(options)


def _one_setting(option):
    """(argv, the field value it must give) for one training option, a value no preset has."""
    return {"--amp": (["--amp", "bf16"], "bf16"), "--compile": (["--compile"], True), "--dali": (["--dali"], "dali"),
            "--lr": (["--lr", "0.125"], 0.125), "--dist-timeout": (["--dist-timeout", "7.5"], 7.5),
            "--heartbeat-timeout": (["--heartbeat-timeout", "9.5"], 9.5),
            "--wait-timeout": (["--wait-timeout", "11.5"], 11.5),
            "--lr-decay": (["--lr-decay", "cosine"], "cosine")}.get(option, ([option, "17"], 17))


@pytest.mark.parametrize("option", sorted(TRAINING_FLAGS))
def test_each_training_option_sets_its_field_and_nothing_else(option):
    from dataclasses import fields

    from ipt.cli import training_config
    from ipt.train import PRESETS

    base = PRESETS["tiny"]
    argv, value = _one_setting(option)
    config = training_config(_training_parser().parse_args(argv), base)
    name = TRAINING_FLAGS[option]
    assert getattr(config, name) == value != getattr(base, name)
    assert [f.name for f in fields(config) if getattr(config, f.name) != getattr(base, f.name)] == [name]


def test_unset_training_options_keep_the_config_and_help_shows_its_defaults():
    from ipt.cli import training_config
    from ipt.train import PRESETS, TrainConfig
    from ipt.train.config import AMP_MODES

    for preset in ("small", "ipt-finetune"):
        assert training_config(_training_parser().parse_args([]), PRESETS[preset]) == PRESETS[preset]
    text = " ".join(_training_parser().format_help().split())
    assert f"--dist-timeout SECONDS how long a collective waits for the other ranks (default {TrainConfig.dist_timeout:g})" in text
    assert "(default 60)" in text and "(default 3600)" in text and "(default 300)" in text
    assert "--amp {" + ",".join(AMP_MODES) + "}" in text
    assert "--lr LR learning rate (default: from --config)" in text  # the presets differ: no one number is right


def _python(code, cwd, **env):
    import os

    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def test_an_internal_error_in_a_tool_keeps_its_traceback(tmp_path):
    # A bug (a plain ValueError raised inside the toolkit) must not pass for a user's mistake.
    done = _python("from ipt import cli, pretrain\n"
                   "def broken(self):\n"
                   "    raise ValueError('an internal invariant broke')\n"
                   "pretrain.Trainer.run = broken\n"
                   "cli.run_main(lambda: pretrain.main(['--config', 'tiny', '--out', 'run', '--no-progress']))\n",
                   cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" in done.stderr and "ValueError: an internal invariant broke" in done.stderr
    assert "error: " not in done.stderr


def test_a_user_error_is_one_line_naming_the_rank(tmp_path):
    code = ("from ipt.cli import run_main\nfrom ipt.errors import ConfigError\n"
            "def main():\n    raise ConfigError('batch_size must be an integer >= 1, got 0')\nrun_main(main)\n")
    done = _python(code, cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "error: batch_size must be an integer >= 1, got 0\n")
    done = _python(code, cwd=tmp_path, WORLD_SIZE="2", RANK="1")
    assert (done.returncode, done.stderr) == (2, "error (rank 1): batch_size must be an integer >= 1, got 0\n")


def test_the_toolkits_errors_are_user_facing_and_keep_their_old_bases():
    from ipt.data import DataLayoutError, UnreadableImageError
    from ipt.errors import ConfigError, IPTError
    from ipt.pipelines import DaliUnavailableError
    from ipt.train.state import CheckpointWriteError
    from ipt.train.watchdog import PeerFailedError

    for error, base in ((ConfigError, ValueError), (DataLayoutError, ValueError), (UnreadableImageError, ValueError),
                        (CheckpointWriteError, OSError), (PeerFailedError, RuntimeError),
                        (DaliUnavailableError, ImportError)):
        assert issubclass(error, IPTError) and issubclass(error, base), error


def test_dali_asked_for_but_missing_is_one_clear_line(tmp_path, monkeypatch, capsys):
    import ipt.pipelines.dali
    from ipt.cli import run_main
    from ipt.pretrain import main

    monkeypatch.setattr(ipt.pipelines.dali, "dali_available", lambda: False)  # as on a machine without DALI
    with pytest.raises(SystemExit) as ended:
        run_main(lambda: main(["--dali", "--config", "tiny", "--out", str(tmp_path / "run"), "--no-progress"]))
    assert ended.value.code == 2
    assert capsys.readouterr().err == ("error: DALI is not installed: pip install nvidia-dali-cuda130 (or leave out "
                                       "--dali to use the torch loader)\n")


# --- comparison pictures and PSNR against a clean reference ------------------------------------------------

def _sr_targets(workdir):
    """hr/NAME.png: clean images a little larger than the x2 results of clean/NAME.png (cropped to fit)."""
    for name in ("astronaut", "coffee"):
        write_image(workdir / "hr" / f"{name}.png", photo(name)[:121, :145])
    return workdir / "hr"


def _printed_psnrs(line):
    import re

    return [float(v) for v in re.findall(r"(-?\d+\.\d+) dB", line)]


def test_restore_comparison_with_target_and_its_psnr(kernels, workdir):
    from ipt import metrics
    from ipt.compare import detail_window
    from ipt.evaluate import baseline_image
    from ipt.tasks import get_task

    hr = _sr_targets(workdir)
    done = run("ipt.restore", "--task", "sr2", "--weights", "tiny.safetensors", "--input", "clean/coffee.png",
               "--output", "outt/coffee_x2.png", "--compare", "--target", "hr/coffee.png", cwd=workdir)
    assert done.returncode == 0, done.stderr
    picture = read_image(workdir / "outt" / "coffee_x2_compare.png")
    assert picture.shape[1] == 4 * 240 + 3 * 4 and picture.shape[0] > 240  # input | bicubic | model | target
    assert all((picture[:, k * 244 + 240:(k + 1) * 244] == 255).all() for k in range(3))
    target = read_image(hr / "coffee.png")[:120, :144]
    top, left = detail_window(target, 120)  # the window is chosen on the target
    np.testing.assert_array_equal(picture[-240:, 3 * 244:], target[top:top + 120, left:left + 120].repeat(2, 0).repeat(2, 1))
    result = read_image(workdir / "outt" / "coffee_x2.png")
    baseline = baseline_image(get_task("sr2"), read_image(workdir / "clean" / "coffee.png"))
    expected = [metrics.psnr(x, target, shave=2, y_channel=True) for x in (result, baseline)]
    model, bicubic, gain = _printed_psnrs(done.stdout)
    assert (model, bicubic) == pytest.approx(expected, abs=6e-4) and gain == pytest.approx(model - bicubic, abs=2e-3)
    assert "bicubic" in done.stdout


def test_restore_folder_with_target_folder_prints_psnrs_without_comparison(kernels, workdir):
    _sr_targets(workdir)
    done = run("ipt.restore", "--task", "sr2", "--weights", "tiny.safetensors", "--input", "clean", "--output", "outf",
               "--target", "hr", cwd=workdir)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all("PSNR-Y" in line and len(_printed_psnrs(line)) == 3 for line in lines), lines
    assert sorted(p.name for p in (workdir / "outf").iterdir()) == ["astronaut.png", "coffee.png"]  # no _compare


def test_restore_target_errors_name_the_file(workdir):
    write_image(workdir / "hr_one" / "coffee.png", photo("coffee")[:121, :145])
    write_image(workdir / "small" / "coffee.png", photo("coffee")[:100, :144])
    for target, message in (("hr_one", "no clean image named astronaut.* for clean/astronaut.png"),
                            ("small/coffee.png", "small/coffee.png: the target is 144x100 but the result is 144x120")):
        source, output = ("clean", "oute") if target == "hr_one" else ("clean/coffee.png", "oute.png")
        done = run("ipt.restore", "--task", "sr2", "--weights", "tiny.safetensors", "--input", source, "--output", output,
                   "--target", target, cwd=workdir)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_evaluate_compare_writes_one_picture_per_image(kernels, workdir):
    done = run("ipt.evaluate", "--task", "sr2", "--weights", "tiny.safetensors", "--data", "clean", "--out", "evc",
               "--compare", cwd=workdir)
    assert done.returncode == 0, done.stderr
    pictures = sorted((workdir / "evc" / "compare").iterdir())
    assert [p.name for p in pictures] == ["astronaut.png", "coffee.png"]
    for path in pictures:  # 60x72 results: the 60-px height zoomed 5x; input | bicubic | model | target
        picture = read_image(path)
        assert picture.shape[1] == 4 * 300 + 3 * 4 and picture.shape[0] > 300
        assert all((picture[:, k * 304 + 300:(k + 1) * 304] == 255).all() for k in range(3))
    assert len(json.loads((workdir / "evc" / "metrics.json").read_text())["images"]) == 2
