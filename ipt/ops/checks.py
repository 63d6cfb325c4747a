"""Argument checks of every op, read from ipt/ops/contract.py; the reference and the fake kernels run
these, the C++ kernels run csrc/checks.h, which reads the same contract through the generated
csrc/contract.h. Each op's check function makes its checks in the order its C++ twin of the same
name does, so the first problem found is the same on every path (tests/test_op_contracts.py)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch.fx.experimental.symbolic_shapes import statically_known_true

from . import contract as c

# --- formatting and raising --------------------------------------------------------------------------


def show(value) -> str:
    """A value as messages print it (the rule of contract.py, mirrored by show() in csrc/checks.h)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else format(value, "g")
    if isinstance(value, (list, tuple, torch.Size)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, torch.SymInt | torch.SymFloat):
        return show(int(value) if isinstance(value, torch.SymInt) else float(value))
    return str(value)


def show_tuple(values) -> str:
    """(2,) or (4, 27), as Python writes tuples."""
    values = [show(v) for v in values]
    return "(" + ", ".join(values) + ("," if len(values) == 1 else "") + ")"


def fail(key: str, **fields):
    """Raises the contract's message `key` with its fields filled (TypeError or ValueError)."""
    error = TypeError if key in c.TYPE_ERRORS else ValueError
    raise error(c.MESSAGES[key].format(**{k: show(v) for k, v in fields.items()}))


# --- generic checks ----------------------------------------------------------------------------------


def check_tensor(op: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        fail("tensor", op=op, name=name, type=type(t).__name__)


def check_dims(op: str, name: str, t: torch.Tensor, ndim: int, layout: str) -> None:
    if t.dim() != ndim:
        fail("dims", op=op, name=name, ndim=ndim, layout=layout, shape=list(t.shape))


def check_dtype(op: str, name: str, t: torch.Tensor, dtype_set: str) -> None:
    if str(t.dtype).removeprefix("torch.") not in c.DTYPE_SETS[dtype_set]:
        fail("dtype", op=op, name=name, dtype=t.dtype, supported=c.dtype_list_text(dtype_set))


def check_same_dtype(op: str, name: str, t: torch.Tensor, other: str, ref: torch.Tensor) -> None:
    if t.dtype != ref.dtype:
        fail("same_dtype", op=op, name=name, dtype=t.dtype, other=other, other_dtype=ref.dtype)


def check_same_device(op: str, name: str, t: torch.Tensor, other: str, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        fail("same_device", op=op, name=name, device=t.device, other=other, other_device=ref.device)


def check_shape(op: str, name: str, t: torch.Tensor, layout: str, expected) -> None:
    if list(t.shape) != list(expected):
        fail("shape", op=op, name=name, layout=layout, expected=show_tuple(expected), shape=list(t.shape))


def _is_int(value) -> bool:
    return isinstance(value, int | torch.SymInt) and not isinstance(value, bool)


def check_int_min(op: str, name: str, value, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        fail("int_min", op=op, name=name, min=minimum, value=value)


def check_finite_min(op: str, name: str, value, minimum: float) -> None:
    if not (math.isfinite(value) and value >= minimum):
        fail("finite_min", op=op, name=name, min=minimum, value=float(value))


def _beyond(value, bits: int) -> bool:
    """value >= 2**bits, for the upper bounds of sizes. A symbolic size (torch.compile, torch.export) that may
    still be in range is let through, not guarded on (a guard would pin a dynamic batch): the compiled
    kernel checks the real size when the program runs."""
    return statically_known_true(value >= 2**bits)


def check_side(op: str, name: str, value, minimum: int) -> None:
    """An integer side (a length in pixels): at least `minimum` and below 2**SIDE_BITS."""
    check_int_min(op, name, value, minimum)
    if _beyond(value, c.SIDE_BITS):
        fail("side_max", op=op, name=name, bits=c.SIDE_BITS, value=value)


def check_size_max(op: str, size) -> None:
    """Both lengths of a size argument below 2**SIDE_BITS (their lower bound is each op's own check)."""
    if _beyond(size[0], c.SIDE_BITS) or _beyond(size[1], c.SIDE_BITS):
        fail("size_max", op=op, bits=c.SIDE_BITS, value=list(size))


def numel_fits(shape) -> bool:
    """Whether a tensor of `shape` (sizes >= 0) has fewer than 2**NUMEL_BITS elements (Python's integers
    are exact; csrc/checks.h reaches the same answer without forming a product past the bound)."""
    return not _beyond(math.prod(shape), c.NUMEL_BITS)


def check_numel(op: str, name: str, shape) -> None:
    if not numel_fits(shape):
        fail("numel_max", op=op, name=name, shape=list(shape), bits=c.NUMEL_BITS)


def check_image_bounds(op: str, x: torch.Tensor) -> None:
    """An image batch's sides and element count, the bounds of contract.py."""
    if _beyond(x.shape[2], c.SIDE_BITS) or _beyond(x.shape[3], c.SIDE_BITS):
        fail("image_side_max", op=op, bits=c.SIDE_BITS, shape=list(x.shape))
    check_numel(op, "x", x.shape)


def fits_int64(*values) -> bool:
    """Whether the schemas' int / int[] (int64) can carry every value (an int or a list of ints) to the C++
    checks. The fronts run the Python checks on any other value, so that it is rejected by the contract's
    message rather than by the dispatcher's cast."""
    flat = [v for value in values for v in (value if isinstance(value, list | tuple) else [value])]
    return all(isinstance(v, torch.SymInt) or (_is_int(v) and -(2**63) <= v < 2**63) for v in flat)


def check_seed(op: str, seed) -> None:
    if not _is_int(seed) or not c.SEED_MIN <= seed < 2**c.SEED_BITS:
        fail("seed", op=op, min=c.SEED_MIN, bits=c.SEED_BITS, value=seed)


def check_range(op: str, name: str, value, params=c.RAIN_PARAMS) -> tuple[float, float]:
    """A parameter's (low, high) range against its bounds in `params` (contract.RAIN_PARAMS or BLUR_PARAMS);
    returns the range as floats."""
    bound_lo, bound_hi, _ = params[name]
    try:  # any (low, high) pair of numbers: a tuple, a list, a 2-element array or tensor
        if isinstance(value, str):
            raise TypeError
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        fail("pair", op=op, name=name, value=list(value) if isinstance(value, list | tuple) else repr(value))
    if not (math.isfinite(lo) and math.isfinite(hi) and bound_lo <= lo <= hi <= bound_hi):
        fail("range", op=op, name=name, low=lo, high=hi, min=bound_lo, max=bound_hi)
    return lo, hi


def check_ranges(op: str, names, ranges, params=c.RAIN_PARAMS) -> dict[str, tuple[float, float]]:
    return {name: check_range(op, name, value, params) for name, value in zip(names, ranges, strict=True)}


def check_image_batch(op: str, x) -> None:
    check_tensor(op, "x", x)
    check_dims(op, "x", x, 4, c.LAYOUTS["image"])
    check_dtype(op, "x", x, "image")
    check_image_bounds(op, x)


def check_id_vector(op: str, ids) -> None:
    """The sample ids of an op that makes one output per id (no image to match)."""
    check_tensor(op, "sample_ids", ids)
    check_dims(op, "sample_ids", ids, 1, c.LAYOUTS["sample_ids"])
    check_dtype(op, "sample_ids", ids, "index")


def check_sample_ids(op: str, ids, x: torch.Tensor) -> None:
    check_tensor(op, "sample_ids", ids)
    check_shape(op, "sample_ids", ids, c.LAYOUTS["sample_ids"], (x.shape[0],))
    check_dtype(op, "sample_ids", ids, "index")
    check_same_device(op, "sample_ids", ids, "x", x)


def degraded_dtype(x: torch.Tensor) -> torch.dtype:
    """Degraded images are float: uint8 gives float32, float keeps its dtype."""
    return torch.float32 if x.dtype == torch.uint8 else x.dtype


# --- the ops -------------------------------------------------------------------------------------------


class PatchGeometry(NamedTuple):
    channels: int
    height: int
    width: int
    patch_dim: int

    @property
    def num_tokens(self) -> int:
        return (self.height // self.patch_dim) * (self.width // self.patch_dim)

    @property
    def token_dim(self) -> int:
        return self.channels * self.patch_dim * self.patch_dim


def check_patch_unfold(x, patch_dim, pos) -> PatchGeometry:
    op = "patch_unfold"
    check_tensor(op, "x", x)
    check_dims(op, "x", x, 4, c.LAYOUTS["image"])
    check_dtype(op, "x", x, "float")
    check_image_bounds(op, x)
    check_side(op, "patch_dim", patch_dim, c.PATCH_DIM_MIN)
    g = PatchGeometry(x.shape[1], x.shape[2], x.shape[3], patch_dim)
    if g.height % patch_dim != 0 or g.width % patch_dim != 0:
        fail("patch_multiple", op=op, height=g.height, width=g.width, patch_dim=patch_dim)
    # The tokens have as many elements as x (checked above), but an empty x leaves their length unbounded.
    if not numel_fits((g.channels, patch_dim, patch_dim)):
        fail("token_dim_max", op=op, bits=c.NUMEL_BITS, channels=g.channels, patch_dim=patch_dim)
    if pos is not None:
        check_tensor(op, "pos", pos)
        check_shape(op, "pos", pos, c.LAYOUTS["pos"], (g.num_tokens, g.token_dim))
        check_same_dtype(op, "pos", pos, "x", x)
        check_same_device(op, "pos", pos, "x", x)
    return g


def check_patch_fold(tokens, patch_dim, size) -> PatchGeometry:
    op = "patch_fold"
    check_tensor(op, "tokens", tokens)
    check_dims(op, "tokens", tokens, 3, c.LAYOUTS["tokens"])
    check_dtype(op, "tokens", tokens, "float")
    check_side(op, "patch_dim", patch_dim, c.PATCH_DIM_MIN)
    if len(size) != 2:
        fail("fold_size_len", op=op, value=list(size))
    height, width = size
    if height < 1 or width < 1 or height % patch_dim != 0 or width % patch_dim != 0:
        fail("fold_size", op=op, height=height, width=width, patch_dim=patch_dim)
    check_size_max(op, size)
    area = patch_dim * patch_dim
    if tokens.shape[2] % area != 0:
        fail("token_length", op=op, length=tokens.shape[2], area=area)
    g = PatchGeometry(tokens.shape[2] // area, height, width, patch_dim)
    if tokens.shape[1] != g.num_tokens:
        fail("token_count", op=op, count=tokens.shape[1], height=height, width=width, patch_dim=patch_dim,
             needed=g.num_tokens)
    check_numel(op, "output", (tokens.shape[0], g.channels, height, width))
    return g


def check_bicubic_resize(x, size, scale) -> None:
    op = "bicubic_resize"
    check_image_batch(op, x)
    if x.shape[2] < c.RESIZE_SIZE_MIN or x.shape[3] < c.RESIZE_SIZE_MIN:
        fail("image_size", op=op, min=c.RESIZE_SIZE_MIN, shape=list(x.shape))
    if len(size) != 2 or min(size) < c.RESIZE_SIZE_MIN:
        fail("resize_size", op=op, min=c.RESIZE_SIZE_MIN, value=list(size))
    check_size_max(op, size)
    scale = [float(s) for s in scale]
    if len(scale) != 2 or not all(math.isfinite(s) and c.RESIZE_SCALE_MIN <= s <= c.RESIZE_SCALE_MAX for s in scale):
        fail("resize_scale", op=op, min=c.RESIZE_SCALE_MIN, max=c.RESIZE_SCALE_MAX, value=scale)
    batch, channels, in_h, in_w = x.shape
    check_numel(op, "output", (batch, channels, size[0], size[1]))
    # the image between the two passes: the axis with the smaller scale is resized first (rows on a tie)
    intermediate = (size[0], in_w) if scale[0] <= scale[1] else (in_h, size[1])
    check_numel(op, "intermediate image", (batch, channels, *intermediate))


def check_add_gaussian_noise(x, sigma, seed, sample_ids) -> None:
    op = "add_gaussian_noise"
    check_image_batch(op, x)
    check_finite_min(op, "sigma", sigma, c.SIGMA_MIN)
    check_seed(op, seed)
    check_sample_ids(op, sample_ids, x)


def check_rain_streaks(sample_ids, height, width, seed, *ranges) -> None:
    op = "rain_streaks"
    check_id_vector(op, sample_ids)
    check_side(op, "height", height, c.RAIN_SIZE_MIN)
    check_side(op, "width", width, c.RAIN_SIZE_MIN)
    check_numel(op, "output", (sample_ids.shape[0], 1, height, width))
    check_seed(op, seed)
    check_ranges(op, c.RAIN_LAYER_PARAMS, ranges)


def check_add_rain(x, sample_ids, seed, *ranges) -> None:
    op = "add_rain"
    check_image_batch(op, x)
    check_seed(op, seed)
    check_sample_ids(op, sample_ids, x)
    check_ranges(op, tuple(c.RAIN_PARAMS), ranges)


def resolve_config(value, presets: dict, config_type: type, check, argument: str):
    """The degradation recipe a front's `argument` names: a preset's name, or a config object, checked."""
    if isinstance(value, str):
        if value not in presets:
            raise ValueError(f"unknown {argument} preset {value!r}; choose one of {sorted(presets)} or pass a "
                             f"{config_type.__name__}")
        return presets[value]
    if not isinstance(value, config_type):
        raise TypeError(f"{argument} must be a preset name or a {config_type.__name__}, got {type(value).__name__}")
    check(value)
    return value


def check_rain_config(config) -> None:
    for name in c.RAIN_PARAMS:
        check_range("RainConfig", name, getattr(config, name))


def check_blur_steps(op: str, steps) -> None:
    check_int_min(op, "steps", steps, c.BLUR_STEPS_MIN)
    if statically_known_true(steps > c.BLUR_STEPS_MAX):
        fail("int_max", op=op, name="steps", max=c.BLUR_STEPS_MAX, value=steps)


def longest_blur_path(size: int) -> int:
    """The longest path a kernel of `size` holds, centred on its anchor size // 2: a path of length L spans at
    most L pixels per axis, L / 2 on each side of its centre."""
    return 2 * ((size - 1) // 2)


def check_blur_length(op: str, size, length_range) -> None:
    if length_range[1] > longest_blur_path(size):
        fail("blur_length", op=op, low=length_range[0], high=length_range[1], max=longest_blur_path(size), size=size)


def check_motion_blur_kernels(sample_ids, size, seed, steps, *ranges) -> None:
    op = "motion_blur_kernels"
    check_id_vector(op, sample_ids)
    check_side(op, "size", size, c.BLUR_SIZE_MIN)
    check_numel(op, "output", (sample_ids.shape[0], size, size))
    check_seed(op, seed)
    check_blur_steps(op, steps)
    checked = check_ranges(op, tuple(c.BLUR_PARAMS), ranges, c.BLUR_PARAMS)
    check_blur_length(op, size, checked["length"])


def check_blur(x, kernels) -> None:
    op = "blur"
    check_image_batch(op, x)
    check_tensor(op, "kernels", kernels)
    check_dims(op, "kernels", kernels, 3, c.LAYOUTS["kernels"])
    check_dtype(op, "kernels", kernels, "float")
    check_same_device(op, "kernels", kernels, "x", x)
    if kernels.shape[0] != x.shape[0]:
        fail("kernel_count", op=op, count=kernels.shape[0], batch=x.shape[0])
    if not (1 <= kernels.shape[1] <= x.shape[2] and 1 <= kernels.shape[2] <= x.shape[3]):
        fail("kernel_fit", op=op, shape=list(kernels.shape), image_shape=list(x.shape))


def check_blur_config(config) -> None:
    check_side("BlurConfig", "size", config.size, c.BLUR_SIZE_MIN)
    check_blur_steps("BlurConfig", config.steps)
    for name in c.BLUR_PARAMS:
        check_range("BlurConfig", name, getattr(config, name), c.BLUR_PARAMS)
    check_blur_length("BlurConfig", config.size, config.length)
