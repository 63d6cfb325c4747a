"""Whole-image inference with MPRNet, the second model family: the Restorer (tiles that are never padded,
images that fit restored whole), the CLIs with --model mprnet, and ipt.apps.MPRPredictor."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ipt import families, metrics
from ipt.apps import WEIGHT_FILES, MPRPredictor, find_weights
from ipt.data.images import read_image, write_image
from ipt.errors import ConfigError
from ipt.families import ModelFamily
from ipt.inference import DIHEDRAL, Restorer, tiled_forward
from ipt.model import IPT, CheckpointError, IPTConfig
from ipt.mprnet import MPRNet
from ipt.mprnet.family import DEFAULT_OVERLAP, DEFAULT_TILE

from cli_runs import in_process
from images import photo


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, path): a random "tiny" MPRNet for deblurring, saved by model.save."""
    torch.manual_seed(0)
    model = MPRNet(("deblur",), "tiny").eval()
    path = tmp_path_factory.mktemp("mprnet") / "tiny.pt"
    model.save(path)
    return model, path


def _network(model, image: np.ndarray) -> np.ndarray:
    """The network on the whole image, written out: [0, 255] -> [0, 1] -> restored -> quantised."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None]
    with torch.no_grad():
        y = model(x / 255)[0][0] * 255
    return y.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def _blurred(image: np.ndarray) -> np.ndarray:
    """A 5x5 box blur (edges repeated): a stand-in for GoPro's blurred inputs."""
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None]
    y = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    return y[0].round().byte().permute(1, 2, 0).numpy()


# --- the Restorer ----------------------------------------------------------------------------------------------


def test_an_image_that_fits_one_tile_is_restored_whole_exactly(tiny):
    model, path = tiny
    image = photo("coffee")[:45, :70]  # not a multiple of 8: the network pads itself, nothing else does
    restorer = Restorer(task="deblur", weights=path, model="mprnet", device="cpu")
    assert restorer.tiling["patch_size"] == DEFAULT_TILE and restorer.tiling["overlap"] == DEFAULT_OVERLAP
    result = restorer.run(image)
    assert result.shape == (45, 70, 3) and result.dtype == np.uint8
    np.testing.assert_array_equal(result, _network(model, image))


def test_official_mode_is_the_whole_image_whatever_its_size(tiny):
    model, path = tiny
    image = photo("coffee")[:60, :100]
    restorer = Restorer(task="deblur", weights=path, model="mprnet", device="cpu", mode="official")
    np.testing.assert_array_equal(restorer.restore(image), _network(model, image))
    assert restorer.describe_tiling() == {"mode": "official", "tile": None, "tile_overlap": None, "tile_batch": 1}


def test_files_folders_and_lists(tiny, tmp_path):
    model, path = tiny
    folder = tmp_path / "in"
    images = {"a.png": photo("chelsea")[:30, :40], "b.png": photo("coffee")[:24, :32]}
    for name, image in images.items():
        write_image(folder / name, image)
    restorer = Restorer(task="deblur", weights=path, model="mprnet", device="cpu")
    results = restorer.run(folder, output=tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    for result, (name, image) in zip(results, images.items()):
        np.testing.assert_array_equal(result, _network(model, image))
        np.testing.assert_array_equal(read_image(tmp_path / "out" / name), result)
    single = restorer.run(folder / "a.png", output=tmp_path / "one.png")
    np.testing.assert_array_equal(read_image(tmp_path / "one.png"), single)
    listed = restorer.run([folder / "b.png", folder / "a.png"])
    np.testing.assert_array_equal(listed[0], results[1])


def _recording(calls: list):
    """A purely local model (255 - x, integer-valued) that records the shape of every batch of tiles."""

    def model_fn(tiles):
        calls.append(tuple(tiles.shape))
        return 255 - tiles

    return model_fn


@pytest.mark.parametrize("size", [(200, 300), (300, 90), (90, 300), (64, 64), (65, 200), (1, 150)])
@pytest.mark.parametrize("overlap", [16, 23])
def test_tiles_are_never_padded_and_a_local_model_is_exact(size, overlap):
    # 255 - x is local and integer-valued: each tile's output is the whole image's. With an overlap that is
    # a power of two (MPRNet's default, 64, is) the blending weights are binary fractions whose products
    # and sums are exact in float32, so the blend gives the model's output back bit for bit; another
    # overlap rounds (within a few float32 ulps).
    h, w = size
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, h, w))).float()
    calls = []
    y = tiled_forward(_recording(calls), x, 1, patch_size=64, overlap=overlap, whole=True, tile_batch=2)
    if overlap & (overlap - 1) == 0:
        assert torch.equal(y, 255 - x)
    else:
        torch.testing.assert_close(y, 255 - x, rtol=0, atol=1e-4)
    tile = (min(64, h), min(64, w))  # rectangular only where the image is smaller than the tile
    assert all(c[2:] == tile and c[0] <= 2 for c in calls), calls
    if h <= 64 and w <= 64:
        assert calls == [(1, 3, h, w)]  # restored whole, in one pass


def test_tiles_end_flush_with_the_image():
    x = torch.arange(3 * 150 * 100, dtype=torch.float32).reshape(3, 150, 100)  # every value distinct
    origins = []

    def model_fn(tiles):
        for tile in tiles:  # a tile's origin, from its first value
            origins.append(divmod(int(tile[0, 0, 0]), 100))
        return tiles

    tiled_forward(model_fn, x, 1, patch_size=64, overlap=16, whole=True, tile_batch=1)
    rows, cols = sorted({r for r, _ in origins}), sorted({c for _, c in origins})
    assert rows == [0, 48, 86] and cols == [0, 36]  # stride 64 - 16 = 48; the last tiles end at 150 and 100
    assert len(origins) == 6


def test_a_model_that_is_not_local_differs_when_tiled():
    # The exactness above is not automatic: a model that looks at its whole input (here its mean, as
    # MPRNet's channel attention does) gives another result per tile.
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 100, 150))).float()

    def model_fn(tiles):
        return tiles - tiles.mean(dim=(2, 3), keepdim=True)

    tiled = tiled_forward(model_fn, x, 1, patch_size=64, overlap=16, whole=True)
    assert (tiled - model_fn(x[None])[0]).abs().max() > 1


class LocalFamily(ModelFamily):
    """A family of one purely local model (255 - x), to check the Restorer serves any family."""

    name = "local"

    def get_config(self, config):
        return config

    def default_preset(self, tasks):
        return "local"

    def build(self, tasks, config):
        return LocalModel()

    def from_payload(self, payload, source):
        raise NotImplementedError

    def claims(self, content):
        return False

    def load_official(self, path, content, task, **options):
        raise NotImplementedError

    def restoration_fn(self, model, task):
        return lambda tiles: model(tiles)

    def tiling(self, model, tile, overlap):
        return {"patch_size": tile or 32, "overlap": overlap or 8, "whole": True}

    def losses(self, *args):
        raise NotImplementedError

    def train_crop(self, model, config):
        return 32


class LocalModel(torch.nn.Module):
    family = "local"

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # the Restorer finds the device from a parameter

    def task_index(self, task):
        return 0

    def forward(self, x):
        return 255 - x


def test_from_model_serves_any_family_and_a_local_model_is_exact(monkeypatch):
    monkeypatch.setitem(families.FAMILY_MODULES, "local", "tests: LocalFamily")
    monkeypatch.setitem(families._LOADED, "local", LocalFamily())
    image = photo("coffee")[:100, :90]
    restorer = Restorer.from_model(LocalModel(), "denoise")
    assert restorer.family.name == "local" and restorer.tiling["patch_size"] == 32
    np.testing.assert_array_equal(restorer.restore(image), 255 - image)
    ensemble = Restorer.from_model(LocalModel(), "denoise", self_ensemble=True, tile=40, tile_overlap=8)
    np.testing.assert_array_equal(ensemble.restore(image), 255 - image)


# --- tiled vs untiled, bf16 vs fp32, self-ensemble: a real MPRNet -------------------------------------------------


def _noisy_pair(size=(192, 256), sigma=25.0):
    clean = photo("coffee")[: size[0], : size[1]]
    noise = np.random.default_rng(1).normal(0, sigma, clean.shape)
    return np.clip(clean + noise, 0, 255).round().astype(np.uint8), clean


def _train_briefly(model, steps=40, crop=48, batch=4):
    """A few dozen Adam steps of denoising (sigma 25) on crops of another photograph: enough for the
    network to restore rather than scramble (about 4 s on 2 CPU cores for the tiny preset)."""
    image = torch.from_numpy(photo("astronaut")).permute(2, 0, 1).float() / 255
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, image.shape[1] - crop, (batch,), generator=generator).tolist()
        cols = torch.randint(0, image.shape[2] - crop, (batch,), generator=generator).tolist()
        clean = torch.stack([image[:, r : r + crop, c : c + crop] for r, c in zip(rows, cols)])
        noisy = clean + 25 / 255 * torch.randn(clean.shape, generator=generator)
        loss = sum((out - clean).abs().mean() for out in model(noisy))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return _train_briefly(MPRNet(("denoise",), "tiny"))


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return MPRNet(("denoise",), "tiny").eval()


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(PSNR of a against b, mean absolute difference in levels)."""
    return metrics.psnr(a, b), float(np.abs(a.astype(int) - b).mean())


# Measured with 128-px tiles on a 192x256 photograph (6 tiles; 4 seeds): briefly trained, PSNR between
# tiled and untiled 46.6-50.1 dB, mean difference 0.57-0.75 levels, PSNR against the clean image moved
# by at most 0.013 dB; random weights (which scramble the image), 33-40 dB and 1.3-3.1 levels.
@pytest.mark.parametrize("which, least_psnr, most_mean", [("trained", 44.0, 1.0), ("untrained", 30.0, 4.0)])
def test_tiled_agrees_with_untiled_within_the_measured_tolerance(request, which, least_psnr, most_mean):
    model = request.getfixturevalue(which)
    noisy, clean = _noisy_pair()
    whole = Restorer.from_model(model, "denoise", mode="official").restore(noisy)
    tiled = Restorer.from_model(model, "denoise", tile=128, tile_overlap=32).restore(noisy)
    agreement, mean = _agreement(tiled, whole)
    assert agreement >= least_psnr and mean <= most_mean, (agreement, mean)
    if which == "trained":
        assert abs(metrics.psnr(tiled, clean) - metrics.psnr(whole, clean)) <= 0.05
        assert metrics.psnr(whole, clean) > metrics.psnr(noisy, clean) + 1  # it did learn to denoise


# Measured (same image, untiled): bf16 vs fp32 PSNR >= 56 dB, mean <= 0.41 levels, max 4 levels for random
# weights; >= 62 dB, mean <= 0.13, max 1 level briefly trained.
@pytest.mark.parametrize("which, least_psnr, most_max", [("trained", 55.0, 3), ("untrained", 50.0, 8)])
def test_bf16_is_close_to_fp32(request, which, least_psnr, most_max):
    model = request.getfixturevalue(which)
    noisy, _ = _noisy_pair()
    fp32 = Restorer.from_model(model, "denoise", mode="official").restore(noisy)
    bf16 = Restorer.from_model(model, "denoise", mode="official", precision="bf16").restore(noisy)
    assert bf16.dtype == np.uint8 and not np.array_equal(bf16, fp32)  # it did run in bf16
    assert metrics.psnr(bf16, fp32) >= least_psnr and np.abs(bf16.astype(int) - fp32).max() <= most_max


def test_self_ensemble_averages_the_eight_transforms(tiny):
    model, path = tiny
    image = photo("chelsea")[:40, :56]  # not square: the transposed transforms are 56x40
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    outputs = []
    with torch.no_grad():
        for flip_w, flip_h, transpose in DIHEDRAL:
            t = x.flip(-1) if flip_w else x
            t = t.flip(-2) if flip_h else t
            t = t.transpose(-1, -2) if transpose else t
            y = model(t[None] / 255)[0][0] * 255
            y = y.transpose(-1, -2) if transpose else y
            y = y.flip(-2) if flip_h else y
            outputs.append(y.flip(-1) if flip_w else y)
    expected = torch.stack(outputs).mean(0).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    result = Restorer(task="deblur", weights=path, model="mprnet", device="cpu", self_ensemble=True).restore(image)
    assert np.abs(result.astype(int) - expected).max() <= 1  # averaged in another order: a pixel may round apart
    assert not np.array_equal(result, _network(model, image))


# --- options and files that do not fit ------------------------------------------------------------------------


def test_a_file_of_the_other_family_names_the_right_model(tiny, tmp_path):
    model, path = tiny
    with pytest.raises(CheckpointError, match=r"holds an MPRNet model, not an IPT one: use --model mprnet"):
        Restorer(task="deblur", weights=path, device="cpu")  # model="ipt", the default
    official = tmp_path / "model_deblurring.pth"
    torch.save({"epoch": 1, "state_dict": model.state_dict()}, official)  # the official release's layout
    with pytest.raises(CheckpointError, match="use --model mprnet"):
        Restorer(task="deblur", weights=official, device="cpu")
    restored = Restorer(task="deblur", weights=official, model="mprnet", device="cpu").restore(photo("coffee")[:16, :16])
    np.testing.assert_array_equal(restored, _network(model, photo("coffee")[:16, :16]))
    ipt = tmp_path / "ipt.pt"
    IPT(["noise30"], IPTConfig(n_feats=8, patch_size=12, patch_dim=3, num_heads=2, num_layers=1)).save(ipt)
    with pytest.raises(CheckpointError, match=r"holds an IPT model, not an MPRNet one: use --model ipt"):
        Restorer(task="noise30", weights=ipt, model="mprnet", device="cpu")


@pytest.mark.parametrize("options, message", [
    ({"model": "swinir"}, "unknown model family 'swinir'"),
    ({"mode": "official", "tile": 256}, "mode 'official' restores each image whole, untiled"),
    ({"tile_overlap": 0}, "tile_overlap must be an integer >= 1"),
    ({"tile": 300, "tile_overlap": 200}, "half the tile"),
    ({"tile": 8}, "at least 16 px"),
    ({"num_heads": 12}, "num_heads is for official IPT files only"),
    ({"weights": None}, "needs weights: an official MPRNet file"),
    ({"task": "sr2"}, "scale 1"),
])
def test_options_that_do_not_fit_are_one_clear_error(tiny, options, message):
    settings = {"task": "deblur", "weights": tiny[1], "model": "mprnet", "device": "cpu", **options}
    with pytest.raises((ConfigError, CheckpointError), match=message):
        Restorer(**settings)


def test_ipt_keeps_its_tiles(tmp_path):
    path = tmp_path / "ipt.pt"
    IPT(["noise30"], IPTConfig(n_feats=8, patch_size=12, patch_dim=3, num_heads=2, num_layers=1)).save(path)
    restorer = Restorer(task="noise30", weights=path, device="cpu")
    assert restorer.tiling == {"mode": "fast", "tile_batch": 64, "progress": None, "patch_size": 12, "overlap": 3,
                               "whole": False}
    with pytest.raises(ConfigError, match="tiles of its patch_size, 12 px, only"):
        Restorer(task="noise30", weights=path, device="cpu", tile=24)
    with pytest.raises(ConfigError, match="mode 'official' tiles as the official code does"):
        Restorer(task="noise30", weights=path, device="cpu", mode="official", tile_overlap=4)


def test_grey_and_rgba_inputs_are_converted_and_wrong_layouts_refused(tiny, tmp_path):
    model, path = tiny
    restorer = Restorer(task="deblur", weights=path, model="mprnet", device="cpu")
    rgb = photo("coffee")[:20, :28]
    grey = rgb[..., 0]
    np.testing.assert_array_equal(restorer.restore(grey), restorer.restore(np.repeat(grey[..., None], 3, axis=2)))
    rgba = np.concatenate([rgb, np.full((20, 28, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(restorer.restore(rgba), restorer.restore(rgb))
    np.testing.assert_array_equal(restorer.restore(torch.from_numpy(grey)), restorer.restore(grey))
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(restorer.run(tmp_path / "rgba.png"), restorer.restore(rgb))
    assert restorer.run(tmp_path / "grey.png").shape == (20, 28, 3)
    with pytest.raises(ValueError, match=r"a numpy image is \(H, W, C\) .* got shape \[3, 20, 28\]"):
        restorer.restore(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    with pytest.raises(ValueError, match=r"C = 1, 3 or 4: got shape \[20, 28, 2\]"):
        restorer.restore(rgb[..., :2])


# --- the command-line tools -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, tiny):
    """A tiny deblurring set (input/ + target/, 3 pairs) beside the tiny model's file."""
    root = tmp_path_factory.mktemp("gopro")
    for k, name in enumerate(("astronaut", "coffee", "rocket")):
        sharp = photo(name)[40 : 40 + 36 + 4 * k, 60 : 60 + 48]
        write_image(root / "test" / "target" / f"{k:03d}.png", sharp)
        write_image(root / "test" / "input" / f"{k:03d}.png", _blurred(sharp))
    return root


_cli = in_process  # (exit status, stdout, stderr) of a tool's main(ARGS), run in this process


def test_restore_cli_with_mprnet(tiny, pairs, capsys):
    from ipt.restore import main

    model, path = tiny
    out = pairs / "restored"
    code, stdout, err = _cli(main, capsys, "--model", "mprnet", "--task", "deblur", "--weights", path, "--input",
                             pairs / "test" / "input", "--output", out, "--device", "cpu", "--tile", "32")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "002.png"]
    assert "000.png (48x36 -> 48x36)" in stdout
    code, _, err = _cli(main, capsys, "--task", "deblur", "--weights", path, "--input", pairs / "test" / "input",
                        "--output", pairs / "other", "--device", "cpu")
    assert code == 2 and err.strip().splitlines() == [
        f"error: {path} holds an MPRNet model, not an IPT one: use --model mprnet (model='mprnet')"]


def test_evaluate_cli_with_mprnet_reports_the_model_and_the_baseline(tiny, pairs, capsys):
    from ipt.evaluate import main

    model, path = tiny
    out = pairs / "eval"
    code, stdout, err = _cli(main, capsys, "--model", "mprnet", "--task", "deblur", "--weights", path, "--data",
                             pairs / "test", "--out", out, "--device", "cpu", "--tile", "32", "--tile-overlap", "8")
    assert code == 0, err
    assert "MPRNet deblur on 3 images" in stdout and "(input/target); baseline: input" in stdout
    report = json.loads((out / "metrics.json").read_text())
    assert (report["model"], report["task"], report["baseline"]) == ("mprnet", "deblur", "input")
    assert (report["mode"], report["tile"], report["tile_overlap"], report["tile_batch"]) == ("fast", 32, 8, 1)
    assert (out / "metrics.csv").read_text().count("\n") == 5  # header, 3 images, MEAN
    for row in report["images"]:  # the baseline is the blurred input itself, measured against the target
        blurred = read_image(pairs / "test" / "input" / f"{row['image']}.png")
        sharp = read_image(pairs / "test" / "target" / f"{row['image']}.png")
        assert row["baseline_psnr_y"] == pytest.approx(metrics.psnr(blurred, sharp, y_channel=True))
        assert row["gain_psnr_y"] == pytest.approx(row["psnr_y"] - row["baseline_psnr_y"])


def test_evaluating_a_real_pair_task_on_clean_images_fails_before_anything_loads(tiny, tmp_path, capsys, monkeypatch):
    from ipt.evaluate import main

    def must_not_restore(self, image):
        raise AssertionError("restored an image")

    monkeypatch.setattr(Restorer, "restore", must_not_restore)
    write_image(tmp_path / "clean" / "a.png", photo("coffee")[:32, :32])
    for weights in (tiny[1], tmp_path / "missing.pt"):  # the data is refused before the weights are read
        code, _, err = _cli(main, capsys, "--model", "mprnet", "--task", "denoise", "--weights", weights, "--data",
                            tmp_path / "clean", "--out", tmp_path / "ev", "--device", "cpu")
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1, err
        assert "holds clean images only" in lines[0] and "no synthetic degradation" in lines[0]
        assert "input/ + target/" in lines[0]
    assert not (tmp_path / "ev").exists()


def test_the_tools_run_as_modules(tiny, pairs):
    done = subprocess.run([sys.executable, "-m", "ipt.restore", "--model", "mprnet", "--task", "deblur",
                           "--weights", str(tiny[1]), "--input", str(pairs / "test" / "input" / "001.png"),
                           "--output", str(pairs / "module.png"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    sharp = read_image(pairs / "test" / "input" / "001.png")
    np.testing.assert_array_equal(read_image(pairs / "module.png"), _network(tiny[0], sharp))
    helped = subprocess.run([sys.executable, "-m", "ipt.evaluate", "--help"], capture_output=True, text=True, timeout=300)
    assert "--model {ipt,mprnet}" in helped.stdout and "deblur" in helped.stdout and "--tile-overlap" in helped.stdout


# --- MPRPredictor ------------------------------------------------------------------------------------------------


def test_mpr_predictor_with_weights_writes_once(tiny, tmp_path, monkeypatch):
    model, path = tiny
    monkeypatch.chdir(tmp_path)
    image = photo("rocket")[:40, :52]
    write_image(tmp_path / "blurred.png", image)
    predictor = MPRPredictor(task="Deblurring", weights=path, device="cpu", seed=123)
    result = predictor.run("blurred.png")
    np.testing.assert_array_equal(result, _network(model, image))
    written = tmp_path / "output_dir" / "blurred.png"  # PaddleGAN's default output_path
    np.testing.assert_array_equal(read_image(written), result)
    before = written.read_bytes()
    with pytest.raises(ConfigError, match="exists already"):
        predictor.run("blurred.png")
    assert written.read_bytes() == before
    MPRPredictor(task="Deblurring", weight_path=path, device="cpu", overwrite=True).run("blurred.png")


def test_mpr_predictor_folders_lists_and_output_path(tiny, tmp_path):
    model, path = tiny
    for name in ("x.png", "y.png"):
        write_image(tmp_path / "in" / name, photo("coffee")[:24, :24])
    predictor = MPRPredictor(task="Deraining", weight_path=path, output_path=tmp_path / "results", device="cpu",
                             tile=16, tile_overlap=4, precision="bf16")
    results = predictor.run(tmp_path / "in")
    assert isinstance(results, list) and len(results) == 2
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["x.png", "y.png"]
    with pytest.raises(ConfigError, match="exists already"):  # nothing is restored when one result is in the way
        predictor.run([tmp_path / "in" / "x.png"])
    listed = MPRPredictor(task="Deraining", weight_path=path, output_path=tmp_path / "more", device="cpu")
    assert [r.shape for r in listed.run([tmp_path / "in" / "x.png"])] == [(24, 24, 3)]
    assert (tmp_path / "more" / "x.png").is_file()


def test_mpr_predictor_finds_the_release_files_in_the_folder_the_environment_names(tiny, tmp_path, monkeypatch):
    model, path = tiny
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model_deblurring.pth").write_bytes(path.read_bytes())  # our checkpoint, under the release's name
    monkeypatch.setenv("IPT_MPRNET_WEIGHTS", str(folder))
    image = photo("coffee")[:16, :24]
    predictor = MPRPredictor(task="Deblurring", output_path=None, device="cpu")
    assert predictor.weights == folder / "model_deblurring.pth"
    np.testing.assert_array_equal(predictor.run(image), _network(model, image))
    (folder / "MPR_Denoising.pdparams").write_bytes(b"")  # PaddleGAN's name is looked for too (not read here)
    assert find_weights("Denoising") == folder / "MPR_Denoising.pdparams"
    with pytest.raises(ConfigError, match=r"holds no Deraining weights: looked for model_deraining.pth and "
                                          r"MPR_Deraining.pdparams"):
        MPRPredictor(task="Deraining", device="cpu")


def test_mpr_predictor_without_weights_or_with_a_wrong_task_says_what_to_do(tiny, monkeypatch):
    monkeypatch.delenv("IPT_MPRNET_WEIGHTS", raising=False)
    with pytest.raises(ConfigError) as raised:
        MPRPredictor(task="Denoising")
    message = str(raised.value)
    assert "pass weights= (or weight_path=)" in message and "set IPT_MPRNET_WEIGHTS" in message
    assert all(name in message for name in WEIGHT_FILES["Denoising"])
    with pytest.raises(ConfigError, match=r"unknown MPRPredictor task 'Deblur': choose one of \['Deblurring', "
                                          r"'Denoising', 'Deraining'\]"):
        MPRPredictor(task="Deblur", weights=tiny[1])
    with pytest.raises(ConfigError, match="name two files"):
        MPRPredictor(task="Deblurring", weights=tiny[1], weight_path="other.pth")
