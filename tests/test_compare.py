"""ipt.compare: the window with the most detail, and comparison pictures of equal, aligned panels."""

import numpy as np
import pytest

from ipt.compare import GAP, compare_panels, comparison, detail_window
from ipt.errors import ConfigError
from ipt.tasks import get_task


def flat_with_texture(shape, squares):
    """A flat grey image with random texture pasted at each (top, left, side, amplitude)."""
    rng = np.random.default_rng(0)
    image = np.full((*shape, 3), 128, dtype=np.uint8)
    for top, left, side, amplitude in squares:
        noise = rng.integers(-amplitude, amplitude + 1, (side, side, 3))
        image[top:top + side, left:left + side] = np.clip(128 + noise, 0, 255)
    return image


@pytest.mark.parametrize("shape, square, size, expected", [
    ((120, 150), (37, 61, 40), 24, None),  # off the stride grid: any window inside the square
    ((100, 130), (68, 98, 32), 32, (68, 98)),  # the bottom-right corner, beyond the last stride step
])
def test_detail_window_lies_on_the_textured_square(shape, square, size, expected):
    top, left, side = square
    # A weaker texture elsewhere must lose to the strong one.
    image = flat_with_texture(shape, [(top, left, side, 100), (2, 2, side, 10)])
    found = detail_window(image, size)
    if expected is not None:
        assert found == expected
    assert top <= found[0] and found[0] + size <= top + side, found
    assert left <= found[1] and found[1] + size <= left + side, found
    assert detail_window(image, size) == found  # deterministic


@pytest.mark.parametrize("axis", [0, 1])
def test_detail_window_counts_differences_along_both_axes(axis):
    # Stripes that vary along one axis only must beat a weaker texture that varies along both.
    image = flat_with_texture((96, 96), [(4, 4, 32, 20)])
    stripes = np.where(np.arange(32) % 2, 200, 50).astype(np.uint8)
    image[56:88, 56:88] = (stripes[:, None, None] if axis == 0 else stripes[None, :, None])
    assert detail_window(image, 32) == (56, 56)


def test_detail_window_larger_than_the_image_is_the_whole_image():
    assert detail_window(flat_with_texture((20, 30), [(5, 5, 10, 50)]), 64) == (0, 0)


def sr_set():
    """An x2 SR set of 60x80 panels whose target has its only detail at rows 30:50, columns 50:70."""
    rng = np.random.default_rng(1)
    lr = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    target = flat_with_texture((60, 80), [(30, 50, 20, 100)])
    model = flat_with_texture((60, 80), [(0, 0, 20, 120)])  # more detail, but not the reference
    model = model.astype(np.float64)
    model[30:40, 50:60], model[30:40, 60:70], model[40:50, 50:70] = 12.6, 300.0, -7.0
    bicubic = np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1).astype(np.float32) + 0.3
    return [("input", lr), ("bicubic", bicubic), ("model", model), ("target", target)]


def panel(picture, k, width):
    return picture[:, k * (width + GAP):k * (width + GAP) + width]


def test_sr_comparison_shows_the_same_window_of_equal_panels():
    lr = sr_set()[0][1]
    picture = comparison(sr_set(), crop=20, zoom=3, labels=False)
    assert picture.dtype == np.uint8 and picture.shape == (60, 4 * 60 + 3 * GAP, 3)
    for k in range(3):  # the gaps are white
        assert (picture[:, k * (60 + GAP) + 60:(k + 1) * (60 + GAP)] == 255).all()
    # The window is the target's textured square (30, 50); the input's pixels are repeated 2 x 3 times.
    rows, cols = np.arange(60), np.arange(60)
    expected = lr[(30 + rows // 3)[:, None] // 2, (50 + cols // 3)[None, :] // 2]
    np.testing.assert_array_equal(panel(picture, 0, 60), expected)
    np.testing.assert_array_equal(panel(picture, 3, 60)[::3, ::3], sr_set()[3][1][30:50, 50:70])
    # Floats are shown as round(clamp(x, 0, 255)).
    np.testing.assert_array_equal(panel(picture, 1, 60), expected)  # bicubic here: lr + 0.3
    model = panel(picture, 2, 60)
    assert (model[:30, :30] == 13).all() and (model[:30, 30:] == 255).all() and (model[30:] == 0).all()


def test_the_reference_is_the_target_else_the_last_panel():
    lr, _, model, target = (image for _, image in sr_set())
    model = np.clip(model, 0, 255)  # its detail: the texture at (0, 0)
    target_first = comparison([("input", lr), ("target", target), ("model", model)], crop=20, zoom=1, labels=False)
    np.testing.assert_array_equal(panel(target_first, 1, 20), target[30:50, 50:70])
    no_target = comparison([("input", lr), ("clean", target), ("model", model)], crop=20, zoom=1, labels=False)
    np.testing.assert_array_equal(panel(no_target, 2, 20), model[:20, :20])


def test_default_crop_and_zoom_and_labels():
    picture = comparison(sr_set())
    panel_side = 60 * (320 // 60)  # crop: the whole 60-px height; zoom: the most that stays within 320 px
    strip = picture.shape[0] - panel_side
    assert picture.shape[1] == 4 * panel_side + 3 * GAP and 8 < strip < 40
    for k in range(4):
        label = panel(picture, k, panel_side)[:strip]
        assert (label != 255).any(), k  # text is drawn...
        assert (label == 255).all(axis=-1).mean() > 0.5, k  # ...in black on a white strip
        assert (label.max(axis=-1) < 100).any() and (label == label[..., :1]).all(), k  # dark grey (anti-aliased)
    assert (picture[:, panel_side:panel_side + GAP] == 255).all()  # the gap runs through the strip too
    unlabelled = comparison(sr_set(), labels=False)
    np.testing.assert_array_equal(picture[strip:], unlabelled)


@pytest.mark.parametrize("size", [(45, 80), (30, 41), (120, 80)])
def test_sizes_that_are_not_integer_multiples_are_refused(size):
    panels = [("input", np.zeros((*size, 3), np.uint8)), ("model", np.zeros((60, 80, 3), np.uint8))]
    with pytest.raises(ConfigError, match="divided by an integer") as error:
        comparison(panels)
    assert "\n" not in str(error.value)


def test_compare_panels_shows_the_baseline_only_for_sr():
    lr, hr = np.zeros((4, 4, 3), np.uint8), np.ones((8, 8, 3), np.uint8)
    panels = compare_panels(get_task("sr2"), lr, hr + 1, hr + 2, hr)
    assert [label for label, _ in panels] == ["input", "bicubic", "model", "target"]
    assert [int(image.max()) for _, image in panels] == [0, 2, 3, 1]
    panels = compare_panels(get_task("noise30"), hr, hr, hr + 2)
    assert [label for label, _ in panels] == ["input", "model"]
