"""Huge, zero and negative sizes and seeds (issue 12): every op rejects each with the same ValueError on
every path -- the reference, the fake kernel (FakeTensorMode), the meta kernel, the compiled CPU kernel,
the CUDA kernel where a GPU is visible, and the public front (ipt.ops.*) -- before a product of sizes can
overflow and before anything is allocated; a valid huge seed gives the same output shape everywhere.

Every size/seed argument of every op's schema is tried with each of VALUES (those beyond int64 only
where the schema cannot be bypassed: the reference and the fronts), and every dimension of a tensor
argument with each of DIMS that torch can build, as a stride-0 tensor that holds one element.

The cases run in a child process (this file run as a script) under a memory cap: a kernel that dies (a
SIGFPE from `% 0`, a segfault) or allocates fails its own case instead of killing pytest, and the child is
restarted after it."""

from __future__ import annotations

import functools
import json
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import ipt.ops
from ipt.ops import reference

VALUES = [2**31, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64, 0, -1, -(2**31), -(2**63), -(2**64)]
DIMS = [2**31, 2**32, 2**40, 2**62]
PLANE = 2**15  # H = W = 2**15: 2**30 pixels, so 2**31 channels or samples exceed the element bound
LAYER = [list(r) for r in ipt.ops.LIGHT_RAIN.ranges(with_alpha=False)]  # what the rain_streaks front uses
RAIN = [list(r) for r in ipt.ops.LIGHT_RAIN.ranges()]
SHAKE = [list(r) for r in ipt.ops.LIGHT_BLUR.ranges()]  # what the motion_blur_kernels front uses
STEPS = ipt.ops.LIGHT_BLUR.steps
MEMORY_CAP = 4 << 30  # bytes of address space for the child: a bare torch process takes well under 1 GiB
CHILD_TIMEOUT_S = 600


def _img(*shape, device="cpu"):
    return torch.zeros(shape, device=device)


def _big(*shape, device="cpu", dtype=torch.float32):
    """A tensor of `shape` that holds one element (every stride 0), so any dimension torch allows is cheap."""
    return torch.zeros((1,) * len(shape), dtype=dtype, device=device).expand(*shape)


def _ids(n, device="cpu"):
    return _big(n, dtype=torch.int64, device=device)


# (op, argument) -> (kind, args(value, device)): the op's arguments, valid but for `value` in place of the
# argument. Kinds: "int", a schema int that every value tried breaks; "seed", valid in [0, 2**63); "dim", a
# dimension of a tensor argument, tried with DIMS.
ARGUMENTS: dict[tuple[str, str], tuple[str, Callable]] = {
    # an empty image: every patch_dim divides H and W, so patch_dim reaches the token length C*patch_dim^2
    ("patch_unfold", "patch_dim"): ("int", lambda v, d: (_img(1, 3, 0, 0, device=d), v, None)),
    ("patch_unfold", "H"): ("dim", lambda v, d: (_big(1, 1, v, 1, device=d), 1, None)),
    ("patch_unfold", "W"): ("dim", lambda v, d: (_big(1, 1, 1, v, device=d), 1, None)),
    ("patch_unfold", "C"): ("dim", lambda v, d: (_big(1, v, PLANE, PLANE, device=d), 1, None)),
    ("patch_unfold", "B"): ("dim", lambda v, d: (_big(v, 1, PLANE, PLANE, device=d), 1, None)),
    # size (v, v) holds one token, so the size checks pass and patch_dim^2 is formed
    ("patch_fold", "patch_dim"): ("int", lambda v, d: (_img(1, 1, 1, device=d), v, [v, v])),
    ("patch_fold", "size[0]"): ("int", lambda v, d: (_img(1, 4, 3, device=d), 1, [v, 2])),
    ("patch_fold", "size[1]"): ("int", lambda v, d: (_img(1, 4, 3, device=d), 1, [2, v])),
    ("patch_fold", "B"): ("dim", lambda v, d: (_big(v, PLANE * PLANE, 1, device=d), 1, [PLANE, PLANE])),
    ("bicubic_resize", "size[0]"): ("int", lambda v, d: (_img(1, 3, 8, 8, device=d), [v, 2], [0.5, 0.25])),
    ("bicubic_resize", "size[1]"): ("int", lambda v, d: (_img(1, 3, 8, 8, device=d), [2, v], [0.25, 0.5])),
    ("bicubic_resize", "H"): ("dim", lambda v, d: (_big(1, 1, v, 1, device=d), [4, 4], [0.5, 0.5])),
    ("bicubic_resize", "W"): ("dim", lambda v, d: (_big(1, 1, 1, v, device=d), [4, 4], [0.5, 0.5])),
    ("bicubic_resize", "C"): ("dim", lambda v, d: (_big(1, v, PLANE, PLANE, device=d), [4, 4], [0.5, 0.5])),
    ("bicubic_resize", "B"): ("dim", lambda v, d: (_big(v, 1, PLANE, PLANE, device=d), [4, 4], [0.5, 0.5])),
    ("add_gaussian_noise", "seed"): ("seed", lambda v, d: (_img(1, 3, 8, 8, device=d), 30.0, v, _ids(1, d))),
    ("add_gaussian_noise", "H"): ("dim", lambda v, d: (_big(1, 1, v, 1, device=d), 30.0, 0, _ids(1, d))),
    ("add_gaussian_noise", "W"): ("dim", lambda v, d: (_big(1, 1, 1, v, device=d), 30.0, 0, _ids(1, d))),
    ("add_gaussian_noise", "C"): ("dim", lambda v, d: (_big(1, v, PLANE, PLANE, device=d), 30.0, 0, _ids(1, d))),
    ("add_gaussian_noise", "B"): ("dim", lambda v, d: (_big(v, 1, PLANE, PLANE, device=d), 30.0, 0, _ids(v, d))),
    ("rain_streaks", "height"): ("int", lambda v, d: (_ids(1, d), v, 8, 0, *LAYER)),
    ("rain_streaks", "width"): ("int", lambda v, d: (_ids(1, d), 8, v, 0, *LAYER)),
    ("rain_streaks", "seed"): ("seed", lambda v, d: (_ids(1, d), 8, 8, v, *LAYER)),
    ("rain_streaks", "B"): ("dim", lambda v, d: (_ids(v, d), PLANE, PLANE, 0, *LAYER)),
    ("add_rain", "seed"): ("seed", lambda v, d: (_img(1, 3, 8, 8, device=d), _ids(1, d), v, *RAIN)),
    ("add_rain", "H"): ("dim", lambda v, d: (_big(1, 1, v, 1, device=d), _ids(1, d), 0, *RAIN)),
    ("add_rain", "W"): ("dim", lambda v, d: (_big(1, 1, 1, v, device=d), _ids(1, d), 0, *RAIN)),
    ("add_rain", "C"): ("dim", lambda v, d: (_big(1, v, PLANE, PLANE, device=d), _ids(1, d), 0, *RAIN)),
    ("add_rain", "B"): ("dim", lambda v, d: (_big(v, 1, PLANE, PLANE, device=d), _ids(v, d), 0, *RAIN)),
    ("motion_blur_kernels", "size"): ("int", lambda v, d: (_ids(1, d), v, 0, STEPS, *SHAKE)),
    ("motion_blur_kernels", "seed"): ("seed", lambda v, d: (_ids(1, d), 15, v, STEPS, *SHAKE)),
    # every value tried is out of [2, 2**16]: the large ones break int_max, the rest int_min
    ("motion_blur_kernels", "steps"): ("int", lambda v, d: (_ids(1, d), 15, 0, v, *SHAKE)),
    # kernels of side PLANE: 2**31 samples of 2**30 taps exceed the element bound
    ("motion_blur_kernels", "B"): ("dim", lambda v, d: (_ids(v, d), PLANE, 0, STEPS, *SHAKE)),
    # 1x1 kernels fit any image, so the image's own bounds are what is tried
    ("blur", "H"): ("dim", lambda v, d: (_big(1, 1, v, 1, device=d), _big(1, 1, 1, device=d))),
    ("blur", "W"): ("dim", lambda v, d: (_big(1, 1, 1, v, device=d), _big(1, 1, 1, device=d))),
    ("blur", "C"): ("dim", lambda v, d: (_big(1, v, PLANE, PLANE, device=d), _big(1, 1, 1, device=d))),
    ("blur", "B"): ("dim", lambda v, d: (_big(v, 1, PLANE, PLANE, device=d), _big(v, 1, 1, device=d))),
    # a kernel side beyond any image's: refused as not fitting, before the kernels are read
    ("blur", "kH"): ("dim", lambda v, d: (_img(1, 1, 8, 8, device=d), _big(1, v, 1, device=d))),
    ("blur", "kW"): ("dim", lambda v, d: (_img(1, 1, 8, 8, device=d), _big(1, 1, v, device=d))),
}

# The public function of each op, called with the op's own arguments (the rain fronts draw from LIGHT_RAIN and
# the motion_blur_kernels front from LIGHT_BLUR, the ranges and steps the raw calls above pass).
FRONTS = {
    "patch_unfold": lambda x, patch_dim, pos: ipt.ops.patch_unfold(x, patch_dim, pos),
    "patch_fold": lambda tokens, patch_dim, size: ipt.ops.patch_fold(tokens, patch_dim, size),
    "bicubic_resize": lambda x, size, scale: ipt.ops.bicubic_downsample(x, size=tuple(size)),
    "add_gaussian_noise": lambda x, sigma, seed, ids: ipt.ops.add_gaussian_noise(x, sigma, seed, ids),
    "rain_streaks": lambda ids, height, width, seed, *ranges: ipt.ops.rain_streaks(ids, height, width, seed),
    "add_rain": lambda x, ids, seed, *ranges: ipt.ops.add_rain(x, seed, ids),
    "motion_blur_kernels": lambda ids, size, seed, steps, *ranges: ipt.ops.motion_blur_kernels(ids, size, seed),
    "blur": lambda x, kernels: ipt.ops.blur(x, kernels),
}


# What a rejection of each argument must name: the argument, the image's sides, the element count, or (a blur
# kernel's sides) that the kernels do not fit the images.
NAMED = {"size[0]": "size", "size[1]": "size", "H": "H and W", "W": "H and W", "C": "elements", "B": "elements",
         "kH": "do not fit", "kW": "do not fit"}


class Case(NamedTuple):
    id: str
    op: str
    make: Callable[[str], tuple]  # the op's arguments, on a device
    valid: bool = False  # else every path raises the same ValueError
    schema_carries: bool = True  # else no call reaches a kernel: the dispatcher cannot cast the value
    front: bool = True  # whether the public front is called too
    names: str = ""  # what the message must name
    message: str | None = None  # the exact message, where it is pinned


def _buildable(make, value: int) -> bool:
    """Whether torch can make the arguments at all (a shape of 2**63 elements or more it refuses)."""
    try:
        make(value, "meta")
    except RuntimeError:
        return False
    return True


def _value_name(value: int) -> str:
    if value in (0, 2**63 - 1):
        return {0: "0", 2**63 - 1: "2**63-1"}[value]
    return f"{'-' if value < 0 else ''}2**{abs(value).bit_length() - 1}"


def _argument_cases():
    for (op, argument), (kind, make) in ARGUMENTS.items():
        for value in DIMS if kind == "dim" else VALUES:
            if _buildable(make, value):
                yield Case(
                    f"{op}-{argument}={_value_name(value)}", op, functools.partial(make, value),
                    valid=kind == "seed" and 0 <= value < 2**63,
                    schema_carries=-(2**63) <= value < 2**63,
                    # bicubic_downsample checks a size below 1 itself first, under its own name (ipt/ops/bicubic.py);
                    # the motion_blur_kernels front takes steps only inside a BlurConfig, which checks it as its own
                    front=not (op == "bicubic_resize" and kind == "int" and value < 1)
                    and (op, argument) != ("motion_blur_kernels", "steps"),
                    names=NAMED.get(argument, argument),
                )


# The exact wording of the messages that only stride-0 tensors reach (tests/test_op_contracts.py pins the
# others; it moves its arguments to CUDA, which would materialise these).
EXACT = [
    Case("bicubic-intermediate", "bicubic_resize",  # the output and input within the bounds, the image between not
         lambda d: (_big(1, 1, 1, 2**30, device=d), [2**30, 1], [1 / 1024, 1 / 1024]),
         front=False,  # the front would pass a scale of its own, out of range here
         message="bicubic_resize: intermediate image of shape [1, 1, 1073741824, 1073741824] must have fewer "
                 "than 2**60 elements"),
    Case("rain-side", "add_rain", lambda d: (_big(1, 1, 2**31, 1, device=d), _ids(1, d), 0, *RAIN),
         message="add_rain: H and W must be below 2**31, got shape [1, 1, 2147483648, 1]"),
    Case("unfold-side", "patch_unfold", lambda d: (_big(1, 1, 1, 2**40, device=d), 1, None),
         message="patch_unfold: H and W must be below 2**31, got shape [1, 1, 1, 1099511627776]"),
    Case("noise-numel", "add_gaussian_noise", lambda d: (_big(1, 2**31, PLANE, PLANE, device=d), 30.0, 0, _ids(1, d)),
         message="add_gaussian_noise: x of shape [1, 2147483648, 32768, 32768] must have fewer than 2**60 elements"),
    Case("fold-numel", "patch_fold", lambda d: (_big(2**31, PLANE * PLANE, 1, device=d), 1, [PLANE, PLANE]),
         message="patch_fold: output of shape [2147483648, 1, 32768, 32768] must have fewer than 2**60 elements"),
    Case("shake-numel", "motion_blur_kernels", lambda d: (_ids(2**31, d), PLANE, 0, STEPS, *SHAKE),
         message="motion_blur_kernels: output of shape [2147483648, 32768, 32768] must have fewer than 2**60 "
                 "elements"),
    Case("blur-side", "blur", lambda d: (_big(1, 1, 1, 2**31, device=d), _big(1, 1, 1, device=d)),
         message="blur: H and W must be below 2**31, got shape [1, 1, 1, 2147483648]"),
    Case("blur-numel", "blur", lambda d: (_big(2**31, 1, PLANE, PLANE, device=d), _big(2**31, 1, 1, device=d)),
         message="blur: x of shape [2147483648, 1, 32768, 32768] must have fewer than 2**60 elements"),
    Case("blur-fit", "blur", lambda d: (_img(1, 1, 8, 8, device=d), _big(1, 2**40, 2**20, device=d)),
         message="blur: kernels of shape [1, 1099511627776, 1048576] do not fit images of shape [1, 1, 8, 8]: each "
                 "kernel side must be between 1 and the image's side"),
]
CASES = [*_argument_cases(), *EXACT]
CASES_BY_ID = {case.id: case for case in CASES}


# --- the child: runs cases and prints one JSON line before and after each ---------------------------------


def _outcome(call) -> list:
    try:
        out = call()
    except Exception as error:  # noqa: BLE001 -- anything but the contract's ValueError fails the case: record it
        return [type(error).__name__, str(error)[:400]]
    return ["ok", list(out.shape), str(out.dtype)]


def _kernel(op, key, args):
    """The compiled kernel for dispatch key `key`, called directly (not through the dispatcher's choice)."""
    return getattr(torch.ops.ipt, op).default._op_dk(key, *args)


def _fake(op, args):
    with FakeTensorMode() as mode:
        return getattr(torch.ops.ipt, op)(*[mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args])


def _paths(case: Case, cuda: bool) -> dict[str, list]:
    op = case.op
    paths = {"reference": _outcome(lambda: getattr(reference, op)(*case.make("cpu")))}
    devices = ["cpu", "meta"] + (["cuda"] if cuda else [])
    if case.schema_carries:
        paths["fake kernel"] = _outcome(lambda: _fake(op, case.make("cpu")))
        paths["meta kernel"] = _outcome(lambda: getattr(torch.ops.ipt, op)(*case.make("meta")))
        paths["cpu kernel"] = _outcome(lambda: _kernel(op, "CPU", case.make("cpu")))
        if cuda:
            paths["cuda kernel"] = _outcome(lambda: _kernel(op, "CUDA", case.make("cuda")))
    if case.front:
        for device in devices:
            paths[f"front on {device}"] = _outcome(lambda device=device: FRONTS[op](*case.make(device)))
    return paths


def _child(ids: list[str]) -> None:
    import warnings

    warnings.simplefilter("ignore")  # the fronts' one-time warnings are not what is tested here
    cuda = torch.cuda.is_available() and ipt.ops.EXTENSION.with_cuda
    if not cuda:  # a CUDA context reserves far more address space than it uses, so the cap is CPU-only
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    for case_id in ids:
        print(json.dumps({"start": case_id}), flush=True)
        print(json.dumps({"id": case_id, "paths": _paths(CASES_BY_ID[case_id], cuda)}), flush=True)


# --- the parent ------------------------------------------------------------------------------------------------


def _how_it_ended(returncode) -> str:
    if returncode is None:
        return f"timed out after {CHILD_TIMEOUT_S} s"
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _text(output) -> str:
    """What a timed-out child wrote (bytes, whatever `text` asked for, or None)."""
    return output.decode() if isinstance(output, bytes) else (output or "")


def _run_child(ids: list[str]) -> tuple[str, str, int | None]:
    try:
        proc = subprocess.run([sys.executable, __file__], input=json.dumps(ids), capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S, cwd=Path(__file__).resolve().parents[1], check=False)
    except subprocess.TimeoutExpired as timeout:
        return _text(timeout.stdout), _text(timeout.stderr), None
    return proc.stdout, proc.stderr, proc.returncode


def run_cases(ids: list[str]) -> dict[str, dict[str, list]]:
    """The paths' outcomes of each case; a case the child died in gets {"child": [how, stderr tail]}."""
    outcomes: dict[str, dict[str, list]] = {}
    todo = list(ids)
    while todo:
        stdout, stderr, returncode = _run_child(todo)
        started = None
        for line in stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                outcomes[record["id"]] = record["paths"]
        todo = [i for i in todo if i not in outcomes]
        if todo and started in todo:
            outcomes[started] = {"child": [_how_it_ended(returncode), stderr[-2000:]]}
            todo.remove(started)
        elif todo:  # died before its first case: nothing more can be learnt by retrying
            outcomes.update({i: {"child": [_how_it_ended(returncode), stderr[-2000:]]} for i in todo})
            todo = []
    return outcomes


@pytest.fixture(scope="module")
def outcomes(kernels):
    return run_cases([case.id for case in CASES])


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_path_gives_the_same_answer(outcomes, case):
    paths = outcomes[case.id]
    assert "child" not in paths, f"the child process {paths['child'][0]}:\n{paths['child'][1]}"
    first = paths["reference"]
    if case.valid:
        assert first[0] == "ok", paths
    else:
        assert first[0] == "ValueError" and first[1].startswith(f"{case.op}: ") and case.names in first[1], paths
        assert case.message in (None, first[1])
    assert paths == dict.fromkeys(paths, first), "the paths disagree"


class _Patches(torch.nn.Module):
    def forward(self, x):
        return ipt.ops.patch_fold(ipt.ops.patch_unfold(x, 3), 3, (x.shape[2], x.shape[3]))


def test_bounds_leave_a_dynamic_batch_dynamic(kernels):
    """The fake kernels' bound checks guard on no symbolic size (a guard like B < 2**60 / (C*H*W) would make
    torch.export refuse a dynamic batch); the real sizes are checked by the kernels when the program runs."""
    x = torch.randn(2, 3, 6, 6)
    exported = torch.export.export(_Patches(), (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    torch.testing.assert_close(exported.module()(torch.randn(5, 3, 6, 6)).shape, torch.Size([5, 3, 6, 6]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")
def test_cuda_kernels_are_among_the_paths(outcomes, kernels):
    assert kernels.with_cuda, "a GPU is visible but ipt._C was built without CUDA kernels"
    assert all("cuda kernel" in outcomes[case.id] for case in CASES if case.schema_carries)


if __name__ == "__main__":
    _child(json.loads(sys.stdin.read()))
