"""Building blocks of IPT, laid out so that parameter names and shapes equal the official checkpoints'."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=True)


class MeanShift(nn.Conv2d):
    """Frozen 1x1 conv that subtracts (sign -1) or adds (sign +1) the dataset's RGB mean."""

    def __init__(self, rgb_range: float, rgb_mean, sign: int):
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean))
        self.requires_grad_(False)


class ResBlock(nn.Module):
    """conv -> ReLU -> conv, plus the input. `body` indices 0 and 2 are the official names."""

    def __init__(self, n_feats: int, kernel_size: int = 5):
        super().__init__()
        self.body = nn.Sequential(conv(n_feats, n_feats, kernel_size), nn.ReLU(), conv(n_feats, n_feats, kernel_size))

    def forward(self, x):
        return self.body(x) + x


def make_head(n_colors: int, n_feats: int) -> nn.Sequential:
    return nn.Sequential(conv(n_colors, n_feats, 3), ResBlock(n_feats), ResBlock(n_feats))


def make_upsampler(scale: int, n_feats: int) -> nn.Sequential:
    """Sub-pixel upsampling: x2 stages for powers of two, one x3 stage for 3, nothing for scale 1."""
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0:
        for _ in range(int(math.log2(scale))):
            layers += [conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [conv(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
    else:
        raise ConfigError(f"IPT tails upsample by 1, 2, 3 or a power of two; got scale {scale}")
    return nn.Sequential(*layers)


def make_tail(scale: int, n_feats: int, n_colors: int) -> nn.Sequential:
    return nn.Sequential(make_upsampler(scale, n_feats), conv(n_feats, n_colors, 3))


class Attention(nn.Module):
    """Multi-head attention with the official packed layout -- in_proj_weight (3E, E) holding the query,
    key and value projections, out_proj without bias, no biases at all -- computed with
    F.scaled_dot_product_attention so flash / memory-efficient kernels run where available.
    Tensors are batch-first (B, N, E)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.out_proj = nn.Linear(dim, dim, bias=False)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, e = t.shape
        return t.view(b, n, self.num_heads, e // self.num_heads).transpose(1, 2)

    def forward(self, query, key, value, *, query_is_key: bool = False, key_is_value: bool = False):
        dim = self.in_proj_weight.shape[1]
        if query_is_key:  # q = k (self-attention): one matmul for both projections
            q, k = F.linear(query, self.in_proj_weight[: 2 * dim]).chunk(2, dim=-1)
            v = F.linear(value, self.in_proj_weight[2 * dim :])
        elif key_is_value:  # k = v (cross-attention on the memory): likewise
            q = F.linear(query, self.in_proj_weight[:dim])
            k, v = F.linear(key, self.in_proj_weight[dim:]).chunk(2, dim=-1)
        else:
            w_q, w_k, w_v = self.in_proj_weight.chunk(3)
            q, k, v = F.linear(query, w_q), F.linear(key, w_k), F.linear(value, w_v)
        out = F.scaled_dot_product_attention(
            self._split_heads(q), self._split_heads(k), self._split_heads(v),
            dropout_p=self.dropout if self.training else 0.0,
        )
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))



class EncoderLayer(nn.Module):
    """Pre-norm: x + MHA(q = k = v = LN1(x)); x + FFN(LN2(x))."""

    def __init__(self, dim: int, num_heads: int, hidden: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(dim, num_heads, dropout)
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.drop(self.self_attn(h, h, h, query_is_key=True))
        return x + self.drop(self.linear2(self.drop(F.relu(self.linear1(self.norm2(x))))))


class DecoderLayer(nn.Module):
    """Pre-norm with the task embedding e added to queries and keys, never to values:
    t + SA(q = k = LN1(t) + e, v = LN1(t)); t + CA(q = LN2(t) + e, k = v = memory); t + FFN(LN3(t))."""

    def __init__(self, dim: int, num_heads: int, hidden: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(dim, num_heads, dropout)
        self.multihead_attn = Attention(dim, num_heads, dropout)
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, t, memory, task_embedding):
        h = self.norm1(t)
        qk = h + task_embedding
        t = t + self.drop(self.self_attn(qk, qk, h, query_is_key=True))
        t = t + self.drop(self.multihead_attn(self.norm2(t) + task_embedding, memory, memory, key_is_value=True))
        return t + self.drop(self.linear2(self.drop(F.relu(self.linear1(self.norm3(t))))))
