"""Inference on whole images: tiling, self-ensemble, and the one-call Restorer, for every model family
(ipt.families): the family says how to run a batch of tiles (restoration_fn) and which tiles its model
takes (tiling).

IPT only takes inputs of one size, patch_size x patch_size (model.config.patch_size: 48 for the paper's
model), so images are cut into tiles of that side, every tile is restored, and the results are put back
together:

- mode "official": the official PyTorch evaluation (forward_chop). Tiles at stride patch_size/4 over the
  largest grid that fits; from each tile only the centre (a patch_size/4 margin dropped on every side)
  is kept and overlapping centres are averaged (each interior pixel comes from 4 tiles); the outer bands
  come from strips of tiles along the image edges, and the last rows and columns from strips aligned to
  the image's end, spliced in where the official code splices them. About 16 tile evaluations per tile
  area.
- mode "fast": tiles at stride patch_size - overlap (overlap patch_size/4 by default: 12 px for the
  paper's 48) with trapezoidal blending weights, normalised by their sum: no seams, about 8x fewer tiles
  than "official".

Images smaller than an IPT tile are padded by mirroring and the result cropped.

MPRNet takes inputs of any size (whole=True in its tiling): tiles are only there to bound memory.
- mode "fast": an image that fits within one tile (side `tile`, 512 px by default) is restored whole, in
  one pass, exactly as untiled; a larger one is cut into tiles of that side at stride tile - overlap, the
  last flush with the image's end, blended as above. Tiles are never padded: in a dimension smaller than
  the tile, the tile takes the image's whole extent (rectangular tiles).
- mode "official": as the official MPRNet demo, each image whole in one pass (the network pads it to a
  multiple of 8 and crops back). Its memory grows with the image: on the CPU a 1024x1024 deblur peaks at
  7 GB (2 GB tiled), a 2048x2048 derain needs more than 10 GB (1.2 GB tiled).

Tiles run tile_batch at a time, so memory stays bounded by the tile size and tile_batch whatever the
image size (except MPRNet's "official" mode).
"""

from __future__ import annotations

import sys
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import devices
from .data.images import list_images, read_image
from .deprecation import renamed_keyword
from .devices import resolve_device
from .errors import ConfigError
from .metrics import quantize  # noqa: F401  (the output quantisation; also ipt.inference.quantize)
from .families import describe_family, family_of, get_family, load_model
from .model.config import IPTConfig
from .outputs import OutputPlan, plan_outputs, write_output
from .ops.reference import mirror_index
from .tasks import get_task

ModelFn = Callable[[torch.Tensor], torch.Tensor]  # tiles (N, C, h, w) -> (N, C, h*s, w*s); IPT: h = w = patch_size

MODES = ("official", "fast")


def _mirror_pad(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Pads H and W up to patch_size by mirroring with the edge pixel repeated (also when far too small)."""
    h, w = x.shape[-2:]
    if h >= patch_size and w >= patch_size:
        return x
    rows = mirror_index(torch.arange(max(h, patch_size)), h).to(x.device)
    cols = mirror_index(torch.arange(max(w, patch_size)), w).to(x.device)
    return x[..., rows[:, None], cols[None, :]]


def _run_tiles(model_fn: ModelFn, x: torch.Tensor, origins: list[tuple[int, int]], tile: tuple[int, int],
               tile_batch: int, progress):
    """Restores the tiles (rows x cols, tile = (rows, cols)) of x (C, H, W) at the given (row, col) origins,
    tile_batch at a time; yields (origin, output) in the order of `origins`, on the CPU (where images are
    assembled), so that only one batch of outputs is held at a time."""
    th, tw = tile
    batches = range(0, len(origins), tile_batch)
    for start in progress(batches) if progress else batches:
        chunk = origins[start : start + tile_batch]
        tiles = torch.stack([x[:, r : r + th, c : c + tw] for r, c in chunk])
        yield from zip(chunk, model_fn(tiles).float().cpu())


def _axis_positions(length: int, patch_size: int, stride: int) -> list[int]:
    """Tile origins along an axis: every `stride` up to the last full tile, plus one flush with the end."""
    if length <= patch_size:  # one tile spans the axis (whatever the stride)
        return [0]
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
    out = dict(_run_tiles(model_fn, x, origins, (p, p), tile_batch, progress))
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


def _axis_window(length: int, tiles: int, ramp: int) -> torch.Tensor:
    """The blending window of the tiles along one axis: flat where one tile spans the axis (nothing to
    blend with: its values are kept exactly), else the trapezoid."""
    return torch.ones(length) if tiles == 1 else _blend_window(length, ramp)


def _fast(model_fn: ModelFn, x: torch.Tensor, scale: int, tile: tuple[int, int], tile_batch: int, progress,
          overlap: int):
    """Blended tiles of tile = (rows, cols) covering x (C, H, W), each at most the image's size."""
    c, h, w = x.shape
    th, tw = tile
    rows, cols = _axis_positions(h, th, th - overlap), _axis_positions(w, tw, tw - overlap)
    origins = [(r, q) for r in rows for q in cols]
    ts, ws = th * scale, tw * scale
    weight = _axis_window(ts, len(rows), overlap * scale)[:, None] * _axis_window(ws, len(cols), overlap * scale)[None, :]
    acc, total = torch.zeros(c, h * scale, w * scale), torch.zeros(h * scale, w * scale)
    for (r, q), y in _run_tiles(model_fn, x, origins, tile, tile_batch, progress):  # blended as they come
        acc[:, r * scale : r * scale + ts, q * scale : q * scale + ws] += y * weight
        total[r * scale : r * scale + ts, q * scale : q * scale + ws] += weight
    return acc / total


def _any_size(model_fn: ModelFn, x: torch.Tensor, scale: int, mode: str, patch_size: int, tile_batch: int,
              progress, overlap: int) -> torch.Tensor:
    """One image (C, H, W) through a model that takes any size (whole=True): whole when the mode is
    "official" or the image fits within one tile (exact: no blending), else blended tiles, never padded."""
    h, w = x.shape[-2:]
    if mode == "official" or (h <= patch_size and w <= patch_size):
        return model_fn(x[None]).float().cpu()[0]
    return _fast(model_fn, x, scale, (min(patch_size, h), min(patch_size, w)), tile_batch, progress, overlap)


def _check_tiling(mode: str, tile_batch: int) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown tiling mode {mode!r}; choose one of {MODES}")
    if isinstance(tile_batch, bool) or not isinstance(tile_batch, int) or tile_batch < 1:
        raise ConfigError(f"tile_batch must be an integer >= 1, got {tile_batch!r}")


@renamed_keyword("tile", "patch_size", hint="model.config.patch_size")
def tiled_forward(model_fn: ModelFn, x: torch.Tensor, scale: int, *, patch_size: int = IPTConfig.patch_size,
                  mode: str = "fast", tile_batch: int = 64, overlap: int | None = None,
                  progress: bool | None = None, whole: bool = False) -> torch.Tensor:
    """Restores images of any size with a model that takes patch_size x patch_size inputs (pass the
    model's: model.config.patch_size; the default is the paper's), or -- whole=True -- with a model that
    takes any size, in tiles of at most patch_size a side (see the module's doc for both; a family's
    tiling() gives these keywords for its model).

    x: (B, C, H, W) or (C, H, W) float on the model's device. Returns float32 (…, H*scale, W*scale) on
    x's device. progress: a progress bar on stderr (None: when there are many tiles and stderr is a
    terminal). tile=: the deprecated name of patch_size.
    """
    _check_tiling(mode, tile_batch)
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ConfigError(f"patch_size must be an integer >= 1, got {patch_size!r}")
    if mode == "official" and patch_size % 4 and not whole:
        raise ConfigError(f"official tiling needs a patch_size divisible by 4, got {patch_size}")
    overlap = patch_size // 4 if overlap is None else overlap
    if mode == "fast" and not 0 < overlap < patch_size:
        raise ConfigError(f"overlap must be in (0, {patch_size}) for tiles of {patch_size} px, got {overlap}")
    single = x.dim() == 3
    batch = x[None] if single else x
    if batch.dim() != 4:
        raise ValueError(f"expected (C, H, W) or (B, C, H, W) images, got shape {list(x.shape)}")
    h, w = batch.shape[-2:]
    padded = batch if whole else _mirror_pad(batch, patch_size)  # a model of any size needs no padding
    stride = patch_size // 4 if mode == "official" else patch_size - overlap
    bar = None if whole and mode == "official" else _progress_bar(progress, padded.shape[-2:], stride, mode, tile_batch)
    results = []
    with torch.no_grad():
        for image in padded:
            if whole:
                y = _any_size(model_fn, image, scale, mode, patch_size, tile_batch, bar, overlap)
            elif mode == "official":
                y = _official(model_fn, image, scale, patch_size, tile_batch, bar)
            else:
                y = _fast(model_fn, image, scale, (patch_size, patch_size), tile_batch, bar, overlap)
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
# Tiles per forward pass when none is asked for: IPT's tiles are small (48 px), so many go at once; a tile
# of a model of any size is large (MPRNet: 512 px, 5,000 times the pixels of a 48-px tile), so one.
DEFAULT_TILE_BATCH = {False: 64, True: 1}  # by the tiling's `whole`


def _check_options(mode: str, precision: str, tile_batch: int | None) -> None:
    """The Restorer's options, checked when it is made rather than at its first image."""
    _check_tiling(mode, 1 if tile_batch is None else tile_batch)
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def _check_size(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name} must be an integer >= 1 (pixels), got {value!r}")


def _tiling(family, model, mode: str, tile: int | None, overlap: int | None) -> dict:
    """The keywords of tiled_forward for this model (family.tiling), checked against the mode: "official"
    tiles as the official code does (IPT) or not at all (MPRNet), so a tile size or overlap is refused."""
    _check_size("tile", tile)
    _check_size("tile_overlap", overlap)
    if mode == "official" and (tile is not None or overlap is not None):
        how = "restores each image whole, untiled" if family.tiling(model, None, None)["whole"] else \
            "tiles as the official code does (stride patch_size/4)"
        raise ConfigError(f"mode 'official' {how}: leave tile and tile_overlap out, or use mode 'fast'")
    tiling = family.tiling(model, tile, overlap)
    side = tiling["patch_size"]
    if tiling["overlap"] is None:
        tiling["overlap"] = side // 4  # tiled_forward's default, made explicit (reported by evaluate)
    if mode == "fast" and not 0 < tiling["overlap"] < side:
        raise ConfigError(f"tile_overlap must be in (0, {side}) for tiles of {side} px, got {tiling['overlap']}")
    return tiling


class Restorer:
    """Restores images with a model of any family (IPT, MPRNet) in one call, like PaddleGAN's MPRPredictor:

        Restorer(task="sr2", weights="IPT_sr2.pt").run("photo.png")          # -> HxWx3 uint8 array
        Restorer(task="noise30", weights="ckpt.safetensors").run("in/", output="out/")
        Restorer(task="deblur", weights="model_deblurring.pth", model="mprnet").run("blurred.png")

    weights: an official release file of the family (IPT_*.pt; MPRNet's model_*.pth or PaddleGAN's
    MPR_*.pdparams) or a checkpoint of this toolkit; nothing is downloaded. model: the family, "ipt" or
    "mprnet" (ipt.families.FAMILY_NAMES); a file of the other family is a CheckpointError naming the right
    one. num_heads: the head count of an official-style IPT file that is not the paper's layout (see
    IPT.load_official). device: "cpu", "cuda", "cuda:1", ... (default CUDA when available;
    ipt.devices.resolve_device checks that it exists).

    mode, tile, tile_overlap: tiling (see the module's doc). IPT: tiles of its patch_size only ("official"
    = forward_chop, "fast" = blended; tile_overlap default patch_size/4). MPRNet: "fast" (default) cuts
    images larger than `tile` (default 512 px) into blended tiles overlapping by tile_overlap (default
    64 px) and restores smaller ones whole; "official" restores every image whole, untiled, as the
    official demo does (memory then grows with the image). tile_batch: tiles per forward pass (default 64
    for IPT, 1 for MPRNet); with the tile size it bounds memory.

    MPRNet's tiled result is close to its untiled one, not equal: the network is not local (stage 1
    restores the quarters of what it is given and stage 2 its halves, with seams between them, and its
    channel attention averages over the whole input), so a tile is restored a little differently than
    the same pixels inside the whole image. Measured (trained "small"/"tiny" presets, 400x600 to
    1024x1024 photographs, default tiles): PSNR between tiled and untiled 55-60 dB, a mean difference
    of 0.06-0.14 levels (of 255); single pixels on the network's seams differ by up to 30 levels; the
    PSNR against the clean image moved by at most 0.02 dB. tests/test_mprnet_inference.py holds it to
    >= 44 dB and a mean <= 1 level on a smaller image with 128-px tiles (more seams).

    precision: "fp32" or "bf16" (autocast; the output stays float32). A CUDA GPU without
    native bfloat16 (before compute capability 8.0: V100, T4) restores in fp32 instead, with a warning
    naming it (.precision says which ran). self_ensemble: the average over the 8 flips/transposes (8x the
    time).
    """

    def __init__(self, task, weights, *, model: str = "ipt", device=None, mode: str = "fast",
                 self_ensemble: bool = False, tile_batch: int | None = None, precision: str = "fp32",
                 progress: bool | None = None, num_heads: int | None = None, tile: int | None = None,
                 tile_overlap: int | None = None):
        family = get_family(model)
        if weights is None:
            raise ConfigError(f"Restorer needs weights: {family.weights_hint} or a "
                              "checkpoint made by python -m ipt.finetune / ipt.pretrain; nothing is downloaded")
        if num_heads is not None and family.name != "ipt":
            raise ConfigError(f"num_heads is for official IPT files only, not for {describe_family(family.name)} "
                              "models: leave it out")
        _check_options(mode, precision, tile_batch)
        device = resolve_device(device)
        task = get_task(task)
        options = {} if num_heads is None else {"num_heads": num_heads}  # IPT's only: other families take none
        network = load_model(weights, task, family=family.name, **options).to(device).eval()
        self._attach(network, task, mode, self_ensemble, tile_batch, precision, progress, tile, tile_overlap)

    @classmethod
    def from_model(cls, model, task, *, mode: str = "fast", self_ensemble: bool = False,
                   tile_batch: int | None = None, precision: str = "fp32", tile: int | None = None,
                   tile_overlap: int | None = None) -> "Restorer":
        """A Restorer around a model of any family in memory (e.g. for validation during training), on its
        device; the options are the constructor's."""
        _check_options(mode, precision, tile_batch)
        self = cls.__new__(cls)
        self._attach(model, get_task(task), mode, self_ensemble, tile_batch, precision, False, tile, tile_overlap)
        return self

    def _attach(self, model, task, mode, self_ensemble, tile_batch, precision, progress, tile, overlap) -> None:
        self.task, self.model, self.family = task, model, family_of(model)
        self.device = next(model.parameters()).device
        self.task_index = model.task_index(task.name)
        self._restore_tiles = self.family.restoration_fn(model, task)
        tiling = _tiling(self.family, model, mode, tile, overlap)
        if tile_batch is None:
            tile_batch = DEFAULT_TILE_BATCH[bool(tiling["whole"])]
        self.tiling = dict(mode=mode, tile_batch=tile_batch, progress=progress, **tiling)
        self.self_ensemble, self.precision = self_ensemble, _effective_precision(precision, self.device)

    def describe_tiling(self) -> dict:
        """The tiling in effect, as reports record it: mode, tile (None: images restored whole) and overlap."""
        untiled = self.tiling["whole"] and self.tiling["mode"] == "official"
        return {"mode": self.tiling["mode"], "tile": None if untiled else self.tiling["patch_size"],
                "tile_overlap": None if untiled or self.tiling["mode"] == "official" else self.tiling["overlap"],
                "tile_batch": self.tiling["tile_batch"]}

    def _model_fn(self, tiles: torch.Tensor) -> torch.Tensor:
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.precision == "bf16"
                    else nullcontext())
        with autocast:
            return self._restore_tiles(tiles).float()

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


def _effective_precision(precision: str, device: torch.device) -> str:
    """The precision restoring on `device` runs in: fp32 where bf16 was asked for but the GPU has no native
    bfloat16 (torch would emulate it there, slower than fp32); said in a warning."""
    if precision == "bf16" and not devices.native_bf16(device):
        warnings.warn(f"precision bf16: {devices.describe_gpu(device)} has no native bfloat16; restoring in fp32",
                      RuntimeWarning, stacklevel=4)
        return "fp32"
    return precision


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
