"""Training configuration: the recipe of SPEC section 3 as data, presets, and config files.

    python -m ipt.pretrain --config ipt          # the paper's pretraining
    python -m ipt.pretrain --config small        # a CPU-sized demo (the default)
    python -m ipt.pretrain --config my.toml      # a file: {"extends": "ipt", "batch_size": 128, ...}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..model.config import PRESETS as MODEL_PRESETS
from ..model.config import reject_unknown_fields
from ..tasks import TASK_NAMES, get_task
from .watchdog import HEARTBEAT_INTERVAL_S

AMP_MODES = ("auto", "bf16", "fp32")
LOADERS = ("torch", "dali")


@dataclass(frozen=True)
class TrainConfig:
    model: str | dict = "ipt"  # a model preset name or IPTConfig fields
    tasks: tuple[str, ...] = TASK_NAMES
    batch_size: int = 256  # global: images per optimizer step over all ranks
    micro_batch: int | None = None  # images per forward pass on one rank; None: batch_size / ranks
    epochs: int = 300
    steps: int | None = None  # stop after this many optimizer steps (None: after `epochs`)
    lr: float = 5e-5
    lr_milestones: tuple[int, ...] = (200,)  # epochs at which the learning rate is multiplied by lr_gamma
    lr_gamma: float = 0.4  # 5e-5 -> 2e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm (0: off)
    contrastive_weight: float = 0.1  # lambda of L1 + lambda * contrastive
    temperature: float = 0.07
    contrastive_chunk: int = 1024  # anchors per block of the contrastive loss (bounds memory)
    seed: int = 0
    loader: str = "torch"
    workers: int = 2  # DataLoader processes or DALI threads per rank
    repeat: int = 1  # crops per image per epoch
    amp: str = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    compile: bool = False
    tf32: bool = True
    deterministic: bool = False  # torch.use_deterministic_algorithms (for bit-exact resume tests)
    checkpoint_every: int = 1000  # optimizer steps
    keep_checkpoints: int = 3
    log_every: int = 20
    # Distributed runs (ipt.train.watchdog), in seconds. A rank that raises ends the job at once, one that
    # dies (no heartbeat) after heartbeat_timeout; one that lives but is stuck after dist_timeout in a
    # collective (torch's default: 10 minutes on NCCL, 30 on gloo), or after wait_timeout at a barrier --
    # where ranks wait for start-up (scanning the data) and for rank-0-only work (checkpoints, validation),
    # kept out of collectives so that they may take longer than dist_timeout.
    dist_timeout: float = 300.0
    heartbeat_timeout: float = 60.0
    wait_timeout: float = 3600.0

    def __post_init__(self):
        problems = []
        positive = ("batch_size", "epochs", "contrastive_chunk", "workers", "repeat", "checkpoint_every",
                    "keep_checkpoints", "log_every")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("micro_batch", "steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                problems.append(f"{name} must be an integer >= 1 or null, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            problems.append(f"lr must be > 0, got {self.lr!r}")
        if not 0 < self.lr_gamma <= 1:
            problems.append(f"lr_gamma must be in (0, 1], got {self.lr_gamma!r}")
        if self.contrastive_weight < 0 or self.temperature <= 0 or self.grad_clip < 0 or self.weight_decay < 0:
            problems.append("contrastive_weight, grad_clip and weight_decay must be >= 0 and temperature > 0")
        for name, least in (("dist_timeout", 0), ("heartbeat_timeout", 2 * HEARTBEAT_INTERVAL_S), ("wait_timeout", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > least:
                problems.append(f"{name} must be a number of seconds > {least:g}, got {value!r}")
        if self.amp not in AMP_MODES:
            problems.append(f"amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.loader not in LOADERS:
            problems.append(f"loader must be one of {LOADERS}, got {self.loader!r}")
        if isinstance(self.model, str) and self.model not in MODEL_PRESETS:
            problems.append(f"model must be one of {sorted(MODEL_PRESETS)} or a dict of IPTConfig fields, got {self.model!r}")
        if not self.tasks:
            problems.append("tasks must not be empty")
        for task in self.tasks:
            try:
                get_task(task)
            except (ValueError, TypeError) as error:
                problems.append(str(error))
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

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

    def updated(self, **changes) -> "TrainConfig":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, TrainConfig] = {
    # SPEC section 3: six tasks, global batch 256, Adam, 5e-5 -> 2e-5 at epoch 200, 300 epochs.
    "ipt": TrainConfig(),
    # A demo that trains visibly in minutes on a 2-core CPU (the default of python -m ipt.pretrain).
    "small": TrainConfig(model="small", batch_size=8, epochs=1000, steps=500, lr=5e-4, lr_milestones=(),
                         repeat=16, checkpoint_every=100, log_every=25),
    # For tests: seconds on a CPU.
    "tiny": TrainConfig(model="tiny", batch_size=4, epochs=1000, steps=6, lr=1e-3, lr_milestones=(), repeat=2,
                        checkpoint_every=3, log_every=1, workers=1, contrastive_chunk=64),
    # Fine-tuning (SPEC section 3): one task, lr 2e-5, 30 epochs, L1 only.
    "ipt-finetune": TrainConfig(epochs=30, lr=2e-5, lr_milestones=(), contrastive_weight=0.0),
    "small-finetune": TrainConfig(model="small", batch_size=8, epochs=1000, steps=120, lr=2e-4, lr_milestones=(),
                                  contrastive_weight=0.0, repeat=16, checkpoint_every=60, log_every=20),
}


def load_config(spec: str | Path) -> TrainConfig:
    """A preset name, or a .json / .toml file of TrainConfig keys (optionally "extends": a preset)."""
    if isinstance(spec, str) and spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"unknown training config {spec!r}: presets are {sorted(PRESETS)}, or give a .json/.toml file")
    try:
        if path.suffix == ".toml":
            import tomllib

            d = tomllib.loads(path.read_text())
        else:
            d = json.loads(path.read_text())
    except (ValueError, OSError) as error:
        raise ValueError(f"{path}: cannot read the config ({error})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a config file holds a table of settings")
    base = d.pop("extends", None)
    if base is not None and base not in PRESETS:
        raise ValueError(f"{path}: extends {base!r}, which is not a preset ({sorted(PRESETS)})")
    merged = {**(PRESETS[base].to_dict() if base else {}), **d}
    return TrainConfig.from_dict(merged)
