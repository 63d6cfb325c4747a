"""Inference on whole images: tiling, self-ensemble, and the one-call Restorer.

The model only takes inputs of one size, patch_size x patch_size (model.config.patch_size: 48 for the
paper's model), so images are cut into tiles of that side, every tile is restored, and the results are
put back together:

- mode "official": the official PyTorch evaluation (forward_chop). Tiles at stride patch_size/4 over the
  largest grid that fits; from each tile only the centre (a patch_size/4 margin dropped on every side)
  is kept and overlapping centres are averaged (each interior pixel comes from 4 tiles); the outer bands
  come from strips of tiles along the image edges, and the last rows and columns from strips aligned to
  the image's end, spliced in where the official code splices them. About 16 tile evaluations per tile
  area.
- mode "fast": tiles at stride patch_size - overlap (overlap patch_size/4 by default: 12 px for the
  paper's 48) with trapezoidal blending weights, normalised by their sum: no seams, about 8x fewer tiles
  than "official".

Tiles run tile_batch at a time, so memory stays bounded whatever the image size. Images smaller than a
tile are padded by mirroring and the result cropped.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .data.images import list_images, read_image
from .deprecation import renamed_keyword
from .devices import resolve_device
from .errors import ConfigError
from .metrics import quantize  # noqa: F401  (the output quantisation; also ipt.inference.quantize)
from .model import load_model
from .model.config import IPTConfig
from .outputs import OutputPlan, plan_outputs, write_output
from .ops.reference import mirror_index
from .tasks import get_task

ModelFn = Callable[[torch.Tensor], torch.Tensor]  # (N, C, p, p) -> (N, C, p*s, p*s), p = patch_size

MODES = ("official", "fast")


def _mirror_pad(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Pads H and W up to patch_size by mirroring with the edge pixel repeated (also when far too small)."""
    h, w = x.shape[-2:]
    if h >= patch_size and w >= patch_size:
        return x
    rows = mirror_index(torch.arange(max(h, patch_size)), h).to(x.device)
    cols = mirror_index(torch.arange(max(w, patch_size)), w).to(x.device)
    return x[..., rows[:, None], cols[None, :]]


def _run_tiles(model_fn: ModelFn, x: torch.Tensor, origins: list[tuple[int, int]], patch_size: int,
               tile_batch: int, progress) -> dict:
    """Restores the tiles of x (C, H, W) at the given (row, col) origins; returns origin -> output."""
    outputs = {}
    batches = range(0, len(origins), tile_batch)
    for start in progress(batches) if progress else batches:
        chunk = origins[start : start + tile_batch]
        tiles = torch.stack([x[:, r : r + patch_size, c : c + patch_size] for r, c in chunk])
        for origin, out in zip(chunk, model_fn(tiles).float().cpu()):  # assembled on the CPU
            outputs[origin] = out
    return outputs


def _axis_positions(length: int, patch_size: int, stride: int) -> list[int]:
    """Tile origins along an axis: every `stride` up to the last full tile, plus one flush with the end."""
    return sorted(set(range(0, length - patch_size + 1, stride)) | {length - patch_size})


def _official(model_fn: ModelFn, x: torch.Tensor, scale: int, patch_size: int, tile_batch: int,
              progress) -> torch.Tensor:
    c, h, w = x.shape
    p = patch_size
    step = p // 4  # stride, and the margin dropped from every side of a tile (12 for the paper's 48)
    h_cut, w_cut = (h - p) % step, (w - p) % step
    hc, wc = h - h_cut, w - w_cut  # the main grid covers [0, hc) x [0, wc)
    rows, cols = list(range(0, hc - p + 1, step)), list(range(0, wc - p + 1, step))
    bottom, right = h - p, w - p
    origins = sorted({(r, q) for r in rows for q in cols} | {(bottom, q) for q in cols} | {(r, right) for r in rows}
                     | {(bottom, right)})
    out = _run_tiles(model_fn, x, origins, p, tile_batch, progress)
    s, t, m = scale, p * scale, step * scale  # output units

    def strip(origins_along: list[tuple[int, int]], along_rows: bool, length: int) -> torch.Tensor:
        """A strip of tiles along one axis: single tiles at its two ends, averaged tile centres between."""
        shape = (c, length * s, t) if along_rows else (c, t, length * s)
        acc, count = torch.zeros(shape), torch.zeros(shape[1:])
        for k, origin in enumerate(origins_along):
            offset = (origin[0] if along_rows else origin[1]) * s
            y = out[origin]
            first, last = k == 0, k == len(origins_along) - 1
            lo = 0 if first else m
            hi = t if last else t - m
            index = slice(offset + lo, offset + hi)
            part = y[:, lo:hi, :] if along_rows else y[:, :, lo:hi]
            if along_rows:
                acc[:, index, :] += part
                count[index, :] += 1
            else:
                acc[:, :, index] += part
                count[:, index] += 1
        return acc / count

    # The main canvas: averaged tile centres inside a margin m, the top band from the first row of tiles,
    # the left band from the first column (written last, as the official code does).
    canvas = torch.zeros(c, hc * s, wc * s)
    centre_sum, centre_count = torch.zeros_like(canvas), torch.zeros(hc * s, wc * s)
    for r in rows:
        for q in cols:
            centre_sum[:, r * s + m : r * s + t - m, q * s + m : q * s + t - m] += out[(r, q)][:, m : t - m, m : t - m]
            centre_count[r * s + m : r * s + t - m, q * s + m : q * s + t - m] += 1
    canvas[:, :t, :] = strip([(0, q) for q in cols], along_rows=False, length=wc)
    canvas[:, :, :t] = strip([(r, 0) for r in rows], along_rows=True, length=hc)
    inner = (slice(None), slice(m, hc * s - m), slice(m, wc * s - m))
    canvas[inner] = centre_sum[inner] / centre_count[inner[1:]]

    # Splice in the end strips: rows from keep_h on come from the strip flush with the bottom, columns
    # from keep_w on from the strip flush with the right edge, and the corner from the last tile.
    keep_h, keep_w = hc * s - int((p - h_cut) / 2 * s), wc * s - int((p - w_cut) / 2 * s)
    result = torch.empty(c, h * s, w * s)
    result[:, :keep_h, :keep_w] = canvas[:, :keep_h, :keep_w]
    bottom_strip = strip([(bottom, q) for q in cols], along_rows=False, length=wc)
    right_strip = strip([(r, right) for r in rows], along_rows=True, length=hc)
    result[:, keep_h:, :keep_w] = bottom_strip[:, keep_h - bottom * s :, :keep_w]
    result[:, :keep_h, keep_w:] = right_strip[:, :keep_h, keep_w - right * s :]
    result[:, keep_h:, keep_w:] = out[(bottom, right)][:, keep_h - bottom * s :, keep_w - right * s :]
    return result


def _blend_window(length: int, ramp: int) -> torch.Tensor:
    """Trapezoid: rises over `ramp` pixels at each end, 1 in between, never 0."""
    t = torch.arange(length, dtype=torch.float32) + 0.5
    return torch.minimum(torch.ones(length), torch.minimum(t, length - t) / max(ramp, 1))


def _fast(model_fn: ModelFn, x: torch.Tensor, scale: int, patch_size: int, tile_batch: int, progress, overlap: int):
    c, h, w = x.shape
    stride = patch_size - overlap
    origins = [(r, q) for r in _axis_positions(h, patch_size, stride) for q in _axis_positions(w, patch_size, stride)]
    out = _run_tiles(model_fn, x, origins, patch_size, tile_batch, progress)
    t = patch_size * scale
    window = _blend_window(t, overlap * scale)
    weight = window[:, None] * window[None, :]
    acc, total = torch.zeros(c, h * scale, w * scale), torch.zeros(h * scale, w * scale)
    for (r, q), y in out.items():
        acc[:, r * scale : r * scale + t, q * scale : q * scale + t] += y * weight
        total[r * scale : r * scale + t, q * scale : q * scale + t] += weight
    return acc / total


def _check_tiling(mode: str, tile_batch: int) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown tiling mode {mode!r}; choose one of {MODES}")
    if isinstance(tile_batch, bool) or not isinstance(tile_batch, int) or tile_batch < 1:
        raise ConfigError(f"tile_batch must be an integer >= 1, got {tile_batch!r}")


@renamed_keyword("tile", "patch_size", hint="model.config.patch_size")
def tiled_forward(model_fn: ModelFn, x: torch.Tensor, scale: int, *, patch_size: int = IPTConfig.patch_size,
                  mode: str = "fast", tile_batch: int = 64, overlap: int | None = None,
                  progress: bool | None = None) -> torch.Tensor:
    """Restores images of any size with a model that takes patch_size x patch_size inputs (pass the
    model's: model.config.patch_size; the default is the paper's).

    x: (B, C, H, W) or (C, H, W) float on the model's device. Returns float32 (…, H*scale, W*scale) on
    x's device. progress: a progress bar on stderr (None: when there are many tiles and stderr is a
    terminal). tile=: the deprecated name of patch_size.
    """
    _check_tiling(mode, tile_batch)
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ConfigError(f"patch_size must be an integer >= 1, got {patch_size!r}")
    if mode == "official" and patch_size % 4:
        raise ConfigError(f"official tiling needs a patch_size divisible by 4, got {patch_size}")
    overlap = patch_size // 4 if overlap is None else overlap
    if mode == "fast" and not 0 < overlap < patch_size:
        raise ConfigError(f"overlap must be in (0, {patch_size}) for tiles of {patch_size} px, got {overlap}")
    single = x.dim() == 3
    batch = x[None] if single else x
    if batch.dim() != 4:
        raise ValueError(f"expected (C, H, W) or (B, C, H, W) images, got shape {list(x.shape)}")
    h, w = batch.shape[-2:]
    padded = _mirror_pad(batch, patch_size)
    stride = patch_size // 4 if mode == "official" else patch_size - overlap
    bar = _progress_bar(progress, padded.shape[-2:], stride, mode, tile_batch)
    results = []
    with torch.no_grad():
        for image in padded:
            if mode == "official":
                y = _official(model_fn, image, scale, patch_size, tile_batch, bar)
            else:
                y = _fast(model_fn, image, scale, patch_size, tile_batch, bar, overlap)
            results.append(y[:, : h * scale, : w * scale])
    out = torch.stack(results).to(x.device)
    return out[0] if single else out


def _progress_bar(progress, size, stride, mode, tile_batch):
    tiles = (size[0] // stride + 1) * (size[1] // stride + 1)  # roughly
    if progress is None:
        progress = sys.stderr.isatty() and tiles > 4 * tile_batch
    if not progress:
        return None
    from tqdm import tqdm

    return lambda batches: tqdm(batches, desc=f"tiles ({mode})", unit="batch", leave=False)


# --- self-ensemble ---------------------------------------------------------------------------------------------

# The 8 dihedral transforms as (flip W, flip H, transpose), applied in that order.
DIHEDRAL = [(fw, fh, tr) for tr in (False, True) for fh in (False, True) for fw in (False, True)]


def _transform(x, flip_w, flip_h, transpose):
    if flip_w:
        x = x.flip(-1)
    if flip_h:
        x = x.flip(-2)
    return x.transpose(-1, -2) if transpose else x


def _inverse(x, flip_w, flip_h, transpose):
    if transpose:
        x = x.transpose(-1, -2)
    if flip_h:
        x = x.flip(-2)
    return x.flip(-1) if flip_w else x


def restore(model_fn: ModelFn, x: torch.Tensor, scale: int, *, self_ensemble: bool = False, **tiling) -> torch.Tensor:
    """tiled_forward, optionally averaged over the 8 flips/transposes (each tiled, then inverted)."""
    if not self_ensemble:
        return tiled_forward(model_fn, x, scale, **tiling)
    outputs = [_inverse(tiled_forward(model_fn, _transform(x, *t), scale, **tiling), *t) for t in DIHEDRAL]
    return torch.stack(outputs).mean(0)


# --- the one-call API --------------------------------------------------------------------------------------------

PRECISIONS = ("fp32", "bf16")


def _check_options(mode: str, precision: str, tile_batch: int) -> None:
    """The Restorer's options, checked when it is made rather than at its first image."""
    _check_tiling(mode, tile_batch)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")


class Restorer:
    """Restores images with an IPT checkpoint in one call, like PaddleGAN's MPRPredictor:

        Restorer(task="sr2", weights="IPT_sr2.pt").run("photo.png")          # -> HxWx3 uint8 array
        Restorer(task="noise30", weights="ckpt.safetensors").run("in/", output="out/")

    weights: an official IPT file or a checkpoint of this toolkit. num_heads: the head count of an
    official-style file that is not the paper's layout (see IPT.load_official). mode: tiling ("fast" or
    "official"). precision: "fp32" or "bf16" (autocast). device: "cpu", "cuda", "cuda:1", ... (default
    CUDA when available; ipt.devices.resolve_device checks that it exists).
    """

    def __init__(self, task, weights, *, device=None, mode: str = "fast", self_ensemble: bool = False,
                 tile_batch: int = 64, precision: str = "fp32", progress: bool | None = None,
                 num_heads: int | None = None):
        if weights is None:
            raise ConfigError("Restorer needs weights: an official IPT file (e.g. IPT_sr2.pt) or a checkpoint made by "
                              "python -m ipt.finetune / ipt.pretrain; nothing is downloaded")
        _check_options(mode, precision, tile_batch)
        device = resolve_device(device)
        task = get_task(task)
        model = load_model(weights, task, num_heads=num_heads).to(device).eval()
        self._attach(model, task, mode, self_ensemble, tile_batch, precision, progress)

    @classmethod
    def from_model(cls, model, task, *, mode: str = "fast", self_ensemble: bool = False, tile_batch: int = 64,
                   precision: str = "fp32") -> "Restorer":
        """A Restorer around a model in memory (e.g. for validation during training), on its device."""
        _check_options(mode, precision, tile_batch)
        self = cls.__new__(cls)
        self._attach(model, get_task(task), mode, self_ensemble, tile_batch, precision, progress=False)
        return self

    def _attach(self, model, task, mode, self_ensemble, tile_batch, precision, progress) -> None:
        self.task, self.model = task, model
        self.device = next(model.parameters()).device
        self.task_index = model.task_index(task.name)
        self.tiling = dict(mode=mode, patch_size=model.config.patch_size, tile_batch=tile_batch, progress=progress)
        self.self_ensemble, self.precision = self_ensemble, precision

    def _model_fn(self, tiles: torch.Tensor) -> torch.Tensor:
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16"
                    else nullcontext())
        with autocast:
            return self.model(tiles, self.task_index).float()

    def restore(self, image) -> np.ndarray:
        """One image -> its restoration, (H*s, W*s, 3) uint8, s the task's scale.

        The layout is the container's, never guessed from the sizes: a numpy array is (H, W, C) or (H, W),
        as ipt.data.images.read_image returns it; a torch tensor is (C, H, W) or (H, W). C is 3 (RGB), 1
        (grey) or 4 (RGBA: the alpha is dropped); values in [0, 255]. Anything else is a ValueError."""
        x = _as_chw_float(image).to(self.device)
        y = restore(self._model_fn, x, self.task.scale, self_ensemble=self.self_ensemble, **self.tiling)
        return quantize(y).byte().permute(1, 2, 0).cpu().numpy()

    def run(self, image_or_path, output=None, *, overwrite: bool = False):
        """Restores an array, an image file, a folder of images or a list of files.

        Returns the restored array for an array or one file, a list of arrays otherwise. With `output`,
        results are also written there: a file name (.png, .jpg, ...) for an array or one file, a folder
        for a folder or a list (NAME.png each; NAME_EXT.png where inputs share a NAME, with a warning).
        Every output path is checked before the first image is restored (plan_outputs): none may be an
        input or another output, and an existing file is only replaced with overwrite=True."""
        if isinstance(image_or_path, (np.ndarray, torch.Tensor)):
            plan = self._plan(output, [], False, overwrite)
            result = self.restore(image_or_path)
            if plan is not None:
                write_output(plan.results[0], result)
            return result
        many = isinstance(image_or_path, (list, tuple)) or Path(image_or_path).is_dir()
        paths = ([Path(p) for p in image_or_path] if isinstance(image_or_path, (list, tuple))
                 else list_images(image_or_path) if many else [Path(image_or_path)])
        plan = self._plan(output, paths, many, overwrite)
        results = []
        for k, path in enumerate(paths):
            results.append(self.restore(read_image(path)))
            if plan is not None:
                write_output(plan.results[k], results[-1])
        return results if many else results[0]

    @staticmethod
    def _plan(output, inputs: list[Path], folder: bool, overwrite: bool) -> OutputPlan | None:
        """plan_outputs, named as the Python API names things, its notes as warnings; None without output."""
        if output is None:
            return None
        plan = plan_outputs(output, inputs, folder=folder, overwrite=overwrite, option="output",
                            overwrite_flag="overwrite=True")
        for note in plan.notes:
            warnings.warn(note, stacklevel=3)
        return plan


def _as_chw_float(image) -> torch.Tensor:
    """(3, H, W) float of an image in the layout Restorer.restore documents: numpy (H, W[, C]), torch
    (C, H, W) or (H, W). Sizes never decide the layout: a (3, 40, 3) array is 3 rows of 40 RGB pixels.
    Another layout is the calling code's bug (the tools pass read_image's arrays): a plain ValueError."""
    if isinstance(image, np.ndarray):
        t = torch.as_tensor(np.ascontiguousarray(image))
        t = t.permute(2, 0, 1) if t.dim() == 3 else t
        rule, other = "a numpy image is (H, W, C) or (H, W)", "channels first? pass torch.from_numpy(image)"
    elif isinstance(image, torch.Tensor):
        t = image
        rule, other = "a tensor image is (C, H, W) or (H, W)", "channels last? pass image.permute(2, 0, 1)"
    else:
        raise TypeError(f"an image is a numpy array or a torch tensor, not a {type(image).__name__}")
    t = t[None] if t.dim() == 2 else t
    if t.dim() != 3 or t.shape[0] not in (1, 3, 4) or 0 in t.shape:
        raise ValueError(f"{rule}, with C = 1, 3 or 4: got shape {list(image.shape)} ({other})")
    return t.expand(3, -1, -1).float() if t.shape[0] == 1 else t[:3].float()
