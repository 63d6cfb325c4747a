"""Deblurring (issue 14): deblur as a seventh pretraining task, the paper's appendix-A model fine-tuned
from a pretrained body of another geometry, and evaluation on GoPro-layout pairs in RGB beside the
blurred input."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio

from ipt.data.images import read_image, write_image
from ipt.errors import ConfigError
from ipt.model import IPT, IPTConfig, get_config, load_model
from ipt.model.transfer import finetuning_config, finetuning_model
from ipt.cli import finetuning_start
from ipt.ops import add_motion_blur
from ipt.tasks import TASK_NAMES, get_task

from cli_runs import in_process
from images import photo, photo_batch

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_cli(*args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def quantised(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float -> (H, W, 3) uint8, as an image file holds it."""
    return x[0].clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def blurred(clean: np.ndarray, seed: int, sample_id: int) -> np.ndarray:
    hr = torch.from_numpy(np.ascontiguousarray(clean)).permute(2, 0, 1)[None]
    return quantised(add_motion_blur(hr, seed, torch.tensor([sample_id])))


# --- training crops -------------------------------------------------------------------------------------------


def test_a_deblurring_crop_is_blurred_from_the_photograph_alone(kernels):
    """A clean training crop holds the kernel's reach around the model input, and Task.pair trims it from the
    input and the target: each input pixel is then exactly what a tile of a larger blurred photograph holds,
    with no mirrored border in it -- the same pixels as blurring a wider crop around it."""
    task = get_task("deblur")
    assert (task.margin, task.hr_crop_for(24), get_task("deblur-heavy").hr_crop_for(48)) == (7, 38, 78)
    assert get_task("noise30").margin == 0 and get_task("sr2").hr_crop_for(24) == 48
    wide = photo_batch("astronaut", crop=(80, 80)).repeat(2, 1, 1, 1)
    ids = torch.tensor([4, 9])
    lr, target = task.pair(wide[..., 20:58, 20:58], seed=3, sample_ids=ids)
    assert lr.shape == target.shape == (2, 3, 24, 24)
    assert torch.equal(target, wide[..., 27:51, 27:51].float())
    assert torch.equal(lr, add_motion_blur(wide, 3, ids)[..., 27:51, 27:51])


# --- a seventh pretraining task ------------------------------------------------------------------------------


def test_pretraining_deblur_as_a_seventh_task_keeps_the_official_layout(kernels, tmp_path):
    seven = "sr2,sr3,sr4,rain,noise30,noise50,deblur"
    # tiny's 12-px inputs are smaller than the light blur's 15-px kernel: deblurring's clean crops hold the
    # kernel's reach around them (Task.margin), so its inputs are blurred from the photograph alone.
    done = run_cli("ipt.pretrain", "--config", "tiny", "--tasks", seven, "--steps", "4", "--out", "run",
                   "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"pretraining {list(TASK_NAMES) + ['deblur']}" in done.stdout
    model = load_model(tmp_path / "run" / "model.safetensors")
    assert model.task_names == [*TASK_NAMES, "deblur"] and model.tasks[6].kind == "deblur"
    with open(tmp_path / "run" / "log.csv") as f:
        assert "loss_deblur" in next(csv.reader(f))
    # Heads, tails and task-embedding rows 0-5 are the official six's, under the official keys and shapes;
    # deblur's are index 6 (a scale-1 tail: no upsampler).
    state = model.state_dict()
    official = IPT(TASK_NAMES, model.config).state_dict()
    assert {k: v.shape for k, v in state.items() if k in official and k != "body.query_embed.weight"} == \
        {k: v.shape for k, v in official.items() if k != "body.query_embed.weight"}
    extra = sorted(set(state) - set(official))
    assert extra and all(k.startswith(("head.6.", "tail.6.1.")) for k in extra)
    assert state["body.query_embed.weight"].shape == (7, *official["body.query_embed.weight"].shape[1:])
    six = model.subset(TASK_NAMES)  # the six-task model, loadable into the official layout as it is
    IPT(TASK_NAMES, model.config).load_state_dict(six.state_dict(), strict=True)
    assert torch.equal(six.body.query_embed.weight, model.body.query_embed.weight[:6])


def test_tasks_are_given_with_commas_or_spaces():
    from argparse import Namespace

    from ipt.pretrain import with_tasks
    from ipt.train import PRESETS

    config = with_tasks(Namespace(tasks=["sr2", "noise30,deblur"]), PRESETS["tiny"])
    assert config.tasks == ("sr2", "noise30", "deblur") and config.model == "tiny"
    assert with_tasks(Namespace(tasks=None), PRESETS["tiny"]) is PRESETS["tiny"]
    with pytest.raises(ConfigError, match="unknown task 'deblurr'"):
        with_tasks(Namespace(tasks=["sr2,deblurr"]), PRESETS["tiny"])


# --- the appendix-A model from a pretrained body -------------------------------------------------------------


def _grid_reference(table: torch.Tensor, side: int) -> torch.Tensor:
    """The token table resized as a picture, with the grid built and read back element by element."""
    n = int(round(table.shape[0] ** 0.5))
    grid = torch.empty(1, table.shape[1], n, n, dtype=torch.float64)
    for r in range(n):
        for c in range(n):
            grid[0, :, r, c] = table[r * n + c]
    out = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False, antialias=True)
    return torch.stack([out[0, :, r, c] for r in range(side) for c in range(side)]).float()


def test_finetuning_in_another_geometry_takes_the_body_and_resizes_the_token_tables():
    torch.manual_seed(0)
    old = IPTConfig(n_feats=8, patch_size=24, patch_dim=3, num_heads=2, num_layers=1)  # 8x8 tokens of 72
    new = IPTConfig(n_feats=2, patch_size=96, patch_dim=6, num_heads=2, num_layers=1)  # 16x16 tokens of 72
    pretrained = IPT(["sr2", "noise30"], old)
    # A position embedding that is a smooth function of where the token is: x + 2y, in [0, 1] units.
    centres = (torch.arange(8, dtype=torch.float64) + 0.5) / 8
    plane = (centres[None, :] + 2 * centres[:, None]).flatten()  # raster order: row r, column c
    with torch.no_grad():
        pretrained.body.position_encoding.pe.weight.copy_(plane[:, None] * torch.linspace(1, 2, 72)[None])

    model, notes = finetuning_model(pretrained, "noise30", new)
    assert model.config == new and model.task_names == ["noise30"]
    before, after = pretrained.state_dict(), model.state_dict()
    for key in before:  # the body as it was
        if key.startswith(("body.encoder.", "body.decoder.", "body.linear_encoding.", "body.mlp_head.")):
            assert torch.equal(after[key], before[key]), key
    pe = after["body.position_encoding.pe.weight"]
    assert pe.shape == (256, 72)
    torch.testing.assert_close(pe, _grid_reference(before["body.position_encoding.pe.weight"], 16))
    # ... which keeps the picture where it was: inside the grid (bicubic needs 2 neighbours a side), the
    # new tokens' values are the same plane at the new tokens' centres.
    new_centres = (torch.arange(16, dtype=torch.float64) + 0.5) / 16
    expected = (new_centres[None, :] + 2 * new_centres[:, None])[3:13, 3:13]
    torch.testing.assert_close(pe.view(16, 16, 72)[3:13, 3:13, 0].double(), expected, rtol=0, atol=1e-5)
    row = before["body.query_embed.weight"][1].view(64, 72)  # noise30's task embedding, resized the same way
    torch.testing.assert_close(after["body.query_embed.weight"][0].view(256, 72), _grid_reference(row, 16))
    assert model.head[0][0].weight.shape == (2, 3, 3, 3)  # n_feats 2: a new head and tail
    assert notes == ["position embedding resized from 8x8 to 16x16 tokens (bicubic)",
                     "noise30's task embedding resized the same way",
                     "new head and tail for noise30 (n_feats 2, the checkpoint's 8)"]
    out = model(torch.rand(2, 3, 96, 96) * 255, "noise30")
    out.mean().backward()
    assert model.head[0][0].weight.grad is not None and model.body.query_embed.weight.grad.abs().sum() > 0

    deblur, notes = finetuning_model(pretrained, "deblur", new)  # a task the checkpoint lacks: new parts
    assert deblur.task_names == ["deblur"] and notes[-1] == ("new head, tail and task embedding for deblur (the "
                                                             "checkpoint has sr2, noise30)")
    same, notes = finetuning_model(pretrained, "sr2")  # the checkpoint's own geometry and task: a plain subset
    assert notes == [] and all(torch.equal(a, b) for a, b in zip(same.state_dict().values(),
                                                                  pretrained.subset(["sr2"]).state_dict().values()))
    with pytest.raises(ConfigError, match="token length 36 cannot start from this checkpoint's transformer body"):
        finetuning_model(pretrained, "deblur", IPTConfig(n_feats=1, patch_size=96, patch_dim=6, num_heads=2,
                                                         num_layers=1))


def test_a_new_task_from_a_single_task_official_file_gets_new_parts(kernels, tmp_path):
    """An official file's name (or SR tail) says its task: fine-tuning deblur from IPT_denoise30.pt takes its
    body and makes deblur's head, tail and task embedding, and says so -- it does not relabel noise30's."""
    for name, task in (("IPT_denoise30.pt", "noise30"), ("IPT_sr2.pt", "sr2")):
        source = IPT([task], get_config("tiny"))
        torch.save(source.state_dict(), tmp_path / name)
        model, note = finetuning_start(tmp_path / name, "deblur", None, 2, 0)
        assert model.task_names == ["deblur"]
        assert note == f"{tmp_path / name}: new head, tail and task embedding for deblur (the checkpoint has {task})"
        state = model.state_dict()
        body = {k: v for k, v in source.state_dict().items() if k.startswith("body.") and "query_embed" not in k}
        assert body and all(torch.equal(state[k], v) for k, v in body.items())
        assert not torch.equal(state["head.0.0.weight"], source.state_dict()["head.0.0.weight"])


def test_the_appendix_a_preset_keeps_the_paper_body():
    paper, deblur = get_config("ipt"), get_config("ipt-deblur")
    assert (deblur.patch_size, deblur.patch_dim, deblur.n_feats) == (256, 8, 9)
    assert deblur.embedding_dim == paper.embedding_dim == 576 and deblur.num_tokens == 32 * 32
    assert finetuning_config(paper, "ipt-deblur") == (deblur, None)  # the recipe's geometry around the body
    assert finetuning_config(paper, None) == (paper, None)
    kept, note = finetuning_config(get_config("tiny"), "ipt-deblur")  # another body: the checkpoint's model stays
    assert kept == get_config("tiny") and "another transformer body" in note


def test_finetune_cli_adapts_a_pretrained_checkpoint_to_the_deblur_recipe(kernels, tmp_path):
    pretrained = IPT(TASK_NAMES, IPTConfig(n_feats=8, patch_size=12, patch_dim=3, num_heads=2, num_layers=1))
    pretrained.save(tmp_path / "pre.safetensors")
    # 8x8 tokens of 2*6*6 = 72 values where pretraining had 4x4 of 8*3*3: the same token length
    variant = {"n_feats": 2, "patch_size": 48, "patch_dim": 6, "num_heads": 2, "num_layers": 1}
    (tmp_path / "deblur.json").write_text(json.dumps({"extends": "ipt-deblur", "model": variant, "steps": 2,
                                                      "batch_size": 2, "workers": 1, "checkpoint_every": 2}))
    write_image(tmp_path / "val" / "coffee.png", photo("coffee")[:64, :80])
    done = run_cli("ipt.finetune", "--task", "deblur", "--config", "deblur.json", "--init", "pre.safetensors", "--val",
                   "val", "--out", "ft", "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ("pre.safetensors: position embedding resized from 4x4 to 8x8 tokens (bicubic); new head, tail and task "
            "embedding for deblur (the checkpoint has sr2, sr3, sr4, rain, noise30, noise50)\n") in done.stdout
    model = load_model(tmp_path / "ft" / "model.safetensors")
    assert model.task_names == ["deblur"] and model.config == IPTConfig(**variant)
    assert "PSNR-RGB" in done.stdout  # deblurring is judged on RGB


# --- evaluation ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_deblur(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "deblur.safetensors"
    torch.manual_seed(0)
    IPT(["deblur"], get_config("tiny")).save(path)
    return path


def test_evaluate_on_gopro_pairs_reports_rgb_beside_the_blurred_input(kernels, tiny_deblur, tmp_path, capsys):
    from ipt.evaluate import main

    root = tmp_path / "GoPro" / "test"
    for k, name in enumerate(("astronaut", "coffee", "chelsea")):
        sharp = photo(name)[40:80, 60:116]
        write_image(root / "target" / f"{name}.png", sharp)
        write_image(root / "input" / f"{name}.png", blurred(sharp, seed=11, sample_id=k))
    code, out, err = in_process(main, capsys, "--task", "deblur", "--weights", tiny_deblur, "--data", root, "--out",
                                tmp_path / "ev", "--device", "cpu")
    assert code == 0, err
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert (report["task"], report["channel"], report["baseline"], report["layout"]) == \
        ("deblur", "rgb", "input", "input/target")
    assert "\nmean: PSNR-RGB " in out
    for row in report["images"]:  # the baseline is the blurred input as it is, scored by scikit-image
        sharp, blurry = read_image(root / "target" / f"{row['image']}.png"), read_image(root / "input" / f"{row['image']}.png")
        assert row["baseline_psnr_rgb"] == pytest.approx(peak_signal_noise_ratio(sharp, blurry, data_range=255), abs=1e-9)
        assert row["gain_psnr_rgb"] == pytest.approx(row["psnr_rgb"] - row["baseline_psnr_rgb"])
    assert report["mean"]["baseline_psnr_rgb"] == pytest.approx(np.mean([r["baseline_psnr_rgb"] for r in report["images"]]))


def test_evaluate_on_clean_images_blurs_them_itself(kernels, tiny_deblur, tmp_path, capsys):
    from ipt.evaluate import main

    names = ("astronaut", "coffee")  # sample ids 0 and 1: the files' order
    for name in names:
        write_image(tmp_path / "clean" / f"{name}.png", photo(name)[40:88, 60:108])
    code, out, err = in_process(main, capsys, "--task", "deblur", "--weights", tiny_deblur, "--data",
                                tmp_path / "clean", "--seed", "5", "--out", tmp_path / "ev", "--device", "cpu")
    assert code == 0, err
    rows = {r["image"]: r for r in json.loads((tmp_path / "ev" / "metrics.json").read_text())["images"]}
    for k, name in enumerate(names):
        sharp = photo(name)[40:88, 60:108]
        expected = peak_signal_noise_ratio(sharp, blurred(sharp, seed=5, sample_id=k), data_range=255)
        assert rows[name]["baseline_psnr_rgb"] == pytest.approx(expected, abs=1e-9)
        assert np.isfinite(expected)  # really blurred: not the image itself
    # An image smaller than the blur kernel is refused up front, in one line, before the weights are read.
    write_image(tmp_path / "small" / "a.png", photo("coffee")[:12, :40])
    code, _, err = in_process(main, capsys, "--task", "deblur", "--weights", tmp_path / "missing.pt", "--data",
                              tmp_path / "small", "--out", tmp_path / "ev2", "--device", "cpu")
    assert code == 2 and err.strip().splitlines() == [
        "error: task 'deblur' needs clean images of at least 15 px (the smallest its degradation takes), got a, an "
        "image of 12 px"]
