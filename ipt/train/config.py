"""Training configuration: the recipe of SPEC section 3 as data, presets, and config files.

    python -m ipt.pretrain --config ipt          # the paper's pretraining
    python -m ipt.pretrain --config small        # a CPU-sized demo (the default)
    python -m ipt.pretrain --config my.toml      # a file: {"extends": "ipt", "batch_size": 128, ...}
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..errors import ConfigError
from ..families import DEFAULT_FAMILY, FAMILY_NAMES, get_family
from ..loaders import BACKENDS
from ..model.config import reject_unknown_fields
from ..ops.contract import SEED_BITS, SEED_MIN
from ..tasks import TASK_NAMES, get_task
from .schedule import LR_DECAYS
from .watchdog import HEARTBEAT_INTERVAL_S

# auto: bf16 autocast on GPUs, fp32 on CPUs; on GPUs without native bfloat16, see ipt.train.precision
AMP_MODES = ("auto", "bf16", "fp32")
LOADERS = BACKENDS  # the names TrainConfig.loader takes: ipt.loaders' backends


@dataclass(frozen=True)
class Flag:
    """How a TrainConfig field is set from the command line of ipt.pretrain and ipt.finetune
    (ipt.cli.add_training_arguments generates the options from these)."""

    help: str
    name: str | None = None  # the option; default --field-name
    metavar: str | None = None
    choices: tuple | None = None
    const: object = None  # a switch that sets the field to this value (--dali: loader = "dali")


def flag(default, help: str, **options):
    """A TrainConfig field that is also a command-line option (see Flag)."""
    return field(default=default, metadata={"flag": Flag(help, **options)})


def flags() -> list[tuple[str, Flag]]:
    """(field name, Flag) of every TrainConfig field that is a command-line option, in field order."""
    return [(f.name, f.metadata["flag"]) for f in fields(TrainConfig) if "flag" in f.metadata]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """A finite int or float (not a bool): inf and NaN pass every comparison the wrong way."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fits(value, hint) -> bool:
    """Whether a setting's value has the type its annotation says (config files and callers can hand
    anything: a TOML string where a number belongs, a bare number where a list does)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
    if hint is type(None):
        return value is None
    if hint is float:
        return _is_number(value)
    if hint is int:
        return _is_int(value)
    return isinstance(value, hint) and (hint is bool or not isinstance(value, bool))


_TYPE_NAMES = {int: ("an integer", "integers"), float: ("a finite number", "finite numbers"),
               str: ("a string", "strings"), bool: ("true or false", "booleans"), dict: ("a table", "tables"),
               type(None): ("null", "nulls")}


def _type_text(hint, plural: bool = False) -> str:
    """How a message names a type: 'an integer or null', 'a list of 2 finite numbers', ..."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_text(args[0], plural=True)}"
        return f"a list of {len(args)} {_type_text(args[0], plural=True)}"
    if args:  # a union
        return " or ".join(_type_text(a, plural) for a in args)
    return _TYPE_NAMES[hint][plural]


def _shown(value) -> str:
    """A value as a config file writes it (tuples are lists there)."""
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


@dataclass(frozen=True)
class TrainConfig:
    family: str = DEFAULT_FAMILY  # the network: "ipt" or "mprnet" (ipt.families)
    model: str | dict = "ipt"  # a model preset of the family (ipt, small, tiny; deblur, denoise, ...) or its config fields
    tasks: tuple[str, ...] = TASK_NAMES
    batch_size: int = flag(256, "global batch: images per optimizer step over all ranks")
    micro_batch: int | None = flag(None, "images per forward pass on one rank; the rest of the batch is gradient "
                                         "accumulation (default: batch-size / ranks)")
    epochs: int = flag(300, "epochs to train (unless --steps ends the run first)")
    steps: int | None = flag(None, "stop after this many optimizer steps")
    lr: float = flag(5e-5, "learning rate")
    lr_milestones: tuple[int, ...] = (200,)  # epochs at which the learning rate is multiplied by lr_gamma
    lr_gamma: float = 0.4  # 5e-5 -> 2e-5
    lr_decay: str = flag("step", "learning-rate decay: step (x lr_gamma at the lr_milestones epochs, the paper's) or "
                                 "cosine (to lr_min over the run)", choices=LR_DECAYS)
    lr_min: float = 0.0  # where the cosine decay ends
    warmup_steps: int = flag(0, "optimizer steps over which the learning rate ramps up linearly from lr / N")
    warmup_epochs: int = flag(0, "the same warm-up counted in epochs (MPRNet's recipe: 3); not with --warmup-steps")
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm (0: off)
    contrastive_weight: float = 0.1  # lambda of L1 + lambda * contrastive
    temperature: float = 0.07
    contrastive_chunk: int = 1024  # anchors per block of the contrastive loss (bounds memory)
    # MPRNet's loss (ipt.mprnet.losses): Charbonnier + edge_weight * edge loss over the three stage outputs;
    # None: the official weight for the task (0.05; 0, Charbonnier only, for denoising).
    edge_weight: float | None = None
    charbonnier_eps: float = 1e-3
    crop: int | None = flag(None, "side of the training crops of model inputs (default: the model's: IPT's patch_size; "
                                  "MPRNet 256, 128 for denoising)")
    seed: int = flag(0, "seed of the initial weights, the data order, crops, tasks and degradations")
    loader: str = flag("torch", "load data with the DALI pipeline (else the torch DataLoader)", name="--dali",
                       const="dali")
    workers: int = flag(2, "DataLoader processes or DALI threads per rank")
    repeat: int = 1  # crops per image per epoch
    amp: str = flag("auto", "autocast: auto (bf16 on GPUs, fp32 on CPUs), bf16 or fp32. On a GPU without native "
                            "bfloat16 (before compute capability 8.0: V100, T4) auto and bf16 train IPT in float16 "
                            "with loss scaling, MPRNet in fp32", choices=AMP_MODES)
    compile: bool = flag(False, "torch.compile the model")
    tf32: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms (for bit-exact resume tests)
    checkpoint_every: int = flag(1000, "optimizer steps between checkpoints")
    validate_every: int | None = flag(None, "optimizer steps between validations of fine-tuning (default: after "
                                            "every epoch)")
    keep_checkpoints: int = 3
    log_every: int = 20
    # A step whose loss or gradients are not finite (inf, NaN) is skipped, its data consumed; this many
    # in a row mean the run has diverged and it stops (no checkpoint is written while they last).
    max_nonfinite_steps: int = 5
    # Distributed runs (ipt.train.watchdog), in seconds. A rank that raises ends the job at once, one that
    # dies (no heartbeat) after heartbeat_timeout; one that lives but is stuck after dist_timeout in a
    # collective (torch's default: 10 minutes on NCCL, 30 on gloo), or after wait_timeout at a barrier --
    # where ranks wait for start-up (scanning the data) and for rank-0-only work (checkpoints, validation),
    # kept out of collectives so that they may take longer than dist_timeout.
    dist_timeout: float = flag(300.0, "how long a collective waits for the other ranks", metavar="SECONDS")
    heartbeat_timeout: float = flag(60.0, "how long a rank may go without a heartbeat before it counts as dead",
                                    metavar="SECONDS")
    wait_timeout: float = flag(3600.0, "how long ranks wait for each other at start-up, checkpoints, validation",
                               metavar="SECONDS")

    def __post_init__(self):
        # Types first, each with its setting's name; the range checks below then only see values of the
        # right type (and skip those already reported).
        hints = typing.get_type_hints(TrainConfig)
        problems = [f"{f.name} must be {_type_text(hints[f.name])}, got {_shown(getattr(self, f.name))}"
                    for f in fields(self) if not _fits(getattr(self, f.name), hints[f.name])]
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))
        positive = ("batch_size", "epochs", "contrastive_chunk", "workers", "repeat", "checkpoint_every",
                    "keep_checkpoints", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                problems.append(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("micro_batch", "steps", "validate_every", "crop"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 1):
                problems.append(f"{name} must be an integer >= 1 or null, got {value!r}")
        if not SEED_MIN <= self.seed < 2 ** SEED_BITS:  # what the degradation kernels take (ipt.ops.contract)
            problems.append(f"seed must be an integer in [{SEED_MIN}, 2**{SEED_BITS}), got {self.seed!r}")
        if not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {list(self.betas)!r}")
        if self.max_nonfinite_steps < 0:
            problems.append(f"max_nonfinite_steps must be an integer >= 0, got {self.max_nonfinite_steps!r}")
        if not (_is_number(self.lr) and self.lr > 0):
            problems.append(f"lr must be > 0, got {self.lr!r}")
        if not (_is_number(self.lr_gamma) and 0 < self.lr_gamma <= 1):
            problems.append(f"lr_gamma must be in (0, 1], got {self.lr_gamma!r}")
        if self.lr_decay not in LR_DECAYS:
            problems.append(f"lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}")
        if not (_is_number(self.lr_min) and 0 <= self.lr_min <= (self.lr if _is_number(self.lr) else 0)):
            problems.append(f"lr_min must be in [0, lr], got {self.lr_min!r}")
        for name in ("warmup_steps", "warmup_epochs"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if self.warmup_steps and self.warmup_epochs:
            problems.append(f"give the warm-up in steps or in epochs, not both (warmup_steps {self.warmup_steps}, "
                            f"warmup_epochs {self.warmup_epochs})")
        if not (isinstance(self.lr_milestones, tuple) and all(_is_int(m) for m in self.lr_milestones)):
            problems.append(f"lr_milestones must be epochs (integers), got {self.lr_milestones!r}")
        for name in ("contrastive_weight", "grad_clip", "weight_decay", "edge_weight"):
            if (getattr(self, name) or 0) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("temperature", "charbonnier_eps"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name, least in (("dist_timeout", 0), ("heartbeat_timeout", 2 * HEARTBEAT_INTERVAL_S), ("wait_timeout", 0)):
            value = getattr(self, name)
            if not _is_number(value) or not value > least:
                problems.append(f"{name} must be a number of seconds > {least:g}, got {value!r}")
        if self.amp not in AMP_MODES:
            problems.append(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.loader not in LOADERS:
            problems.append(f"loader must be one of {LOADERS}, got {self.loader!r}")
        if self.family not in FAMILY_NAMES:
            problems.append(f"family must be one of {list(FAMILY_NAMES)}, got {self.family!r}")
        else:
            family = get_family(self.family)
            if isinstance(self.model, str) and self.model not in family.presets:
                problems.append(f"model must be a preset of the {self.family} family ({sorted(family.presets)}) or a "
                                f"dict of its config fields, got {self.model!r}")
            elif isinstance(self.model, dict):
                try:
                    family.get_config(self.model)
                except ConfigError as error:
                    problems.append(f"model: {error}")
        if not self.tasks:
            problems.append("tasks must not be empty")
        for task in self.tasks:
            try:
                get_task(task)
            except ConfigError as error:
                problems.append(str(error))
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict:
        d = asdict(self)
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = list(value)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        reject_unknown_fields(cls, d, "training config keys")
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**converted)

    @classmethod
    def from_saved(cls, d: dict) -> "TrainConfig":
        """The settings a checkpoint recorded; those the toolkit no longer has are dropped, those it
        gained since keep their defaults."""
        known = {f.name for f in fields(cls)}
        return cls.from_dict({k: v for k, v in d.items() if k in known})

    def updated(self, **changes) -> "TrainConfig":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


# What a resumed run may change (ipt.train.loop compares its settings with its checkpoint's). These decide
# which crops and samples each step sees, so a run cannot change them and stay the same run:
FIXED_IN_A_RUN = ("family", "model", "tasks", "batch_size", "micro_batch", "seed", "repeat", "crop")
# These say how long to train, how often to write, and how to compute -- not what is learned:
OPERATIONAL = ("steps", "epochs", "checkpoint_every", "validate_every", "keep_checkpoints", "log_every",
               "max_nonfinite_steps", "workers", "loader", "compile", "tf32", "deterministic", "contrastive_chunk",
               "dist_timeout", "heartbeat_timeout", "wait_timeout")
# Every other setting is the recipe (rates, schedule, optimizer, loss, precision): a resumed run changes
# it only when asked to (--allow-config-changes).


def changed_settings(saved: dict, config: TrainConfig) -> dict[str, list[str]]:
    """The settings of `config` that differ from a checkpoint's (`saved`: TrainConfig.to_dict() of the run
    that wrote it), as 'name old -> new' by kind: 'fixed', 'recipe' and 'operational'. Settings the
    checkpoint predates are not compared."""
    now = config.to_dict()
    changes = {"fixed": [], "recipe": [], "operational": []}
    for name, value in now.items():
        if name in saved and saved[name] != value:
            kind = "fixed" if name in FIXED_IN_A_RUN else "operational" if name in OPERATIONAL else "recipe"
            changes[kind].append(f"{name} {saved[name]!r} -> {value!r}")
    return changes


PRESETS: dict[str, TrainConfig] = {
    # SPEC section 3: six tasks, global batch 256, Adam, 5e-5 -> 2e-5 at epoch 200, 300 epochs.
    "ipt": TrainConfig(),
    # A demo that learns in minutes on a 2-core CPU (the default of python -m ipt.pretrain): a high rate
    # for a small model, reached by warm-up and brought down by a cosine, which converges in the fewest steps.
    "small": TrainConfig(model="small", batch_size=8, epochs=1000, steps=2000, lr=2e-3, lr_decay="cosine",
                         warmup_steps=100, lr_milestones=(), repeat=16, checkpoint_every=500, log_every=100),
    # For tests: seconds on a CPU.
    "tiny": TrainConfig(model="tiny", batch_size=4, epochs=1000, steps=6, lr=1e-3, lr_milestones=(), repeat=2,
                        checkpoint_every=3, log_every=1, workers=1, contrastive_chunk=64),
    # Fine-tuning (SPEC section 3): one task, lr 2e-5, 30 epochs, L1 only.
    "ipt-finetune": TrainConfig(epochs=30, lr=2e-5, lr_milestones=(), contrastive_weight=0.0),
    "small-finetune": TrainConfig(model="small", batch_size=8, epochs=1000, steps=1500, lr=1e-3, lr_decay="cosine",
                                  warmup_steps=50, lr_milestones=(), contrastive_weight=0.0, repeat=16,
                                  checkpoint_every=500, validate_every=500, log_every=100),
    # Fine-tuning the paper's model into its deblurring model (appendix A; the ipt-deblur model preset, 256-px
    # inputs) on GoPro: the fine-tuning recipe above. The paper states no deblurring recipe; the batch is ours
    # (MPRNet's GoPro batch of 256-px crops: a batch of 256 such crops would be 28x pretraining's pixels).
    "ipt-deblur": TrainConfig(model="ipt-deblur", tasks=("deblur",), batch_size=16, epochs=30, lr=2e-5,
                              lr_milestones=(), contrastive_weight=0.0),
}

# MPRNet's official recipes (SPEC section 6): Adam 2e-4, 3 warm-up epochs then a cosine to 1e-6, batch 16,
# no gradient clipping, crops 256 (128 for denoising); 3000 epochs of GoPro, 80 of SIDD, 250 of Rain13k.
_MPRNET_RECIPE = dict(family="mprnet", batch_size=16, lr=2e-4, lr_decay="cosine", lr_min=1e-6, warmup_epochs=3,
                      lr_milestones=(), grad_clip=0.0)
for _kind, _crop, _epochs in (("deblur", 256, 3000), ("denoise", 128, 80), ("derain", 256, 250)):
    PRESETS[f"mprnet-{_kind}"] = TrainConfig(model=_kind, tasks=(_kind,), crop=_crop, epochs=_epochs, **_MPRNET_RECIPE)
PRESETS.update({
    # A CPU demo of the same recipe on the built-in photographs, degraded on the fly (denoising sigma 30):
    # minutes on 2 cores.
    "mprnet-small": TrainConfig(family="mprnet", model="small", tasks=("noise30",), batch_size=4, crop=64, epochs=1000,
                                steps=300, lr=1e-3, lr_decay="cosine", lr_min=1e-6, warmup_steps=20, lr_milestones=(),
                                grad_clip=0.0, repeat=8, checkpoint_every=100, validate_every=300, log_every=20),
    # For tests: seconds on a CPU.
    "mprnet-tiny": TrainConfig(family="mprnet", model="tiny", tasks=("noise30",), batch_size=2, crop=32, epochs=1000,
                               steps=4, lr=1e-3, lr_milestones=(), grad_clip=0.0, repeat=2, checkpoint_every=2,
                               log_every=1, workers=1),
})


def load_config(spec: str | Path) -> TrainConfig:
    """A preset name, or a .json / .toml file of TrainConfig keys (optionally "extends": a preset)."""
    if isinstance(spec, str) and spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"unknown training config {spec!r}: presets are {sorted(PRESETS)}, or give a .json/.toml file")
    try:
        if path.suffix == ".toml":
            # Imported on use: tomllib is in the standard library from Python 3.11 only, and only
            # .toml files need it.
            import tomllib

            d = tomllib.loads(path.read_text())
        else:
            d = json.loads(path.read_text())
    except ImportError:
        raise ConfigError(f"{path}: reading .toml files needs Python 3.11 or later; write the settings as .json") from None
    except (ValueError, OSError) as error:  # tomllib's and json's decode errors are ValueErrors
        raise ConfigError(f"{path}: cannot read the config ({error})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: a config file holds a table of settings")
    base = d.pop("extends", None)
    if base is not None and base not in PRESETS:
        raise ConfigError(f"{path}: extends {base!r}, which is not a preset ({sorted(PRESETS)})")
    merged = {**(PRESETS[base].to_dict() if base else {}), **d}
    return TrainConfig.from_dict(merged)
