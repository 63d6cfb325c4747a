"""IPT's contrastive loss on the body's output tokens (SPEC section 3).

Tokens are taken in float32 and L2-normalised; similarity is cosine / temperature. For an anchor token,
the positives are the other tokens of the same image, the denominator runs over every token but the
anchor (so the negatives are the tokens of the other images), and

    loss = - mean over anchors of the mean log-probability of the anchor's positives
         = mean over anchors a of [ logsumexp_{k != a} s(a, k)  -  mean_{p in P(a)} s(a, p) ].

The positive mean needs no pairwise matrix: with S the sum of the image's normalised tokens it is
(z_a . S - 1) / (temperature * (N - 1)). Only the log-sum-exp needs all pairs, and it is computed in
chunks of anchors under activation checkpointing, so memory stays at chunk x T logits (T = all tokens)
in the forward and the backward pass, however large B * 256 is.

Across ranks the tokens of all ranks are gathered (with gradients), so the negatives are the whole
global batch and data-parallel training computes the same loss as one process with the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def _logsumexp_without_self(anchors: torch.Tensor, keys: torch.Tensor, self_index: torch.Tensor, temperature: float):
    logits = anchors @ keys.t() / temperature  # (c, T)
    is_self = torch.arange(keys.shape[0], device=keys.device)[None, :] == self_index[:, None]
    return torch.logsumexp(logits.masked_fill(is_self, float("-inf")), dim=1)


def gather_tokens(z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' normalised tokens (T, E), with gradients flowing back to each rank's own, and the
    offset of this rank's tokens in them. Without torch.distributed: (z, 0)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z, 0
    # Imported here: torch.distributed.nn only imports in torch builds with distributed support.
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(z)
    sizes = [p.shape[0] for p in parts]
    return torch.cat(parts), sum(sizes[: dist.get_rank()])


def contrastive_loss(tokens: torch.Tensor, temperature: float = 0.07, chunk: int = 1024,
                     gather: bool = True) -> torch.Tensor:
    """tokens: (B, N, E) body output tokens of B images (any dtype; computed in float32).
    chunk: anchors per block of the log-sum-exp (bounds memory). gather: use every rank's tokens as
    negatives when torch.distributed is initialised."""
    if tokens.dim() != 3 or tokens.shape[1] < 2:
        raise ValueError(f"contrastive_loss takes (B, N >= 2, E) tokens, got shape {list(tokens.shape)}")
    b, n, e = tokens.shape
    z = F.normalize(tokens.float(), dim=-1)
    positive = ((z * z.sum(dim=1, keepdim=True)).sum(-1) - 1.0) / (temperature * (n - 1))  # (B, N)
    flat = z.reshape(b * n, e)
    keys, offset = gather_tokens(flat) if gather else (flat, 0)
    lse = []
    for start in range(0, b * n, chunk):
        anchors = flat[start : start + chunk]
        index = torch.arange(start, start + anchors.shape[0], device=z.device) + offset
        if torch.is_grad_enabled() and anchors.requires_grad:
            lse.append(checkpoint(_logsumexp_without_self, anchors, keys, index, temperature, use_reentrant=False))
        else:
            lse.append(_logsumexp_without_self(anchors, keys, index, temperature))
    return (torch.cat(lse) - positive.reshape(-1)).mean()


# The formula written out on the full (T, T) similarity matrix, T = B*N: O(T^2) memory, so only for checking
# contrastive_loss on small inputs (the tests' oracle). Not exported.
def contrastive_loss_direct(tokens: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """contrastive_loss computed directly from its definition (small inputs only)."""
    b, n, _ = tokens.shape
    z = F.normalize(tokens.float(), dim=-1).reshape(b * n, -1)
    sim = z @ z.t() / temperature
    eye = torch.eye(b * n, dtype=torch.bool, device=z.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    image = torch.arange(b * n, device=z.device) // n
    positive = (image[:, None] == image[None, :]) & ~eye
    return -((log_prob * positive).sum(1) / positive.sum(1)).mean()
