"""IPT's transformer body: feature map -> tokens -> encoder -> decoder (task embedding) -> feature map.

Two interchangeable token paths share the parameters:
- fused (default): ipt.ops.patch_unfold adds the position embedding while cutting tokens, and the
  linear encoding, its residual and the position add collapse into one matmul plus a batch-independent
  bias; ipt.ops.patch_fold puts the tokens back.
- plain: F.unfold / F.fold and the operations in the official order -- the reference the fused path is
  tested against, and a fallback for anything the fused ops do not cover.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from .config import IPTConfig
from .layers import DecoderLayer, EncoderLayer


class LearnedPositionalEncoding(nn.Module):
    def __init__(self, num_tokens: int, dim: int):
        super().__init__()
        self.pe = nn.Embedding(num_tokens, dim)
        self.register_buffer("position_ids", torch.arange(num_tokens)[None])

    def forward(self) -> torch.Tensor:
        return self.pe(self.position_ids[0])  # (N, E)


class LayerStack(nn.Module):
    """Holds `layers` (the official name) and runs them in order."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)


class TransformerBody(nn.Module):
    def __init__(self, config: IPTConfig, num_tasks: int):
        super().__init__()
        self.config = config
        dim, hidden, n = config.embedding_dim, config.ffn_mult * config.embedding_dim, config.num_tokens
        self.linear_encoding = nn.Linear(dim, dim)
        # Official indices: Linear (0), Dropout (1), ReLU (2), Linear (3), Dropout (4).
        self.mlp_head = nn.Sequential(
            nn.Linear(dim, hidden), nn.Dropout(config.dropout), nn.ReLU(), nn.Linear(hidden, dim), nn.Dropout(config.dropout)
        )
        self.query_embed = nn.Embedding(num_tasks, dim * n)  # row i: the (N, E) task embedding of task i
        self.encoder = LayerStack([EncoderLayer(dim, config.num_heads, hidden, config.dropout) for _ in range(config.num_layers)])
        self.decoder = LayerStack([DecoderLayer(dim, config.num_heads, hidden, config.dropout) for _ in range(config.num_layers)])
        self.position_encoding = LearnedPositionalEncoding(n, dim)
        self.input_dropout = nn.Dropout(config.dropout)
        self.fused = True

    def _encoder_input_fused(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        # With u = unfold(x) + pos:  L(t) + t + pos = u (W + I)^T + [b + pos - pos (W + I)^T],
        # one matmul and one batch-independent bias (W, b: linear_encoding; t = unfold(x)).
        p = self.config.patch_dim
        u = ops.patch_unfold(x, p, pos.to(x.dtype))
        weight = self.linear_encoding.weight
        w_plus_i = weight + torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
        bias = self.linear_encoding.bias + pos - F.linear(pos, w_plus_i)
        if self.training and self.config.dropout > 0:  # dropout acts on L(t) alone: no algebra then
            t = u - pos.to(u.dtype)
            return self.input_dropout(self.linear_encoding(t)) + t + pos
        return torch.matmul(u, w_plus_i.t()) + bias  # (N, E) bias: broadcast over the batch

    def _encoder_input_plain(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        t = F.unfold(x, self.config.patch_dim, stride=self.config.patch_dim).transpose(1, 2)
        t = self.input_dropout(self.linear_encoding(t)) + t
        return t + pos

    def forward(self, x: torch.Tensor, task_index: int, return_tokens: bool = False):
        """x: (B, n_feats, patch_size, patch_size) -> same shape; with return_tokens also the
        (B, N, E) tokens after mlp_head (the features of the contrastive loss)."""
        cfg = self.config
        if x.shape[1:] != (cfg.n_feats, cfg.patch_size, cfg.patch_size):
            raise ValueError(
                f"the transformer body takes ({cfg.n_feats}, {cfg.patch_size}, {cfg.patch_size}) feature maps, "
                f"got {tuple(x.shape[1:])}; larger images go through ipt.inference (tiling)"
            )
        pos = self.position_encoding()
        t = self._encoder_input_fused(x, pos) if self.fused else self._encoder_input_plain(x, pos)
        for layer in self.encoder.layers:
            t = layer(t)
        task_embedding = self.query_embed.weight[task_index].view(cfg.num_tokens, cfg.embedding_dim)
        memory = t
        for layer in self.decoder.layers:
            t = layer(t, memory, task_embedding)
        tokens = self.mlp_head(t) + t
        size = (cfg.patch_size, cfg.patch_size)
        if self.fused:
            out = ops.patch_fold(tokens, cfg.patch_dim, size)
        else:
            out = F.fold(tokens.transpose(1, 2), size, cfg.patch_dim, stride=cfg.patch_dim)
        return (out, tokens) if return_tokens else out
