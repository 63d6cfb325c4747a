"""MPRNet's release files: what they hold, and checks that they fit a network.

- The authors' PyTorch files (model_deblurring.pth, ...): {'epoch', 'state_dict', 'optimizer'} or a bare
  state_dict, keys "module."-prefixed when saved from DataParallel. ipt.model.checkpoint.read_checkpoint
  reads them (torch.load with weights_only=True); official_state normalises what it read.
- PaddleGAN's MPR_<Task>.pdparams: a pickle of a dict of names (the same as PyTorch's, but the PReLU slope
  is `_weight`) to numpy arrays. Pickles can run anything while they are read, so read_pdparams uses an
  unpickler that can only rebuild numpy arrays: any other global a file asks for is refused before
  anything is called.

The sizes of a network are read off its weights (layout_config), and named after the preset they match,
so that a file that does not fit says what it is ("it looks like the denoise preset").
"""

from __future__ import annotations

import collections
import pickle
import re
from pathlib import Path

import numpy as np
import torch

from ..model.checkpoint import CheckpointError, check_weights, load_state_strict, official_state_dict
from ..tasks import get_task
from .config import PRESET_KINDS, MPRNetConfig, preset_name

try:  # numpy >= 2 names its internals numpy._core (numpy.core is a deprecated alias there)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

PDPARAMS_SUFFIX = ".pdparams"
PADDLE_NAME_TABLE = "StructuredToParameterName@@"  # paddle.save's table of its internal parameter names
FLOAT_DTYPES = (np.float16, np.float32, np.float64)


# --- PaddleGAN's pickles --------------------------------------------------------------------------------------


def is_pdparams(path) -> bool:
    return Path(path).suffix.lower() == PDPARAMS_SUFFIX


def _rebuild_array(subtype, shape, dtype):
    """numpy's own array constructor for pickles, for plain ndarrays only (not a subclass a pickle names)."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"an array of type {subtype!r}, not numpy.ndarray")
    return _reconstruct(subtype, shape, dtype)


def _make_dtype(spec, align=False, copy=False):
    """np.dtype for pickles; object dtypes, whose arrays would unpickle arbitrary objects, are refused."""
    dtype = np.dtype(spec, align, copy)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"an array of Python objects (dtype {dtype})")
    return dtype


def _latin1_bytes(text, encoding):
    """How pickle protocol 2 stores bytes (as codecs.encode(str, 'latin1')): that use of it only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"codecs.encode of a {type(text).__name__} to {encoding!r}")
    return text.encode("latin1")


# The only globals a .pdparams pickle may name: what rebuilds a dict of numpy arrays.
ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"): _rebuild_array,
    ("numpy.core.multiarray", "_reconstruct"): _rebuild_array,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _make_dtype,
    ("_codecs", "encode"): _latin1_bytes,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


# Pickle protocol 2 writes Python 2's module names; named as Python 3 calls them in the refusals.
PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg", "exceptions": "builtins"}


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        module = PYTHON2_MODULES.get(module, module)
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise CheckpointError(f"{self.source}: its pickle asks for {module}.{name}: refused, nothing in it was run "
                                  "(a .pdparams file holds numpy arrays; only what rebuilds them is allowed)")
        return allowed

    def persistent_load(self, pid):
        raise CheckpointError(f"{self.source}: its pickle refers to outside objects ({pid!r}): refused, not a "
                              ".pdparams file of weights")


def read_pdparams(path, map_location="cpu") -> dict[str, torch.Tensor]:
    """The weights of a PaddlePaddle .pdparams file, names as the file has them, as torch tensors.

    The file must unpickle to a dict of names to floating-point numpy arrays (PaddleGAN's training
    files, which keep the network under "generator", are read there). Paddle's table of internal
    parameter names (names only) is skipped; any other value that is not an array is refused, named:
    a weights file has nothing else, so it is not the file it claims to be."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as f:
            content = _ArrayUnpickler(f, str(path)).load()
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"{path}: not a readable .pdparams pickle of numpy arrays ({type(error).__name__}: "
                              f"{error})") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: holds a {type(content).__name__}, not a dict of names to arrays")
    if isinstance(content.get("generator"), dict):
        content = content["generator"]
    state = {}
    for key, value in content.items():
        if key == PADDLE_NAME_TABLE:
            continue
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: holds the key {key!r}, not a parameter name")
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: {key!r} holds a {type(value).__name__}, not a numpy array of weights")
        if value.dtype.type not in FLOAT_DTYPES:
            raise CheckpointError(f"{path}: {key!r} is an array of {value.dtype}, not of floating-point weights")
        native = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("="))  # torch takes native byte order
        state[key] = torch.from_numpy(native).to(map_location)
    return state


# --- what an official file holds --------------------------------------------------------------------------------


def _torch_name(key: str) -> str:
    """Paddle names a PReLU's slope `_weight` where PyTorch says `weight`."""
    return key[: -len("_weight")] + "weight" if key.endswith("._weight") else key


def official_state(content, source: str) -> dict[str, torch.Tensor]:
    """The state_dict of an official file's content, in PyTorch's names: under "state_dict" or bare,
    "module." prefixes removed, PaddlePaddle's `_weight` renamed; every tensor checked finite."""
    state = official_state_dict(content, source)
    renamed = {}
    for key, value in state.items():
        name = _torch_name(key)
        if name in renamed:
            raise CheckpointError(f"{source}: holds both {key} and {name} (two names for one weight)")
        renamed[name] = value
    return renamed


def official_keys(content) -> set[str] | None:
    """The parameter names of an official-style content, normalised as official_state does, without
    looking at the weights (cheap); None if it is not a dict of names."""
    state = content
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state_dict"):  # where official_state_dict looks
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        return None
    return {_torch_name(k.removeprefix("module.")) for k in state}


def looks_like_mprnet(keys) -> bool:
    """Whether a set of parameter names is MPRNet's (its first convolution and its stage 3)."""
    return "shallow_feat1.0.weight" in keys and any(k.startswith("stage3_orsnet.") for k in keys)


# The weights whose shapes tell the sizes (layout_config).
LAYOUT_KEYS = ("shallow_feat1.0.weight", "shallow_feat1.1.CA.conv_du.0.weight", "stage1_encoder.down12.down.1.weight",
               "tail.weight")


def layout_config(state: dict, source: str = "state_dict") -> MPRNetConfig:
    """The config of the network an official-style state_dict holds, read off its weights' shapes:
    n_feat, in_c and kernel_size from the first convolution, the reduction from its channel attention,
    scale_unetfeats from the first downsampling, scale_orsnetfeats and out_c from the tail, num_cab from
    the blocks of stage 3's first ORB, bias from whether the first convolution has one."""
    absent = [k for k in LAYOUT_KEYS if k not in state]
    if absent:
        raise CheckpointError(f"{source}: not an MPRNet state_dict: no {' / '.join(absent)} (keys start "
                              f"{sorted(state)[:5]}){_other_family_hint(state)}")
    shapes = {k: tuple(state[k].shape) for k in LAYOUT_KEYS}
    bad = next((k for k, shape in shapes.items() if len(shape) != 4 or 0 in shape), None)
    if bad is not None:
        raise CheckpointError(f"{source}: {bad} has shape {shapes[bad]}, not that of an MPRNet convolution")
    n_feat, in_c, kernel_size, _ = shapes["shallow_feat1.0.weight"]
    squeezed = shapes["shallow_feat1.1.CA.conv_du.0.weight"][0]
    out_c, tail_width = shapes["tail.weight"][:2]
    cab = re.compile(r"stage3_orsnet\.orb1\.body\.(\d+)\.CA\.conv_du\.0\.weight")
    num_cab = sum(1 for k in state if cab.fullmatch(k))
    try:
        return MPRNetConfig(n_feat=n_feat, scale_unetfeats=shapes["stage1_encoder.down12.down.1.weight"][0] - n_feat,
                            scale_orsnetfeats=tail_width - n_feat, num_cab=num_cab, kernel_size=kernel_size,
                            reduction=_reduction(state, n_feat, squeezed), bias="shallow_feat1.0.bias" in state,
                            in_c=in_c, out_c=out_c)
    except ValueError as error:
        raise CheckpointError(f"{source}: its weights' shapes make no valid MPRNet: {error}") from None


def _reduction(state: dict, n_feat: int, squeezed: int) -> int:
    """The channel-attention reduction r: every attention squeezes its C channels to C // r, which several r
    may give for one width (6 // 4 == 6 // 5), so all the attentions of the file are asked; the default
    (4) where it fits, else the smallest r that fits them all."""
    pairs = {tuple(v.shape[1::-1]) for k, v in state.items() if k.endswith(".CA.conv_du.0.weight") and v.dim() == 4}
    fitting = [r for r in range(1, n_feat + 1) if all(channels // r == rows for channels, rows in pairs)]
    if MPRNetConfig.reduction in fitting:
        return MPRNetConfig.reduction
    return fitting[0] if fitting else max(n_feat // max(squeezed, 1), 1)  # none: the strict load names the shapes


def _other_family_hint(state: dict) -> str:
    from ..families import get_family

    if get_family("ipt").claims(state):
        return ": it holds an IPT model; load it with ipt.model.load_model (--model ipt)"
    return ""


def describe_config(config: MPRNetConfig) -> str:
    """For messages: "the deblur preset's sizes (n_feat 96, ...)", or "sizes of no preset (...)"."""
    name = preset_name(config)
    return f"the {name} preset's sizes ({config.describe()})" if name else f"sizes of no preset ({config.describe()})"


def describe_found(found: MPRNetConfig | None, wanted: MPRNetConfig) -> str:
    """What a file holds, for load_state_strict's "The file holds ..." (and the sizes of the model it was
    loaded into, when the caller asked for other sizes than the file's)."""
    name = None if found is None else preset_name(found)
    if found is None:
        text = "weights whose MPRNet sizes cannot be read"
    elif name:
        text = f"MPRNet weights that look like the {name} preset ({found.describe()})"
    else:
        text = f"MPRNet weights that match no preset: {found.describe()}"
    if found != wanted:
        text += f"; the model asked for has {describe_config(wanted)}"
    return text


def guess_task(config: MPRNetConfig, source: str) -> str:
    """The task of an official file loaded without one: that of the official preset whose sizes it has,
    else a task named in the file name (model_denoising.pth, MPR_Deraining.pdparams), else deblurring.
    It is only the model's label: the network restores whatever scale-1 task it is run on."""
    name = preset_name(config)
    if name in PRESET_KINDS:
        return get_task(PRESET_KINDS[name]).name
    stem = Path(source).stem.lower()
    for word, task in (("deblur", "deblur"), ("denois", "denoise"), ("derain", "derain")):
        if word in stem:
            return task
    return "deblur"


# --- loading -------------------------------------------------------------------------------------------------


def check_shared_prelu(model, state: dict, source: str) -> None:
    """The keys of the network's one PReLU slope must hold one value: a strict load would copy them all
    into the one parameter, silently keeping the last."""
    keys = [k for k in model.shared_prelu_keys() if k in state]
    shape = model.shared_prelu.weight.shape
    keys = [k for k in keys if state[k].shape == shape]  # other shapes: the strict load names them
    if not keys:
        return
    values = {}  # value -> the first key holding it
    for key in keys:
        values.setdefault(tuple(state[key].flatten().tolist()), key)
    if len(values) > 1:
        shown = ", ".join(f"{key} = {', '.join(f'{x:.6g}' for x in value)}" for value, key in list(values.items())[:3])
        raise CheckpointError(
            f"{source}: the {len(keys)} keys of MPRNet's shared PReLU slope hold {len(values)} different values "
            f"({shown}): the network has one slope for all its blocks, so these weights are not an MPRNet's (a "
            "strict load would silently keep the last)")


def load_weights(model, state: dict, source: str, layout: str) -> None:
    """A strict load of `state` into an MPRNet, after checking its weights are finite and its PReLU keys agree.
    layout: what the file holds, for the error message."""
    check_weights(state, source)
    check_shared_prelu(model, state, source)
    load_state_strict(model, state, source, layout)
