"""Validation stays held out: a validation image that is also a training image is found, by path or by
content, and fine-tuning refuses it unless asked."""

import shutil

import numpy as np

from ipt.data import load_image_pairs, load_training_images
from ipt.data.holdout import shared_images, training_files, validation_files
from ipt.data.images import write_image

from images import photo


def _write(folder, names, size=64):
    for name in names:
        write_image(folder / f"{name}.png", photo(name)[:size, :size])


def test_the_same_file_and_a_renamed_copy_are_shared_others_are_not(tmp_path):
    _write(tmp_path / "train", ["astronaut", "coffee", "chelsea"])
    _write(tmp_path / "val", ["rocket"])
    shutil.copy(tmp_path / "train" / "coffee.png", tmp_path / "val" / "renamed.png")
    # same size in bytes, other content: must not count
    image = photo("astronaut")[:64, :64].copy()
    image[0, 0] ^= 1
    write_image(tmp_path / "val" / "almost.png", image)
    data = load_training_images(tmp_path / "train", cache=None)
    val = validation_files(tmp_path / "val", scale=1) + [tmp_path / "train" / "chelsea.png"]
    shared = {(v.name, t.name) for v, t in shared_images(training_files(data), val)}
    assert shared == {("renamed.png", "coffee.png"), ("chelsea.png", "chelsea.png")}


def test_pairs_count_both_sides(tmp_path):
    clean = photo("coffee")[:64, :64]
    write_image(tmp_path / "pairs" / "target" / "a.png", clean)
    write_image(tmp_path / "pairs" / "input" / "a.png", (255 - clean).astype(np.uint8))
    data = load_image_pairs(tmp_path / "pairs", cache=None)
    assert len(training_files(data)) == 2
    write_image(tmp_path / "val" / "x.png", (255 - clean).astype(np.uint8))  # the training input, as a clean image
    assert [v.name for v, _ in shared_images(training_files(data), validation_files(tmp_path / "val", 1))] == ["x.png"]
