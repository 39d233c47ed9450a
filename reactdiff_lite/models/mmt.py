"""The Multi-Modality Transformer (MMT): intra-class, then inter-class attention.

ReactDiff (Li et al., arXiv 2505.14151, Sec. 3.2) fuses per-frame streams in two steps.

1. **Intra-class attention** works inside one class. The AU stream is the facial query;
   it attends to FE, then VA (then 3DMM and video when they are on). The learned audio
   stream (``logmel``) attends to MFCC. No facial stream sees audio here and no
   acoustic stream sees the face.
2. **Inter-class attention**: the facial stream attends to the acoustic stream,
   ``inter_depth`` times. This is the only place the two classes meet.

Every step is a pre-norm transformer sub-layer (``CrossBlock``)::

    x <- x + MHA(q = LN(x) + P, k = LN(c) + P, v = LN(c))
    x <- x + FF(LN(x))                       FF(h) = W2 GELU(W1 h)
    MHA: softmax(Q K^T / sqrt(d_head)) V, per head, then an output projection.

**Positions.** The official ReactDiff code has no positional encoding anywhere, so its
attention cannot tell when a frame happened. We add sinusoidal temporal positions ``P``
(Vaswani et al. 2017) to the attention *queries and keys* (as DETR does), not to the
values: attention weights know the frame offsets, while the residual stream, and so the
latent, carries no absolute time stamp. ``MMTConfig.positions=False`` turns them off.

``fusion="concat"`` is the simple-fusion ablation baseline: the streams are concatenated
per frame and mixed by a linear layer and a feed-forward block -- no attention, so no
mixing across time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from reactdiff_lite.models.encoders import EncoderConfig


@dataclass
class MMTConfig:
    """Multi-Modality Transformer settings (its width is ``EncoderConfig.dim``)."""

    heads: int = 4                # attention heads per cross-attention
    ff_mult: int = 2              # feed-forward hidden width = ff_mult * dim
    inter_depth: int = 1          # inter-class (facial <- acoustic) layers; 0 = none
    dropout: float = 0.0          # attention-weight and feed-forward dropout
    fusion: str = "attention"     # "attention" (the MMT) or "concat" (simple-fusion baseline)
    positions: bool = True        # sinusoidal temporal positions on queries and keys

    def __post_init__(self) -> None:
        if self.fusion not in ("attention", "concat"):
            raise ValueError(f"MMTConfig.fusion={self.fusion!r}, expected 'attention' or 'concat'")
        if self.inter_depth < 0:
            raise ValueError(f"MMTConfig.inter_depth={self.inter_depth} must be >= 0")


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """P[t, 2i] = sin(t / 10000^(2i/D)), P[t, 2i+1] = cos(t / 10000^(2i/D)). Returns (T, D)."""
    t = torch.arange(length, dtype=torch.float32, device=device)[:, None]                    # (T, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pos = torch.zeros(length, dim, device=device)
    pos[:, 0::2] = torch.sin(t * freq)
    pos[:, 1::2] = torch.cos(t * freq[: dim // 2])
    return pos                                                                               # (T, D)


class CrossAttention(nn.Module):
    """Multi-head attention of a query sequence x over a context sequence c."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.to_q, self.to_k, self.to_v, self.to_out = (nn.Linear(dim, dim) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def forward(self, q_in: Tensor, k_in: Tensor, v_in: Tensor) -> tuple[Tensor, Tensor]:
        """Args: q_in (B, T, D); k_in, v_in (B, S, D).
        Returns: output (B, T, D) and attention weights (B, heads, T, S); rows sum to 1."""
        q, k, v = (rearrange(f(x), "b t (h e) -> b h t e", h=self.heads)
                   for f, x in ((self.to_q, q_in), (self.to_k, k_in), (self.to_v, v_in)))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)    # (B, H, T, S)
        out = rearrange(self.drop(weights) @ v, "b h t e -> b t (h e)")                      # (B, T, D)
        return self.to_out(out), weights


class FeedForward(nn.Sequential):
    """FF(h) = W2 Dropout(GELU(W1 h))."""

    def __init__(self, dim: int, mult: int, dropout: float = 0.0):
        super().__init__(nn.Linear(dim, mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mult * dim, dim))


class CrossBlock(nn.Module):
    """One transformer sub-layer: x attends to c, then a feed-forward, both pre-norm residual."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float = 0.0):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, heads, dropout)
        self.ff = FeedForward(dim, ff_mult, dropout)

    def forward(self, x: Tensor, c: Tensor, pos: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Args: x (B, T, D) query stream; c (B, S, D) context; pos (T, D) or None (S = T then).
        Returns: the updated x (B, T, D) and the attention weights (B, heads, T, S)."""
        q, kv = self.norm_q(x), self.norm_kv(c)
        p = 0.0 if pos is None else pos
        out, weights = self.attn(q + p, kv + p, kv)           # MHA(LN(x) + P, LN(c) + P, LN(c))
        x = x + out
        return x + self.ff(self.norm_ff(x)), weights           # x + FF(LN(x))


class MultiModalityTransformer(nn.Module):
    """Fuse named (B, T, D) streams into one (B, T, D) sequence.

    ``intra`` and ``inter`` are exposed separately so that tests and notebook 03 can
    look between the two steps. Attention weights come from ``forward_with_attention``,
    keyed ``"intra/fe"``, ``"intra/va"``, ... (AU query), ``"intra/mfcc"`` (log-mel
    query) and ``"inter/0"``, ``"inter/1"``, ... (facial query, acoustic context).
    """

    def __init__(self, cfg: MMTConfig, enc: EncoderConfig):
        super().__init__()
        self.cfg, self.audio = cfg, enc.audio
        self.streams = enc.streams
        d = enc.dim
        self.facial_context = tuple(s for s in self.streams if s in ("fe", "va", "tdmm", "video"))
        if cfg.fusion == "attention":
            block = lambda: CrossBlock(d, cfg.heads, cfg.ff_mult, cfg.dropout)  # noqa: E731
            self.intra_facial = nn.ModuleDict({s: block() for s in self.facial_context})
            if enc.audio:
                self.intra_acoustic = block()
                self.inter = nn.ModuleList(block() for _ in range(cfg.inter_depth))
        else:
            self.concat = nn.Linear(len(self.streams) * d, d)
            self.norm_ff, self.ff = nn.LayerNorm(d), FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.norm_out = nn.LayerNorm(d)

    def _positions(self, x: Tensor) -> Tensor | None:
        return sinusoidal_positions(x.shape[1], x.shape[2], x.device) if self.cfg.positions else None  # (T, D)

    def intra(self, streams: dict[str, Tensor]) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """Intra-class attention. Returns the facial stream (B, T, D), the acoustic stream
        (B, T, D) or None when audio is off, and the attention weights."""
        facial, attn = streams["au"], {}
        pos = self._positions(facial)
        for name, block in self.intra_facial.items():       # AU <- FE, then VA, (3DMM), (video)
            facial, attn[f"intra/{name}"] = block(facial, streams[name], pos)
        acoustic = None
        if self.audio:                                        # learned audio <- MFCC
            acoustic, attn["intra/mfcc"] = self.intra_acoustic(streams["logmel"], streams["mfcc"], pos)
        return facial, acoustic, attn

    def inter_class(self, facial: Tensor, acoustic: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """Inter-class attention: facial (B, T, D) attends to acoustic (B, T, D), ``inter_depth``
        times. Skipped (facial returned unchanged) when audio is off."""
        attn = {}
        if acoustic is None:
            return facial, attn
        pos = self._positions(facial)
        for i, block in enumerate(self.inter):
            facial, attn[f"inter/{i}"] = block(facial, acoustic, pos)
        return facial, attn

    def forward_with_attention(self, streams: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns the fused sequence (B, T, D) and ``{step: weights (B, heads, T, T)}``
        (empty for concat fusion)."""
        missing = [s for s in self.streams if s not in streams]
        if missing:
            raise ValueError(f"MMT expects streams {self.streams}, missing {missing}")
        if self.cfg.fusion == "concat":
            x = self.concat(torch.cat([streams[s] for s in self.streams], dim=-1))  # (B, T, S*D) -> (B, T, D)
            return self.norm_out(x + self.ff(self.norm_ff(x))), {}
        facial, acoustic, attn = self.intra(streams)
        facial, attn_inter = self.inter_class(facial, acoustic)
        return self.norm_out(facial), attn | attn_inter        # (B, T, D)

    def forward(self, streams: dict[str, Tensor]) -> Tensor:
        return self.forward_with_attention(streams)[0]         # (B, T, D)
