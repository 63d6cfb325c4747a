"""Model families: IPT and MPRNet on one toolkit.

A family is a network with its own sizes (presets), its own official files and its own loss. Everything
else is shared and asks the family through the ModelFamily methods below: checkpoint files (ours record
the family; ipt.model.checkpoint), whole-image inference (ipt.inference: the family says how to run a
batch of tiles and which tiles it takes), the trainer (ipt.train.loop: the family computes the loss of a
batch and says the crop it trains on) and the CLIs (--model ipt|mprnet). A third family (SwinIR,
Restormer, ...) is one more subclass and one more line in FAMILY_MODULES; none of the shared pieces change.

    family = get_family("mprnet")
    model = family.build(["deblur"], "deblur")              # a new network of the deblur preset
    model = load_model("model_deblurring.pth")              # any file: ours or an official one, of any family

The model objects of every family answer the same few questions: .family (its name), .config (a frozen
dataclass with to_dict), .tasks / .task_names, .task_index(task), .save(path).
"""

from __future__ import annotations

import abc
import importlib
from pathlib import Path
from typing import Callable

import torch

from .errors import ConfigError
from .model.checkpoint import DEFAULT_FAMILY, CheckpointError, read_checkpoint
from .tasks import Task, get_task

# name -> module defining that family's ModelFamily subclass as FAMILY (imported on first use: a tool that
# only serves IPT never imports MPRNet's code, and the family modules may import this one).
FAMILY_MODULES = {"ipt": "ipt.model.family", "mprnet": "ipt.mprnet.family"}
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILY_MODULES)

ModelFn = Callable[[torch.Tensor], torch.Tensor]  # (N, C, h, w) in [0, 255] -> (N, C, h*s, w*s) in [0, 255]


class ModelFamily(abc.ABC):
    """What the shared pieces need to know about one kind of network. Subclasses set `name` and
    `presets` (model size presets: name -> config) and implement the abstract methods."""

    name: str = ""
    presets: dict = {}
    # DDP's find_unused_parameters: IPT trains one task's head and tail per step (the others get no
    # gradient); a network whose every parameter takes part in every step says False (faster).
    find_unused_parameters: bool = True
    # The names of the loss terms losses() returns, in order: log.csv's columns.
    loss_names: tuple[str, ...] = ()
    # What its weights files are, for the message when none are given.
    weights_hint: str = "a model file"
    # How it trains where bfloat16 was asked for (amp auto or bf16) but the GPU has none (V100, T4:
    # ipt.train.precision): True in float16 autocast with loss scaling, False in float32, for the reason
    # fp32_reason gives (the run's log line quotes it). By default float32: float16 (largest finite value
    # 65504) is for the families known to train in it.
    fp16_training: bool = False
    fp32_reason: str = "its activations are not known to stay within float16's range"

    # --- sizes and models ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def get_config(self, config):
        """The config object of a preset name, a dict of fields (as checkpoints store it) or a config."""

    @abc.abstractmethod
    def default_preset(self, tasks: list[Task]) -> str:
        """The preset a new model of these tasks gets when none is named (MPRNet: by the task's kind)."""

    @abc.abstractmethod
    def build(self, tasks, config) -> torch.nn.Module:
        """A new model (random weights) for these tasks with this config (preset name, dict or config)."""

    @abc.abstractmethod
    def from_payload(self, payload: dict, source: str, **options) -> torch.nn.Module:
        """The model one of our checkpoints describes (ipt.model.checkpoint.model_payload), loaded strictly.
        options: as for load_official (a value the file contradicts, or that the family has no use for, is
        an error)."""

    @abc.abstractmethod
    def claims(self, content) -> bool:
        """Whether what an official-style file holds (read_checkpoint's "state_dict" content, or a
        family's own reader's) is this family's network."""

    @abc.abstractmethod
    def load_official(self, path: Path, content, task: Task | None, **options) -> torch.nn.Module:
        """The model of an official release file, loaded strictly. content: what read_official (or
        read_checkpoint) returned for it. options: family-specific (IPT: num_heads)."""

    def official_reader(self, path: Path):
        """A reader (path, map_location) -> content for official files that torch.load cannot read, or None
        (the default: read_checkpoint reads them). MPRNet: PaddleGAN's .pdparams."""
        return None

    def check_task(self, model, task: Task, source: str) -> None:
        """Raises a CheckpointError if `model` (loaded from `source`) cannot restore `task`; may warn when
        it can but was made for another one."""
        try:
            model.task_index(task)
        except ConfigError as error:
            raise CheckpointError(f"{source}: {error}") from None

    # --- inference ---------------------------------------------------------------------------------------

    @abc.abstractmethod
    def restoration_fn(self, model, task: Task) -> ModelFn:
        """A function restoring a batch of tiles (N, 3, h, w) in [0, 255] for `task`, in [0, 255] (not
        clamped). The caller runs it under torch.no_grad and autocast as it chooses."""

    @abc.abstractmethod
    def tiling(self, model, tile: int | None, overlap: int | None) -> dict:
        """The tiles this family's model takes, as keyword arguments of ipt.inference.tiled_forward:
        patch_size (the tile side) and overlap; with whole=True, images that fit in one tile are restored
        whole. tile/overlap: the user's choice (None: the family's default)."""

    # --- training ----------------------------------------------------------------------------------------

    @abc.abstractmethod
    def losses(self, forward, inputs: torch.Tensor, target: torch.Tensor, task: Task, task_index: int,
               config, autocast) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss, its terms as a 1-D tensor in loss_names' order) of one batch. forward: the model
        as the trainer wraps it (DDP, torch.compile); inputs and target: float (B, 3, h, w) and
        (B, 3, h*s, w*s) in [0, 255]; task: the batch's Task, model.tasks[task_index]; config: the TrainConfig; autocast: a context manager for the forward
        pass (the loss is computed in float32 outside it)."""

    @abc.abstractmethod
    def train_crop(self, model_config, config) -> int:
        """The side of the model inputs the trainer crops for a model of this config (the family's config
        object) trained with `config` (the TrainConfig; its crop, if set): the crop of clean images is this
        times the task's scale."""


_LOADED: dict[str, ModelFamily] = {}


def get_family(name: str | ModelFamily) -> ModelFamily:
    """The family of this name ("ipt", "mprnet"), or a family given as is."""
    if isinstance(name, ModelFamily):
        return name
    if name not in FAMILY_MODULES:
        raise ConfigError(f"unknown model family {name!r}; choose one of {list(FAMILY_NAMES)}")
    if name not in _LOADED:
        _LOADED[name] = importlib.import_module(FAMILY_MODULES[name]).FAMILY
    return _LOADED[name]


def family_of(model) -> ModelFamily:
    """The family of a model object (its .family; models of before families existed are IPT)."""
    return get_family(getattr(model, "family", DEFAULT_FAMILY))


def describe_family(name: str) -> str:
    return {"ipt": "IPT", "mprnet": "MPRNet"}.get(name, name)


def load_model(path, task=None, *, family: str | None = None, map_location="cpu", **options) -> torch.nn.Module:
    """Any model file of any family: ours (which records its family) or an official release file (IPT_*.pt;
    MPRNet's model_*.pth, PaddleGAN's MPR_*.pdparams), loaded strictly.

    family: the family the caller expects ("ipt", "mprnet"); a file of another one is a CheckpointError
    saying which it holds. task: the task the model will restore (a single-task official file's task;
    checked against the model). options: family-specific (IPT: num_heads)."""
    path = Path(path)
    wanted = None if family is None else get_family(family)
    task = None if task is None else get_task(task)
    kind, content, found = "state_dict", None, None
    for name in FAMILY_NAMES:  # a format only one family reads (PaddleGAN's pickles) decides the family
        reader = get_family(name).official_reader(path)
        if reader is not None:
            content, found = reader(path, map_location), get_family(name)
            break
    if found is None:
        kind, content = read_checkpoint(path, map_location)
        if kind == "ours":
            found = get_family(content.get("family", DEFAULT_FAMILY))
        else:
            found = next((get_family(n) for n in FAMILY_NAMES if get_family(n).claims(content)), None)
            if found is None:
                found = wanted or get_family(DEFAULT_FAMILY)  # its loader names what does not fit
    if wanted is not None and found is not wanted:
        raise CheckpointError(f"{path} holds an {describe_family(found.name)} model, not an "
                              f"{describe_family(wanted.name)} one: use --model {found.name} (model={found.name!r})")
    if kind == "ours":
        model = found.from_payload(content, str(path), **options)
    else:
        model = found.load_official(path, content, task, **options)
    if task is not None:
        found.check_task(model, task, str(path))
    return model
