"""Tiled inference, self-ensemble and the Restorer."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ipt.inference import DIHEDRAL, Restorer, quantize, restore, tiled_forward
from ipt.model import IPT, IPTConfig

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


def official_by_rules(fn, x, s, tile):
    """The official forward_chop, stated pixel by pixel (SPEC section 4) rather than with folds."""
    c, h, w = x.shape
    m = tile // 4
    h_cut, w_cut = (h - tile) % m, (w - tile) % m
    hc, wc = h - h_cut, w - w_cut
    rows, cols = range(0, hc - tile + 1, m), range(0, wc - tile + 1, m)
    cache = {}

    def out(r, q):
        if (r, q) not in cache:
            cache[(r, q)] = fn(x[None, :, r : r + tile, q : q + tile])[0]
        return cache[(r, q)]

    def covering(i, starts, length):
        """Tiles along one axis whose kept centre holds output position i (first/last: whole ends)."""
        if i < m * s:
            return [starts[0]]
        if i >= (length - m) * s:
            return [starts[-1]]
        return [p for p in starts if p * s + m * s <= i < p * s + (tile - m) * s]

    def mean(values):
        return sum(values) / len(values)

    keep_h, keep_w = hc * s - int((tile - h_cut) / 2 * s), wc * s - int((tile - w_cut) / 2 * s)
    rows, cols = list(rows), list(cols)
    y = torch.empty(c, h * s, w * s)
    for i in range(h * s):
        for j in range(w * s):
            if i < keep_h and j < keep_w:
                inner = m * s <= i < (hc - m) * s and m * s <= j < (wc - m) * s
                if inner:
                    v = mean([out(r, q)[:, i - r * s, j - q * s] for r in covering(i, rows, hc) for q in covering(j, cols, wc)])
                elif j < tile * s:  # the left band (a strip of tiles down the first column)
                    v = mean([out(r, 0)[:, i - r * s, j] for r in covering(i, rows, hc)])
                else:  # the top band (along the first row)
                    v = mean([out(0, q)[:, i, j - q * s] for q in covering(j, cols, wc)])
            elif i >= keep_h and j < keep_w:  # the strip flush with the bottom
                r = h - tile
                v = mean([out(r, q)[:, i - r * s, j - q * s] for q in covering(j, cols, wc)])
            elif i < keep_h:  # the strip flush with the right edge
                q = w - tile
                v = mean([out(r, q)[:, i - r * s, j - q * s] for r in covering(i, rows, hc)])
            else:  # the corner tile
                v = out(h - tile, w - tile)[:, i - (h - tile) * s, j - (w - tile) * s]
            y[:, i, j] = v
    return y


@pytest.mark.parametrize("size, scale", [((16, 16), 1), ((29, 35), 1), ((24, 41), 2), ((37, 30), 3)])
def test_official_mode_follows_the_official_rules(size, scale):
    tile = 16
    x = torch.rand(3, *size, generator=torch.Generator().manual_seed(1)) * 255
    fn = tile_dependent(scale)
    ours = tiled_forward(fn, x, scale, mode="official", tile=tile, tile_batch=7)
    torch.testing.assert_close(ours, official_by_rules(fn, x, scale, tile), rtol=0, atol=1e-3)


def test_fast_mode_is_a_weighted_average_of_tiles():
    x = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(2)) * 255
    fn = tile_dependent(1)
    y = tiled_forward(fn, x, 1, mode="fast", tile=16, overlap=4)
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
    a = tiled_forward(fn, x, 2, mode=mode, tile=16, tile_batch=1)
    torch.testing.assert_close(tiled_forward(fn, x, 2, mode=mode, tile=16, tile_batch=1000), a, rtol=0, atol=1e-4)


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
        y = tiled_forward(fn, t, 2, mode="fast", tile=16, overlap=4)
        y = y.transpose(-1, -2) if transpose else y
        y = y.flip(-2) if flip_h else y
        expected += (y.flip(-1) if flip_w else y) / 8
    got = restore(fn, x, 2, self_ensemble=True, mode="fast", tile=16, overlap=4)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-3)
    torch.testing.assert_close(restore(identity, x, 1, self_ensemble=True, tile=16, overlap=4), x, rtol=0, atol=1e-3)


def test_quantize():
    assert quantize(torch.tensor([-3.0, 0.4, 0.5, 254.6, 300.0])).tolist() == [0, 0, 0, 255, 255]


@pytest.mark.parametrize("call, match", [
    (lambda: tiled_forward(identity, torch.zeros(3, 8, 8), 1, mode="quick"), "unknown tiling mode"),
    (lambda: tiled_forward(identity, torch.zeros(3, 8, 8), 1, mode="official", tile=18), "divisible by 4"),
    (lambda: tiled_forward(identity, torch.zeros(3, 8, 8), 1, tile_batch=0), "tile_batch"),
    (lambda: tiled_forward(identity, torch.zeros(8, 8), 1), r"expected \(C, H, W\)"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- Restorer --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = IPT(["sr2", "noise30"], IPTConfig(n_feats=8, patch_size=12, patch_dim=3, num_heads=2, num_layers=1))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    model.save(path)
    return model.eval(), path


def test_restorer_matches_the_model_tiled(kernels, tiny_checkpoint, tmp_path):
    model, path = tiny_checkpoint
    image = photo("coffee")[:40, :50]
    restorer = Restorer(task="sr2", weights=path, mode="official", device="cpu")
    result = restorer.run(image)
    assert result.shape == (80, 100, 3) and result.dtype == np.uint8
    x = torch.from_numpy(image).permute(2, 0, 1).float()
    with torch.no_grad():
        expected = quantize(tiled_forward(lambda t: model(t, "sr2"), x, 2, mode="official", tile=12))
    np.testing.assert_array_equal(result, expected.byte().permute(1, 2, 0).numpy())


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
    with pytest.raises(ValueError, match="needs weights"):
        Restorer(task="sr2", weights=None)
    with pytest.raises(ValueError, match="no task 'sr4'"):
        Restorer(task="sr4", weights=path)
    with pytest.raises(ValueError, match="precision"):
        Restorer(task="sr2", weights=path, precision="fp8")
    with pytest.raises(ValueError, match="does not exist"):
        Restorer(task="sr2", weights=tmp_path / "nope.pt")
