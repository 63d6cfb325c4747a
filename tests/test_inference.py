"""Tiled inference, self-ensemble and the Restorer."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ipt.errors import ConfigError, IPTError
from ipt.inference import DIHEDRAL, Restorer, quantize, restore, tiled_forward
from ipt.model import IPT, CheckpointError, IPTConfig

from images import photo

SIZES = [(48, 48), (100, 130), (60, 49), (97, 97), (20, 33), (7, 5)]


def identity(t):
    return t


def nearest2(t):
    return F.interpolate(t, scale_factor=2, mode="nearest")


def tile_dependent(scale):
    """A model whose output depends on the whole tile (its mean and where the pixel sits in it), so a
    pixel's value tells which tiles produced it."""

    def fn(t):
        n, c, h, w = t.shape
        ramp = torch.arange(h * scale, dtype=torch.float32)[:, None] + 2 * torch.arange(w * scale)[None, :]
        up = F.interpolate(t, scale_factor=scale, mode="nearest") if scale > 1 else t
        return up + t.mean(dim=(1, 2, 3), keepdim=True) + ramp

    return fn


@pytest.mark.parametrize("mode", ["official", "fast"])
@pytest.mark.parametrize("size", SIZES)
def test_identity_like_models_come_back_without_seams(mode, size):
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0)) * 255
    torch.testing.assert_close(tiled_forward(identity, x, 1, mode=mode), x, rtol=0, atol=1e-3)
    torch.testing.assert_close(tiled_forward(nearest2, x, 2, mode=mode), nearest2(x), rtol=0, atol=1e-3)


def official_by_rules(fn, x, s, patch_size):
    """The official forward_chop with tiles of side p = patch_size, stated pixel by pixel (SPEC section 4)
    rather than with folds."""
    c, h, w = x.shape
    p = patch_size
    m = p // 4
    h_cut, w_cut = (h - p) % m, (w - p) % m
    hc, wc = h - h_cut, w - w_cut
    rows, cols = range(0, hc - p + 1, m), range(0, wc - p + 1, m)
    cache = {}

    def out(r, q):
        if (r, q) not in cache:
            cache[(r, q)] = fn(x[None, :, r : r + p, q : q + p])[0]
        return cache[(r, q)]

    def covering(i, starts, length):
        """Tiles along one axis whose kept centre holds output position i (first/last: whole ends)."""
        if i < m * s:
            return [starts[0]]
        if i >= (length - m) * s:
            return [starts[-1]]
        return [o for o in starts if o * s + m * s <= i < o * s + (p - m) * s]

    def mean(values):
        return sum(values) / len(values)

    keep_h, keep_w = hc * s - int((p - h_cut) / 2 * s), wc * s - int((p - w_cut) / 2 * s)
    rows, cols = list(rows), list(cols)
    y = torch.empty(c, h * s, w * s)
    for i in range(h * s):
        for j in range(w * s):
            if i < keep_h and j < keep_w:
                inner = m * s <= i < (hc - m) * s and m * s <= j < (wc - m) * s
                if inner:
                    v = mean([out(r, q)[:, i - r * s, j - q * s] for r in covering(i, rows, hc) for q in covering(j, cols, wc)])
                elif j < p * s:  # the left band (a strip of tiles down the first column)
                    v = mean([out(r, 0)[:, i - r * s, j] for r in covering(i, rows, hc)])
                else:  # the top band (along the first row)
                    v = mean([out(0, q)[:, i, j - q * s] for q in covering(j, cols, wc)])
            elif i >= keep_h and j < keep_w:  # the strip flush with the bottom
                r = h - p
                v = mean([out(r, q)[:, i - r * s, j - q * s] for q in covering(j, cols, wc)])
            elif i < keep_h:  # the strip flush with the right edge
                q = w - p
                v = mean([out(r, q)[:, i - r * s, j - q * s] for r in covering(i, rows, hc)])
            else:  # the corner p
                v = out(h - p, w - p)[:, i - (h - p) * s, j - (w - p) * s]
            y[:, i, j] = v
    return y


@pytest.mark.parametrize("size, scale", [((16, 16), 1), ((29, 35), 1), ((24, 41), 2), ((37, 30), 3)])
def test_official_mode_follows_the_official_rules(size, scale):
    x = torch.rand(3, *size, generator=torch.Generator().manual_seed(1)) * 255
    fn = tile_dependent(scale)
    ours = tiled_forward(fn, x, scale, mode="official", patch_size=16, tile_batch=7)
    torch.testing.assert_close(ours, official_by_rules(fn, x, scale, 16), rtol=0, atol=1e-3)


def test_fast_mode_is_a_weighted_average_of_tiles():
    x = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(2)) * 255
    fn = tile_dependent(1)
    y = tiled_forward(fn, x, 1, mode="fast", patch_size=16, overlap=4)
    # every pixel lies between the smallest and largest value any tile gives it
    lo = torch.full_like(y, float("inf"))
    hi = torch.full_like(y, -float("inf"))
    for r in sorted(set(range(0, 50 - 16 + 1, 12)) | {34}):
        for q in sorted(set(range(0, 70 - 16 + 1, 12)) | {54}):
            t = fn(x[None, :, r : r + 16, q : q + 16])[0]
            lo[:, r : r + 16, q : q + 16] = torch.minimum(lo[:, r : r + 16, q : q + 16], t)
            hi[:, r : r + 16, q : q + 16] = torch.maximum(hi[:, r : r + 16, q : q + 16], t)
    assert (y >= lo - 1e-3).all() and (y <= hi + 1e-3).all()


@pytest.mark.parametrize("mode", ["official", "fast"])
def test_tile_batch_does_not_change_the_result(mode):
    x = torch.rand(3, 45, 52) * 255
    fn = tile_dependent(2)
    a = tiled_forward(fn, x, 2, mode=mode, patch_size=16, tile_batch=1)
    torch.testing.assert_close(tiled_forward(fn, x, 2, mode=mode, patch_size=16, tile_batch=1000), a, rtol=0, atol=1e-4)


def test_fast_mode_evaluates_far_fewer_tiles():
    counts = {}
    for mode in ("official", "fast"):
        seen = []
        tiled_forward(lambda t: seen.append(t.shape[0]) or t, torch.zeros(3, 512, 512), 1, mode=mode)
        counts[mode] = sum(seen)
    assert counts["official"] == 1600 and counts["fast"] == 196


def test_self_ensemble_averages_the_eight_transforms():
    x = torch.rand(3, 20, 26) * 255
    fn = tile_dependent(2)
    expected = torch.zeros(3, 40, 52)
    for flip_w, flip_h, transpose in DIHEDRAL:
        t = x.flip(-1) if flip_w else x
        t = t.flip(-2) if flip_h else t
        t = t.transpose(-1, -2) if transpose else t
        y = tiled_forward(fn, t, 2, mode="fast", patch_size=16, overlap=4)
        y = y.transpose(-1, -2) if transpose else y
        y = y.flip(-2) if flip_h else y
        expected += (y.flip(-1) if flip_w else y) / 8
    got = restore(fn, x, 2, self_ensemble=True, mode="fast", patch_size=16, overlap=4)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-3)
    torch.testing.assert_close(restore(identity, x, 1, self_ensemble=True, patch_size=16, overlap=4), x, rtol=0, atol=1e-3)


def test_quantize():
    assert quantize(torch.tensor([-3.0, 0.4, 0.5, 254.6, 300.0])).tolist() == [0, 0, 0, 255, 255]


def test_patch_size_defaults_to_the_papers_and_tile_is_deprecated():
    seen = []
    x = torch.rand(3, 50, 50) * 255
    tiled_forward(lambda t: seen.append(t.shape[-1]) or t, x, 1)
    assert set(seen) == {IPTConfig.patch_size} == {48}
    with pytest.warns(DeprecationWarning, match="patch_size=model.config.patch_size"):
        old = tiled_forward(tile_dependent(1), x, 1, tile=16)
    torch.testing.assert_close(old, tiled_forward(tile_dependent(1), x, 1, patch_size=16), rtol=0, atol=0)
    with pytest.raises(TypeError, match="pass patch_size only"), pytest.warns(DeprecationWarning):
        tiled_forward(identity, x, 1, patch_size=16, tile=24)


# Options a user sets (on the command line too) are ConfigErrors; a tensor of the wrong rank is the
# calling code's bug, a plain ValueError.
@pytest.mark.parametrize("call, error, match", [
    (lambda: tiled_forward(identity, torch.zeros(3, 8, 8), 1, mode="quick"), ConfigError, "unknown tiling mode"),
    (lambda: tiled_forward(identity, torch.zeros(3, 8, 8), 1, mode="official", patch_size=18), ConfigError,
     "divisible by 4"),
    (lambda: tiled_forward(identity, torch.zeros(3, 8, 8), 1, patch_size=0), ConfigError, "patch_size must be"),
    (lambda: tiled_forward(identity, torch.zeros(3, 8, 8), 1, overlap=48), ConfigError, r"overlap must be in \(0, 48\)"),
    (lambda: tiled_forward(identity, torch.zeros(3, 8, 8), 1, tile_batch=0), ConfigError, "tile_batch"),
    (lambda: tiled_forward(identity, torch.zeros(8, 8), 1), ValueError, r"expected \(C, H, W\)"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match) as caught:
        call()
    assert isinstance(caught.value, IPTError) == (error is ConfigError)


# --- Restorer --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = IPT(["sr2", "noise30"], IPTConfig(n_feats=8, patch_size=12, patch_dim=3, num_heads=2, num_layers=1))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    model.save(path)
    return model.eval(), path


def _as_uint8_hwc(y: torch.Tensor) -> np.ndarray:
    """The official quantisation, written out: round(clamp(y, 0, 255)) as (H, W, 3) uint8."""
    return np.clip(np.round(y.permute(1, 2, 0).numpy()), 0, 255).astype(np.uint8)


def test_restorer_runs_the_model_on_one_input(kernels, tiny_checkpoint):
    model, path = tiny_checkpoint  # patch_size 12: a 12x12 image is one model input, no tiling at all
    image = photo("coffee")[:12, :12]
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    with torch.no_grad():
        expected = _as_uint8_hwc(model(x[None], "sr2")[0])
    for mode in ("official", "fast"):
        result = Restorer(task="sr2", weights=path, mode=mode, device="cpu").run(image)
        assert result.shape == (24, 24, 3) and result.dtype == np.uint8
        np.testing.assert_array_equal(result, expected)


def test_restorer_tiles_with_the_models_patch_size(kernels, tiny_checkpoint):
    model, path = tiny_checkpoint
    image = photo("coffee")[:19, :26]  # small: the rules' reference goes pixel by pixel
    result = Restorer(task="sr2", weights=path, mode="official", device="cpu").run(image)
    assert result.shape == (38, 52, 3) and result.dtype == np.uint8
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    with torch.no_grad():
        expected = official_by_rules(lambda t: model(t, "sr2"), x, 2, model.config.patch_size)
    # the rules' reference averages in another order: a pixel may round the other way
    assert np.abs(result.astype(int) - _as_uint8_hwc(expected).astype(int)).max() <= 1


def test_restorer_files_and_folders(kernels, tiny_checkpoint, tmp_path):
    from ipt.data.images import read_image, write_image

    _, path = tiny_checkpoint
    folder = tmp_path / "in"
    for name in ("a", "b"):
        write_image(folder / f"{name}.png", photo("chelsea")[:30, :30])
    restorer = Restorer(task="noise30", weights=path, device="cpu", precision="bf16")
    results = restorer.run(folder, output=tmp_path / "out")
    assert len(results) == 2 and all(r.shape == (30, 30, 3) for r in results)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    single = restorer.run(folder / "a.png", output=tmp_path / "one.png")
    np.testing.assert_array_equal(read_image(tmp_path / "one.png"), single)


def test_restorer_errors(tiny_checkpoint, tmp_path):
    _, path = tiny_checkpoint
    with pytest.raises(ConfigError, match="needs weights"):
        Restorer(task="sr2", weights=None)
    with pytest.raises(CheckpointError, match="no task 'sr4'"):
        Restorer(task="sr4", weights=path)
    with pytest.raises(ConfigError, match="unknown task 'sr'"):
        Restorer(task="sr", weights=path)
    with pytest.raises(ConfigError, match="precision"):
        Restorer(task="sr2", weights=path, precision="fp8")
    with pytest.raises(ConfigError, match="tiling mode"):
        Restorer(task="sr2", weights=path, mode="quick")
    with pytest.raises(ConfigError, match="tile_batch"):
        Restorer(task="sr2", weights=path, tile_batch=0)
    with pytest.raises(CheckpointError, match="does not exist"):
        Restorer(task="sr2", weights=tmp_path / "nope.pt")


def test_restorer_passes_num_heads_for_official_files(kernels, tiny_checkpoint, tmp_path):
    model = tiny_checkpoint[0].subset(["sr2"]).eval()
    official = tmp_path / "IPT_sr2.pt"
    torch.save(model.state_dict(), official)  # a 2-head model in the official layout: no head count stored
    with pytest.raises(CheckpointError, match="num_heads"):
        Restorer(task="sr2", weights=official, device="cpu")
    image = photo("coffee")[:12, :12]
    ours = Restorer(task="sr2", weights=official, device="cpu", num_heads=2).run(image)
    with torch.no_grad():
        expected = _as_uint8_hwc(model(torch.from_numpy(image).permute(2, 0, 1).float()[None], "sr2")[0])
    np.testing.assert_array_equal(ours, expected)
