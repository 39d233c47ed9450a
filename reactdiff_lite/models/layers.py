"""Transformer layers shared by the Multi-Modality Transformer and the stage-2 denoiser.

- ``sinusoidal_positions``: the fixed sinusoids of Vaswani et al. (2017), used for frame
  positions (MMT, denoiser) and for the diffusion timestep (denoiser);
- ``Attention``: multi-head attention ``softmax(Q K^T / sqrt(d_head)) V`` on
  ``torch.nn.functional.scaled_dot_product_attention``; it takes the query, key and value
  sequences separately, so the MMT can add positions to the keys but not to the values, and
  it writes the weights out explicitly when asked for them (attention maps);
- ``causal_mask``: which keys a query may see when no query may see a later frame;
- ``FeedForward``: ``W2 GELU(W1 h)``;
- ``modulate``: adaLN's per-sample scale and shift (Peebles & Xie 2023).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """P[t, 2i] = sin(t / 10000^(2i/D)), P[t, 2i+1] = cos(t / 10000^(2i/D)). Returns (T, D)."""
    t = torch.arange(length, dtype=torch.float32, device=device)[:, None]  # (T, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pos = torch.zeros(length, dim, device=device)
    pos[:, 0::2] = torch.sin(t * freq)
    pos[:, 1::2] = torch.cos(t * freq[: dim // 2])
    return pos  # (T, D)


def causal_mask(length: int, device: torch.device | None = None) -> Tensor:
    """M[q, k] = k <= q: over one time axis, frame q sees frames up to its own. Returns (T, T) bool
    (lower-triangular)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()  # (T, T)


class Attention(nn.Module):
    """Multi-head attention of a query sequence over a key/value sequence.

    Per head, with d = dim / heads: ``softmax(Q K^T / sqrt(d)) V``, Q = W_q q, K = W_k k,
    V = W_v v; then the heads are concatenated and projected by W_out. Self-attention is
    ``attn(x, x, x)``. Dropout acts on the attention weights.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.to_q, self.to_k, self.to_v, self.to_out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Args:
            query: (B, Lq, D). key, value: (B, Lk, D).
            mask: (B, Lk) bool, one visibility per key, or (B | 1, Lq, Lk) bool, per query
                (``causal_mask``); False keys get exactly zero weight (their values, when
                finite, add exact zeros); every row needs a True.
            need_weights: also return the weights, computed explicitly (the fused kernel
                does not expose them); the same numbers up to float rounding.
        Returns:
            the output (B, Lq, D) and the weights (B, heads, Lq, Lk) with rows summing to 1,
            or None unless ``need_weights``.
        """
        q, k, v = (
            rearrange(f(x), "b n (h d) -> b h n d", h=self.heads)
            for f, x in ((self.to_q, query), (self.to_k, key), (self.to_v, value))
        )  # (B, H, L, d)
        attn_mask = None if mask is None else mask[:, None, None, :] if mask.dim() == 2 else mask[:, None]
        # (B, 1, 1 | Lq, Lk): broadcast over heads
        p = self.dropout if self.training else 0.0
        if need_weights:
            scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # Q K^T / sqrt(d), (B, H, Lq, Lk)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            out = F.dropout(weights, p) @ v  # (B, H, Lq, d)
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)")), weights  # (B, Lq, D)


class FeedForward(nn.Sequential):
    """FF(h) = W2 Dropout(GELU(W1 h)), hidden width ``int(mult * dim)``."""

    def __init__(self, dim: int, mult: float, dropout: float = 0.0):
        hidden = int(mult * dim)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x (B, L, D) scaled and shifted per sample by (B, D) vectors: x (1 + γ) + β."""
    return x * (1 + scale[:, None]) + shift[:, None]
