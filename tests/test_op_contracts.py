"""One contract per op (ipt/ops/contract.py), enforced alike by every path: for each bad input, the
reference, the fake kernel (FakeTensorMode and torch.compile), the compiled CPU kernel (and the CUDA
kernel where a GPU is visible) raise the same exception type with the same message."""

import subprocess
import sys
import warnings

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import ipt.ops
from ipt.ops import codegen, contract, reference

NAN, INF = float("nan"), float("inf")
LIGHT = [list(r) for r in ipt.ops.LIGHT_RAIN.ranges()]  # amount, thickness, length, angle, alpha
# length, exposure, anxiety, centripetal, big_shake, gaussian_shake, angle; paths up to 13 px: size 15 fits
LIGHT_BLUR = [list(r) for r in ipt.ops.LIGHT_BLUR.ranges()]
STEPS = ipt.ops.LIGHT_BLUR.steps


def _img(*shape, dtype=torch.float32, device="cpu"):
    return torch.zeros(shape, dtype=dtype, device=device)


def _ids(n, dtype=torch.int64, device="cpu"):
    return torch.arange(n, dtype=dtype, device=device)


def _rain(**changes):
    """LIGHT ranges with some replaced, in contract order."""
    return [changes.get(name, r) for name, r in zip(contract.RAIN_PARAMS, LIGHT)]


def _shake(**changes):
    """LIGHT_BLUR ranges with some replaced, in contract order."""
    return [changes.get(name, r) for name, r in zip(contract.BLUR_PARAMS, LIGHT_BLUR)]


# (id, op, args, error type, the exact message)
CASES = [
    # patch_unfold
    ("unfold-3d", "patch_unfold", lambda: (_img(3, 6, 6), 3, None), ValueError,
     "patch_unfold: x must be 4-D (B, C, H, W), got shape [3, 6, 6]"),
    ("unfold-int", "patch_unfold", lambda: (_img(1, 3, 6, 6, dtype=torch.int32), 3, None), TypeError,
     "patch_unfold: x has dtype torch.int32; supported dtypes are float32, float64, bfloat16 and float16"),
    ("unfold-patch0", "patch_unfold", lambda: (_img(1, 3, 6, 6), 0, None), ValueError,
     "patch_unfold: patch_dim must be an integer >= 1, got 0"),
    ("unfold-multiple", "patch_unfold", lambda: (_img(1, 3, 7, 6), 3, None), ValueError,
     "patch_unfold: H=7 and W=6 must be multiples of patch_dim=3"),
    ("unfold-pos-shape", "patch_unfold", lambda: (_img(1, 3, 6, 6), 3, _img(4, 26)), ValueError,
     "patch_unfold: pos must have shape (N, C*patch_dim^2) = (4, 27), got [4, 26]"),
    ("unfold-pos-3d", "patch_unfold", lambda: (_img(1, 3, 6, 6), 3, _img(1, 4, 27)), ValueError,
     "patch_unfold: pos must have shape (N, C*patch_dim^2) = (4, 27), got [1, 4, 27]"),
    ("unfold-pos-dtype", "patch_unfold", lambda: (_img(1, 3, 6, 6), 3, _img(4, 27, dtype=torch.float64)), TypeError,
     "patch_unfold: pos has dtype torch.float64 but x has dtype torch.float32; they must match"),
    ("unfold-pos-device", "patch_unfold", lambda: (_img(1, 3, 6, 6), 3, _img(4, 27, device="meta")), ValueError,
     "patch_unfold: pos is on meta but x is on cpu; they must be on the same device"),
    ("unfold-patch-huge", "patch_unfold", lambda: (_img(1, 3, 6, 6), 2**31, None), ValueError,
     "patch_unfold: patch_dim must be below 2**31, got 2147483648"),
    ("unfold-token-length", "patch_unfold", lambda: (_img(1, 3, 0, 0), 2**30, None), ValueError,
     "patch_unfold: token length C*patch_dim^2 must be below 2**60, got C=3 and patch_dim=1073741824"),
    # patch_fold
    ("fold-2d", "patch_fold", lambda: (_img(4, 27), 3, [6, 6]), ValueError,
     "patch_fold: tokens must be 3-D (B, N, C*patch_dim^2), got shape [4, 27]"),
    ("fold-int", "patch_fold", lambda: (_img(1, 4, 27, dtype=torch.int64), 3, [6, 6]), TypeError,
     "patch_fold: tokens has dtype torch.int64; supported dtypes are float32, float64, bfloat16 and float16"),
    ("fold-patch-neg", "patch_fold", lambda: (_img(1, 4, 27), -1, [6, 6]), ValueError,
     "patch_fold: patch_dim must be an integer >= 1, got -1"),
    ("fold-size", "patch_fold", lambda: (_img(1, 4, 27), 3, [6, 7]), ValueError,
     "patch_fold: size (H=6, W=7) must be positive multiples of patch_dim=3"),
    ("fold-size0", "patch_fold", lambda: (_img(1, 4, 27), 3, [0, 6]), ValueError,
     "patch_fold: size (H=0, W=6) must be positive multiples of patch_dim=3"),
    ("fold-length", "patch_fold", lambda: (_img(1, 4, 26), 3, [6, 6]), ValueError,
     "patch_fold: token length 26 is not a multiple of patch_dim^2=9"),
    ("fold-count", "patch_fold", lambda: (_img(1, 5, 27), 3, [6, 6]), ValueError,
     "patch_fold: got 5 tokens but size (6, 6) with patch_dim 3 needs 4"),
    ("fold-patch-huge", "patch_fold", lambda: (_img(1, 4, 27), 2**32, [6, 6]), ValueError,
     "patch_fold: patch_dim must be below 2**31, got 4294967296"),  # the cases that crashed: tests/test_op_bounds.py
    ("fold-size-huge", "patch_fold", lambda: (_img(1, 0, 1), 1, [2**40, 2**40]), ValueError,
     "patch_fold: size must be two lengths below 2**31, got [1099511627776, 1099511627776]"),
    # bicubic_resize
    ("bicubic-3d", "bicubic_resize", lambda: (_img(3, 8, 8), [4, 4], [0.5, 0.5]), ValueError,
     "bicubic_resize: x must be 4-D (B, C, H, W), got shape [3, 8, 8]"),
    ("bicubic-int", "bicubic_resize", lambda: (_img(1, 3, 8, 8, dtype=torch.int32), [4, 4], [0.5, 0.5]), TypeError,
     "bicubic_resize: x has dtype torch.int32; supported dtypes are uint8, float32, float64, bfloat16 and float16"),
    ("bicubic-empty-image", "bicubic_resize", lambda: (_img(1, 3, 0, 8), [4, 4], [0.5, 0.5]), ValueError,
     "bicubic_resize: H and W must be >= 1, got shape [1, 3, 0, 8]"),
    ("bicubic-size", "bicubic_resize", lambda: (_img(1, 3, 8, 8), [0, 4], [0.5, 0.5]), ValueError,
     "bicubic_resize: size must be two output lengths >= 1, got [0, 4]"),
    ("bicubic-scale0", "bicubic_resize", lambda: (_img(1, 3, 8, 8), [4, 4], [0.0, 0.5]), ValueError,
     "bicubic_resize: scale must be two output/input length ratios in [0.000976562, 1024], got [0, 0.5]"),
    ("bicubic-scale-nan", "bicubic_resize", lambda: (_img(1, 3, 8, 8), [4, 4], [NAN, 0.5]), ValueError,
     "bicubic_resize: scale must be two output/input length ratios in [0.000976562, 1024], got [nan, 0.5]"),
    ("bicubic-scale-big", "bicubic_resize", lambda: (_img(1, 3, 8, 8), [4, 4], [0.5, 2048.0]), ValueError,
     "bicubic_resize: scale must be two output/input length ratios in [0.000976562, 1024], got [0.5, 2048]"),
    ("bicubic-scale-inf", "bicubic_resize", lambda: (_img(1, 3, 8, 8), [4, 4], [0.5, -INF]), ValueError,
     "bicubic_resize: scale must be two output/input length ratios in [0.000976562, 1024], got [0.5, -inf]"),
    ("bicubic-size-huge", "bicubic_resize", lambda: (_img(1, 3, 8, 8), [2**40, 2], [0.5, 0.5]), ValueError,
     "bicubic_resize: size must be two lengths below 2**31, got [1099511627776, 2]"),
    ("bicubic-numel", "bicubic_resize", lambda: (_img(1, 3, 8, 8), [2**30, 2**30], [1.0, 1.0]), ValueError,
     "bicubic_resize: output of shape [1, 3, 1073741824, 1073741824] must have fewer than 2**60 elements"),
    # add_gaussian_noise
    ("noise-3d", "add_gaussian_noise", lambda: (_img(3, 8, 8), 30.0, 1, _ids(3)), ValueError,
     "add_gaussian_noise: x must be 4-D (B, C, H, W), got shape [3, 8, 8]"),
    ("noise-int", "add_gaussian_noise", lambda: (_img(1, 3, 8, 8, dtype=torch.int16), 30.0, 1, _ids(1)), TypeError,
     "add_gaussian_noise: x has dtype torch.int16; supported dtypes are uint8, float32, float64, bfloat16 and float16"),
    ("noise-sigma-neg", "add_gaussian_noise", lambda: (_img(1, 3, 8, 8), -1.5, 1, _ids(1)), ValueError,
     "add_gaussian_noise: sigma must be finite and >= 0, got -1.5"),
    ("noise-sigma-nan", "add_gaussian_noise", lambda: (_img(1, 3, 8, 8), NAN, 1, _ids(1)), ValueError,
     "add_gaussian_noise: sigma must be finite and >= 0, got nan"),
    ("noise-sigma-inf", "add_gaussian_noise", lambda: (_img(1, 3, 8, 8), INF, 1, _ids(1)), ValueError,
     "add_gaussian_noise: sigma must be finite and >= 0, got inf"),
    ("noise-seed-neg", "add_gaussian_noise", lambda: (_img(1, 3, 8, 8), 30.0, -5, _ids(1)), ValueError,
     "add_gaussian_noise: seed must be an integer in [0, 2**63), got -5"),
    ("noise-ids-shape", "add_gaussian_noise", lambda: (_img(2, 3, 8, 8), 30.0, 1, _ids(3)), ValueError,
     "add_gaussian_noise: sample_ids must have shape (B,) = (2,), got [3]"),
    ("noise-ids-2d", "add_gaussian_noise", lambda: (_img(2, 3, 8, 8), 30.0, 1, _ids(2)[None]), ValueError,
     "add_gaussian_noise: sample_ids must have shape (B,) = (2,), got [1, 2]"),
    ("noise-ids-int", "add_gaussian_noise", lambda: (_img(2, 3, 8, 8), 30.0, 1, _ids(2, torch.int32)), TypeError,
     "add_gaussian_noise: sample_ids has dtype torch.int32; supported dtypes are int64"),
    ("noise-ids-device", "add_gaussian_noise", lambda: (_img(2, 3, 8, 8), 30.0, 1, _ids(2, device="meta")), ValueError,
     "add_gaussian_noise: sample_ids is on meta but x is on cpu; they must be on the same device"),
    # rain_streaks
    ("streaks-ids-2d", "rain_streaks", lambda: (_ids(4).reshape(2, 2), 8, 8, 1, *_rain()[:4]), ValueError,
     "rain_streaks: sample_ids must be 1-D (B,), got shape [2, 2]"),
    ("streaks-ids-float", "rain_streaks", lambda: (_ids(2, torch.float32), 8, 8, 1, *_rain()[:4]), TypeError,
     "rain_streaks: sample_ids has dtype torch.float32; supported dtypes are int64"),
    ("streaks-height", "rain_streaks", lambda: (_ids(1), 0, 8, 1, *_rain()[:4]), ValueError,
     "rain_streaks: height must be an integer >= 1, got 0"),
    ("streaks-width", "rain_streaks", lambda: (_ids(1), 8, -3, 1, *_rain()[:4]), ValueError,
     "rain_streaks: width must be an integer >= 1, got -3"),
    ("streaks-height-huge", "rain_streaks", lambda: (_ids(1), 2**40, 8, 1, *_rain()[:4]), ValueError,
     "rain_streaks: height must be below 2**31, got 1099511627776"),
    ("streaks-width-huge", "rain_streaks", lambda: (_ids(1), 8, 2**31, 1, *_rain()[:4]), ValueError,
     "rain_streaks: width must be below 2**31, got 2147483648"),
    ("streaks-numel", "rain_streaks", lambda: (_ids(1), 2**30, 2**30, 1, *_rain()[:4]), ValueError,
     "rain_streaks: output of shape [1, 1, 1073741824, 1073741824] must have fewer than 2**60 elements"),
    ("streaks-seed", "rain_streaks", lambda: (_ids(1), 8, 8, -1, *_rain()[:4]), ValueError,
     "rain_streaks: seed must be an integer in [0, 2**63), got -1"),
    ("streaks-amount", "rain_streaks", lambda: (_ids(1), 8, 8, 1, *_rain(amount=[0.5, 0.1])[:4]), ValueError,
     "rain_streaks: amount range (0.5, 0.1) must satisfy 0 <= low <= high <= 1"),
    ("streaks-thickness", "rain_streaks", lambda: (_ids(1), 8, 8, 1, *_rain(thickness=[0.0, 1.0])[:4]), ValueError,
     "rain_streaks: thickness range (0, 1) must satisfy 0.05 <= low <= high <= 64"),
    ("streaks-length", "rain_streaks", lambda: (_ids(1), 8, 8, 1, *_rain(length=[1.0, 1000.0])[:4]), ValueError,
     "rain_streaks: length range (1, 1000) must satisfy 0 <= low <= high <= 512"),
    ("streaks-angle-nan", "rain_streaks", lambda: (_ids(1), 8, 8, 1, *_rain(angle=[NAN, 0.0])[:4]), ValueError,
     "rain_streaks: angle range (nan, 0) must satisfy -360 <= low <= high <= 360"),
    ("streaks-pair", "rain_streaks", lambda: (_ids(1), 8, 8, 1, *_rain(angle=[0.0, 1.0, 2.0])[:4]), ValueError,
     "rain_streaks: angle must be a (low, high) pair, got [0, 1, 2]"),
    # add_rain
    ("rain-3d", "add_rain", lambda: (_img(3, 8, 8), _ids(3), 1, *_rain()), ValueError,
     "add_rain: x must be 4-D (B, C, H, W), got shape [3, 8, 8]"),
    ("rain-int", "add_rain", lambda: (_img(1, 3, 8, 8, dtype=torch.int32), _ids(1), 1, *_rain()), TypeError,
     "add_rain: x has dtype torch.int32; supported dtypes are uint8, float32, float64, bfloat16 and float16"),
    ("rain-seed", "add_rain", lambda: (_img(1, 3, 8, 8), _ids(1), -7, *_rain()), ValueError,
     "add_rain: seed must be an integer in [0, 2**63), got -7"),
    ("rain-ids-shape", "add_rain", lambda: (_img(2, 3, 8, 8), _ids(1), 1, *_rain()), ValueError,
     "add_rain: sample_ids must have shape (B,) = (2,), got [1]"),
    ("rain-ids-device", "add_rain", lambda: (_img(1, 3, 8, 8), _ids(1, device="meta"), 1, *_rain()), ValueError,
     "add_rain: sample_ids is on meta but x is on cpu; they must be on the same device"),
    ("rain-alpha", "add_rain", lambda: (_img(1, 3, 8, 8), _ids(1), 1, *_rain(alpha=[0.0, 5.0])), ValueError,
     "add_rain: alpha range (0, 5) must satisfy 0 <= low <= high <= 4"),
    ("rain-amount", "add_rain", lambda: (_img(1, 3, 8, 8), _ids(1), 1, *_rain(amount=[-0.1, 0.5])), ValueError,
     "add_rain: amount range (-0.1, 0.5) must satisfy 0 <= low <= high <= 1"),
    # motion_blur_kernels
    ("shake-ids-2d", "motion_blur_kernels", lambda: (_ids(4).reshape(2, 2), 15, 1, STEPS, *_shake()), ValueError,
     "motion_blur_kernels: sample_ids must be 1-D (B,), got shape [2, 2]"),
    ("shake-ids-int", "motion_blur_kernels", lambda: (_ids(2, torch.int32), 15, 1, STEPS, *_shake()), TypeError,
     "motion_blur_kernels: sample_ids has dtype torch.int32; supported dtypes are int64"),
    ("shake-size0", "motion_blur_kernels", lambda: (_ids(1), 0, 1, STEPS, *_shake()), ValueError,
     "motion_blur_kernels: size must be an integer >= 1, got 0"),
    ("shake-size-huge", "motion_blur_kernels", lambda: (_ids(1), 2**31, 1, STEPS, *_shake()), ValueError,
     "motion_blur_kernels: size must be below 2**31, got 2147483648"),
    ("shake-numel", "motion_blur_kernels", lambda: (_ids(1), 2**30, 1, STEPS, *_shake()), ValueError,
     "motion_blur_kernels: output of shape [1, 1073741824, 1073741824] must have fewer than 2**60 elements"),
    ("shake-seed", "motion_blur_kernels", lambda: (_ids(1), 15, -1, STEPS, *_shake()), ValueError,
     "motion_blur_kernels: seed must be an integer in [0, 2**63), got -1"),
    ("shake-steps1", "motion_blur_kernels", lambda: (_ids(1), 15, 1, 1, *_shake()), ValueError,
     "motion_blur_kernels: steps must be an integer >= 2, got 1"),
    ("shake-steps-big", "motion_blur_kernels", lambda: (_ids(1), 15, 1, 2**16 + 1, *_shake()), ValueError,
     "motion_blur_kernels: steps must be an integer <= 65536, got 65537"),
    ("shake-exposure-order", "motion_blur_kernels", lambda: (_ids(1), 15, 1, STEPS, *_shake(exposure=[0.9, 0.5])),
     ValueError, "motion_blur_kernels: exposure range (0.9, 0.5) must satisfy 0 <= low <= high <= 1"),
    ("shake-exposure", "motion_blur_kernels", lambda: (_ids(1), 15, 1, STEPS, *_shake(exposure=[0.0, 1.5])),
     ValueError, "motion_blur_kernels: exposure range (0, 1.5) must satisfy 0 <= low <= high <= 1"),
    ("shake-anxiety-nan", "motion_blur_kernels", lambda: (_ids(1), 15, 1, STEPS, *_shake(anxiety=[0.0, NAN])),
     ValueError, "motion_blur_kernels: anxiety range (0, nan) must satisfy 0 <= low <= high <= 1"),
    ("shake-length-bound", "motion_blur_kernels", lambda: (_ids(1), 8192, 1, STEPS, *_shake(length=[0.0, 5000.0])),
     ValueError, "motion_blur_kernels: length range (0, 5000) must satisfy 0 <= low <= high <= 4096"),
    ("shake-pair", "motion_blur_kernels", lambda: (_ids(1), 15, 1, STEPS, *_shake(angle=[0.0, 1.0, 2.0])), ValueError,
     "motion_blur_kernels: angle must be a (low, high) pair, got [0, 1, 2]"),
    ("shake-length-fit", "motion_blur_kernels", lambda: (_ids(1), 15, 1, STEPS, *_shake(length=[3.0, 20.0])),
     ValueError, "motion_blur_kernels: length range (3, 20) must end at most at 14, the longest path a 15x15 "
                 "kernel holds around its anchor"),
    ("shake-length-fit-size1", "motion_blur_kernels", lambda: (_ids(1), 1, 1, STEPS, *_shake(length=[0.0, 0.5])),
     ValueError, "motion_blur_kernels: length range (0, 0.5) must end at most at 0, the longest path a 1x1 kernel "
                 "holds around its anchor"),
    # an even size's anchor size // 2 is off-centre: one pixel less on one side
    ("shake-length-fit-even", "motion_blur_kernels", lambda: (_ids(1), 16, 1, STEPS, *_shake(length=[3.0, 14.5])),
     ValueError, "motion_blur_kernels: length range (3, 14.5) must end at most at 14, the longest path a 16x16 "
                 "kernel holds around its anchor"),
    # blur
    ("blur-3d", "blur", lambda: (_img(3, 8, 8), _img(3, 3, 3)), ValueError,
     "blur: x must be 4-D (B, C, H, W), got shape [3, 8, 8]"),
    ("blur-int", "blur", lambda: (_img(1, 3, 8, 8, dtype=torch.int32), _img(1, 3, 3)), TypeError,
     "blur: x has dtype torch.int32; supported dtypes are uint8, float32, float64, bfloat16 and float16"),
    ("blur-kernels-2d", "blur", lambda: (_img(1, 3, 8, 8), _img(3, 3)), ValueError,
     "blur: kernels must be 3-D (B, kH, kW), got shape [3, 3]"),
    ("blur-kernels-int", "blur", lambda: (_img(1, 3, 8, 8), _img(1, 3, 3, dtype=torch.int64)), TypeError,
     "blur: kernels has dtype torch.int64; supported dtypes are float32, float64, bfloat16 and float16"),
    ("blur-kernels-uint8", "blur", lambda: (_img(1, 3, 8, 8), _img(1, 3, 3, dtype=torch.uint8)), TypeError,
     "blur: kernels has dtype torch.uint8; supported dtypes are float32, float64, bfloat16 and float16"),
    ("blur-kernels-device", "blur", lambda: (_img(1, 3, 8, 8), _img(1, 3, 3, device="meta")), ValueError,
     "blur: kernels is on meta but x is on cpu; they must be on the same device"),
    ("blur-count", "blur", lambda: (_img(2, 3, 8, 8), _img(3, 3, 3)), ValueError,
     "blur: kernels must hold one kernel per image: got 3 for a batch of 2"),
    ("blur-count-empty", "blur", lambda: (_img(0, 3, 8, 8), _img(1, 3, 3)), ValueError,
     "blur: kernels must hold one kernel per image: got 1 for a batch of 0"),
    ("blur-kernel-big", "blur", lambda: (_img(1, 3, 8, 8), _img(1, 9, 9)), ValueError,
     "blur: kernels of shape [1, 9, 9] do not fit images of shape [1, 3, 8, 8]: each kernel side must be between 1 "
     "and the image's side"),
    ("blur-kernel-wide", "blur", lambda: (_img(1, 3, 8, 6), _img(1, 8, 7)), ValueError,
     "blur: kernels of shape [1, 8, 7] do not fit images of shape [1, 3, 8, 6]: each kernel side must be between 1 "
     "and the image's side"),
    ("blur-kernel-empty", "blur", lambda: (_img(1, 3, 8, 8), _img(1, 0, 3)), ValueError,
     "blur: kernels of shape [1, 0, 3] do not fit images of shape [1, 3, 8, 8]: each kernel side must be between 1 "
     "and the image's side"),
    ("blur-kernel-empty-image", "blur", lambda: (_img(1, 3, 0, 8), _img(1, 1, 1)), ValueError,
     "blur: kernels of shape [1, 1, 1] do not fit images of shape [1, 3, 0, 8]: each kernel side must be between 1 "
     "and the image's side"),
]
CASE_IDS = [case[0] for case in CASES]


def _error(call):
    try:
        call()
    except (TypeError, ValueError) as error:
        return type(error), str(error)
    return None, "no error"


def _kernel(op, key, args):
    """The compiled kernel for dispatch key `key`, called directly: mixed devices (meta) would
    otherwise dispatch to the fake kernel instead."""
    return getattr(torch.ops.ipt, op).default._op_dk(key, *args)


def _fake(op, args):
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
        return getattr(torch.ops.ipt, op)(*fake)


def _to(args, device):
    return tuple(a.to(device) if isinstance(a, torch.Tensor) and a.device.type == "cpu" else a for a in args)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_path_raises_the_same_error(kernels, case):
    _, op, make_args, error, message = case
    args = make_args()
    paths = {
        "reference": _error(lambda: getattr(reference, op)(*args)),
        "fake": _error(lambda: _fake(op, args)),
        "cpu kernel": _error(lambda: _kernel(op, torch._C.DispatchKey.CPU, args)),
    }
    if torch.cuda.is_available() and kernels.with_cuda:
        cuda_args = _to(args, "cuda")
        expected_cuda = message.replace("x is on cpu", "x is on cuda:0")
        paths["cuda reference"] = _error(lambda: getattr(reference, op)(*cuda_args))
        paths["cuda kernel"] = _error(lambda: _kernel(op, torch._C.DispatchKey.CUDA, cuda_args))
        assert paths.pop("cuda reference") == paths.pop("cuda kernel") == (error, expected_cuda)
    assert paths == dict.fromkeys(paths, (error, message))


@pytest.mark.parametrize("case", [c for c in CASES if "device" not in c[0]], ids=[i for i in CASE_IDS if "device" not in i])
def test_torch_compile_rejects_what_eager_rejects(kernels, case):
    _, op, make_args, error, message = case
    args = make_args()
    tensors = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]

    def call(*ts):
        full = list(args)
        for i, t in zip(tensors, ts):
            full[i] = t
        return getattr(torch.ops.ipt, op)(*full)

    torch._dynamo.reset()
    compiled = torch.compile(call, fullgraph=True, backend="eager")
    with pytest.raises(Exception) as caught:
        compiled(*[args[i] for i in tensors])
    assert f"{error.__name__}({message!r})" in str(caught.value)


# --- what only the fronts can check: seeds the schema's int64 cannot carry -------------------------


@pytest.mark.parametrize(
    "call, op",
    [
        (lambda seed: ipt.ops.add_gaussian_noise(_img(1, 3, 4, 4), 30.0, seed), "add_gaussian_noise"),
        (lambda seed: ipt.ops.rain_streaks(1, 8, 8, seed), "rain_streaks"),
        (lambda seed: ipt.ops.add_rain(_img(1, 3, 8, 8), seed), "add_rain"),
        (lambda seed: ipt.ops.motion_blur_kernels(1, 15, seed), "motion_blur_kernels"),
        # add_motion_blur is no op of its own: the seed reaches motion_blur_kernels, whose name the message bears
        (lambda seed: ipt.ops.add_motion_blur(_img(1, 3, 16, 16), seed), "motion_blur_kernels"),
    ],
    ids=["noise", "streaks", "rain", "blur-kernels", "motion-blur"],
)
def test_front_rejects_seeds_beyond_int64(kernels, call, op):
    expected = f"{op}: seed must be an integer in [0, 2**63), got {2**63}"
    with pytest.raises(ValueError) as eager:
        call(2**63)
    assert str(eager.value) == expected
    args = {"add_gaussian_noise": (_img(1, 3, 4, 4), 30.0, 2**63, _ids(1)), "rain_streaks": (_ids(1), 8, 8, 2**63,
            *_rain()[:4]), "add_rain": (_img(1, 3, 8, 8), _ids(1), 2**63, *_rain()),
            "motion_blur_kernels": (_ids(1), 15, 2**63, STEPS, *_shake())}[op]
    assert _error(lambda: getattr(reference, op)(*args)) == (ValueError, expected)
    call(2**63 - 1)  # the largest seed works


# --- the contract is the one source ----------------------------------------------------------------


def test_generated_headers_are_current():
    result = subprocess.run([sys.executable, "-m", "ipt.ops.codegen", "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for path, text in codegen.generated_files().items():
        assert path.read_text() == text


def test_registered_schemas_are_the_contracts(kernels):
    registered = {str(getattr(torch.ops.ipt, op).default._schema).removeprefix("ipt::") for op in contract.OPS}
    assert registered == {schema for schema, _ in contract.OPS.values()}
    assert sorted(contract.OPS) == ipt.ops.op_names() == sorted(reference.__all__)


def test_cpp_api_header_covers_every_op():
    text = codegen.OPS_H.read_text()
    for op in contract.OPS:
        assert f"inline at::Tensor {op}(" in text and f'"ipt::{op}"' in text


@pytest.mark.parametrize("name", list(contract.RAIN_PARAMS))
def test_compiled_rain_bounds_are_the_contracts(kernels, name):
    """Each rain bound, read by the C++ kernel from the generated header and by the reference from the
    contract: a range reaching exactly to the bound is accepted by both, one a hair beyond it is rejected
    by both with the same message. A bound edited on one side only (or a header left stale) fails here."""
    lo_bound, hi_bound, _ = contract.RAIN_PARAMS[name]
    x, ids = _img(1, 1, 4, 4), _ids(1)
    for bound, beyond in ((lo_bound, lo_bound - 1e-3 * max(1.0, abs(lo_bound))),
                          (hi_bound, hi_bound + 1e-3 * max(1.0, abs(hi_bound)))):
        for value, accepted in (((bound, bound), True), ((beyond, beyond), False)):
            args = (x, ids, 0, *_rain(**{name: list(value)}))
            kernel, ref = _error(lambda: _kernel("add_rain", "CPU", args)), _error(lambda: reference.add_rain(*args))
            assert kernel == ref, (value, kernel, ref)
            assert (kernel[0] is None) == accepted, (value, kernel)


def _run(call):
    """The output of a call, or the exception type and message it raised."""
    try:
        return call()
    except (TypeError, ValueError) as error:
        return type(error), str(error)


def _same(kernel, ref) -> bool:
    if isinstance(kernel, torch.Tensor) and isinstance(ref, torch.Tensor):
        return torch.equal(kernel, ref)
    return kernel == ref


@pytest.mark.parametrize("name", list(contract.BLUR_PARAMS))
def test_compiled_blur_bounds_are_the_contracts(kernels, name):
    """Each motion-blur bound, as test_compiled_rain_bounds_are_the_contracts checks the rain's: a range reaching
    exactly to the bound is accepted by the C++ kernel and the reference, which then draw the same kernel bit for
    bit; one a hair beyond it is rejected by both with the same message."""
    lo_bound, hi_bound, _ = contract.BLUR_PARAMS[name]
    ids = _ids(1)
    for bound, beyond in ((lo_bound, lo_bound - 1e-3 * max(1.0, abs(lo_bound))),
                          (hi_bound, hi_bound + 1e-3 * max(1.0, abs(hi_bound)))):
        # A path as long as the length bound fits only a kernel of side bound + 1 (4097: 67 MB of float32);
        # two steps keep its path, and the reference's splat of it, short.
        size, steps = (int(bound) + 1, 2) if name == "length" and bound > 14 else (15, STEPS)
        for value, accepted in (((bound, bound), True), ((beyond, beyond), False)):
            args = (ids, size, 0, steps, *_shake(**{name: list(value)}))
            kernel = _run(lambda: _kernel("motion_blur_kernels", "CPU", args))
            ref = _run(lambda: reference.motion_blur_kernels(*args))
            assert _same(kernel, ref), (value, kernel, ref)
            assert isinstance(kernel, torch.Tensor) == accepted, (value, kernel)


@pytest.mark.parametrize(
    "name, accepted, rejected",
    [("size", [1], [0]), ("steps", [contract.BLUR_STEPS_MIN, contract.BLUR_STEPS_MAX],
                            [contract.BLUR_STEPS_MIN - 1, contract.BLUR_STEPS_MAX + 1])],
)
def test_compiled_blur_scalar_bounds_are_the_contracts(kernels, name, accepted, rejected):
    """motion_blur_kernels' size and steps bounds (kBlurSizeMin, kBlurStepsMin/Max in the generated header):
    accepted exactly at the bound, rejected one beyond, alike by the C++ kernel and the reference."""
    # A point, the only path a kernel of side 1 holds; the shutter open for at most a tenth of the path, so that
    # the reference walks at most 6554 of the 65536 steps in Python.
    ranges = _shake(length=[0.0, 0.0], exposure=[0.0, 0.1])
    for value, ok in [*((v, True) for v in accepted), *((v, False) for v in rejected)]:
        size, steps = (value, STEPS) if name == "size" else (15, value)
        args = (_ids(2), size, 3, steps, *ranges)
        kernel = _run(lambda: _kernel("motion_blur_kernels", "CPU", args))
        ref = _run(lambda: reference.motion_blur_kernels(*args))
        assert _same(kernel, ref), (value, kernel, ref)
        assert isinstance(kernel, torch.Tensor) == ok, (value, kernel)


def test_blur_takes_kernels_as_large_as_the_image(kernels):
    """kernel_fit's bounds are inclusive: a kernel of exactly the image's sides, and one of 1x1, run on every
    path -- the reference, the CPU kernel, the fake kernel, torch.compile and the front -- with one answer."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 8, 6), generator=generator, dtype=torch.uint8)
    for kernel_shape in ((2, 8, 6), (2, 1, 1), (2, 8, 1), (2, 1, 6)):
        k = torch.rand(kernel_shape, generator=generator)
        k /= k.sum(dim=(1, 2), keepdim=True)
        expected = reference.blur(x, k)
        assert expected.shape == x.shape and expected.dtype == torch.float32
        torch.testing.assert_close(_kernel("blur", torch._C.DispatchKey.CPU, (x, k)), expected, rtol=0, atol=0)
        assert _fake("blur", (x, k)).shape == x.shape
        torch._dynamo.reset()
        compiled = torch.compile(lambda x, k: torch.ops.ipt.blur(x, k), fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(x, k), expected, rtol=0, atol=0)
        torch.testing.assert_close(ipt.ops.blur(x, k, check_sum=True), expected, rtol=0, atol=0)
    identity = torch.ones(2, 1, 1)
    torch.testing.assert_close(ipt.ops.blur(x, identity), x.float(), rtol=0, atol=0)


def test_blur_front_checks_kernel_sums_on_request(kernels):
    """blur(..., check_sum=True) refuses kernels that do not sum to 1 (NaN sums included), naming the first bad
    one; without it the op convolves whatever it is given. The op's own checks come first."""
    x = _img(3, 1, 8, 8)
    delta = torch.zeros(3, 3, 3)
    delta[:, 1, 1] = 1.0
    torch.testing.assert_close(ipt.ops.blur(x, delta, check_sum=True), x, rtol=0, atol=0)
    shakes = ipt.ops.motion_blur_kernels(3, 15, 7)  # the kernels the op makes pass
    ipt.ops.blur(_img(3, 1, 16, 16), shakes, check_sum=True)

    def refused(kernels, **options):
        with pytest.raises(ValueError) as caught:
            ipt.ops.blur(x, kernels, check_sum=True, **options)
        return str(caught.value)

    bad = delta.clone()
    bad[1, 1, 1], bad[2, 1, 1] = 0.5, 2.0
    assert refused(bad) == "blur: kernel 1 sums to 0.5, not 1 (tolerance 0.0001)"
    ipt.ops.blur(x, bad)
    nan = delta.clone()
    nan[2, 0, 0] = NAN
    assert refused(nan) == "blur: kernel 2 sums to nan, not 1 (tolerance 0.0001)"
    near = delta.clone()
    near[0, 1, 1] = 1.00005  # within the default tolerance, not within a tighter one
    ipt.ops.blur(x, near, check_sum=True)
    assert refused(near, tolerance=1e-5) == "blur: kernel 0 sums to 1.00005, not 1 (tolerance 1e-05)"
    assert refused(torch.zeros(3, 9, 9)) == (  # not "kernel 0 sums to 0": the shape is checked first
        "blur: kernels of shape [3, 9, 9] do not fit images of shape [3, 1, 8, 8]: each kernel side must be between "
        "1 and the image's side")


def test_patch_keyword_is_deprecated_but_works(kernels):
    x = torch.randn(2, 3, 6, 6)
    expected = reference.patch_unfold(x, 3)
    with pytest.warns(DeprecationWarning, match="patch_dim"):
        torch.testing.assert_close(ipt.ops.patch_unfold(x, patch=3), expected, rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match="patch_dim"):
        torch.testing.assert_close(ipt.ops.patch_fold(expected, patch=3, size=(6, 6)), x, rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch.testing.assert_close(ipt.ops.patch_unfold(x, patch_dim=3), expected, rtol=0, atol=0)
    with pytest.raises(TypeError, match="both patch_dim and"):
        ipt.ops.patch_unfold(x, 3, patch=3)


def test_resize_module_is_a_deprecated_alias():
    sys.modules.pop("ipt.ops.resize", None)
    with pytest.warns(DeprecationWarning, match="ipt.ops.bicubic"):
        import ipt.ops.resize as resize
    assert resize.bicubic_downsample is ipt.ops.bicubic_downsample
