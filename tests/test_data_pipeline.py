"""The data pipelines: DALI (ipt.pipelines) and its torch DataLoader twin, on CPU."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ipt.ops
from ipt.data import (DataLayoutError, ImagePairs, TrainingImages, degrade_batch, load_image_pairs,
                      load_training_images, read_image, write_image)
from ipt.data.plan import EpochPlan
from ipt.data.scan import ImageRecord
from ipt.errors import ConfigError
from ipt.loaders import make_loader
from ipt.tasks import TASKS, get_task

from images import photo

BACKENDS = ["torch", "dali"]


def _folder(tmp_path, names=("astronaut", "chelsea", "coffee", "rocket"), size=(200, 240), fmt="png"):
    for i, name in enumerate(names):
        write_image(tmp_path / "data" / f"class{i % 2}" / f"{name}.{fmt}", photo(name)[: size[0], : size[1]])
    return tmp_path / "data"


@pytest.fixture
def images(tmp_path):
    return load_training_images(_folder(tmp_path), min_size=192, cache=None)


def _batches(backend, data, tasks=("sr2", "noise30"), epoch=0, **kw):
    kw.setdefault("batch_size", 3)
    loader = make_loader(backend, data, tasks, seed=kw.pop("seed", 5), workers=2, **kw)
    return list(loader.epoch(epoch))


@pytest.mark.parametrize("backend", BACKENDS)
def test_batches_have_the_tasks_crops(images, backend):
    batches = _batches(backend, images, tasks=("sr2", "sr4", "noise30"), repeat=3, last_batch="partial")
    assert len(batches) == 4 and [len(b.sample_ids) for b in batches] == [3, 3, 3, 3]
    crops = {0: 96, 1: 192, 2: 48}
    for b in batches:
        assert b.hr.dtype == torch.uint8 and b.hr.shape == (len(b.sample_ids), 3, crops[b.task], crops[b.task])
        assert b.hr.is_contiguous(memory_format=torch.channels_last) and b.lr is None and 0 < b.hr.float().std() < 128


@pytest.mark.parametrize("backend", BACKENDS)
def test_crops_flips_and_rotations_equal_numpy(images, backend):
    loader = make_loader(backend, images, ["sr3"], batch_size=4, seed=11, workers=1)
    plan = loader.plan(0)
    for batch in loader.epoch(0):
        spec = plan.batch(batch.index)
        for sample, got in zip(spec.samples, batch.hr):
            image = read_image(images.records[sample.item].path)
            h, w = image.shape[:2]
            assert 0 <= sample.top <= h - 144 and 0 <= sample.left <= w - 144  # inside the image
            expected = image[sample.top : sample.top + 144, sample.left : sample.left + 144]
            expected = np.fliplr(expected) if sample.flip_h else expected
            expected = np.flipud(expected) if sample.flip_v else expected
            expected = np.rot90(expected, sample.rot90)
            np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected)


def test_every_flip_and_turn_is_flips_then_a_transpose():
    from ipt.data.batch import augment, flips_then_transpose
    from ipt.data.plan import SampleSpec

    x = np.arange(4 * 5 * 3).reshape(4, 5, 3)
    for h in (False, True):
        for v in (False, True):
            for k in range(4):
                spec = SampleSpec(0, 0, 0, 0, h, v, k)
                fh, fv, swap = flips_then_transpose(spec)
                y = x[:, ::-1] if fh else x
                y = y[::-1] if fv else y
                y = y.transpose(1, 0, 2) if swap else y
                np.testing.assert_array_equal(y, augment(x, spec))


def test_slot_uniforms_are_uniform_and_keyed_by_slot():
    from scipy import stats

    from ipt.data.plan import slot_uniforms

    u = slot_uniforms(11, 2, np.arange(50_000), 5)
    for draw in range(5):
        assert stats.kstest(u[:, draw], "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(u[:, 0], u[:, 4])[0, 1]) < 0.02
    np.testing.assert_array_equal(slot_uniforms(11, 2, np.array([40_000, 3]), 5), u[[40_000, 3]])
    assert not np.array_equal(slot_uniforms(12, 2, np.arange(10), 5), u[:10])
    assert not np.array_equal(slot_uniforms(11, 3, np.arange(10), 5), u[:10])


def test_augmentations_are_all_used():
    plan = EpochPlan(((300, 300),) * 200, (48,), 8, seed=3, epoch=0)
    specs = [s for k in range(len(plan)) for s in plan.batch(k).samples]
    assert {s.rot90 for s in specs} == {0, 1, 2, 3}
    assert 0.35 < np.mean([s.flip_h for s in specs]) < 0.65 and 0.35 < np.mean([s.flip_v for s in specs]) < 0.65
    tops = [s.top for s in specs]
    assert min(tops) < 30 and max(tops) > 220  # spread over the valid range [0, 252]
    plain = EpochPlan(((300, 300),) * 20, (48,), 8, seed=3, epoch=0, augment=False)
    assert not any(s.flip_h or s.flip_v or s.rot90 for k in range(len(plain)) for s in plain.batch(k).samples)


def test_shards_are_disjoint_and_cover_the_data():
    sizes = ((64, 64),) * 10
    shards = [EpochPlan(sizes, (48,), 2, seed=1, epoch=4, rank=r, world=3, last_batch="partial").shard for r in range(3)]
    assert all(len(s) == 4 for s in shards)  # 10 slots padded to 12: equal shard lengths for DDP
    together = np.concatenate(shards)
    assert set(together.tolist()) == set(range(10)) and len(together) == 12
    # disjoint but for the (-10) % 3 = 2 wrapped-around padding slots
    assert len(together) - len(set(together.tolist())) == 2
    no_padding = [EpochPlan(((64, 64),) * 12, (48,), 2, seed=1, epoch=4, rank=r, world=3).shard for r in range(3)]
    assert sorted(np.concatenate(no_padding).tolist()) == list(range(12))
    # the task of batch k is the same on every rank
    tasks = [EpochPlan(sizes, (48, 64), 2, seed=1, epoch=4, rank=r, world=3).tasks.tolist() for r in range(3)]
    assert tasks[0] == tasks[1] == tasks[2]


def test_task_groups_share_one_draw():
    plan = EpochPlan(((64, 64),) * 40, (48, 56, 60), 2, seed=3, epoch=0, task_group=4)
    tasks = plan.tasks.tolist()
    assert len(tasks) == 20 and all(len(set(tasks[i : i + 4])) == 1 for i in range(0, 20, 4))
    assert len(set(tasks)) > 1


def test_epochs_differ_and_policies_count_batches():
    sizes = ((64, 64),) * 10
    assert [len(EpochPlan(sizes, (48,), 4, 0, 0, last_batch=p)) for p in ("drop", "partial", "fill")] == [2, 3, 3]
    filled = EpochPlan(sizes, (48,), 4, 0, 0, last_batch="fill").batch(2)
    assert len(filled.samples) == 4
    a, b = EpochPlan(sizes, (48,), 4, 0, 0).shard, EpochPlan(sizes, (48,), 4, 0, 1).shard
    assert sorted(a) == sorted(b) and list(a) != list(b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_batches(images, backend):
    a, b = _batches(backend, images, seed=9), _batches(backend, images, seed=9)
    assert all(torch.equal(x.hr, y.hr) and x.task == y.task for x, y in zip(a, b))
    c = _batches(backend, images, seed=10)
    assert not all(torch.equal(x.hr, y.hr) for x, y in zip(a, c) if x.hr.shape == y.hr.shape)


def test_both_loaders_give_identical_batches(images):
    for epoch in (0, 3):
        torch_batches = _batches("torch", images, TASK_NAMES_ALL, epoch=epoch, repeat=2, last_batch="fill")
        dali_batches = _batches("dali", images, TASK_NAMES_ALL, epoch=epoch, repeat=2, last_batch="fill")
        assert len(torch_batches) == len(dali_batches) == 3
        for t, d in zip(torch_batches, dali_batches):
            assert (t.task, t.index, t.epoch) == (d.task, d.index, d.epoch)
            assert torch.equal(t.sample_ids, d.sample_ids) and torch.equal(t.hr, d.hr)


TASK_NAMES_ALL = [t.name for t in TASKS]


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_mid_epoch(images, backend):
    loader = make_loader(backend, images, ["noise50"], batch_size=2, seed=1, workers=1, repeat=3)
    full = list(loader.epoch(2))
    resumed = list(loader.epoch(2, start=3))
    assert [b.index for b in resumed] == [3, 4, 5]
    assert all(torch.equal(a.hr, b.hr) for a, b in zip(full[3:], resumed))


@pytest.mark.parametrize("backend", BACKENDS)
def test_degradation_step(kernels, images, backend):
    loader = make_loader(backend, images, ["sr4", "noise30", "rain"], batch_size=2, seed=2, workers=1, repeat=3)
    seen = set()
    for batch in loader.epoch(0):
        lr, hr = degrade_batch(batch, loader.tasks, seed=2)
        name = loader.tasks[batch.task].name
        seen.add(name)
        assert lr.shape[-1] == 48 and hr.shape[-1] == 48 * loader.tasks[batch.task].scale and lr.dtype == torch.float32
        assert torch.equal(hr, batch.hr.float())  # the target is the clean crop itself
        if name == "sr4":  # the op itself, not the task table's call of it
            torch.testing.assert_close(lr, ipt.ops.bicubic_downsample(batch.hr, 4).float(), rtol=0, atol=0)
        elif name == "noise30":
            assert 25 < (lr - hr).std() < 35
        else:  # rain only brightens
            assert (lr >= hr - 1e-3).all() and (lr > hr + 1).any()
        # Keyed by sample, not by batch: each sample alone degrades to its row of the batch.
        for k in range(len(batch.sample_ids)):
            alone = batch.__class__(batch.hr[k : k + 1], batch.task, batch.sample_ids[k : k + 1], batch.epoch, batch.index)
            torch.testing.assert_close(degrade_batch(alone, loader.tasks, seed=2)[0], lr[k : k + 1], rtol=0, atol=0)
    assert len(seen) > 1


# --- pairs ------------------------------------------------------------------------------------------------


def _pairs(tmp_path, layout):
    root = tmp_path / layout
    for name in ("astronaut", "coffee", "rocket"):
        lr = photo(name)[:70, :90]
        if layout == "sr":  # HR = LR with every pixel repeated 2x2: any aligned crop keeps that relation
            write_image(root / "HR" / f"{name}.png", lr.repeat(2, axis=0).repeat(2, axis=1))
            write_image(root / "LR_bicubic" / "X2" / f"{name}x2.png", lr)
        else:  # target = 255 - input
            write_image(root / "input" / f"{name}.png", lr)
            write_image(root / "target" / f"{name}.png", 255 - lr)
    return root


@pytest.mark.parametrize("backend", BACKENDS)
def test_sr_pairs_stay_aligned(tmp_path, backend):
    pairs = load_image_pairs(_pairs(tmp_path, "sr"), scale=2, min_size=48, cache=None)
    assert isinstance(pairs, ImagePairs) and len(pairs) == 3
    batches = _batches(backend, pairs, ["sr2"], batch_size=2, repeat=4, last_batch="partial")
    assert len(batches) == 6
    for b in batches:
        assert b.lr.shape == (len(b.sample_ids), 3, 48, 48) and b.hr.shape[-1] == 96
        torch.testing.assert_close(b.hr, b.lr.repeat_interleave(2, -1).repeat_interleave(2, -2), rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_restoration_pairs_stay_aligned(tmp_path, backend):
    pairs = load_image_pairs(_pairs(tmp_path, "restore"), scale=1, min_size=48, cache=None)
    for b in _batches(backend, pairs, ["noise30"], batch_size=2, repeat=2):
        torch.testing.assert_close(b.hr, 255 - b.lr, rtol=0, atol=0)
        lr, hr = degrade_batch(b, [get_task("noise30")], seed=0)
        assert torch.equal(lr, b.lr.float())  # real pairs are not degraded again


def test_pairs_identical_across_loaders(tmp_path):
    pairs = load_image_pairs(_pairs(tmp_path, "sr"), scale=2, min_size=48, cache=None)
    for t, d in zip(_batches("torch", pairs, ["sr2"], repeat=2), _batches("dali", pairs, ["sr2"], repeat=2)):
        assert torch.equal(t.hr, d.hr) and torch.equal(t.lr, d.lr)


# --- bad data -----------------------------------------------------------------------------------------------


def _bad_data(tmp_path):
    root = _folder(tmp_path, names=("astronaut", "coffee"), fmt="jpg")
    rgb = photo("chelsea")[:200, :240]
    Image.fromarray(rgb).convert("L").save(root / "gray.jpg")
    Image.fromarray(rgb).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(rgb).convert("P").save(root / "palette.png")
    Image.fromarray(rgb).convert("RGBA").save(root / "rgba.png")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(root / "deep16.png")
    Image.fromarray(rgb[:100, :100]).save(root / "small.png")
    good = (root / "class0" / "astronaut.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 2])
    png = (root / "rgba.png").read_bytes()
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "notes.png").write_text("not an image")
    # corrupt inside but with a proper end marker: passes the scan, fails at decode time
    (root / "corrupt.jpg").write_bytes(good[:600] + bytes(range(256)) * 8 + b"\xff\xd9")
    return root


def test_scan_skips_broken_files_with_a_counted_warning(tmp_path):
    root = _bad_data(tmp_path)
    with pytest.warns(RuntimeWarning, match=r"skipped 4 of 12 images.*1 smaller than 192 px.*2 truncated.*1 unreadable"):
        data = load_training_images(root, min_size=192, cache=None)
    names = sorted(p.split("/")[-1] for p in (r.path for r in data.records))
    assert names == ["astronaut.jpg", "cmyk.jpg", "coffee.jpg", "corrupt.jpg", "deep16.png", "gray.jpg",
                     "palette.png", "rgba.png"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_odd_formats_convert_and_corrupt_files_never_crash_an_epoch(tmp_path, backend):
    with pytest.warns(RuntimeWarning):
        data = load_training_images(_bad_data(tmp_path), min_size=192, cache=None)
    loader = make_loader(backend, data, ["noise30"], batch_size=4, seed=0, workers=2, last_batch="partial")
    with pytest.warns(RuntimeWarning, match="corrupt.jpg"):
        batches = list(loader.epoch(0))
    seen = sum(len(b.sample_ids) for b in batches)
    assert seen == 7 and any(p.endswith("corrupt.jpg") for p in loader.bad_files)  # all but the corrupt one
    assert all(b.hr.shape[1] == 3 and b.hr.dtype == torch.uint8 for b in batches)
    again = list(loader.epoch(1))  # the next epoch skips it from the start, without a warning
    assert sum(len(b.sample_ids) for b in again) == 7


def test_corrupt_file_handling_is_the_same_in_both_loaders(tmp_path):
    with pytest.warns(RuntimeWarning):
        data = load_training_images(_bad_data(tmp_path), min_size=192, cache=None)
    results = {}
    for backend in BACKENDS:
        loader = make_loader(backend, data, ["noise30"], batch_size=3, seed=4, workers=1, last_batch="partial")
        with pytest.warns(RuntimeWarning):
            results[backend] = list(loader.epoch(0))
    for t, d in zip(results["torch"], results["dali"]):
        assert torch.equal(t.sample_ids, d.sample_ids) and torch.equal(t.hr, d.hr)


def test_scan_cache_is_reused_and_invalidated(tmp_path):
    root = _folder(tmp_path)
    cache = tmp_path / "scan.tsv"
    first = load_training_images(root, cache=cache)
    assert len(cache.read_text().splitlines()) == 4 + 2  # a header, the images, an end line
    path = first.records[0].path
    write_image(path, photo("chelsea")[:100, :120])  # changed on disk: re-checked
    second = load_training_images(root, cache=cache)
    assert (second.records[0].width, second.records[0].height) == (120, 100)


def test_data_errors_before_training(tmp_path):
    with pytest.raises(DataLayoutError, match="no such data folder"):
        load_training_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataLayoutError, match="no images found"):
        load_training_images(tmp_path / "empty")
    root = _pairs(tmp_path, "restore")
    (root / "target" / "coffee.png").unlink()
    with pytest.raises(DataLayoutError, match="unpaired images.*coffee"):
        load_image_pairs(root)
    with pytest.raises(DataLayoutError, match="expected pairs"):
        load_image_pairs(_folder(tmp_path))
    listing = tmp_path / "list.txt"
    listing.write_text("data/class0/astronaut.png\nmissing.png\n")
    with pytest.raises(DataLayoutError, match="1 listed files do not exist"):
        load_training_images(listing)
    too_small = load_training_images(_folder(tmp_path, size=(60, 60)), cache=None)
    with pytest.raises(ConfigError, match="smaller than the largest crop"):
        make_loader("torch", too_small, ["sr4"], batch_size=2)
    with pytest.raises(ConfigError, match="unknown loader backend"):
        make_loader("ffcv", too_small, ["noise30"], batch_size=2)
    with pytest.raises(ConfigError, match="pairs of scale 1 train exactly one task of that scale"):
        make_loader("torch", load_image_pairs(_pairs(tmp_path / "whole", "restore"), min_size=48, cache=None), ["sr2"],
                    batch_size=2)


def test_crops_follow_the_model_input_size(images):
    assert make_loader("torch", images, ["sr2", "sr4", "noise30"], batch_size=2).crops == (96, 192, 48)
    assert make_loader("torch", images, ["sr2", "sr4", "noise30"], batch_size=2, patch_size=24).crops == (48, 96, 24)
    with pytest.warns(DeprecationWarning, match="patch_size"):
        assert make_loader("torch", images, ["sr3"], batch_size=2, lr_patch=12).crops == (36,)


def test_the_old_loader_names_still_work():
    import ipt.data
    import ipt.loaders
    from ipt.train.config import LOADERS

    with pytest.warns(DeprecationWarning, match="ipt.loaders.make_loader"):
        assert ipt.data.make_loader is ipt.loaders.make_loader
    with pytest.warns(DeprecationWarning, match="ipt.loaders.BACKENDS"):
        assert ipt.data.BACKENDS == ipt.loaders.BACKENDS == LOADERS == ("torch", "dali")
    with pytest.raises(AttributeError):
        ipt.data.no_such_name


def test_data_and_pipelines_do_not_import_each_other():
    # Each in a fresh interpreter: ipt.data imports neither the pipelines nor the loader choice above it,
    # and ipt.pipelines imports first without tripping over a half-initialised ipt.data.
    for first, absent in (("ipt.data", ("ipt.pipelines", "ipt.loaders")), ("ipt.pipelines", ("ipt.loaders",))):
        code = f"import sys, {first}; print([m for m in {absent!r} if m in sys.modules])"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_file_list_and_builtin_samples(tmp_path):
    _folder(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text("# my subset\ndata/class0/astronaut.png\n\ndata/class1/chelsea.png\n")
    assert len(load_training_images(listing, cache=None)) == 2
    samples = load_training_images(cache=None)  # the built-in training split, never the held-out one
    from ipt.data.samples import TRAINING_SAMPLES

    assert sorted(Path(r.path).stem for r in samples.records) == sorted(TRAINING_SAMPLES)
    assert isinstance(samples, TrainingImages)
    assert isinstance(samples.records[0], ImageRecord)


def test_loader_reads_the_distributed_rank(images, monkeypatch):
    import ipt.data.loader as loader_module

    monkeypatch.setattr(loader_module, "distributed_shard", lambda: (1, 2))  # as torch.distributed would say
    loader = make_loader("torch", images, ["noise30"], batch_size=1)
    assert (loader.rank, loader.world) == (1, 2)
    assert len(loader) == 2  # 4 images over 2 ranks
