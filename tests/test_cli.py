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
    done = run("ipt.restore", "--task", "sr2", "--weights", "tiny.safetensors", "--input", "clean/coffee.png",
               "--output", "out/coffee_x2.png", "--compare", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert read_image(workdir / "out" / "coffee_x2.png").shape == (120, 144, 3)
    assert read_image(workdir / "out" / "coffee_x2_compare.png").shape == (120, 2 * 144 + 4, 3)


def test_restore_folder_with_official_file(kernels, workdir):
    done = run("ipt.restore", "--task", "sr3", "--weights", "IPT_sr3.pt", "--input", "clean", "--output", "out3",
               "--mode", "official", cwd=workdir)
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
    assert (workdir / "ev" / "metrics.csv").read_text().splitlines()[0] == "image,psnr_y,ssim_y,psnr_rgb,ssim_rgb"


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
