"""Data faults that must never lose anything silently (issue 12): file names that are not UTF-8, linked
folders, files deleted during an epoch, mismatched pairs, tiny images whose layout looks ambiguous, and
decompression bombs. Tiny images throughout, so each test takes a second or two."""

import csv
import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ipt.data.scan as scan_module
import ipt.pipelines.dali as dali_module
from ipt.data import DataLayoutError, load_image_pairs, load_training_images, read_image, to_rgb_uint8, write_image
from ipt.data.errors import ImageTooLargeError, UnreadableImageError
from ipt.data.folders import find_pairs, find_training_images
from ipt.data.images import image_size, list_images, max_image_pixels
from ipt.data.scan import check_image, scan_images
from ipt.errors import ConfigError
from ipt.evaluate import evaluate_images, format_table, write_reports
from ipt.loaders import make_loader
from ipt.tasks import get_task

BACKENDS = ["torch", "dali"]
CAFE = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not UTF-8, so Python holds them as surrogate escapes


@pytest.fixture(autouse=True)
def pillow_limit(monkeypatch):
    """Pillow's limit as it was, after every test: raising IPT_MAX_IMAGE_PIXELS lifts it process-wide."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    monkeypatch.delenv("IPT_MAX_IMAGE_PIXELS", raising=False)


def _pixels(seed, height=20, width=24):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _images(folder, count, first_seed=0):
    """count random 20x24 images under folder; {path: pixels}."""
    return {str(write_image(Path(folder) / f"img{k:02d}.png", _pixels(first_seed + k))): _pixels(first_seed + k)
            for k in range(count)}


def _crop(image, sample, size):
    """What the plan says a sample is, in plain numpy: the crop, flipped, then turned."""
    x = image[sample.top : sample.top + size, sample.left : sample.left + size]
    x = np.fliplr(x) if sample.flip_h else x
    x = np.flipud(x) if sample.flip_v else x
    return np.rot90(x, sample.rot90)


def _check_pixels(loader, batches, pixels):
    """Every sample of every batch is the plan's crop of the image written."""
    for batch in batches:
        spec = loader.plan(batch.epoch).batch(batch.index)
        by_id = {s.sample_id: s for s in spec.samples}
        for sample_id, got in zip(batch.sample_ids.tolist(), batch.hr):
            sample = by_id[sample_id]
            expected = _crop(pixels[loader.data.records[sample.item].path], sample, spec.crop)
            np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected)


def _loader(backend, data, **kw):
    return make_loader(backend, data, tasks=["sr2"], batch_size=2, seed=0, patch_size=8, workers=1, **kw)


def _messages(caught, category=RuntimeWarning):
    return [str(w.message) for w in caught if issubclass(w.category, category)]


# --- 1. file names that are not valid UTF-8 --------------------------------------------------------------


@pytest.fixture
def latin1_tree(tmp_path, monkeypatch):
    """A data folder whose own name and whose files' names are not UTF-8, and the scan cache in tmp."""
    monkeypatch.setenv("IPT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / os.fsdecode(b"donn\xe9es")
    pixels = {str(write_image(root / "class0" / f"{CAFE}.png", _pixels(1))): _pixels(1),
              str(write_image(root / "class1" / "plain.png", _pixels(2))): _pixels(2)}
    broken = root / os.fsdecode(b"tronqu\xe9.png")
    broken.write_bytes((root / "class1" / "plain.png").read_bytes()[:40])
    return root, pixels, broken


def test_names_that_are_not_utf8_are_scanned_cached_and_named_in_warnings(latin1_tree, tmp_path, monkeypatch):
    root, pixels, broken = latin1_tree
    with pytest.warns(RuntimeWarning) as caught:
        data = load_training_images(root, min_size=8)
    assert _messages(caught) == [f"skipped 1 of 3 images of {root}: 1 unreadable (e.g. {broken})"]
    assert sorted(r.path for r in data.records) == sorted(pixels)
    [cache] = (tmp_path / "cache" / "scans").iterdir()
    written = cache.read_bytes()
    assert b"/class0/caf\xe9.png\t" in written and b"tronqu\xe9.png\t" in written  # the names' own bytes

    def no_second_check(*args, **kw):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(scan_module, "check_image", no_second_check)
    with pytest.warns(RuntimeWarning, match="1 unreadable"):
        again = load_training_images(root, min_size=8)
    assert again == data and cache.read_bytes() == written  # a hit, and nothing to rewrite


def test_a_file_list_may_name_files_that_are_not_utf8(latin1_tree):
    root, pixels, _ = latin1_tree
    listing = root.parent / "list.txt"
    listing.write_bytes(b"# the next line is not UTF-8\n" + os.fsencode(root / "class0" / f"{CAFE}.png") + b"\n")
    assert find_training_images(listing) == [root / "class0" / f"{CAFE}.png"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_loaders_read_names_that_are_not_utf8(latin1_tree, backend):
    root, pixels, _ = latin1_tree
    with pytest.warns(RuntimeWarning, match="1 unreadable"):
        data = load_training_images(root, min_size=8, cache=None)
    loader = _loader(backend, data)
    batches = list(loader.epoch(0))
    assert [len(b.sample_ids) for b in batches] == [2] and not loader.bad_files
    _check_pixels(loader, batches, pixels)


def _restorer(task_name, calls=None):
    """A stand-in for ipt.inference.Restorer that returns its input (scale 1): the pairing, the measures and
    the reports are what is tested here, not a model."""

    class Identity:
        task = get_task(task_name)

        def restore(self, image):
            if calls is not None:
                calls.append(image.shape)
            return image

    return Identity()


def test_evaluate_reports_names_that_are_not_utf8(tmp_path):
    from ipt import metrics

    root = tmp_path / "pairs"
    clean, noisy = _pixels(3), np.clip(_pixels(3).astype(int) + 9, 0, 255).astype(np.uint8)
    write_image(root / "target" / f"{CAFE}.png", clean)
    write_image(root / "input" / f"{CAFE}.png", noisy)
    layout, results = evaluate_images(_restorer("noise30"), root)
    rows = [r.row for r in results]
    assert layout == "input/target" and [r["image"] for r in rows] == [CAFE]
    assert rows[0]["psnr_rgb"] == pytest.approx(metrics.psnr(noisy, clean, y_channel=False))
    assert CAFE in format_table(rows)  # the CLI prints it with errors="backslashreplace"
    csv_path, json_path = write_reports(tmp_path / "out", rows, {"data": str(root)})
    text = csv_path.read_bytes().decode("utf-8")  # still valid UTF-8
    assert [row["image"] for row in csv.DictReader(text.splitlines())] == ["caf\\udce9", "MEAN"]
    report = json.loads(json_path.read_text())
    assert report["images"][0]["image"] == CAFE and report["data"] == str(root)  # exactly the name


# --- 2. symbolic links ------------------------------------------------------------------------------------


@pytest.fixture
def linked_tree(tmp_path):
    """root/ holding links to class folders elsewhere, a loop, a second way into one folder, broken links."""
    real = tmp_path / "real"
    pixels = {**_images(real / "a", 2), **_images(real / "b", 1, first_seed=10)}
    root = tmp_path / "root"
    root.mkdir()
    (root / "cls_a").symlink_to(real / "a", target_is_directory=True)
    (root / "cls_b").symlink_to(real / "b", target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "z_again").symlink_to(real / "a", target_is_directory=True)
    (root / "broken").symlink_to(tmp_path / "nowhere")
    (root / "gone.png").symlink_to(tmp_path / "nowhere.png")
    write_image(root / "flat.png", _pixels(20))
    (root / "alias.png").symlink_to(root / "flat.png")
    return root, pixels


def test_linked_folders_are_followed_once_and_what_is_left_out_is_said(linked_tree):
    root, _ = linked_tree
    with pytest.warns(RuntimeWarning) as caught:
        found = list_images(root, recursive=True)
    assert [str(p.relative_to(root)) for p in found] == [
        "alias.png", "cls_a/img00.png", "cls_a/img01.png", "cls_b/img00.png", "flat.png"]
    assert _messages(caught) == [f"{root}: left out 4 entries: broken links: 2 (e.g. {root / 'broken'}); "
                                 f"links to a folder already listed: 2 (e.g. {root / 'loop'})"]
    with pytest.warns(RuntimeWarning) as caught:  # one level: only what could have been an image
        assert [p.name for p in list_images(root)] == ["alias.png", "flat.png"]
    assert _messages(caught) == [f"{root}: left out 1 entries: broken links: 1 (e.g. {root / 'gone.png'})"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tree_of_linked_class_folders_trains(tmp_path, backend):
    real = tmp_path / "real"
    pixels = {**_images(real / "a", 2), **_images(real / "b", 2, first_seed=10)}
    root = tmp_path / "train"
    root.mkdir()
    for name in ("a", "b"):
        (root / name).symlink_to(real / name, target_is_directory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out, so nothing to say
        data = load_training_images(root, min_size=8, cache=None)
    assert len(data) == 4
    loader = _loader(backend, data)
    batches = list(loader.epoch(0))
    assert sum(len(b.sample_ids) for b in batches) == 4
    _check_pixels(loader, batches, {str(root / Path(p).parent.name / Path(p).name): v for p, v in pixels.items()})


# --- 3. files deleted during an epoch ---------------------------------------------------------------------


def _files_of(loader, index):
    return [loader.data.records[s.item].path for s in loader.plan(0).batch(index).samples]


@pytest.mark.parametrize("backend", BACKENDS)
def test_files_deleted_after_the_scan_are_skipped_and_a_batch_with_none_left_is_dropped(tmp_path, backend):
    pixels = _images(tmp_path / "data", 8)
    data = load_training_images(tmp_path / "data", min_size=8, cache=None)
    loader = _loader(backend, data)
    whole, half = _files_of(loader, 1), _files_of(loader, 2)
    for path in (*whole, half[0]):
        os.remove(path)
    with pytest.warns(RuntimeWarning) as caught:
        batches = list(loader.epoch(0))
    assert [b.index for b in batches] == [0, 2, 3]  # the plan's indices: resuming at index + 1 stays right
    assert [len(b.sample_ids) for b in batches] == [2, 1, 2] and batches[1].skipped == [half[0]]
    _check_pixels(loader, batches, pixels)
    why = "gone, damaged or of another size since the scan"
    assert _messages(caught) == [
        f"dropped batch 1 of epoch 0: none of its images is usable (2 {why}; e.g. {whole[0]}); 2 unusable so far",
        f"skipped 1 images of batch 2 of epoch 0 ({why}; e.g. {half[0]}); 3 unusable so far"]
    assert loader.bad_files == {*whole, half[0]}
    with pytest.warns(RuntimeWarning) as caught:  # known bad from now on: batch 1 is dropped again, and says so
        resumed = list(loader.epoch(0, start=1))
    assert _messages(caught) == ["dropped batch 1 of epoch 0: all its images were found unusable before; "
                                 "3 unusable so far"]
    assert [b.index for b in resumed] == [2, 3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_files_deleted_while_the_epoch_runs_are_skipped(tmp_path, backend):
    pixels = _images(tmp_path / "data", 16)
    data = load_training_images(tmp_path / "data", min_size=8, cache=None)
    loader = _loader(backend, data)
    # Batches 5 and 6 come after what either loader reads ahead (4 batches for torch, 2 for DALI).
    whole, half = _files_of(loader, 5), _files_of(loader, 6)
    batches = []
    with pytest.warns(RuntimeWarning) as caught:
        for batch in loader.epoch(0):
            if batch.index == 0:
                for path in (*whole, half[1]):
                    os.remove(path)
            batches.append(batch)
    assert [b.index for b in batches] == [0, 1, 2, 3, 4, 6, 7]
    assert [len(b.sample_ids) for b in batches] == [2, 2, 2, 2, 2, 1, 2]
    _check_pixels(loader, batches, pixels)
    assert len(_messages(caught)) == 2 and loader.bad_files == {*whole, half[1]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pair_whose_target_is_gone_is_skipped(tmp_path, backend):
    for k in range(4):  # HR: every LR pixel repeated 2x2, so any aligned crop pair keeps that relation
        lr = _pixels(k, 10, 12)
        write_image(tmp_path / "sr" / "LR_bicubic" / "X2" / f"p{k}x2.png", lr)
        write_image(tmp_path / "sr" / "HR" / f"p{k}.png", lr.repeat(2, 0).repeat(2, 1))
    pairs = load_image_pairs(tmp_path / "sr", scale=2, min_size=8, cache=None)
    loader = _loader(backend, pairs)
    gone = pairs.records[loader.plan(0).batch(1).samples[0].item].target.path
    os.remove(gone)
    with pytest.warns(RuntimeWarning, match=f"skipped 1 images of batch 1 of epoch 0 .*e.g. {gone}"):
        batches = list(loader.epoch(0))
    assert [len(b.sample_ids) for b in batches] == [2, 1] and loader.bad_files == {gone}
    for b in batches:
        assert b.lr.shape[-1] == 8 and b.hr.shape[-1] == 16
        assert (b.hr == b.lr.repeat_interleave(2, -1).repeat_interleave(2, -2)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_file_replaced_by_a_smaller_image_is_skipped(tmp_path, backend):
    pixels = _images(tmp_path / "data", 4)
    data = load_training_images(tmp_path / "data", min_size=8, cache=None)
    loader = _loader(backend, data, augment=False)
    changed = _files_of(loader, 1)[0]
    write_image(changed, _pixels(9, 10, 12))  # the plan's crops are for the 20x24 image the scan saw
    with pytest.warns(RuntimeWarning, match=f"(skipped 1 images of batch 1|DALI could not decode or crop 1 images).*{changed}"):
        batches = list(loader.epoch(0))
    assert [len(b.sample_ids) for b in batches] == [2, 1] and loader.bad_files == {changed}
    _check_pixels(loader, batches, pixels)


def test_dali_skips_a_file_that_failed_to_decode_even_if_it_changed_since(tmp_path, monkeypatch):
    # DALI fails on corrupt bytes; by the time the driver looks for the culprit, the file on disk has been
    # replaced by a good one. The culprit is found in the bytes DALI was given, not in today's file.
    pixels = _images(tmp_path / "data", 5)
    good = (tmp_path / "good.jpg")
    write_image(good, _pixels(9))
    corrupt = tmp_path / "data" / "corrupt.jpg"
    corrupt.write_bytes(good.read_bytes()[:300] + bytes(range(256)) * 4 + b"\xff\xd9")
    data = load_training_images(tmp_path / "data", min_size=8, cache=None)
    assert len(data) == 6  # the scan cannot tell: the end marker is there

    original = dali_module.PlanSource.__call__

    def then_repair(self):  # once the corrupt bytes are on their way to DALI
        fed = original(self)
        if any(data.records[s.item].path == str(corrupt) for s in self.plan.batch(self.next - 1).samples):
            corrupt.write_bytes(good.read_bytes())
        return fed

    monkeypatch.setattr(dali_module.PlanSource, "__call__", then_repair)
    loader = _loader("dali", data)
    with pytest.warns(RuntimeWarning, match=r"DALI could not decode or crop 1 images \(.*e\.g\. .*corrupt\.jpg\)"):
        batches = list(loader.epoch(0))
    assert loader.bad_files == {str(corrupt)} and sum(len(b.sample_ids) for b in batches) == 5
    _check_pixels(loader, batches, pixels)


# --- 4. mismatched pairs ----------------------------------------------------------------------------------


def _pair_folder(root, input_size, target_size, layout="restore", name="x"):
    lr_dir, hr_dir = (root / "input", root / "target") if layout == "restore" else (root / "LR_bicubic" / "X2", root / "HR")
    write_image(lr_dir / (f"{name}.png" if layout == "restore" else f"{name}x2.png"), _pixels(4, *input_size))
    write_image(hr_dir / f"{name}.png", _pixels(5, *target_size))
    return root


def test_two_images_of_one_name_in_a_pair_folder_are_an_error(tmp_path):
    root = _pair_folder(tmp_path / "restore", (20, 24), (20, 24))
    write_image(root / "input" / "x.jpg", _pixels(6))
    message = f"{root / 'input'}: x.jpg and x.png both pair with 'x'; keep one of them"
    for load in (lambda: find_pairs(root), lambda: load_image_pairs(root, cache=None),
                 lambda: evaluate_images(_restorer("noise30"), root)):
        with pytest.raises(DataLayoutError) as error:
            load()
        assert str(error.value) == message
    sr = _pair_folder(tmp_path / "sr", (10, 12), (20, 24), layout="sr")
    write_image(sr / "LR_bicubic" / "X2" / "x.png", _pixels(7, 10, 12))  # NAME and NAMEx2: one name
    with pytest.raises(DataLayoutError, match="x.png and xx2.png both pair with 'x'"):
        find_pairs(sr, scale=2)


def test_clean_images_of_one_stem_are_different_images_with_different_names(tmp_path):
    write_image(tmp_path / "clean" / "x.jpg", _pixels(1))
    write_image(tmp_path / "clean" / "x.png", _pixels(2))
    write_image(tmp_path / "clean" / "y.png", _pixels(3))
    layout, pairs = find_pairs(tmp_path / "clean")
    assert layout == "clean" and [p.name for p in pairs] == ["x.jpg", "x.png", "y"]


@pytest.mark.parametrize("layout, scale, input_size, target_size, expected", [
    ("restore", 1, (20, 24), (20, 25), "for scale 1 the target must be 24x20"),
    ("restore", 1, (20, 24), (19, 24), "for scale 1 the target must be 24x20"),
    ("sr", 2, (10, 12), (22, 24), "for scale 2 the target must be 24x20 to 25x21"),
    ("sr", 2, (10, 12), (20, 23), "for scale 2 the target must be 24x20 to 25x21"),
])
def test_a_target_of_another_size_than_its_input_is_an_error(tmp_path, layout, scale, input_size, target_size, expected):
    root = _pair_folder(tmp_path / layout, input_size, target_size, layout)
    pair = find_pairs(root, scale=scale)[1][0]
    message = (f"x: the target {pair.target} is {target_size[1]}x{target_size[0]} and its input {pair.input} "
               f"{input_size[1]}x{input_size[0]}; {expected}")
    with pytest.raises(DataLayoutError) as error:
        load_image_pairs(root, scale=scale, cache=None)
    assert str(error.value) == message
    calls = []
    with pytest.raises(DataLayoutError) as error:
        evaluate_images(_restorer("noise30" if scale == 1 else "sr2", calls), root)
    assert str(error.value) == message and calls == []  # found before any image is restored


def test_an_sr_target_a_few_pixels_larger_is_measured_on_the_scaled_input(tmp_path):
    root = _pair_folder(tmp_path / "sr", (10, 12), (21, 25), layout="sr")  # HR not a multiple of 2
    pairs = load_image_pairs(root, scale=2, cache=None)
    assert (pairs.records[0].target.width, pairs.records[0].target.height) == (25, 21)

    class Nearest:  # a stand-in SR model: every pixel repeated 2x2
        task = get_task("sr2")

        def restore(self, image):
            return image.repeat(2, 0).repeat(2, 1)

    [result] = list(evaluate_images(Nearest(), root)[1])
    np.testing.assert_array_equal(result.target, read_image(root / "HR" / "x.png")[:20, :24])


# --- 5. tiny images: the layout is never guessed -----------------------------------------------------------


@pytest.mark.parametrize("height", [1, 2, 3, 4])
@pytest.mark.parametrize("width", [3, 40])
@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16"])
def test_images_one_to_four_pixels_high_read_as_they_are(tmp_path, height, width, mode):
    rng = np.random.default_rng(height * 100 + width)
    if mode == "I;16":
        values = rng.integers(0, 65536, (height, width), dtype=np.uint16)
        Image.fromarray(values).save(tmp_path / "x.png")
        expected = np.repeat(((values / 257.0).round().astype(np.uint8))[..., None], 3, axis=-1)
    else:
        channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
        values = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        Image.fromarray(values[..., 0] if channels == 1 else values, mode=mode).save(tmp_path / "x.png")
        expected = np.repeat(values[..., :1], 3, axis=-1) if channels <= 2 else values[..., :3]
    with Image.open(tmp_path / "x.png") as img:
        assert img.mode == mode and img.size == (width, height)  # the file really is that
        array = np.array(img)
    np.testing.assert_array_equal(read_image(tmp_path / "x.png"), expected)
    np.testing.assert_array_equal(to_rgb_uint8(array), expected)


def test_only_an_array_that_cannot_be_hwc_is_read_as_channels_first():
    hwc = np.random.default_rng(0).integers(0, 256, (3, 40, 3), dtype=np.uint8)  # 3 px high, or CHW 40x3?
    np.testing.assert_array_equal(to_rgb_uint8(hwc), hwc)  # HWC: the rule, not a guess
    grey_alpha = np.random.default_rng(2).integers(0, 256, (3, 40, 2), dtype=np.uint8)  # was taken for CHW
    np.testing.assert_array_equal(to_rgb_uint8(grey_alpha), np.repeat(grey_alpha[..., :1], 3, axis=-1))
    chw = np.random.default_rng(1).integers(0, 256, (3, 4, 5), dtype=np.uint8)  # 5 cannot be channels
    np.testing.assert_array_equal(to_rgb_uint8(chw), np.moveaxis(chw, 0, -1))
    with pytest.raises(UnreadableImageError, match=r"not an image of shape .*\(5, 6, 7\)"):
        to_rgb_uint8(np.zeros((5, 6, 7), np.uint8))


# --- 6. decompression bombs -------------------------------------------------------------------------------


def _png_claiming(path, width, height):
    """A PNG of a few dozen bytes whose header claims width x height pixels (never decoded here)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4))
                     + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_one_clear_error_and_a_skipped_file(tmp_path):
    assert max_image_pixels() == 2 * Image.MAX_IMAGE_PIXELS == 178_956_970  # unset: where Pillow refuses
    (tmp_path / "data").mkdir()
    bomb = _png_claiming(tmp_path / "data" / "bomb.png", 100_000, 100_000)
    with pytest.raises(ImageTooLargeError) as error:  # an UnreadableImageError, so loaders skip it
        read_image(bomb)
    assert str(error.value) == (
        f"{bomb}: an image of 10,000,000,000 pixels, more than the 178,956,970 the toolkit reads; "
        "if the file is trusted, set IPT_MAX_IMAGE_PIXELS to a larger number (or to none: no limit)")
    assert check_image(bomb) == ("too large", 0, 0)
    _images(tmp_path / "data", 2)
    with pytest.warns(RuntimeWarning) as caught:
        data = load_training_images(tmp_path / "data", min_size=8, cache=None)
    assert len(data) == 2 and _messages(caught) == [
        f"skipped 1 of 3 images of {tmp_path / 'data'}: 1 too large (e.g. {bomb})"]


def test_ipt_max_image_pixels_sets_the_limit(tmp_path, monkeypatch):
    pixels = _pixels(8, 30, 40)  # 1,200 pixels
    path = write_image(tmp_path / "x.png", pixels)
    monkeypatch.setenv("IPT_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError, match=r"x.png: an image of 1,200 pixels, more than the 1,000 the toolkit"):
        read_image(path)
    monkeypatch.setenv("IPT_MAX_IMAGE_PIXELS", "1200")
    np.testing.assert_array_equal(read_image(path), pixels)
    bomb = _png_claiming(tmp_path / "bomb.png", 20_000, 10_000)  # 200 million: Pillow refuses it by default
    monkeypatch.setenv("IPT_MAX_IMAGE_PIXELS", "300000000")
    assert image_size(bomb) == (20_000, 10_000)  # the header: within the raised limit (never decoded here)
    monkeypatch.setenv("IPT_MAX_IMAGE_PIXELS", "none")
    assert max_image_pixels() is None and image_size(bomb) == (20_000, 10_000)
    np.testing.assert_array_equal(read_image(path), pixels)
    monkeypatch.setenv("IPT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ConfigError, match="IPT_MAX_IMAGE_PIXELS='lots': expected a number of pixels"):
        read_image(path)


def test_the_scan_cache_does_not_keep_a_limit(tmp_path, monkeypatch):
    path = write_image(tmp_path / "x.png", _pixels(8, 30, 40))
    cache = tmp_path / "scan.tsv"
    monkeypatch.setenv("IPT_MAX_IMAGE_PIXELS", "1000")
    assert dict(scan_images([path], cache=cache).skipped) == {"too large": 1}
    monkeypatch.setenv("IPT_MAX_IMAGE_PIXELS", "2000")  # raised: the file is read again, and fits
    assert [(r.width, r.height) for r in scan_images([path], cache=cache).records] == [(40, 30)]
    monkeypatch.setenv("IPT_MAX_IMAGE_PIXELS", "1000")  # lowered: the cached size is held to the new limit
    assert dict(scan_images([path], cache=cache).skipped) == {"too large": 1}
