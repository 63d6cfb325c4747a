"""Training on tar shards (ipt.data.tars): the same images as their folder give the same batches, on both
loaders and every rank; members are read where they lie; bad members are skipped as bad files are."""

import json
import pickle

import numpy as np
import pytest
import torch

from ipt.data import load_training_images, write_image
from ipt.data.holdout import shared_images, training_files
from ipt.data.records import ImageRecord, ImageTable
from ipt.data.shard import write_shards
from ipt import pretrain
from ipt.families import load_model
from ipt.loaders import make_loader

from cli_runs import in_process
from images import COLOUR_IMAGES, photo

BACKENDS = ["torch", "dali"]
CROP = 96


def _tree(root, count=10):
    """count images of two formats and several sizes in class folders, larger than CROP."""
    for i in range(count):
        image = photo(COLOUR_IMAGES[i % len(COLOUR_IMAGES)])[3 * i : 3 * i + 100 + 7 * i, 5 * i : 5 * i + 130 - 3 * i]
        write_image(root / f"class{i % 3}" / f"img{i:02d}.{'png' if i % 2 else 'jpg'}", image)
    return root


def _shards(folder, out) -> str:
    """The images of folder in shards of a few images each; their --data pattern."""
    paths = write_shards(folder, out, size=60_000)
    assert len(paths) >= 3
    return str(out / f"train-{{0000..{len(paths) - 1:04d}}}.tar")


@pytest.fixture
def folder_and_shards(tmp_path):
    folder = _tree(tmp_path / "tree")
    return folder, _shards(folder, tmp_path / "shards")


@pytest.fixture
def members(folder_and_shards):
    """The images of the shards, scanned."""
    return load_training_images(folder_and_shards[1], min_size=CROP, cache=None)


def _needs(backend):
    if backend == "dali":
        pytest.importorskip("nvidia.dali")


def _relative(records, folder) -> list[str]:
    return [str(r.path)[len(str(folder)) + 1 :] for r in records]


def _batches(backend, data, **kw):
    loader = make_loader(backend, data, ["sr2", "noise30"], batch_size=3, seed=7, workers=2, repeat=2, **kw)
    return list(loader.epoch(1, start=kw.pop("start", 0))), loader


def _same(a, b):
    assert [(x.index, x.task, x.sample_ids.tolist()) for x in a] == [(y.index, y.task, y.sample_ids.tolist()) for y in b]
    for x, y in zip(a, b):
        assert torch.equal(x.hr, y.hr)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", [0, 1])
def test_shards_give_the_batches_of_their_folder(folder_and_shards, members, backend, rank):
    _needs(backend)
    folder, _ = folder_and_shards
    files = load_training_images(folder, min_size=CROP, cache=None)
    assert [r.member for r in members.records] == _relative(files.records, folder)  # in the folder's order
    np.testing.assert_array_equal(members.sizes, files.sizes)
    from_files, _ = _batches(backend, files, rank=rank, world=2)
    from_members, _ = _batches(backend, members, rank=rank, world=2)
    assert len(from_files) == 3
    _same(from_files, from_members)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shards_resume_at_any_batch(members, backend):
    _needs(backend)
    whole, loader = _batches(backend, members)
    for start in (1, len(whole) - 1):
        _same(list(loader.epoch(1, start=start)), whole[start:])


def test_a_damaged_member_is_skipped_by_the_scan(folder_and_shards, tmp_path):
    folder, _ = folder_and_shards
    victim = sorted(folder.rglob("*.jpg"))[1]
    victim.write_bytes(victim.read_bytes()[:-500])  # truncated, as in the folder
    pattern = _shards(folder, tmp_path / "damaged")
    with pytest.warns(RuntimeWarning, match=rf"skipped 1 of 10 images of .*: 1 truncated \(e\.g\. .*\.tar:{victim.parent.name}"):
        members = load_training_images(pattern, min_size=CROP, cache=None)
    with pytest.warns(RuntimeWarning, match="skipped 1 of 10"):
        files = load_training_images(folder, min_size=CROP, cache=None)
    assert len(members) == len(files) == 9
    assert [r.member for r in members.records] == _relative(files.records, folder)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_member_damaged_after_the_scan_is_skipped_while_loading(members, backend):
    _needs(backend)
    loader = make_loader(backend, members, ["sr2"], batch_size=3, seed=7, workers=1)
    victim = members.records[loader.plan(0).batch(1).samples[0].item]
    with open(victim.path, "r+b") as f:  # the member's bytes overwritten in place: no image any more
        f.seek(victim.offset)
        f.write(b"\0" * victim.size)
    with pytest.warns(RuntimeWarning, match=rf"{victim.name}"):
        batches = list(loader.epoch(0))
    assert len(batches) == len(loader) and len(batches[1].sample_ids) < 3
    assert loader.bad_files == {victim.name}


def test_pretraining_on_shards_equals_pretraining_on_the_folder(folder_and_shards, tmp_path, capsys):
    folder, pattern = folder_and_shards
    config = tmp_path / "deterministic.json"
    config.write_text(json.dumps({"extends": "tiny", "deterministic": True}))
    args = ["--config", str(config), "--steps", "3", "--batch-size", "2", "--workers", "1", "--no-progress"]
    for name, data in (("folder", folder), ("shards", pattern)):
        code, out, err = in_process(pretrain.main, capsys, *args, "--data", data, "--out", tmp_path / name)
        assert code == 0, err
        assert f"on 10 images from {data}" in out
    a = load_model(tmp_path / "folder" / "model.safetensors").state_dict()
    b = load_model(tmp_path / "shards" / "model.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_validation_image_copied_into_a_shard_is_found(folder_and_shards, members, tmp_path):
    folder, _ = folder_and_shards
    copy = tmp_path / "val" / "copy.png"
    copy.parent.mkdir()
    original = sorted(folder.rglob("*.png"))[0]
    copy.write_bytes(original.read_bytes())
    other = write_image(tmp_path / "val" / "other.png", photo("coffee")[:50, :60])
    shared = shared_images(training_files(members), [copy, other])
    assert [(v, t.member) for v, t in shared] == [(copy, str(original.relative_to(folder)))]


def test_the_record_table_is_compact_and_equals_its_records():
    records = [ImageRecord(f"/data/imagenet/train/n{c:08d}/n{c:08d}_{k}.JPEG", 500, 375) for c in range(100)
               for k in range(50)] + [ImageRecord("/s/train-0001.tar", 64, 80, "a/b.jpg", 1536, 4000)]
    table = ImageTable(records)
    assert table == records and list(table) == records and table[-1] == records[-1] and table[3:5] == records[3:5]
    assert table.nbytes / len(table) < 64  # the common folder is stored once
    np.testing.assert_array_equal(table.sizes, [(r.height, r.width) for r in records])
    assert table.digest() == ImageTable(records).digest() != ImageTable(records[:-1]).digest()
    assert table[-1].name == "/s/train-0001.tar:a/b.jpg" and table[np.int64(2)] == records[2]
    assert pickle.loads(pickle.dumps(table)) == table and hash(table) == hash(ImageTable(records))
    with pytest.raises(TypeError):
        table[1.5]
    with pytest.raises(IndexError):
        table[len(records)]


def test_a_shard_index_is_kept_until_the_archive_changes(folder_and_shards, tmp_path, monkeypatch):
    from ipt.data import tars

    _, pattern = folder_and_shards
    archive = tars.expand_shard_pattern(pattern)[0]
    indexed = tars.index_tar(archive, tmp_path / "index")
    assert indexed == tars.index_tar(archive) and len(list((tmp_path / "index").iterdir())) == 1

    def no_tarfile(*args, **kwargs):
        raise AssertionError("the archive's headers were read again")

    monkeypatch.setattr(tars.tarfile, "open", no_tarfile)
    assert tars.index_tar(archive, tmp_path / "index") == indexed  # from the saved index
    monkeypatch.undo()
    with open(archive, "ab") as f:  # the archive changed (a record of zeros more): indexed again
        f.write(b"\0" * 10240)
    monkeypatch.setattr(tars.tarfile, "open", no_tarfile)
    with pytest.raises(AssertionError, match="read again"):
        tars.index_tar(archive, tmp_path / "index")


def test_a_damaged_shard_is_not_kept_indexed(folder_and_shards, tmp_path):
    from ipt.data import tars

    _, pattern = folder_and_shards
    archive = tars.expand_shard_pattern(pattern)[1]
    archive.write_bytes(archive.read_bytes()[:-12000])  # cut short: its end marker and a member's tail gone
    for _ in range(2):  # the warning every time: nothing was saved that would hide it
        with pytest.warns(RuntimeWarning, match="a damaged tar archive"):
            tars.index_tar(archive, tmp_path / "index")
    assert not (tmp_path / "index").exists() or not list((tmp_path / "index").iterdir())
