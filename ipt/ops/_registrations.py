"""Fake (meta) kernels and autograd formulas of the compiled ops, registered once ipt._C is loaded.

Fake kernels give torch.compile and torch.export output shapes without running anything; the
autograd formulas use the ops themselves (unfold and fold are each other's adjoint), so gradients of
any order stay on the fused kernels.
"""

from __future__ import annotations

import torch

from ._checks import (
    check_image_batch,
    check_patch_fold,
    check_patch_unfold,
    check_resize_args,
    check_sample_ids,
    degraded_dtype,
)


def register() -> None:
    @torch.library.register_fake("ipt::patch_unfold")
    def _patch_unfold_fake(x, patch, pos=None):
        g = check_patch_unfold(x, patch, pos)
        return x.new_empty((x.shape[0], g.num_tokens, g.token_dim))

    @torch.library.register_fake("ipt::patch_fold")
    def _patch_fold_fake(tokens, patch, size):
        g = check_patch_fold(tokens, patch, size)
        return tokens.new_empty((tokens.shape[0], g.channels, g.height, g.width))

    # The degradations are data-path ops: fake kernels only (no autograd; their inputs are data).
    @torch.library.register_fake("ipt::bicubic_resize")
    def _bicubic_resize_fake(x, size, scale):
        check_resize_args(x, size, scale)
        return x.new_empty((x.shape[0], x.shape[1], size[0], size[1]))

    @torch.library.register_fake("ipt::add_gaussian_noise")
    def _add_gaussian_noise_fake(x, sigma, seed, sample_ids):
        check_image_batch("add_gaussian_noise", x)
        check_sample_ids("add_gaussian_noise", sample_ids, x.shape[0], x.device)
        return x.new_empty(x.shape, dtype=degraded_dtype(x))

    @torch.library.register_fake("ipt::rain_streaks")
    def _rain_streaks_fake(sample_ids, height, width, seed, amount, thickness, length, angle):
        return sample_ids.new_empty((sample_ids.shape[0], 1, height, width), dtype=torch.float32)

    @torch.library.register_fake("ipt::add_rain")
    def _add_rain_fake(x, sample_ids, seed, amount, thickness, length, angle, alpha):
        check_image_batch("add_rain", x)
        check_sample_ids("add_rain", sample_ids, x.shape[0], x.device)
        return x.new_empty(x.shape, dtype=degraded_dtype(x))

    def unfold_setup_context(ctx, inputs, output):
        x, patch, pos = inputs
        ctx.patch = patch
        ctx.size = (x.shape[2], x.shape[3])
        ctx.has_pos = pos is not None  # needs_input_grad leaves out an absent optional argument

    def unfold_backward(ctx, grad):
        grad_x = grad_pos = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.ipt.patch_fold(grad, ctx.patch, ctx.size)
        if ctx.has_pos and ctx.needs_input_grad[2]:
            grad_pos = grad.sum(0)  # pos is broadcast over the batch
        return grad_x, None, grad_pos

    def fold_setup_context(ctx, inputs, output):
        ctx.patch = inputs[1]

    def fold_backward(ctx, grad):
        return torch.ops.ipt.patch_unfold(grad, ctx.patch, None), None, None

    torch.library.register_autograd("ipt::patch_unfold", unfold_backward, setup_context=unfold_setup_context)
    torch.library.register_autograd("ipt::patch_fold", fold_backward, setup_context=fold_setup_context)
