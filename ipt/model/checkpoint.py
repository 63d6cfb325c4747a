"""Model checkpoints: ours (config + task list + weights) and the official IPT release.

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

from ..files import atomic_write
from ..tasks import TASK_NAMES, get_task
from .config import IPTConfig
from .ipt import IPT

FORMAT = "ipt-toolkit"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model asked for."""


def model_payload(model: IPT) -> dict:
    """Config, task names and weights: everything needed to rebuild the model."""
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
        "config": model.config.to_dict(),
        "tasks": model.task_names,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }


def model_from_payload(payload: dict, source: str) -> IPT:
    try:
        model = IPT(payload["tasks"], IPTConfig.from_dict(payload["config"]))
    except (KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{source}: cannot rebuild the model it describes: {error}") from None
    _load_strict(model, payload["state_dict"], source, layout=f"tasks {payload['tasks']}")
    return model


def save_checkpoint(model: IPT, path, **extra_metadata) -> None:
    """Saves to path: safetensors unless the name ends in .pt/.pth. extra_metadata: strings."""
    payload = model_payload(model)
    path = Path(path)
    if path.suffix in (".pt", ".pth"):
        atomic_write(path, lambda tmp: torch.save({**payload, "metadata": dict(extra_metadata)}, tmp))
        return
    from safetensors.torch import save_file

    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), "config": json.dumps(payload["config"]),
                "tasks": json.dumps(payload["tasks"]), **{k: str(v) for k, v in extra_metadata.items()}}
    atomic_write(path, lambda tmp: save_file(payload["state_dict"], tmp, metadata=metadata))


def _read(path, map_location):
    """(kind, content): ('ours', payload) or ('state_dict', dict of tensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:2] == b"PK" or head[:1] == b"\x80":  # a torch zip archive or a legacy pickle
        try:
            content = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as error:
            raise CheckpointError(
                f"{path}: not a loadable checkpoint with weights only ({type(error).__name__}: {error}). "
                "Files that need arbitrary pickled objects are refused on purpose."
            ) from None
        if isinstance(content, dict) and content.get("format") == FORMAT:
            return "ours", content
        if isinstance(content, dict) and content.get("format") == FORMAT + "-train":
            return "ours", content["model"]
        return "state_dict", content
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device=str(map_location)) as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as error:
        raise CheckpointError(f"{path}: neither a torch checkpoint nor a safetensors file ({error})") from None
    if metadata.get("format") == FORMAT:
        return "ours", {"config": json.loads(metadata["config"]), "tasks": json.loads(metadata["tasks"]),
                        "state_dict": tensors}
    return "state_dict", tensors


def load_checkpoint(path, map_location="cpu") -> IPT:
    """A model saved by this toolkit (IPT.save, pretraining or fine-tuning)."""
    kind, content = _read(path, map_location)
    if kind != "ours":
        raise CheckpointError(f"{path} is not a checkpoint of this toolkit; for the official IPT files use "
                              "IPT.load_official(path) (or ipt.model.load_model, which takes either)")
    return model_from_payload(content, str(path))


def load_model(path, task=None, map_location="cpu") -> IPT:
    """Any IPT checkpoint: ours, or an official release file (task names a single-task file's task)."""
    kind, content = _read(path, map_location)
    if kind == "ours":
        model = model_from_payload(content, str(path))
        if task is not None:
            model.task_index(get_task(task))  # a clear error when the checkpoint lacks it
        return model
    return _official_from_state_dict(content, str(path), task)


# --- the official release -----------------------------------------------------------------------------------

OFFICIAL_FILE_TASKS = {"sr2": "sr2", "sr3": "sr3", "sr4": "sr4", "denoise30": "noise30", "denoise50": "noise50",
                       "derain": "rain"}


def _unwrap(state) -> dict:
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("expected a state_dict (a dict of tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def official_layout(state: dict) -> dict:
    """What an official-style state_dict holds: config fields and the scale of each task slot."""
    if "body.query_embed.weight" not in state or "head.0.0.weight" not in state:
        sample = sorted(state)[:6]
        raise CheckpointError(f"not an IPT checkpoint: no body.query_embed.weight / head.0.0.weight (keys start {sample})")
    n_feats = state["head.0.0.weight"].shape[0]
    dim = state["body.linear_encoding.weight"].shape[0]
    patch_dim = round((dim / n_feats) ** 0.5)
    num_tokens = state["body.position_encoding.pe.weight"].shape[0]
    patch_size = round(num_tokens**0.5) * patch_dim
    num_layers = len({k.split(".")[3] for k in state if k.startswith("body.encoder.layers.")})
    slots = sorted({int(k.split(".")[1]) for k in state if k.startswith("head.")})
    scales = []
    for i in slots:
        up = state.get(f"tail.{i}.0.0.weight")
        if up is None:
            scales.append(1)
        elif up.shape[0] == 9 * n_feats:
            scales.append(3)
        else:
            scales.append(2 ** (1 + sum(f"tail.{i}.0.{j}.weight" in state for j in range(2, 16, 2))))
    return {"n_feats": n_feats, "patch_dim": patch_dim, "patch_size": patch_size, "num_layers": num_layers,
            "scales": scales, "task_rows": state["body.query_embed.weight"].shape[0], "embedding_dim": dim}


def _describe(layout: dict) -> str:
    return (f"{len(layout['scales'])} head/tail pair(s) with scales {layout['scales']}, {layout['task_rows']} "
            f"task-embedding row(s), n_feats {layout['n_feats']}, {layout['num_layers']} layers")


def _official_tasks(layout: dict, path: str, task) -> list[str]:
    scales = layout["scales"]
    if len(scales) == len(TASK_NAMES):
        expected = [get_task(n).scale for n in TASK_NAMES]
        if scales != expected:
            raise CheckpointError(f"{path}: a 6-task file should have tail scales {expected}, this one has {scales}")
        return list(TASK_NAMES)
    if len(scales) != 1:
        raise CheckpointError(f"{path}: holds {_describe(layout)}; official files hold 1 or 6 tasks")
    if task is None:
        stem = re.sub(r"^ipt[_-]?", "", Path(path).stem.lower())
        task = OFFICIAL_FILE_TASKS.get(stem)
    if task is None:
        if scales[0] == 1:
            raise CheckpointError(
                f"{path}: holds one scale-1 task (denoising or deraining); say which with task='noise30', "
                "'noise50' or 'rain'"
            )
        task = f"sr{scales[0]}"
    name = get_task(task).name
    if get_task(name).scale != scales[0]:
        raise CheckpointError(f"{path}: task {name!r} needs a x{get_task(name).scale} tail but the file's tail is x{scales[0]}")
    return [name]


def _load_strict(model: IPT, state: dict, source: str, layout: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        ours = model.state_dict()
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


def _official_from_state_dict(state, path: str, task=None, config: IPTConfig | None = None) -> IPT:
    try:
        state = _unwrap(state)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    layout = official_layout(state)
    tasks = _official_tasks(layout, path, task)
    if config is None:
        heads = 12 if layout["embedding_dim"] % 12 == 0 else 1
        config = IPTConfig(n_feats=layout["n_feats"], patch_dim=layout["patch_dim"], patch_size=layout["patch_size"],
                           num_layers=layout["num_layers"], num_heads=heads)
    model = IPT(tasks, config)
    _load_strict(model, state, path, _describe(layout))
    return model


def load_official(path, task=None, map_location="cpu", config: IPTConfig | None = None) -> IPT:
    """An official IPT release file (IPT_sr2.pt ... IPT_derain.pt, IPT_pretrain.pt), loaded strictly.

    The task of a single-task file comes from `task`, else from the file name (IPT_denoise30.pt ->
    noise30), else from its tail scale for SR. config: only for non-standard sizes whose head count
    cannot be read off the weights.
    """
    kind, content = _read(path, map_location)
    if kind == "ours":
        raise CheckpointError(f"{path} is a checkpoint of this toolkit, not an official file: use IPT.load(path)")
    return _official_from_state_dict(content, str(path), task, config)
