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


def _img(*shape, dtype=torch.float32, device="cpu"):
    return torch.zeros(shape, dtype=dtype, device=device)


def _ids(n, dtype=torch.int64, device="cpu"):
    return torch.arange(n, dtype=dtype, device=device)


def _rain(**changes):
    """LIGHT ranges with some replaced, in contract order."""
    return [changes.get(name, r) for name, r in zip(contract.RAIN_PARAMS, LIGHT)]


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
    ],
    ids=["noise", "streaks", "rain"],
)
def test_front_rejects_seeds_beyond_int64(kernels, call, op):
    expected = f"{op}: seed must be an integer in [0, 2**63), got {2**63}"
    with pytest.raises(ValueError) as eager:
        call(2**63)
    assert str(eager.value) == expected
    args = {"add_gaussian_noise": (_img(1, 3, 4, 4), 30.0, 2**63, _ids(1)), "rain_streaks": (_ids(1), 8, 8, 2**63,
            *_rain()[:4]), "add_rain": (_img(1, 3, 8, 8), _ids(1), 2**63, *_rain())}[op]
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
