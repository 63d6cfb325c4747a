"""Learning works: a CI-sized run of the README's two commands, shortened, beats its baseline on held-out
photographs. A regression anywhere on the path -- a degradation, the loader's crops or pairing, the loss,
the model, the optimizer or learning-rate schedule, the checkpoint the fine-tuning starts from -- that
stops the model learning turns this red, which tests of each piece against its reference cannot promise.

Why noise30, and why the margin: a denoiser learns within a few hundred CPU steps, while beating bicubic
at x2 takes thousands. This run (100 pretraining + 300 fine-tuning steps of the README's presets) gains
+5.64, +5.53 and +5.61 dB PSNR-Y over the noisy input for seeds 0, 1 and 2; the margin, 4 dB, leaves 1.5 dB
for noise between machines and library versions, and sits far above what anything short of learning
gives: copying the input scores 0 dB, the untrained model -14 dB, and the same run with the noise taken
out of the training inputs (a broken degradation: the model learns to copy) +0.31 dB."""

import csv
import os
import subprocess
import sys

import pytest

from ipt.data.samples import VALIDATION_SAMPLES

PRETRAIN_STEPS = 100
FINETUNE_STEPS = 300
MARGIN_DB = 4.0


def run_cli(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


@pytest.mark.parametrize("seed", [0])
def test_denoising_beats_its_noisy_input_on_held_out_photographs(kernels, tmp_path, seed):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "IPT_CACHE": str(tmp_path / "cache")}
    pre = run_cli("ipt.pretrain", "--steps", str(PRETRAIN_STEPS), "--seed", str(seed), "--out", "pre", "--no-progress",
                  cwd=tmp_path, env=env)
    assert pre.returncode == 0, pre.stderr
    done = run_cli("ipt.finetune", "--task", "noise30", "--init", "pre/model.safetensors", "--steps", str(FINETUNE_STEPS),
                   "--seed", str(seed), "--out", "ft", "--no-progress", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    # The default validation is the held-out split, and the output says so.
    assert f"validating on {len(VALIDATION_SAMPLES)} images" in done.stdout
    assert all(name in done.stdout for name in VALIDATION_SAMPLES)
    rows = list(csv.DictReader(open(tmp_path / "ft" / "validation.csv")))
    final = rows[-1]
    gain = float(final["gain_psnr_y"])
    # The gain is the model's PSNR minus the noisy input's, measured on the same images.
    assert gain == pytest.approx(float(final["psnr_y"]) - float(final["baseline_psnr_y"]))
    assert 18.5 < float(final["baseline_psnr_rgb"]) < 20.5  # sigma 30 noise really was added (18.6 dB unclipped)
    assert gain >= MARGIN_DB, f"noise30 gained only {gain:+.2f} dB over its noisy input on held-out photographs"
