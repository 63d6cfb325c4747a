"""The contract of every ipt op, stated once, as data: schemas, dtype sets, bounds, device rules and
error messages.

Everything that checks arguments reads it from here: ipt/ops/checks.py (used by the reference and
the fake kernels) directly, the C++ kernels through csrc/contract.h, which `python -m ipt.ops.codegen
--write` generates from this module (tests/test_op_contracts.py fails when the checked-in header is
stale). Messages are templates with {named} fields; both languages fill them by one rule (see
checks.show and csrc/checks.h show): integers in decimal, floats as printf's %g, shapes and lists as
[2, 3], tuples as (2,) / (4, 27), dtypes as Python prints them (torch.float32), devices as cpu, cuda:0.
A TypeError message is raised as TypeError on every path (TORCH_CHECK_TYPE in C++), every other one
as ValueError (TORCH_CHECK_VALUE).
"""

from __future__ import annotations

# --- dtypes ----------------------------------------------------------------------------------------

# The dtypes a tensor argument may have, by set name.
DTYPE_SETS = {
    "float": ("float32", "float64", "bfloat16", "float16"),  # the patch ops (differentiable)
    "image": ("uint8", "float32", "float64", "bfloat16", "float16"),  # the degradations' images
    "index": ("int64",),  # sample ids
}

# c10::ScalarType names of the dtypes that messages may print; C++ prints them by these Python
# names (torch.float32, not Float), so both languages say the same thing.
CPP_SCALAR_TYPES = {
    "bool": "Bool", "uint8": "Byte", "int8": "Char", "int16": "Short", "int32": "Int", "int64": "Long",
    "uint16": "UInt16", "uint32": "UInt32", "uint64": "UInt64", "float16": "Half", "bfloat16": "BFloat16",
    "float32": "Float", "float64": "Double", "complex32": "ComplexHalf", "complex64": "ComplexFloat",
    "complex128": "ComplexDouble",
}


def dtype_list_text(set_name: str) -> str:
    """'float32, float64, bfloat16 and float16': how messages list a dtype set."""
    names = DTYPE_SETS[set_name]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# --- bounds ----------------------------------------------------------------------------------------

# Rain: each parameter is a (low, high) range that every sample draws its value from; a range must
# satisfy bound_low <= low <= high <= bound_high. The order is the ops' argument order. The CUDA and
# CPU kernels need these bounds: thickness and length bound the streak radius (at most 352 pixels).
RAIN_PARAMS = {
    "amount": (0.0, 1.0, "fraction of pixels that seed a streak"),
    "thickness": (0.05, 64.0, "Gaussian width w in pixels (standard deviation w / 2)"),
    "length": (0.0, 512.0, "streak length L in pixels"),
    "angle": (-360.0, 360.0, "degrees from vertical"),
    "alpha": (0.0, 4.0, "blend strength of the layer"),
}
RAIN_BLEND_PARAM = "alpha"  # add_rain takes every parameter; rain_streaks all but the blend strength
RAIN_LAYER_PARAMS = tuple(name for name in RAIN_PARAMS if name != RAIN_BLEND_PARAM)
# The kernels take the layer parameters first and the blend strength last (add_rain's extra argument),
# and index the bounds by position: the blend parameter must stay last.
assert list(RAIN_PARAMS)[-1] == RAIN_BLEND_PARAM, "the blend parameter must be the last rain parameter"

# Motion blur (camera shake, the Boracchi-Foi trajectory model): each parameter is a (low, high) range
# that every sample draws its value from, bound_low <= low <= high <= bound_high, in the ops' argument
# order. A trajectory is `steps` positions of a path `length` pixels long; the PSF splats the first
# `exposure` fraction of them around the kernel's anchor (size // 2, where blur puts it), so a length of at most
# 2 * ((size - 1) // 2) -- size - 1, or size - 2 for an even size -- always fits (checked per call).
BLUR_PARAMS = {
    "length": (0.0, 4096.0, "path length in pixels (DeblurGAN's max_len); at most the kernel size - 1 (- 2 if even)"),
    "exposure": (0.0, 1.0, "fraction of the path the shutter is open for (0: a single point)"),
    "anxiety": (0.0, 1.0, "how much the hand shakes (DeblurGAN's expl); 0 gives a straight line"),
    "centripetal": (0.0, 10.0, "pull back towards the starting point"),
    "big_shake": (0.0, 1.0, "chance of an impulsive jerk per step, times anxiety (prob_big_shake)"),
    "gaussian_shake": (0.0, 100.0, "strength of the random shake"),
    "angle": (-360.0, 360.0, "initial direction of motion in degrees"),
}

# Scalar bounds, by name (C++: kPatchDimMin, kSeedMin, ...).
PATCH_DIM_MIN = 1  # side of a token's patch
RAIN_SIZE_MIN = 1  # rain_streaks height and width
SIGMA_MIN = 0.0  # noise standard deviation (also finite)
SEED_MIN = 0  # seeds are in [0, 2**63): they are int64 in the schemas and never negative
SEED_BITS = 63
RESIZE_SIZE_MIN = 1  # bicubic output lengths, and input lengths
RESIZE_SCALE_MIN, RESIZE_SCALE_MAX = 1.0 / 1024, 1024.0  # MATLAB scale (output/input) per axis
BLUR_SIZE_MIN = 1  # motion_blur_kernels' kernel side
BLUR_STEPS_MIN, BLUR_STEPS_MAX = 2, 2**16  # trajectory positions per sample (DeblurGAN draws 2000)

# Size bounds. Every kernel indexes in int64 (the CUDA patch kernels drop to int32 only when all offsets
# fit), so what bounds a size is that no product of sizes -- in the checks, the kernels or the reference
# -- can overflow int64 before it is checked:
# - A side (an image's H or W, an output length, patch_dim, rain_streaks height and width) is below
#   2**SIDE_BITS. The product of two sides (an image plane, a token grid, patch_dim^2, the rain's grid
#   padded by the streak radius of at most 352 pixels) is then below 2**63 and is formed freely; a
#   product with a third size (channels, batch) is only checked, by division, never formed past the
#   bound. Bicubic tap positions (at most an output length / the smallest scale < 2**31 * 1024 = 2**41,
#   computed in double) convert to int64 safely.
# - A tensor an op reads or makes (its output, the bicubic intermediate image, a token of C*patch_dim^2
#   features) has fewer than 2**NUMEL_BITS elements: PyTorch counts a storage's bytes in int64 and the
#   widest elements are 8 bytes (float64 images, the rain's int64 accumulators), and a sample's Philox
#   stream (2**60 blocks of 4 numbers, csrc/common/philox.h) covers each of its noise values and every
#   pixel of its padded rain grid.
# A shape with an empty dimension has 0 elements, but its other dimensions must still be int64s: hence the
# bound on patch_unfold's token length, which an empty image leaves unbounded by its element count.
SIDE_BITS = 31
NUMEL_BITS = 60

SCALAR_BOUNDS = {
    "kPatchDimMin": PATCH_DIM_MIN,
    "kRainSizeMin": RAIN_SIZE_MIN,
    "kSigmaMin": SIGMA_MIN,
    "kSeedMin": SEED_MIN,
    "kResizeSizeMin": RESIZE_SIZE_MIN,
    "kResizeScaleMin": RESIZE_SCALE_MIN,
    "kResizeScaleMax": RESIZE_SCALE_MAX,
    "kBlurSizeMin": BLUR_SIZE_MIN,
    "kBlurStepsMin": BLUR_STEPS_MIN,
    "kBlurStepsMax": BLUR_STEPS_MAX,
    "kSideBits": SIDE_BITS,
    "kNumelBits": NUMEL_BITS,
}

# --- device rules ----------------------------------------------------------------------------------

# Every tensor argument of an op must be on the device of its first tensor argument, where the output
# is made. Compiled kernels exist for these device types; on any other the reference runs.
KERNEL_DEVICES = ("cpu", "cuda")

# --- messages --------------------------------------------------------------------------------------

MESSAGES = {
    # generic checks (checks.py / checks.h)
    "tensor": "{op}: {name} must be a torch.Tensor, got {type}",
    "dims": "{op}: {name} must be {ndim}-D {layout}, got shape {shape}",
    "dtype": "{op}: {name} has dtype {dtype}; supported dtypes are {supported}",
    "same_dtype": "{op}: {name} has dtype {dtype} but {other} has dtype {other_dtype}; they must match",
    "same_device": "{op}: {name} is on {device} but {other} is on {other_device}; they must be on the same device",
    "shape": "{op}: {name} must have shape {layout} = {expected}, got {shape}",
    "int_min": "{op}: {name} must be an integer >= {min}, got {value}",
    "int_max": "{op}: {name} must be an integer <= {max}, got {value}",
    "finite_min": "{op}: {name} must be finite and >= {min}, got {value}",
    "seed": "{op}: seed must be an integer in [{min}, 2**{bits}), got {value}",
    "pair": "{op}: {name} must be a (low, high) pair, got {value}",
    "range": "{op}: {name} range ({low}, {high}) must satisfy {min} <= low <= high <= {max}",
    "side_max": "{op}: {name} must be below 2**{bits}, got {value}",
    "size_max": "{op}: size must be two lengths below 2**{bits}, got {value}",
    "image_side_max": "{op}: H and W must be below 2**{bits}, got shape {shape}",
    "numel_max": "{op}: {name} of shape {shape} must have fewer than 2**{bits} elements",
    # patch ops
    "patch_multiple": "{op}: H={height} and W={width} must be multiples of patch_dim={patch_dim}",
    "fold_size_len": "{op}: size must be (H, W), got {value}",
    "fold_size": "{op}: size (H={height}, W={width}) must be positive multiples of patch_dim={patch_dim}",
    "token_length": "{op}: token length {length} is not a multiple of patch_dim^2={area}",
    "token_count": "{op}: got {count} tokens but size ({height}, {width}) with patch_dim {patch_dim} needs {needed}",
    "token_dim_max": ("{op}: token length C*patch_dim^2 must be below 2**{bits}, got C={channels} and "
                      "patch_dim={patch_dim}"),
    # bicubic
    "image_size": "{op}: H and W must be >= {min}, got shape {shape}",
    "resize_size": "{op}: size must be two output lengths >= {min}, got {value}",
    "resize_scale": "{op}: scale must be two output/input length ratios in [{min}, {max}], got {value}",
    # motion blur
    "blur_length": ("{op}: length range ({low}, {high}) must end at most at {max}, the longest path a {size}x{size} "
                    "kernel holds around its anchor"),
    "kernel_count": "{op}: kernels must hold one kernel per image: got {count} for a batch of {batch}",
    "kernel_fit": ("{op}: kernels of shape {shape} do not fit images of shape {image_shape}: each kernel side must "
                   "be between 1 and the image's side"),
    # the front blur(x, kernels, check_sum=True) (Python only: the compiled op never sums its kernels)
    "kernel_sum": "{op}: kernel {index} sums to {total}, not 1 (tolerance {tolerance})",
    # the front add_motion_blur (Python only: it draws the kernels, then calls blur)
    "blur_image": "{op}: images of shape {shape} are smaller than the {size}x{size} blur kernel; use crops of at least {size} pixels",
    # the front add_rain(x, streak=layer) (Python only: it is no compiled op)
    "streak_layer": "{op}: streak must be a (B, 1, H, W) layer, got shape {shape}",
    "streak_fit": "{op}: streak of shape {shape} does not fit images of shape {image_shape}",
}
TYPE_ERRORS = frozenset({"tensor", "dtype", "same_dtype"})  # the rest are ValueError

# The layouts that dims / shape messages print, by argument.
LAYOUTS = {
    "image": "(B, C, H, W)",
    "tokens": "(B, N, C*patch_dim^2)",
    "pos": "(N, C*patch_dim^2)",
    "sample_ids": "(B,)",
    "kernels": "(B, kH, kW)",
}

# --- the ops ---------------------------------------------------------------------------------------


def _ranges(names) -> str:
    return ", ".join(f"float[2] {name}" for name in names)


# name -> (schema without the namespace, one-line contract). csrc/ops.cpp defines these schemas and
# csrc/include/ipt/ops.h has one C++ function per entry, both generated.
OPS = {
    "patch_unfold": (
        "patch_unfold(Tensor x, int patch_dim, Tensor? pos=None) -> Tensor",
        "(B, C, H, W) -> (B, N, C*patch_dim^2) tokens, with pos (N, C*patch_dim^2) added when given.",
    ),
    "patch_fold": (
        "patch_fold(Tensor tokens, int patch_dim, int[2] size) -> Tensor",
        "(B, N, C*patch_dim^2) tokens -> (B, C, H, W) image; the exact inverse of patch_unfold.",
    ),
    "bicubic_resize": (
        "bicubic_resize(Tensor x, int[2] size, float[2] scale) -> Tensor",
        "MATLAB imresize(x, 'bicubic') to size; scale = output/input length per axis (0.5 halves).",
    ),
    "add_gaussian_noise": (
        "add_gaussian_noise(Tensor x, float sigma, int seed, Tensor sample_ids) -> Tensor",
        "clip(x + sigma * N(0, 1), 0, 255), seeded per (seed, sample id); float output, not rounded.",
    ),
    "rain_streaks": (
        f"rain_streaks(Tensor sample_ids, int height, int width, int seed, {_ranges(RAIN_LAYER_PARAMS)}) -> Tensor",
        "Grey rain-streak layers (B, 1, height, width) in [0, 255], parameters drawn per sample.",
    ),
    "add_rain": (
        f"add_rain(Tensor x, Tensor sample_ids, int seed, {_ranges(RAIN_PARAMS)}) -> Tensor",
        "clip(x + alpha * layer, 0, 255) with each sample's procedural streak layer and alpha.",
    ),
    "motion_blur_kernels": (
        f"motion_blur_kernels(Tensor sample_ids, int size, int seed, int steps, {_ranges(BLUR_PARAMS)}) -> Tensor",
        "Camera-shake PSFs (B, size, size), float32 summing to 1, parameters drawn per sample.",
    ),
    "blur": (
        "blur(Tensor x, Tensor kernels) -> Tensor",
        "Convolves image b of x with kernels[b], borders mirrored (edge repeated); float output.",
    ),
}
