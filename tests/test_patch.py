"""patch_unfold / patch_fold: compiled kernels against the reference and an index formula written out."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ipt.ops
from ipt.ops import reference

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]

# (B, C, H, W, patch_dim): batch 1, odd channel counts, patch 1/2/3/8, IPT's body shape, non-square grids.
SHAPES = [
    (1, 1, 3, 3, 3),
    (2, 3, 6, 9, 3),
    (1, 5, 8, 8, 1),
    (3, 7, 10, 4, 2),
    (2, 3, 16, 24, 8),
    (2, 64, 48, 48, 3),
    (1, 4, 20, 15, 5),
]


def _inputs(shape, dtype, device, with_pos, seed=0):
    g = torch.Generator().manual_seed(seed)
    b, c, h, w, p = shape
    x = torch.randn(b, c, h, w, generator=g).to(device=device, dtype=dtype)
    pos = torch.randn((h // p) * (w // p), c * p * p, generator=g).to(device=device, dtype=dtype) if with_pos else None
    return x, p, pos


def test_reference_matches_the_index_formula():
    # The contract written out element by element (independent of F.unfold).
    b, c, h, w, p = 2, 3, 6, 9, 3
    x = np.random.default_rng(0).standard_normal((b, c, h, w))
    grid_w = w // p
    expected = np.empty((b, (h // p) * grid_w, c * p * p))
    for bi in range(b):
        for n in range(expected.shape[1]):
            i, j = divmod(n, grid_w)
            for d in range(expected.shape[2]):
                ci, rest = divmod(d, p * p)
                kh, kw = divmod(rest, p)
                expected[bi, n, d] = x[bi, ci, i * p + kh, j * p + kw]
    tokens = reference.patch_unfold(torch.from_numpy(x), p)
    np.testing.assert_array_equal(tokens.numpy(), expected)
    np.testing.assert_array_equal(reference.patch_fold(tokens, p, (h, w)).numpy(), x)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("with_pos", [False, True])
def test_unfold_matches_reference(kernels, device, dtype, shape, with_pos):
    x, p, pos = _inputs(shape, dtype, device, with_pos)
    out = torch.ops.ipt.patch_unfold(x, p, pos)
    expected = reference.patch_unfold(x.cpu(), p, None if pos is None else pos.cpu())
    assert out.is_contiguous() and out.device == x.device and out.dtype == dtype
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=0)  # same rounding: bit-exact


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_fold_matches_reference_and_inverts_unfold(kernels, device, dtype, shape):
    x, p, _ = _inputs(shape, dtype, device, False)
    tokens = reference.patch_unfold(x.cpu(), p).to(device)
    out = torch.ops.ipt.patch_fold(tokens, p, list(x.shape[2:]))
    assert out.is_contiguous() and out.dtype == dtype
    torch.testing.assert_close(out.cpu(), reference.patch_fold(tokens.cpu(), p, x.shape[2:]), rtol=0, atol=0)
    torch.testing.assert_close(out, x, rtol=0, atol=0)


def _non_contiguous_views(x):
    yield "channels_last", x.contiguous(memory_format=torch.channels_last)
    yield "transposed_hw", x.transpose(2, 3).contiguous().transpose(2, 3)
    yield "strided_slice", torch.cat([x, x], dim=3)[..., ::2].contiguous().repeat_interleave(2, dim=3)[..., ::2]
    yield "batch_broadcast", x[:1].expand(3, -1, -1, -1)
    yield "offset_view", torch.cat([torch.zeros_like(x[:, :1]), x], dim=1)[:, 1:]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_non_contiguous_inputs(kernels, device, dtype):
    x, p, pos = _inputs((2, 5, 12, 9, 3), dtype, device, True)
    for name, view in _non_contiguous_views(x):
        expected = reference.patch_unfold(view.contiguous(), p, pos)
        torch.testing.assert_close(torch.ops.ipt.patch_unfold(view, p, pos), expected, rtol=0, atol=0, msg=name)
    pos_t = pos.t().contiguous().t()  # same values, column-major
    torch.testing.assert_close(
        torch.ops.ipt.patch_unfold(x, p, pos_t), reference.patch_unfold(x, p, pos), rtol=0, atol=0
    )
    tokens = reference.patch_unfold(x, p)
    for view in (tokens.transpose(1, 2).contiguous().transpose(1, 2), tokens[:1].expand(2, -1, -1)):
        expected = reference.patch_fold(view.contiguous(), p, (12, 9))
        torch.testing.assert_close(torch.ops.ipt.patch_fold(view, p, [12, 9]), expected, rtol=0, atol=0)


def test_large_token_count(kernels, device):
    # N = 512 * 512 = 262,144 tokens of 2 features, and a ViT-like 14x14 grid of 16x16 patches.
    for shape in [(1, 2, 512, 512, 1), (2, 3, 224, 224, 16)]:
        x, p, pos = _inputs(shape, torch.float32, device, True)
        out = torch.ops.ipt.patch_unfold(x, p, pos)
        torch.testing.assert_close(out.cpu(), reference.patch_unfold(x.cpu(), p, pos.cpu()), rtol=0, atol=0)
        torch.testing.assert_close(torch.ops.ipt.patch_fold(out - pos, p, list(shape[2:4])), x)


def test_empty_batch(kernels, device):
    x = torch.empty(0, 3, 6, 6, device=device)
    assert torch.ops.ipt.patch_unfold(x, 3, torch.zeros(4, 27, device=device)).shape == (0, 4, 27)
    assert torch.ops.ipt.patch_fold(torch.empty(0, 4, 27, device=device), 3, [6, 6]).shape == (0, 3, 6, 6)


def test_front_uses_kernels_and_matches(kernels):
    x, p, pos = _inputs((2, 3, 6, 6, 3), torch.float32, "cpu", True)
    assert ipt.ops.kernel_devices("patch_unfold")["cpu"] and ipt.ops.kernel_devices("patch_fold")["cpu"]
    torch.testing.assert_close(ipt.ops.patch_unfold(x, p, pos), reference.patch_unfold(x, p, pos), rtol=0, atol=0)
    torch.testing.assert_close(ipt.ops.patch_fold(ipt.ops.patch_unfold(x, p), p, (6, 6)), x, rtol=0, atol=0)


# --- autograd -------------------------------------------------------------------------------------


def test_gradcheck_unfold_and_fold(kernels, device):
    x, p, pos = _inputs((2, 3, 6, 4, 2), torch.float64, device, True)
    x.requires_grad_(True)
    pos.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: torch.ops.ipt.patch_unfold(a, p, b), (x, pos))
    assert torch.autograd.gradgradcheck(lambda a, b: torch.ops.ipt.patch_unfold(a, p, b), (x, pos))
    tokens = reference.patch_unfold(x.detach(), p).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: torch.ops.ipt.patch_fold(t, p, [6, 4]), (tokens,))
    assert torch.autograd.gradgradcheck(lambda t: torch.ops.ipt.patch_fold(t, p, [6, 4]), (tokens,))


def test_gradients_equal_reference(kernels):
    x, p, pos = _inputs((3, 4, 9, 6, 3), torch.float32, "cpu", True)
    grad_out = torch.randn(3, 6, 36)
    grads = []
    for unfold in (torch.ops.ipt.patch_unfold, reference.patch_unfold):
        xx, pp = x.clone().requires_grad_(True), pos.clone().requires_grad_(True)
        unfold(xx, p, pp).backward(grad_out)
        grads.append((xx.grad, pp.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
    torch.testing.assert_close(grads[0][1], grad_out.sum(0))


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(kernels, device, requires_grad):
    x, p, pos = _inputs((2, 3, 6, 9, 3), torch.float32, device, True)
    tokens = reference.patch_unfold(x, p)
    for t in (x, pos, tokens):
        t.requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.ipt.patch_unfold.default, (x, p, pos))
    torch.library.opcheck(torch.ops.ipt.patch_unfold.default, (x, p, None))
    torch.library.opcheck(torch.ops.ipt.patch_fold.default, (tokens, p, [6, 9]))


# --- torch.compile / torch.export -------------------------------------------------------------------


class TinyPatchModel(torch.nn.Module):
    """conv -> fused unfold + position add -> linear over tokens -> fold -> conv."""

    def __init__(self, channels=4, size=12, patch=3):
        super().__init__()
        self.patch, self.size = patch, size
        dim, n = channels * patch * patch, (size // patch) ** 2
        self.head = torch.nn.Conv2d(3, channels, 3, padding=1)
        self.pos = torch.nn.Parameter(torch.randn(n, dim) * 0.1)
        self.mix = torch.nn.Linear(dim, dim)
        self.tail = torch.nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x):
        tokens = ipt.ops.patch_unfold(self.head(x), self.patch, self.pos)
        return self.tail(ipt.ops.patch_fold(self.mix(tokens), self.patch, (self.size, self.size)))


def test_torch_compile_fullgraph(kernels):
    torch.manual_seed(0)
    model, x = TinyPatchModel(), torch.randn(2, 3, 12, 12)
    compiled = torch.compile(model, fullgraph=True, backend="inductor")
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    compiled(x).square().mean().backward()
    compiled_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).square().mean().backward()
    for a, b in zip(compiled_grads, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_torch_export(kernels):
    torch.manual_seed(0)
    model, x = TinyPatchModel(), torch.randn(2, 3, 12, 12)
    exported = torch.export.export(model, (x,))
    targets = {str(node.target) for node in exported.graph.nodes}
    assert "ipt.patch_unfold.default" in targets and "ipt.patch_fold.default" in targets
    torch.testing.assert_close(exported.module()(x), model(x))


# --- bad input ---------------------------------------------------------------------------------------

# Every bad-input case, on every path, with its exact message: tests/test_op_contracts.py.


def test_front_rejects_non_tensor():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ipt.ops.patch_unfold([[1.0]], 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")
def test_cuda_rejects_pos_on_cpu(kernels):
    with pytest.raises(ValueError, match="same device"):
        torch.ops.ipt.patch_unfold(torch.zeros(1, 3, 6, 6, device="cuda"), 3, torch.zeros(4, 27))


def test_compiled_fake_kernel_reports_bad_shapes(kernels):
    bad = torch.compile(lambda x: ipt.ops.patch_unfold(x, 3), fullgraph=True, backend="eager")
    with pytest.raises(Exception, match="must be multiples of patch_dim=3"):
        bad(torch.zeros(1, 3, 7, 6))


def test_kernel_is_f_unfold(kernels, device):
    # Guards the front's docstring: tokens == F.unfold(x, p, stride=p).transpose(1, 2), for the
    # compiled kernel (the reference is built on F.unfold, so only the kernel can disagree).
    x = torch.randn(2, 3, 9, 6, device=device)
    torch.testing.assert_close(ipt.ops.patch_unfold(x, 3), F.unfold(x, 3, stride=3).transpose(1, 2), rtol=0, atol=0)
    tokens = torch.randn(2, 6, 27, device=device)
    torch.testing.assert_close(ipt.ops.patch_fold(tokens, 3, (9, 6)), F.fold(tokens.transpose(1, 2), (9, 6), 3, stride=3),
                               rtol=0, atol=0)
