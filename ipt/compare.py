"""Comparison pictures a person can look at: the same detailed window of every panel (input, baseline,
model, target), enlarged by nearest neighbour so that pixels stay pixels, left to right under labels.

    panels = compare_panels(task, lr, bicubic, sr, hr)   # [("input", lr), ("bicubic", ...), ("model", sr), ("target", hr)]
    write_image("cmp.png", comparison(panels))           # the 160 px with the most detail, zoomed to ~320 px a panel
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import ConfigError
from .metrics import Y_WEIGHTS

GAP = 4  # white pixels between panels
DEFAULT_CROP = 160  # side of the window shown, in the largest panel's pixels
PANEL_WIDTH = 320  # the default zoom makes a panel at most this wide
LABEL_PAD = 3  # white pixels around a label's text
WHITE, BLACK = 255, 0


def _as_uint8(label: str, image) -> np.ndarray:
    """(h, w, 3) uint8; floats quantised as the metrics do: round(clamp(x, 0, 255))."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ConfigError(f"panel {label!r}: expected an (h, w, 3) image, got shape {a.shape}")
    return a if a.dtype == np.uint8 else np.clip(a, 0, 255).round().astype(np.uint8)


def _enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement: each pixel becomes a factor x factor block."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _to_common_size(panels: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """Every panel enlarged to the largest one's size. SR inputs are smaller by the scale; any other
    ratio (or a different one per axis) would show the panels misaligned, so it is refused."""
    height, width = max(p.shape[0] for _, p in panels), max(p.shape[1] for _, p in panels)
    resized = []
    for label, image in panels:
        h, w = image.shape[:2]
        factor = height // h
        if (h * factor, w * factor) != (height, width):
            raise ConfigError(f"panel {label!r} is {w}x{h}, not the largest panel's {width}x{height} divided by an integer")
        resized.append((label, _enlarge(image, factor)))
    return resized


def _luma(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) @ (np.array(Y_WEIGHTS) / 255.0)


def _window_sums(values: np.ndarray, height: int, width: int, tops: np.ndarray, lefts: np.ndarray) -> np.ndarray:
    """Sum of `values` over every height x width window at (tops x lefts), from one integral image."""
    integral = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
    integral[1:, 1:] = values.cumsum(0).cumsum(1)
    t, l = tops[:, None], lefts[None, :]
    return integral[t + height, l + width] - integral[t, l + width] - integral[t + height, l] + integral[t, l]


def _positions(extent: int, size: int, stride: int) -> np.ndarray:
    # The last position too, so that detail at the bottom or right edge can be found.
    return np.unique(np.r_[np.arange(0, extent - size + 1, stride), extent - size])


def detail_window(image: np.ndarray, size: int) -> tuple[int, int]:
    """(top, left) of the size x size window (clipped to the image) with the most detail: the largest sum
    of absolute horizontal and vertical luma differences inside it. Searched on a stride of size // 4;
    ties go to the top-most, then left-most window."""
    if size < 1:
        raise ConfigError(f"the comparison window must be at least 1 px, got {size}")
    luma = _luma(image)
    height, width = min(size, luma.shape[0]), min(size, luma.shape[1])
    stride = max(1, size // 4)
    tops, lefts = _positions(luma.shape[0], height, stride), _positions(luma.shape[1], width, stride)
    # Differences between neighbours that both lie in the window: (height) x (width - 1) horizontal ones
    # and (height - 1) x (width) vertical ones.
    detail = (_window_sums(np.abs(np.diff(luma, axis=1)), height, width - 1, tops, lefts)
              + _window_sums(np.abs(np.diff(luma, axis=0)), height - 1, width, tops, lefts))
    i, j = np.unravel_index(np.argmax(detail), detail.shape)  # argmax: the first maximum, so deterministic
    return int(tops[i]), int(lefts[j])


def _label_strip(label: str, width: int, font) -> np.ndarray:
    """A white strip, `width` wide, with the label in black (cut off where the panel ends). Its height
    fits any letter (ascenders and descenders), so the strips of all panels line up."""
    _, top, _, bottom = font.getbbox("Ag|y")
    strip = Image.new("RGB", (width, bottom - top + 2 * LABEL_PAD), (WHITE,) * 3)
    ImageDraw.Draw(strip).text((LABEL_PAD, LABEL_PAD - top), label, fill=(BLACK,) * 3, font=font)
    return np.asarray(strip)


def comparison(panels, *, crop: int | None = None, zoom: int | None = None, labels: bool = True) -> np.ndarray:
    """One (H, W, 3) uint8 picture of `panels` ([(label, (h, w, 3) image)], uint8 or float in [0, 255]):
    each enlarged (nearest) to the largest panel's size, the same crop x crop window of each -- the one
    with the most detail in the reference panel ("target" if there is one, else the last) -- enlarged
    `zoom` times (nearest), left to right with a 4-px white gap, under a white strip with the label.
    Defaults: crop min(160, panel size); zoom the largest integer keeping a panel at most 320 px wide."""
    if not panels:
        raise ConfigError("a comparison needs at least one panel")
    panels = _to_common_size([(label, _as_uint8(label, image)) for label, image in panels])
    height, width = panels[0][1].shape[:2]
    crop = min(DEFAULT_CROP, height, width) if crop is None else crop
    reference = next((image for label, image in panels if label == "target"), panels[-1][1])
    top, left = detail_window(reference, crop)
    crop_h, crop_w = min(crop, height), min(crop, width)
    zoom = max(1, PANEL_WIDTH // crop_w) if zoom is None else zoom
    if zoom < 1:
        raise ConfigError(f"the comparison zoom must be an integer >= 1, got {zoom}")
    crops = [_enlarge(image[top:top + crop_h, left:left + crop_w], zoom) for _, image in panels]
    if labels:
        font = ImageFont.load_default()
        crops = [np.concatenate([_label_strip(label, c.shape[1], font), c]) for (label, _), c in zip(panels, crops)]
    gap = np.full((crops[0].shape[0], GAP, 3), WHITE, dtype=np.uint8)
    columns = [part for c in crops for part in (gap, c)][1:]  # gap, panel, gap, panel, ... less the first gap
    return np.concatenate(columns, axis=1)


def compare_panels(task, input, baseline, output, target=None) -> list[tuple[str, np.ndarray]]:
    """The standard panels: the input, the task's baseline (only for SR: for denoising and deraining the
    baseline is the input itself, not worth showing twice), the model's result and, if given, the target."""
    panels = [("input", input)]
    if task.scale > 1:
        panels.append((task.baseline_name, baseline))
    panels.append(("model", output))
    if target is not None:
        panels.append(("target", target))
    return panels
