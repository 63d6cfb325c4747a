"""Image files: every kind of image comes back as RGB uint8; broken files are a clear error."""

import numpy as np
import pytest
from PIL import Image

from ipt.data.images import UnreadableImageError, list_images, read_image, to_rgb_uint8, write_image
from ipt.data.folders import DataLayoutError
from ipt.errors import ConfigError, IPTError
from ipt.data.samples import SAMPLE_NAMES, sample_image, sample_images_dir

from images import photo

RGB = photo("chelsea")[:40, :50]


def _save(tmp_path, name, array, mode=None, **kw):
    path = tmp_path / name
    img = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    img.save(path, **kw)
    return path


def test_rgb_png_roundtrip(tmp_path):
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "a.png", RGB)), RGB)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16"])
def test_other_modes_become_rgb_uint8(tmp_path, mode):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    if mode == "I;16":
        path = tmp_path / "deep.png"
        Image.fromarray((RGB[..., 0].astype(np.uint16) * 257)).save(path)
    else:
        path = _save(tmp_path, f"img{suffix}", RGB, mode)
    out = read_image(path)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    if mode in ("L", "I;16", "LA"):
        assert (out[..., 0] == out[..., 1]).all()
        reference = np.asarray(Image.fromarray(RGB).convert("L"))
        np.testing.assert_array_equal(out[..., 0], RGB[..., 0] if mode == "I;16" else reference)
    if mode == "RGBA":
        np.testing.assert_array_equal(out, RGB)


def test_palette_indices_are_looked_up_in_the_palette(tmp_path):
    palette = np.array([[255, 0, 0], [0, 128, 255], [17, 34, 51], [250, 250, 0]], dtype=np.uint8)
    indices = np.random.default_rng(0).integers(0, len(palette), size=(30, 20)).astype(np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette.ravel().tolist())
    image.save(tmp_path / "palette.png")
    with Image.open(tmp_path / "palette.png") as saved:
        assert saved.mode == "P"  # the file really holds indices and a palette
    np.testing.assert_array_equal(read_image(tmp_path / "palette.png"), palette[indices])


def test_arrays_of_any_type():
    assert to_rgb_uint8(np.ones((4, 5), dtype=np.float32)).max() == 255  # floats in [0, 1]
    assert to_rgb_uint8(np.full((4, 5, 3), 70000, dtype=np.int32)).max() == 255
    assert to_rgb_uint8(np.zeros((3, 4, 5), dtype=np.uint8)).shape == (4, 5, 3)  # channels first
    with pytest.raises(UnreadableImageError, match="not an image of shape"):
        to_rgb_uint8(np.zeros((5, 6, 7)))


def test_broken_files_are_clear_errors(tmp_path):
    truncated = tmp_path / "truncated.jpg"
    full = _save(tmp_path, "full.jpg", photo("astronaut"), quality=90).read_bytes()
    truncated.write_bytes(full[: len(full) // 3])
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    for path in (truncated, not_image, tmp_path / "missing.png"):
        with pytest.raises(UnreadableImageError, match=path.name):
            read_image(path)


def test_list_images(tmp_path):
    for name in ("b.png", "a.JPG", "c.txt", "sub/d.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.JPG", "b.png", "d.png"]
    with pytest.raises(DataLayoutError, match="no such folder"):
        list_images(tmp_path / "nope")


def test_image_errors_are_the_toolkits_user_facing_errors(tmp_path):
    for error in (UnreadableImageError, DataLayoutError):
        assert issubclass(error, IPTError) and issubclass(error, ValueError)  # ValueError: code that caught it still does
    with pytest.raises(ConfigError, match="unknown image file extension '.xyz'"):
        write_image(tmp_path / "out.xyz", RGB)
    assert not (tmp_path / "out.xyz").exists()


def test_sample_images_come_in_two_disjoint_splits(tmp_path):
    from ipt.data.samples import SAMPLE_SPLITS, TRAINING_SAMPLES, VALIDATION_SAMPLES

    assert not set(TRAINING_SAMPLES) & set(VALIDATION_SAMPLES)
    assert sorted(TRAINING_SAMPLES + VALIDATION_SAMPLES) == sorted(SAMPLE_NAMES)
    folders = {split: sample_images_dir(tmp_path / "samples", split=split) for split in SAMPLE_SPLITS}
    assert folders["train"] != folders["validation"]
    for split, folder in folders.items():
        files = list_images(folder)
        assert [p.stem for p in files] == sorted(SAMPLE_SPLITS[split])
        for path in files:
            image = read_image(path)
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.std() > 10
    np.testing.assert_array_equal(read_image(folders["validation"] / "astronaut.png"), sample_image("astronaut"))
    camera = read_image(folders["validation"] / "camera.png")  # a grey photograph, as three equal channels
    assert (camera[..., 0] == camera[..., 1]).all() and (camera[..., 1] == camera[..., 2]).all()
    from skimage import data

    np.testing.assert_array_equal(camera[..., 0], data.camera())
    with pytest.raises(ConfigError, match="unknown sample split 'test'"):
        sample_images_dir(tmp_path / "samples", split="test")
