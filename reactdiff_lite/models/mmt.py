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

``MHA`` and ``FF`` are ``models.layers.Attention`` and ``FeedForward``, shared with the
stage-2 denoiser. ``forward`` uses the fused attention kernel; ``forward_with_attention``
also writes out the weights, for attention maps.

**Positions.** The official ReactDiff code has no positional encoding anywhere, so its
attention cannot tell when a frame happened. We add sinusoidal temporal positions ``P``
(Vaswani et al. 2017) to the attention *queries and keys* (as DETR does), not to the
values: attention weights know the frame offsets, while the residual stream, and so the
latent, carries no absolute time stamp. ``MMTConfig.positions=False`` turns them off.

**Causal** (``AutoencoderConfig.causal``, the online track): every attention step gets the
mask ``causal_mask`` (query frame t sees key frames <= t); everything else works frame by
frame, so the fused frame t depends on stream frames <= t only.

``fusion="concat"`` is the simple-fusion ablation baseline: the streams are concatenated
per frame and mixed by a linear layer and a feed-forward block -- no attention, so no
mixing across time. That confounds two things, so ``fusion="concat_temporal"`` is the
control: the same concatenation followed by as many self-attention layers *over time* as
the MMT has cross-attention layers. MMT vs concat_temporal isolates what attending across
modalities (intra/inter-class) adds beyond mixing across time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reactdiff_lite.config import EncoderConfig, MMTConfig
from reactdiff_lite.models.layers import Attention, FeedForward, causal_mask, sinusoidal_positions


class CrossBlock(nn.Module):
    """One transformer sub-layer: x attends to c, then a feed-forward, both pre-norm residual."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float = 0.0):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ff = FeedForward(dim, ff_mult, dropout)

    def forward(
        self, x: Tensor, c: Tensor, pos: Tensor | None = None, need_weights: bool = True, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Args: x (B, T, D) query stream; c (B, S, D) context; pos (T, D) or None (S = T then);
        mask (1, T, S) bool or None, the keys each query sees (``causal_mask``).
        Returns: the updated x (B, T, D) and the attention weights (B, heads, T, S), or None
        unless ``need_weights``."""
        q, kv = self.norm_q(x), self.norm_kv(c)
        p = 0.0 if pos is None else pos
        out, weights = self.attn(q + p, kv + p, kv, mask, need_weights)  # MHA(LN(x) + P, LN(c) + P, LN(c))
        x = x + out
        return x + self.ff(self.norm_ff(x)), weights  # x + FF(LN(x))


class MultiModalityTransformer(nn.Module):
    """Fuse named (B, T, D) streams into one (B, T, D) sequence.

    ``intra`` and ``inter_class`` are exposed separately so that tests and notebook 03 can
    look between the two steps. Attention weights come from ``forward_with_attention``,
    keyed ``"intra/fe"``, ``"intra/va"``, ... (AU query), ``"intra/mfcc"`` (log-mel
    query) and ``"inter/0"``, ``"inter/1"``, ... (facial query, acoustic context).
    """

    def __init__(self, cfg: MMTConfig, enc: EncoderConfig, causal: bool = False):
        super().__init__()
        self.cfg, self.audio, self.causal = cfg, enc.audio, causal
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
            if cfg.fusion == "concat_temporal":  # as many attention layers as the MMT, over time only
                depth = len(self.facial_context) + (1 + cfg.inter_depth if enc.audio else 0)
                self.temporal = nn.ModuleList(CrossBlock(d, cfg.heads, cfg.ff_mult, cfg.dropout) for _ in range(depth))
        self.norm_out = nn.LayerNorm(d)

    def _positions(self, x: Tensor) -> Tensor | None:
        return sinusoidal_positions(x.shape[1], x.shape[2], x.device) if self.cfg.positions else None  # (T, D)

    def _mask(self, x: Tensor) -> Tensor | None:
        """The causal mask (1, T, T) of a (B, T, D) stream, or None (every frame sees all)."""
        return causal_mask(x.shape[1], x.device)[None] if self.causal else None

    def intra(
        self, streams: dict[str, Tensor], need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None, dict[str, Tensor | None]]:
        """Intra-class attention. Returns the facial stream (B, T, D), the acoustic stream
        (B, T, D) or None when audio is off, and the attention weights (None values unless
        ``need_weights``)."""
        facial, attn = streams["au"], {}
        pos, mask = self._positions(facial), self._mask(facial)
        for name, block in self.intra_facial.items():  # AU <- FE, then VA, (3DMM), (video)
            facial, attn[f"intra/{name}"] = block(facial, streams[name], pos, need_weights, mask)
        acoustic = None
        if self.audio:  # learned audio <- MFCC
            acoustic, attn["intra/mfcc"] = self.intra_acoustic(
                streams["logmel"], streams["mfcc"], pos, need_weights, mask
            )
        return facial, acoustic, attn

    def inter_class(
        self, facial: Tensor, acoustic: Tensor | None, need_weights: bool = True
    ) -> tuple[Tensor, dict[str, Tensor | None]]:
        """Inter-class attention: facial (B, T, D) attends to acoustic (B, T, D), ``inter_depth``
        times. Skipped (facial returned unchanged) when audio is off."""
        attn = {}
        if acoustic is None:
            return facial, attn
        pos, mask = self._positions(facial), self._mask(facial)
        for i, block in enumerate(self.inter):
            facial, attn[f"inter/{i}"] = block(facial, acoustic, pos, need_weights, mask)
        return facial, attn

    def _fuse(self, streams: dict[str, Tensor], need_weights: bool) -> tuple[Tensor, dict[str, Tensor | None]]:
        missing = [s for s in self.streams if s not in streams]
        if missing:
            raise ValueError(f"MMT expects streams {self.streams}, missing {missing}")
        if self.cfg.fusion != "attention":
            x = self.concat(torch.cat([streams[s] for s in self.streams], dim=-1))  # (B, T, S*D) -> (B, T, D)
            x = x + self.ff(self.norm_ff(x))
            attn = {}
            for i, block in enumerate(getattr(self, "temporal", ())):  # concat_temporal: self-attention over T
                x, attn[f"temporal/{i}"] = block(x, x, self._positions(x), need_weights, self._mask(x))
            return self.norm_out(x), attn
        facial, acoustic, attn = self.intra(streams, need_weights)
        facial, attn_inter = self.inter_class(facial, acoustic, need_weights)
        return self.norm_out(facial), attn | attn_inter  # (B, T, D)

    def forward_with_attention(self, streams: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns the fused sequence (B, T, D) and ``{step: weights (B, heads, T, T)}``
        (empty for concat fusion)."""
        return self._fuse(streams, need_weights=True)

    def forward(self, streams: dict[str, Tensor]) -> Tensor:
        """The fused sequence (B, T, D), with the fused attention kernel (no weights kept)."""
        return self._fuse(streams, need_weights=False)[0]  # (B, T, D)
