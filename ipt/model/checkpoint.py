"""Checkpoint file formats: ours (config + task list + weights) and the official IPT release.

This module reads and writes files and says what they hold; building a model from what it read is the
model's business (IPT.load, IPT.load_official; ipt.model.load_model takes either format), so nothing
here imports the model class.

Ours default to safetensors (the config and tasks in its metadata); .pt files hold the same as a dict.
Every .pt file is read with torch.load(weights_only=True): tensors and plain containers only, never
arbitrary pickled objects. Writes are atomic (a temporary file renamed into place), so an interrupted
save never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..errors import ConfigError, IPTError
from ..files import atomic_write
from ..tasks import TASK_NAMES, get_task
from .config import IPTConfig

FORMAT = "ipt-toolkit"
FORMAT_VERSION = 1
DEFAULT_FAMILY = "ipt"  # the family of a file that names none (written before MPRNet joined)


class CheckpointError(IPTError, ValueError):
    """A checkpoint that cannot be read or does not fit the model asked for."""


# --- ours ------------------------------------------------------------------------------------------------------


def model_payload(model) -> dict:
    """Family, config, task names and weights of a model (IPT, MPRNet: ipt.families): everything needed
    to rebuild it. Files written before families existed have no "family": they hold IPT models."""
    for task in model.tasks:
        try:
            get_task(task.name)
        except ValueError:
            raise CheckpointError(
                f"task {task.name!r} is a custom Task that cannot be rebuilt from its name, so a checkpoint "
                "could not be loaded again; name it like the built-in tasks (sr<k>, noise<sigma>, rain...)"
            ) from None
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "family": getattr(model, "family", DEFAULT_FAMILY),
        "config": model.config.to_dict(),
        "tasks": model.task_names,
        # A copy of each tensor: a parameter a network shares between blocks (MPRNet's one PReLU slope) is
        # one tensor under many keys, which safetensors refuses to write.
        "state_dict": {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()},
    }


def is_model_payload(content) -> bool:
    return isinstance(content, dict) and content.get("format") == FORMAT


def save_checkpoint(model, path, **extra_metadata) -> None:
    """Saves a model (of any family) to path: safetensors unless the name ends in .pt/.pth.
    extra_metadata: strings."""
    payload = model_payload(model)
    path = Path(path)
    if path.suffix in (".pt", ".pth"):
        atomic_write(path, lambda tmp: torch.save({**payload, "metadata": dict(extra_metadata)}, tmp))
        return
    from safetensors.torch import save_file

    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), "family": payload["family"],
                "config": json.dumps(payload["config"]),
                "tasks": json.dumps(payload["tasks"]), **{k: str(v) for k, v in extra_metadata.items()}}
    atomic_write(path, lambda tmp: save_file(payload["state_dict"], tmp, metadata=metadata))


def read_checkpoint(path, map_location="cpu") -> tuple[str, dict]:
    """(kind, content) of a checkpoint file: ("ours", model payload) or ("state_dict", what the file
    holds, for the official layout).

    A dict whose "model" entry is one of our model payloads is read as that model: that is how files
    which bundle a model with more (training checkpoints: optimizer, RNG states, ...) stay loadable
    as models, without this module knowing what else they hold."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if _is_safetensors(path):
        return _read_safetensors(path, map_location)
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{path}: neither a safetensors file nor a loadable torch checkpoint with weights only "
            f"({type(error).__name__}: {error}). Files that need arbitrary pickled objects are refused on purpose."
        ) from None
    if isinstance(content, dict) and not is_model_payload(content) and is_model_payload(content.get("model")):
        content = content["model"]  # a training checkpoint: its model
    if is_model_payload(content):
        _check_version(content.get("version", FORMAT_VERSION), path)
        return "ours", content
    return "state_dict", content


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then that many bytes of JSON. Sniffed
    before torch's formats because the length's first byte can be anything, 0x80 (a pickle's first
    byte) included: one of our files in 256 was read as a pickle, its metadata (config, tasks) lost."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 8 + int.from_bytes(head[:8], "little") <= path.stat().st_size


def _read_safetensors(path: Path, map_location) -> tuple[str, dict]:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(error).__name__}: {error})") from None
    if metadata.get("format") != FORMAT:
        return "state_dict", tensors
    _check_version(metadata.get("version", FORMAT_VERSION), path)
    return "ours", {"family": metadata.get("family", DEFAULT_FAMILY), "config": _json_field(metadata, "config", path),
                    "tasks": _json_field(metadata, "tasks", path), "state_dict": tensors}


def _json_field(metadata: dict, key: str, path: Path):
    """A JSON value of our safetensors metadata (where everything is a string)."""
    if key not in metadata:
        raise CheckpointError(f"{path}: a checkpoint of this toolkit without its {key!r} metadata (it has "
                              f"{sorted(metadata)})")
    try:
        return json.loads(metadata[key])
    except ValueError as error:
        raise CheckpointError(f"{path}: its {key!r} metadata is not JSON ({error}): {metadata[key][:80]!r}") from None


def _check_version(version, path) -> None:
    if str(version) != str(FORMAT_VERSION):
        raise CheckpointError(f"{path}: {FORMAT} format version {version!r}; this toolkit reads version "
                              f"{FORMAT_VERSION} (a newer toolkit wrote it, or the file is damaged)")


def check_payload(payload: dict, source: str, family: str = DEFAULT_FAMILY) -> None:
    """The types of a model payload's entries (what a family's from_payload reads), each wrong one named,
    and that it holds a model of `family` (a file of another family says which to use)."""
    expected = {"config": (dict, "a dict of IPTConfig fields"), "tasks": ((list, tuple), "a list of task names"),
                "state_dict": (dict, "a dict of tensors")}
    for key, (kind, what) in expected.items():
        if key not in payload:
            raise CheckpointError(f"{source}: a model of this toolkit without its {key!r} (it has "
                                  f"{sorted(map(str, payload))})")
        if not isinstance(payload[key], kind):
            raise CheckpointError(f"{source}: its {key!r} should be {what}, not {type(payload[key]).__name__}")
    if not isinstance(payload.get("family", DEFAULT_FAMILY), str):
        raise CheckpointError(f"{source}: its 'family' should be a model family's name, not {payload['family']!r}")
    if not all(isinstance(t, str) for t in payload["tasks"]):
        raise CheckpointError(f"{source}: its 'tasks' should be task names, not {payload['tasks']!r}")
    held = payload.get("family", DEFAULT_FAMILY)
    if held != family:
        raise CheckpointError(f"{source} holds a model of the {held!r} family, not {family!r}: load it with "
                              f"ipt.families.load_model (on the command line: --model {held})")
    check_weights(payload["state_dict"], source)


def nonfinite_tensors(state: dict) -> list[str]:
    """The names of a state_dict's floating-point tensors that hold NaN or Inf (one reduction per tensor:
    cheap beside reading or writing them)."""
    return [k for k, v in state.items() if (v.is_floating_point() or v.is_complex()) and not torch.isfinite(v).all()]


def check_weights(state: dict, source: str) -> None:
    """A state_dict of names to tensors, every floating one finite: the first check of every way a model
    is loaded (IPT.from_payload, IPT.from_official_state_dict), so that weights with NaN or Inf, which
    would load without complaint and restore every image to black, are refused before anything else."""
    bad = next(((k, v) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"{source}: expected a state_dict (names to tensors), but it maps {bad[0]!r} to a "
                              f"value of type {type(bad[1]).__name__}")
    floating = [k for k, v in state.items() if v.is_floating_point() or v.is_complex()]
    non_finite = nonfinite_tensors(state)
    if non_finite:
        verb = "holds" if len(non_finite) == 1 else "hold"
        raise CheckpointError(f"{source}: {len(non_finite)} of its {len(floating)} floating-point tensors {verb} NaN "
                              f"or Inf (e.g. {non_finite[0]}): the run that wrote it diverged; use an earlier "
                              "checkpoint")


# --- the official release -----------------------------------------------------------------------------------

OFFICIAL_FILE_TASKS = {"sr2": "sr2", "sr3": "sr3", "sr4": "sr4", "denoise30": "noise30", "denoise50": "noise50",
                       "derain": "rain"}


def official_state_dict(content, source: str) -> dict:
    """The state_dict of an official-style file: a plain state_dict, or one under "state_dict" /
    "model" / "model_state_dict", with any DataParallel "module." prefix removed."""
    state = content
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: expected a state_dict (names to tensors), not a {type(state).__name__}")
    check_weights(state, source)
    return {k.removeprefix("module."): v for k, v in state.items()}


LAYOUT_KEYS = ("head.0.0.weight", "body.linear_encoding.weight", "body.position_encoding.pe.weight",
               "body.query_embed.weight")  # the keys official_layout reads sizes from


def official_layout(state: dict, source: str = "state_dict") -> dict:
    """What an official-style state_dict holds: the config fields its weight shapes tell, and the scale
    of each task slot. The head count is not among them (no weight shape depends on it)."""
    absent = [k for k in LAYOUT_KEYS if k not in state]
    if absent:
        sample = sorted(state)[:6]
        raise CheckpointError(f"{source}: not an IPT checkpoint: no {' / '.join(absent)} (keys start {sample})")

    def rows(key: str) -> int:
        """The first dimension of a weight the layout is read from: a file of another model (or a damaged
        one) may hold a scalar or an empty tensor there."""
        shape = tuple(state[key].shape)
        if not shape or shape[0] < 1:
            raise CheckpointError(f"{source}: {key} has shape {shape}, not that of an IPT weight")
        return shape[0]

    n_feats = rows("head.0.0.weight")
    dim = rows("body.linear_encoding.weight")
    patch_dim = round((dim / n_feats) ** 0.5)
    num_tokens = rows("body.position_encoding.pe.weight")
    patch_size = round(num_tokens**0.5) * patch_dim
    num_layers = len({k.split(".")[3] for k in state if k.startswith("body.encoder.layers.")})
    ffn = "body.encoder.layers.0.linear1.weight"
    ffn_mult = rows(ffn) // dim if ffn in state else IPTConfig.ffn_mult
    # Slots are numbered head.<i>.*; any other head.* key is not a slot and fails the strict load, named.
    slots = sorted({int(m[1]) for m in (re.match(r"head\.(\d+)\.", k) for k in state) if m})
    scales = []
    for i in slots:
        up = f"tail.{i}.0.0.weight"
        if up not in state:
            scales.append(1)
        elif rows(up) == 9 * n_feats:
            scales.append(3)
        else:
            scales.append(2 ** (1 + sum(f"tail.{i}.0.{j}.weight" in state for j in range(2, 16, 2))))
    return {"n_feats": n_feats, "patch_dim": patch_dim, "patch_size": patch_size, "num_layers": num_layers,
            "ffn_mult": ffn_mult, "scales": scales, "task_rows": rows("body.query_embed.weight"),
            "embedding_dim": dim}


SHAPE_FIELDS = ("n_feats", "patch_dim", "patch_size", "num_layers", "ffn_mult")  # config fields a layout tells


def describe_layout(layout: dict) -> str:
    return (f"{len(layout['scales'])} head/tail pair(s) with scales {layout['scales']}, {layout['task_rows']} "
            f"task-embedding row(s), n_feats {layout['n_feats']}, patch_dim {layout['patch_dim']}, "
            f"patch_size {layout['patch_size']}, {layout['num_layers']} layers, ffn_mult {layout['ffn_mult']}")


def official_config(layout: dict, source: str, config: IPTConfig | None = None,
                    num_heads: int | None = None) -> IPTConfig:
    """The config of an official-style file. Its weights tell everything but the head count, which
    comes from `num_heads`, else from `config`, else -- for the paper's layout only, the one the
    official release uses -- from the paper (IPTConfig's defaults). Any other layout without a head
    count is an error: a wrong head count would load without complaint and compute garbage."""
    if config is not None:
        if num_heads is not None and num_heads != config.num_heads:
            raise ConfigError(f"num_heads={num_heads} contradicts config.num_heads={config.num_heads}; give one")
        return config  # a config that does not fit the weights fails the strict load, naming the keys
    paper = IPTConfig()
    if num_heads is None:
        if any(layout[f] != getattr(paper, f) for f in SHAPE_FIELDS):
            raise CheckpointError(
                f"{source}: holds {describe_layout(layout)}. Official files do not store the number of attention "
                f"heads, and only the paper's layout is known to have {paper.num_heads}: pass it, e.g. "
                "load_official(path, num_heads=H) / load_model(path, num_heads=H) (--num-heads H on the command line), "
                "or config=IPTConfig(...)"
            )
        num_heads = paper.num_heads
    try:
        return IPTConfig(**{f: layout[f] for f in SHAPE_FIELDS}, num_heads=num_heads)
    except ConfigError as error:
        raise CheckpointError(f"{source}: holds {describe_layout(layout)}: {error}") from None


def official_tasks(layout: dict, source: str, task=None) -> list[str]:
    """The task names of an official file's slots: all six for a 6-task file; for a single-task file
    `task`, else its name (IPT_denoise30.pt -> noise30), else its tail scale for SR."""
    scales = layout["scales"]
    if len(scales) == len(TASK_NAMES):
        expected = [get_task(n).scale for n in TASK_NAMES]
        if scales != expected:
            raise CheckpointError(f"{source}: a 6-task file should have tail scales {expected}, this one has {scales}")
        return list(TASK_NAMES)
    if len(scales) != 1:
        raise CheckpointError(f"{source}: holds {describe_layout(layout)}; official files hold 1 or 6 tasks")
    if task is None:
        stem = re.sub(r"^ipt[_-]?", "", Path(source).stem.lower())
        task = OFFICIAL_FILE_TASKS.get(stem)
    if task is None:
        if scales[0] == 1:
            raise CheckpointError(
                f"{source}: holds one scale-1 task (denoising or deraining); say which with task='noise30', "
                "'noise50' or 'rain'"
            )
        task = f"sr{scales[0]}"
    name = get_task(task).name
    if get_task(name).scale != scales[0]:
        raise CheckpointError(f"{source}: task {name!r} needs a x{get_task(name).scale} tail but the file's tail is x{scales[0]}")
    return [name]


# --- both ------------------------------------------------------------------------------------------------------


def load_state_strict(model, state: dict, source: str, layout: str) -> None:
    """model.load_state_dict(state, strict=True), failing with a CheckpointError that names the keys
    missing, unexpected, of another shape or not floating point where the model's are (load_state_dict
    would cast them, hiding that the file is not what it claims), and what the file holds (`layout`)."""
    ours = model.state_dict()
    cast = sorted(k for k in set(ours) & set(state) if ours[k].is_floating_point() and not state[k].is_floating_point())
    if cast:
        raise CheckpointError(f"{source}: {len(cast)} weights are not floating point where the model's are (e.g. "
                              f"{cast[0]}: {state[cast[0]].dtype})")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        missing = sorted(set(ours) - set(state))
        unexpected = sorted(set(state) - set(ours))
        mismatched = sorted(k for k in set(ours) & set(state) if ours[k].shape != state[k].shape)
        details = []
        if missing:
            details.append(f"missing {len(missing)} keys (e.g. {missing[:4]})")
        if unexpected:
            details.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[:4]})")
        if mismatched:
            k = mismatched[0]
            details.append(f"{len(mismatched)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)}, "
                           f"model {tuple(ours[k].shape)})")
        raise CheckpointError(f"{source} does not fit the model (tasks {model.task_names}): "
                              f"{'; '.join(details) or error}. The file holds {layout}.") from None


# The loaders build an IPT, so they live in ipt.model.loading (which imports the model class; this module
# must not). They were importable from here before: deprecated aliases, resolved on first use.
_MOVED_TO_LOADING = ("load_checkpoint", "load_model", "load_official")


def __getattr__(name):
    if name in _MOVED_TO_LOADING:
        import warnings

        from . import loading

        warnings.warn(f"ipt.model.checkpoint.{name} moved: import it from ipt.model (or ipt.model.loading)",
                      DeprecationWarning, stacklevel=2)
        return getattr(loading, name)
    if name == "model_from_payload":  # now IPT.from_payload
        import warnings

        from .ipt import IPT

        warnings.warn("ipt.model.checkpoint.model_from_payload is deprecated: use IPT.from_payload",
                      DeprecationWarning, stacklevel=2)
        return IPT.from_payload
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
