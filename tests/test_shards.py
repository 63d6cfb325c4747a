"""Tar shards (the WebDataset layout): brace patterns, indexing and reading archives (ipt.data.tars), and
writing them from a folder of images (ipt.data.shard). Every member read is compared with tarfile's own
reading and with the original file; tiny generated images, so the whole file takes a few seconds."""

import bz2
import gzip
import io
import lzma
import os
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from ipt.data.errors import DataLayoutError
from ipt.data.folders import find_training_images
from ipt.data.images import IMAGE_SUFFIXES, read_image, write_image
from ipt.data.shard import data_argument, member_name, parse_size, shard_names, write_shards
from ipt.data.tars import TarMember, expand_shard_pattern, index_tar, is_shard_pattern, read_member
from ipt.errors import ConfigError

LONG_FOLDER = "a_rather_long_folder_name_for_the_class/" * 3  # > 100 characters with the file name


def _pixels(seed, height=12, width=16):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def _touch(folder: Path, names) -> list[Path]:
    paths = [folder / name for name in names]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return paths


def _tar(path: Path, members: dict, fmt=tarfile.PAX_FORMAT) -> Path:
    """A tar of {name: bytes} (bytes None: a folder member), in that order, written by tarfile itself."""
    with tarfile.open(path, "w", format=fmt) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def _blob(seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _tarfile_reads(path: Path) -> dict:
    """{name: bytes} of every regular member, as tarfile extracts it: the independent reference."""
    with tarfile.open(path) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isreg()}


def _tar_bytes(members) -> int:
    """The length of the tar file tarfile writes of (name, bytes) members, with the shards' metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uname, info.gname = len(data), 0o644, "", ""
            archive.addfile(info, io.BytesIO(data))
    return len(buffer.getvalue())


@pytest.fixture
def tree(tmp_path):
    """A small ImageNet-like tree: class folders, upper-case and dotted names, a long nested path, and
    files that are not images. {path: pixels} of the images too (JPEG pixels are the file's decoding)."""
    root = tmp_path / "images"
    names = ["n01/a.jpg", "n01/b.JPEG", "n01/c.png", "n02/d.png", "n02/e.v2.jpg", "n02/sub/f.bmp", "top.png",
             LONG_FOLDER + "deep_image_with_a_long_name.png", "n03/g.webp", "n03/h.tif"]
    for k, name in enumerate(names):
        write_image(root / name, _pixels(k, 12 + k, 16 + 2 * k))
    (root / "n01" / "labels.json").write_text("{}")
    (root / "n02" / "notes.txt").write_text("not an image")
    return root


# ---- brace patterns -------------------------------------------------------------------------------------


def test_a_zero_padded_range_keeps_the_lower_bounds_width(tmp_path):
    expected = _touch(tmp_path, [f"train-{i:04d}.tar" for i in range(12)])
    assert expand_shard_pattern(str(tmp_path / "train-{0000..0011}.tar")) == expected
    assert expand_shard_pattern(str(tmp_path / "train-{0005..0005}.tar")) == [expected[5]]
    unpadded = _touch(tmp_path, ["s-8.tar", "s-9.tar", "s-10.tar", "s-11.tar"])
    assert expand_shard_pattern(str(tmp_path / "s-{8..11}.tar")) == unpadded
    padded = _touch(tmp_path, ["p-08.tar", "p-09.tar", "p-10.tar"])
    assert expand_shard_pattern(str(tmp_path / "p-{08..10}.tar")) == padded


def test_lists_and_several_braces_multiply_in_order(tmp_path):
    _touch(tmp_path, [f"{split}/{kind}-{i}.tar" for split in ("a", "b") for kind in ("x", "yy") for i in (0, 1, 2)])
    got = expand_shard_pattern(str(tmp_path / "{b,a}/{yy,x}-{1..2}.tar"))
    expected = [tmp_path / f"{s}/{k}-{i}.tar" for s in ("b", "a") for k in ("yy", "x") for i in (1, 2)]
    assert got == expected  # the first brace varies slowest, as the shell expands it


def test_a_pattern_without_braces_is_one_path(tmp_path):
    (path,) = _touch(tmp_path, ["only.tar"])
    assert expand_shard_pattern(str(path)) == [path]
    assert expand_shard_pattern(path) == [path]


def test_missing_shards_are_an_error_naming_how_many(tmp_path):
    _touch(tmp_path, ["train-0000.tar", "train-0002.tar"])
    with pytest.raises(DataLayoutError) as error:
        expand_shard_pattern(str(tmp_path / "train-{0000..0004}.tar"))
    message = _one_line(error)
    assert "3 of the 5 shards" in message and "train-0001.tar" in message
    with pytest.raises(DataLayoutError, match="1 of the 1"):
        expand_shard_pattern(str(tmp_path / "nothing.tar"))


@pytest.mark.parametrize("pattern", ["train-{0000..}.tar", "train-{..3}.tar", "train-{0..3.tar", "train-0..3}.tar",
                                     "train-}{0..3}.tar", "train-{3..1}.tar", "train-{{0..1}}.tar", "train-{x}.tar",
                                     "train-{}.tar", "train-{a..c}.tar", "train-{0..1..2}.tar",
                                     "train-{0..99999999}.tar"])
def test_a_malformed_pattern_is_a_one_line_error(tmp_path, pattern):
    _touch(tmp_path, ["train-0.tar", "train-1.tar", "train-2.tar", "train-3.tar"])
    with pytest.raises(DataLayoutError) as error:
        expand_shard_pattern(str(tmp_path / pattern))
    assert pattern in _one_line(error)


def test_shard_patterns_are_told_from_folders_and_lists():
    assert is_shard_pattern("data/train-{0000..0012}.tar")
    assert is_shard_pattern(Path("data/train-0000.tar"))
    assert is_shard_pattern("data/{a,b}.TAR")
    assert not is_shard_pattern("data/imagenet/train")
    assert not is_shard_pattern("data/list.txt")
    assert not is_shard_pattern("data/train.tar.gz")
    assert not is_shard_pattern(["a.tar"])
    assert not is_shard_pattern(None)


# ---- indexing and reading one archive -------------------------------------------------------------------


def test_index_finds_the_image_members_and_reads_them_at_their_offsets(tmp_path):
    members = {"k0/a.jpg": _blob(0, 1000), "k0/a.cls": b"7", "k0/a.json": b"{}", "k1": None,
               "k1/B.PNG": _blob(1, 512), "k1/c.webp": b"", "k1/d.tiff": _blob(2, 3000), "readme.txt": b"hi",
               "k2/e.jpeg": _blob(3, 1)}
    path = _tar(tmp_path / "s.tar", members)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole archive says nothing
        index = index_tar(path)
    assert [m.name for m in index] == ["k0/a.jpg", "k1/B.PNG", "k1/c.webp", "k1/d.tiff", "k2/e.jpeg"]
    reference = _tarfile_reads(path)
    with tarfile.open(path) as archive:
        assert [(m.offset, m.size) for m in index] == [(archive.getmember(m.name).offset_data,
                                                       archive.getmember(m.name).size) for m in index]
    for member in index:
        assert read_member(path, member.offset, member.size) == reference[member.name] == members[member.name]
    fd = os.open(path, os.O_RDONLY)  # an open descriptor works too, and stays open
    try:
        assert read_member(fd, index[3].offset, index[3].size) == members["k1/d.tiff"]
        os.fstat(fd)
    finally:
        os.close(fd)


def test_every_image_suffix_counts_in_any_case(tmp_path):
    names = [f"i{k}{suffix}" for k, suffix in enumerate([*IMAGE_SUFFIXES, *(s.upper() for s in IMAGE_SUFFIXES)])]
    path = _tar(tmp_path / "s.tar", {**{name: b"x" for name in names}, "i.gif": b"x", "i.png.json": b"x"})
    assert [m.name for m in index_tar(path)] == names


def test_links_are_not_image_members(tmp_path):
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo("real.png")
        info.size = 5
        archive.addfile(info, io.BytesIO(b"12345"))
        link = tarfile.TarInfo("link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "real.png"
        archive.addfile(link)
    assert index_tar(path) == [TarMember("real.png", 512, 5)]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["gnu-longname", "pax"])
def test_long_names_are_read_whole(tmp_path, fmt):
    members = {LONG_FOLDER + f"image_{k}_with_a_name_long_enough.png": _blob(k, 700 + k) for k in range(3)}
    members["short.jpg"] = _blob(9, 100)
    assert all(len(name) > 100 for name in list(members)[:3])
    path = _tar(tmp_path / "long.tar", members, fmt)
    index = index_tar(path)
    assert [m.name for m in index] == list(members)
    reference = _tarfile_reads(path)
    for member in index:
        assert read_member(path, member.offset, member.size) == reference[member.name] == members[member.name]


@pytest.mark.parametrize("compress", ["gz", "bz2", "xz"])
def test_a_compressed_tar_is_refused(tmp_path, compress):
    plain = _tar(tmp_path / "plain.tar", {"a.png": _blob(0, 2000)})
    path = tmp_path / f"s.tar.{compress}"
    with tarfile.open(path, f"w:{compress}") as archive:
        archive.add(plain, "a.png")
    with pytest.raises(DataLayoutError) as error:
        index_tar(path)
    message = _one_line(error)
    assert "uncompressed" in message and {"gz": "gzip", "bz2": "bzip2", "xz": "xz"}[compress] in message


def test_zstd_and_raw_compressed_streams_are_refused(tmp_path):
    plain = _tar(tmp_path / "plain.tar", {"a.png": _blob(0, 2000)}).read_bytes()
    for kind, data in [("zstd", b"\x28\xb5\x2f\xfd" + bytes(600)), ("gzip", gzip.compress(plain)),
                       ("bzip2", bz2.compress(plain)), ("xz", lzma.compress(plain))]:
        path = tmp_path / f"{kind}.tar"
        path.write_bytes(data)
        with pytest.raises(DataLayoutError, match=f"a {kind}-compressed tar"):
            index_tar(path)


def test_a_member_named_like_a_magic_number_is_still_a_tar(tmp_path):
    members = {"BZh91AY&SY.png": _blob(0, 10), "\x1f\x8b.png": _blob(1, 10)}
    path = _tar(tmp_path / "s.tar", members)
    assert [m.name for m in index_tar(path)] == list(members)


def _four_members(tmp_path) -> tuple[Path, dict, list[TarMember]]:
    members = {f"img{k}.png": _blob(k, 1500 + 100 * k) for k in range(4)}
    path = _tar(tmp_path / "whole.tar", members)
    return path, members, index_tar(path)


@pytest.mark.parametrize("cut", ["in data", "in a header", "at a member's end", "in the end blocks"])
def test_a_truncated_archive_keeps_its_whole_members_with_a_warning(tmp_path, cut):
    path, members, whole = _four_members(tmp_path)
    third = whole[2]
    length = {"in data": third.offset + 700, "in a header": third.offset - 200,
              "at a member's end": whole[3].offset + 2048, "in the end blocks": whole[3].offset + 2048 + 100}[cut]
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(path.read_bytes()[:length])
    kept = {"in data": 2, "in a header": 2, "at a member's end": 4, "in the end blocks": 4}[cut]
    with pytest.warns(RuntimeWarning, match=f"damaged tar archive .*kept the {kept} image members") as caught:
        index = index_tar(damaged)
    assert len([w for w in caught if issubclass(w.category, RuntimeWarning)]) == 1
    if cut == "in data":
        assert "1 image members cut off" in str(caught[0].message)
    assert index == whole[:kept]
    for member in index:
        assert read_member(damaged, member.offset, member.size) == members[member.name]


def test_a_damaged_header_in_the_middle_keeps_what_comes_before(tmp_path):
    path, members, whole = _four_members(tmp_path)
    data = bytearray(path.read_bytes())
    header = whole[2].offset - 512
    data[header : header + 512] = _blob(7, 512)  # garbage: its checksum does not match
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match=f"does not parse at byte {header:,}"):
        assert index_tar(damaged) == whole[:2]


def test_reading_a_member_the_file_no_longer_holds_is_an_oserror(tmp_path):
    path, _, whole = _four_members(tmp_path)
    last = whole[-1]
    os.truncate(path, last.offset + 10)
    assert read_member(path, last.offset, 10) == _blob(3, 1800)[:10]
    with pytest.raises(OSError, match=f"only 10 of the {last.size} bytes"):
        read_member(path, last.offset, last.size)
    assert read_member(path, 0, 0) == b""


@pytest.mark.parametrize("content", [b"", b"just some text\n", _blob(0, 4096), b"\x00" * 100])
def test_a_file_that_is_not_a_tar_is_a_one_line_error(tmp_path, content):
    path = tmp_path / "not.tar"
    path.write_bytes(content)
    with pytest.raises(DataLayoutError) as error:
        index_tar(path)
    assert "not a tar archive" in _one_line(error)


def test_a_missing_shard_is_a_one_line_error(tmp_path):
    with pytest.raises(DataLayoutError) as error:
        index_tar(tmp_path / "gone.tar")
    assert "cannot read" in _one_line(error)


def test_an_empty_archive_has_no_members(tmp_path):
    assert index_tar(_tar(tmp_path / "empty.tar", {})) == []


# ---- writing shards -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [("1GB", 10**9), ("500MB", 500 * 10**6), ("64KiB", 65536), ("1e9", 10**9),
                                            ("123456", 123456), ("2kB", 2000), ("2KB", 2000), ("1.5MiB", 3 * 2**19),
                                            ("3GiB", 3 * 2**30), ("7 MB", 7 * 10**6), ("10B", 10), ("2.5e3", 2500)])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-5MB", "1G", "1 GBs", "MB", "1e", "nan", "inf", "0.1", "1,000", "1.2.3MB"])
def test_a_bad_size_is_a_one_line_error(text):
    with pytest.raises(ConfigError) as error:
        parse_size(text)
    assert _one_line(error).startswith(f"--size {text}:")


@pytest.mark.parametrize("relative, expected", [("a.jpg", "a.jpg"), ("n01/x_1.JPEG", "n01/x_1.jpeg"),
                                                ("v1.2/img.final.PNG", "v1.2/img_final.png"),
                                                (".hidden.png", "_hidden.png"), ("a/b/c.tif", "a/b/c.tif")])
def test_member_names_follow_the_webdataset_layout(relative, expected):
    assert member_name(relative) == expected


def _shard_contents(paths) -> list[tuple[str, bytes]]:
    """(name, bytes) of every member of every shard, in order, read by tarfile."""
    return [item for path in paths for item in _tarfile_reads(path).items()]


def test_shards_hold_every_image_in_order_byte_for_byte_and_within_the_size(tree, tmp_path):
    images = find_training_images(tree)
    limit = 12 * 1024
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every image fits: no warning
        paths = write_shards(tree, tmp_path / "out", limit)
    assert len(paths) > 2
    assert paths == [tmp_path / "out" / f"train-{i:04d}.tar" for i in range(len(paths))]
    assert all(p.stat().st_size <= limit for p in paths)
    assert sorted(os.listdir(tmp_path / "out")) == [p.name for p in paths]  # no temporary files left
    expected_names = [member_name(p.relative_to(tree).as_posix()) for p in images]
    assert "n01/b.jpeg" in expected_names and "n02/e_v2.jpg" in expected_names
    contents = _shard_contents(paths)
    assert [name for name, _ in contents] == expected_names
    assert [data for _, data in contents] == [p.read_bytes() for p in images]
    indexed = [(path, m) for path in paths for m in index_tar(path)]
    assert [m.name for _, m in indexed] == expected_names
    for (path, member), image in zip(indexed, images):
        data = read_member(path, member.offset, member.size)
        assert data == image.read_bytes()
        np.testing.assert_array_equal(read_image(member.name, data=data), read_image(image))
    # Shards are filled: a shard with the next one's first image would be over the limit, as tarfile writes it.
    for before, after in zip(paths, paths[1:]):
        grown = [*_tarfile_reads(before).items(), next(iter(_tarfile_reads(after).items()))]
        assert _tar_bytes(grown) > limit
    assert expand_shard_pattern(data_argument(paths)) == paths


def test_long_nested_names_round_trip(tree, tmp_path):
    (path,) = write_shards(tree, tmp_path / "out", 10**9, prefix="long")
    name = member_name(LONG_FOLDER + "deep_image_with_a_long_name.png")
    assert len(name) > 100
    member = next(m for m in index_tar(path) if m.name == name)
    original = tree / LONG_FOLDER / "deep_image_with_a_long_name.png"
    assert read_member(path, member.offset, member.size) == original.read_bytes()
    assert path.name == "long-0000.tar"


def test_members_carry_no_metadata_of_the_files_and_shards_are_reproducible(tree, tmp_path):
    first = write_shards(tree, tmp_path / "one", 16 * 1024)
    for k, image in enumerate(find_training_images(tree)):
        os.utime(image, (10**9 + k, 10**9 + k))
        image.chmod(0o600)
    second = write_shards(tree, tmp_path / "two", 16 * 1024)
    assert [p.name for p in first] == [p.name for p in second]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    with tarfile.open(first[0]) as archive:
        for info in archive.getmembers():
            assert (info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname) == (0, 0o644, 0, 0, "", "")
            assert info.type == tarfile.REGTYPE


def test_an_image_larger_than_the_size_gets_a_shard_of_its_own(tmp_path):
    root = tmp_path / "images"
    small = [write_image(root / f"s{k}.png", _pixels(k, 8, 8)) for k in range(3)]
    big = write_image(root / "s1_big.png", _pixels(99, 120, 120))  # ~43 kB of noise: sorted between s1 and s2
    limit = 20 * 1024
    assert big.stat().st_size > limit
    with pytest.warns(RuntimeWarning, match="1 images do not fit in a shard of 20,480 bytes even alone") as caught:
        paths = write_shards(root, tmp_path / "out", limit)
    assert "s1_big.png" in str(caught[0].message)
    assert [list(_tarfile_reads(p)) for p in paths] == [["s0.png", "s1.png"], ["s1_big.png"], ["s2.png"]]
    assert [p.stat().st_size <= limit for p in paths] == [True, False, True]
    assert _tarfile_reads(paths[1])["s1_big.png"] == big.read_bytes()
    in_order = [*small[:2], big, small[2]]
    assert [d for p in paths for d in _tarfile_reads(p).values()] == [p.read_bytes() for p in in_order]


@pytest.mark.parametrize("names", [["x.jpg", "x.png"], ["a.b.jpg", "a_b.jpg"], ["k/x.JPG", "k/x.png"]])
def test_two_images_of_one_key_are_an_error_naming_both(tmp_path, names):
    root = tmp_path / "images"
    for k, name in enumerate(names):
        write_image(root / name, _pixels(k))
    with pytest.raises(DataLayoutError) as error:
        write_shards(root, tmp_path / "out", 10**6)
    message = _one_line(error)
    assert all(name in message for name in names)
    assert not (tmp_path / "out").exists()


def test_existing_shards_are_never_overwritten(tree, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "train-0003.tar"
    mine.write_bytes(b"the user's own file")
    with pytest.raises(ConfigError) as error:
        write_shards(tree, out, 10**6)
    assert "train-0003.tar" in _one_line(error)
    assert mine.read_bytes() == b"the user's own file"
    assert sorted(os.listdir(out)) == ["train-0003.tar"]
    assert [p.name for p in write_shards(tree, out, 10**6, prefix="val")] == ["val-0000.tar"]  # another prefix: fine


def test_a_run_stopped_midway_leaves_only_whole_shards(tree, tmp_path, monkeypatch):
    full = [list(_tarfile_reads(p)) for p in write_shards(tree, tmp_path / "full", 12 * 1024)]
    assert len(full[0]) < 5 < len(full[0]) + len(full[1])  # the stop below falls in the second shard
    original, added = tarfile.TarFile.addfile, []

    def stop_at_the_fifth(self, info, fileobj=None, **kw):
        if len(added) == 4:
            raise KeyboardInterrupt  # as a run killed while writing its fifth image
        added.append(info.name)
        return original(self, info, fileobj, **kw)

    monkeypatch.setattr(tarfile.TarFile, "addfile", stop_at_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        write_shards(tree, tmp_path / "out", 12 * 1024)
    monkeypatch.undo()
    assert os.listdir(tmp_path / "out") == ["train-0000.tar"]  # no half shard, no temporary file
    assert list(_tarfile_reads(tmp_path / "out" / "train-0000.tar")) == full[0] == added[: len(full[0])]


def test_shard_names_grow_past_four_digits_only_when_needed():
    assert shard_names("o", "t", 1) == [Path("o/t-0000.tar")]
    assert shard_names("o", "t", 10000)[-1] == Path("o/t-9999.tar")
    many = shard_names("o", "t", 10001)
    assert many[0] == Path("o/t-00000.tar") and many[-1] == Path("o/t-10000.tar")
    assert data_argument(many) == "o/t-{00000..10000}.tar"


@pytest.mark.parametrize("prefix", ["", "a/b", "x{1}", "a,b"])
def test_a_prefix_that_would_break_the_pattern_is_refused(tree, tmp_path, prefix):
    with pytest.raises(ConfigError):
        write_shards(tree, tmp_path / "out", 10**6, prefix=prefix)


def test_the_command_line_end_to_end(tree, tmp_path):
    env = {**os.environ, "IPT_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    commands = {"ok": ["images", "shards", "--size", "12KiB"],
                "missing": ["no_such_folder", "shards2", "--size", "1GB"],
                "bad size": ["images", "shards3", "--size", "1G"]}
    runs = {what: subprocess.Popen([sys.executable, "-m", "ipt.data.shard", *args], cwd=tmp_path, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for what, args in commands.items()}  # side by side: each start loads torch
    results = {what: (*run.communicate(timeout=120), run.returncode) for what, run in runs.items()}

    out, err, status = results["ok"]
    assert status == 0, err
    shards = sorted((tmp_path / "shards").glob("train-*.tar"))
    last = len(shards) - 1
    images = find_training_images(tree)
    total = sum(p.stat().st_size for p in shards)
    assert out.splitlines() == [f"{len(images)} images in {len(shards)} shards, {total:,} bytes: train with --data "
                                f"'shards/train-{{0000..{last:04d}}}.tar'"]
    assert expand_shard_pattern(str(tmp_path / f"shards/train-{{0000..{last:04d}}}.tar")) == shards
    assert [d for p in shards for d in _tarfile_reads(p).values()] == [p.read_bytes() for p in images]

    for what, needle in [("missing", "no_such_folder: no such folder"), ("bad size", "--size 1G:")]:
        out, err, status = results[what]
        assert status == 2 and out == ""
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err
    assert not (tmp_path / "shards2").exists() and not (tmp_path / "shards3").exists()
