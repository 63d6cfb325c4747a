"""Fake (meta) kernels and autograd formulas of the compiled ops, registered once ipt._C is loaded.

Fake kernels give torch.compile and torch.export output shapes without running anything; the
autograd formulas use the ops themselves (unfold and fold are each other's adjoint), so gradients of
any order stay on the fused kernels.
"""

from __future__ import annotations

import torch

from . import checks


def register() -> None:
    # Each fake kernel runs the checks its eager kernels run (ipt/ops/checks.py mirrors csrc/checks.h),
    # so torch.compile and torch.export reject exactly what eager calls reject.
    @torch.library.register_fake("ipt::patch_unfold")
    def _patch_unfold_fake(x, patch_dim, pos=None):
        g = checks.check_patch_unfold(x, patch_dim, pos)
        return x.new_empty((x.shape[0], g.num_tokens, g.token_dim))

    @torch.library.register_fake("ipt::patch_fold")
    def _patch_fold_fake(tokens, patch_dim, size):
        g = checks.check_patch_fold(tokens, patch_dim, size)
        return tokens.new_empty((tokens.shape[0], g.channels, g.height, g.width))

    # The degradations are data-path ops: fake kernels only (no autograd; their inputs are data).
    @torch.library.register_fake("ipt::bicubic_resize")
    def _bicubic_resize_fake(x, size, scale):
        checks.check_bicubic_resize(x, size, scale)
        return x.new_empty((x.shape[0], x.shape[1], size[0], size[1]))

    @torch.library.register_fake("ipt::add_gaussian_noise")
    def _add_gaussian_noise_fake(x, sigma, seed, sample_ids):
        checks.check_add_gaussian_noise(x, sigma, seed, sample_ids)
        return x.new_empty(x.shape, dtype=checks.degraded_dtype(x))

    @torch.library.register_fake("ipt::rain_streaks")
    def _rain_streaks_fake(sample_ids, height, width, seed, *ranges):
        checks.check_rain_streaks(sample_ids, height, width, seed, *ranges)
        return sample_ids.new_empty((sample_ids.shape[0], 1, height, width), dtype=torch.float32)

    @torch.library.register_fake("ipt::add_rain")
    def _add_rain_fake(x, sample_ids, seed, *ranges):
        checks.check_add_rain(x, sample_ids, seed, *ranges)
        return x.new_empty(x.shape, dtype=checks.degraded_dtype(x))

    @torch.library.register_fake("ipt::motion_blur_kernels")
    def _motion_blur_kernels_fake(sample_ids, size, seed, steps, *ranges):
        checks.check_motion_blur_kernels(sample_ids, size, seed, steps, *ranges)
        return sample_ids.new_empty((sample_ids.shape[0], size, size), dtype=torch.float32)

    @torch.library.register_fake("ipt::blur")
    def _blur_fake(x, kernels):
        checks.check_blur(x, kernels)
        return x.new_empty(x.shape, dtype=checks.degraded_dtype(x))

    def unfold_setup_context(ctx, inputs, output):
        x, patch_dim, pos = inputs
        ctx.patch_dim = patch_dim
        ctx.size = (x.shape[2], x.shape[3])
        ctx.has_pos = pos is not None  # needs_input_grad leaves out an absent optional argument

    def unfold_backward(ctx, grad):
        grad_x = grad_pos = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.ipt.patch_fold(grad, ctx.patch_dim, ctx.size)
        if ctx.has_pos and ctx.needs_input_grad[2]:
            grad_pos = grad.sum(0)  # pos is broadcast over the batch
        return grad_x, None, grad_pos

    def fold_setup_context(ctx, inputs, output):
        ctx.patch_dim = inputs[1]

    def fold_backward(ctx, grad):
        return torch.ops.ipt.patch_unfold(grad, ctx.patch_dim, None), None, None

    torch.library.register_autograd("ipt::patch_unfold", unfold_backward, setup_context=unfold_setup_context)
    torch.library.register_autograd("ipt::patch_fold", fold_backward, setup_context=fold_setup_context)
