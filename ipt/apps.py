"""Ready-made predictors with the shape of PaddleGAN's ppgan.apps, for code written against it:

    from ipt.apps import MPRPredictor
    predictor = MPRPredictor(task="Deblurring", weights="model_deblurring.pth")
    restored = predictor.run("blurred.png")          # (H, W, 3) uint8; also written to output_dir/blurred.png

Nothing is downloaded (PaddleGAN fetches its weights; this toolkit never does): the weights are the
`weights` (or PaddleGAN's `weight_path`) argument, or else a file in the folder that the environment
variable IPT_MPRNET_WEIGHTS names, found by the release's file names (WEIGHT_FILES).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .data.images import list_images, read_image
from .errors import ConfigError, MissingPathError
from .inference import Restorer
from .outputs import plan_outputs, write_output

WEIGHTS_ENV = "IPT_MPRNET_WEIGHTS"
# PaddleGAN's task names -> ours.
MPR_TASKS = {"Deblurring": "deblur", "Denoising": "denoise", "Deraining": "derain"}
# The release files of each task, in the order they are looked for: the official PyTorch release's, then
# PaddleGAN's.
WEIGHT_FILES = {
    "Deblurring": ("model_deblurring.pth", "MPR_Deblurring.pdparams"),
    "Denoising": ("model_denoising.pth", "MPR_Denoising.pdparams"),
    "Deraining": ("model_deraining.pth", "MPR_Deraining.pdparams"),
}


def mpr_task(task) -> str:
    """PaddleGAN's task name ("Deblurring", "Denoising", "Deraining") as this toolkit names it."""
    if task not in MPR_TASKS:
        raise ConfigError(f"unknown MPRPredictor task {task!r}: choose one of {list(MPR_TASKS)}")
    return MPR_TASKS[task]


def find_weights(task: str, weights=None, weight_path=None) -> Path:
    """The weights file of a task (PaddleGAN's name): the one given (weights or weight_path), or the
    release file in the folder IPT_MPRNET_WEIGHTS names."""
    if weights is not None and weight_path is not None and Path(weights) != Path(weight_path):
        raise ConfigError(f"weights={str(weights)!r} and weight_path={str(weight_path)!r} name two files: pass one "
                          "(weight_path is PaddleGAN's name for weights)")
    given = weights if weights is not None else weight_path
    if given is not None:
        return Path(given)
    names = WEIGHT_FILES[task]
    folder = os.environ.get(WEIGHTS_ENV)
    if not folder:
        raise ConfigError(f"MPRPredictor needs weights and downloads none: pass weights= (or weight_path=) the "
                          f"release file, or set {WEIGHTS_ENV} to a folder holding {' or '.join(names)}")
    if not Path(folder).is_dir():
        raise MissingPathError(f"{WEIGHTS_ENV}={folder}: no such folder (it should hold {' or '.join(names)})")
    found = next((Path(folder) / name for name in names if (Path(folder) / name).is_file()), None)
    if found is None:
        raise MissingPathError(f"{WEIGHTS_ENV}={folder} holds no {task} weights: looked for {' and '.join(names)}")
    return found


def _image_paths(images_path) -> list[Path]:
    """The files run() restores: the file, the folder's images or the list's."""
    if isinstance(images_path, (list, tuple)):
        if not images_path:
            raise ConfigError("MPRPredictor.run: the list of images is empty")
        return [Path(p) for p in images_path]
    path = Path(images_path)
    if path.is_dir():
        paths = list_images(path)
        if not paths:
            raise ConfigError(f"MPRPredictor.run: {path}: no images in this folder")
        return paths
    if not path.is_file():
        raise MissingPathError(f"MPRPredictor.run: {path}: no such image file or folder")
    return [path]


class MPRPredictor:
    """MPRNet restoration in PaddleGAN's MPRPredictor shape, served by ipt.Restorer(model="mprnet").

    task: "Deblurring", "Denoising" or "Deraining" (PaddleGAN's names). weights / weight_path (PaddleGAN's
    keyword): the release file (model_deblurring.pth, MPR_Deblurring.pdparams, ...) or a checkpoint of
    this toolkit; without either, the file of the task in the folder IPT_MPRNET_WEIGHTS names.
    output_path: the folder the results are written to, as NAME.png ("output_dir", as PaddleGAN's;
    None: nothing written). Every output is planned before the first image is restored (ipt.outputs): an
    input is never replaced, nor an existing file unless overwrite=True. seed: accepted as PaddleGAN's,
    and unused (restoring is deterministic). Other keywords go to the Restorer: device, mode, tile,
    tile_overlap, tile_batch, self_ensemble, precision ("fp32" or "bf16"; see ipt.inference.Restorer).

    Unlike PaddleGAN's, images are restored at their full size (large ones in tiles, never shrunk), the
    input is not copied to the output folder, and run() returns the results.
    """

    def __init__(self, *, task=None, weights=None, output_path="output_dir", weight_path=None, seed=None,
                 overwrite: bool = False, **restorer_options):
        del seed  # the network is deterministic: nothing to seed (kept for PaddleGAN's signature)
        self.task = task
        our_task = mpr_task(task)
        self.weights = find_weights(task, weights, weight_path)
        self.output_path = None if output_path is None else Path(output_path)
        self.overwrite = overwrite
        self.restorer = Restorer(task=our_task, weights=self.weights, model="mprnet", **restorer_options)

    def run(self, images_path):
        """Restores an image file, a folder of images or a list of files, and writes each result to
        output_path/NAME.png (NAME_EXT.png where inputs share a NAME, with a warning). Returns the
        restored (H, W, 3) uint8 array for one file, a list of them otherwise. An array (numpy (H, W[, C])
        or torch (C, H, W)) is restored and returned only: it has no name to write it under."""
        if isinstance(images_path, (np.ndarray, torch.Tensor)):
            return self.restorer.restore(images_path)
        paths = _image_paths(images_path)
        results_paths = self._plan(paths)
        results = []
        for k, path in enumerate(paths):
            results.append(self.restorer.restore(read_image(path)))
            if results_paths is not None:
                write_output(results_paths[k], results[-1])
        one_file = not isinstance(images_path, (list, tuple)) and Path(images_path).is_file()
        return results[0] if one_file else results

    def _plan(self, paths: list[Path]) -> list[Path] | None:
        if self.output_path is None:
            return None
        plan = plan_outputs(self.output_path, paths, folder=True, overwrite=self.overwrite, option="output_path",
                            overwrite_flag="overwrite=True", reads=[self.weights])
        for note in plan.notes:
            warnings.warn(note, stacklevel=3)
        return plan.results
