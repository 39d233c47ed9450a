"""The stage-2 network of ReactDiff: a conditional denoiser for listener latent windows.

ReactDiff (Li et al., arXiv 2505.14151) denoises a listener's latent reaction window
conditioned on the speaker. Our ``ReactionDenoiser`` is a small temporal transformer with
adaLN-Zero timestep conditioning (DiT, Peebles & Xie 2023); ``docs/paper_vs_lite.md``
compares it with the official network. The diffusion maths around it (schedules, targets,
samplers) is in ``models.schedulers``; ``models.diffusion.LatentDiffusion`` joins the two.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reactdiff_lite.config import DenoiserConfig
from reactdiff_lite.models.layers import Attention, FeedForward, causal_mask, modulate, sinusoidal_positions


class DenoiserBlock(nn.Module):
    """Self-attention over listener frames, cross-attention to the memory, feed-forward.

    Each sub-layer is pre-norm, modulated by the timestep embedding c (adaLN-Zero, Peebles &
    Xie 2023): h ← h + g ⊙ f(LN(h) (1 + γ) + β) with (β, γ, g) = Linear(SiLU(c)), zero at
    initialisation so every block starts as the identity.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim, elementwise_affine=False) for _ in range(3))
        self.self_attn = Attention(dim, heads, dropout)
        self.cross_attn = Attention(dim, heads, dropout)
        self.ff = FeedForward(dim, mlp_ratio, dropout)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(
        self, h: Tensor, memory: Tensor, memory_mask: Tensor, c: Tensor, self_mask: Tensor | None = None
    ) -> Tensor:
        """h (B, W, D) listener tokens; memory (B, M, D) with memory_mask (B, M) or (B, W, M);
        c (B, D); self_mask (1, W, W) or None, the listener frames each listener frame sees."""
        m = self.modulation(c).chunk(9, dim=-1)  # 9 × (B, D): (β, γ, g) per sub-layer
        a = modulate(self.norms[0](h), m[0], m[1])  # LN(h) (1 + γ) + β
        h = h + m[2][:, None] * self.self_attn(a, a, a, self_mask)[0]
        a = modulate(self.norms[1](h), m[3], m[4])
        h = h + m[5][:, None] * self.cross_attn(a, memory, memory, memory_mask)[0]
        return h + m[8][:, None] * self.ff(modulate(self.norms[2](h), m[6], m[7]))


class ReactionDenoiser(nn.Module):
    """The stage-2 network: predicts ε (or x0, v) for a noisy listener latent window.

    Time is a sequence axis, handled by a small temporal transformer (our choice over a
    1-D U-Net: windows are short, the conditioning is a sequence too, and attention reaches
    across the whole window and its context in one layer):
    - listener tokens: Linear(x_t) at shared-axis positions context_before … context_before + W − 1;
    - memory tokens, read by cross-attention in every block: the speaker frames (positions
      0 … S − 1), the previous window's last P = context_before listener frames (positions
      0 … P − 1, simultaneous with ``speaker[:, :P]``), and one learned null token that is
      always visible, so attention is defined even when everything else is hidden;
    - all positions are sinusoidal on the shared time axis, plus a learned type embedding
      for speaker and previous-window tokens;
    - with ``speaker_condition: flat`` the speaker frames are instead flattened into one
      memory token, Linear(S·Dz -> D) (the official code's condition; no time positions);
    - the timestep t ∈ {0 … num_timesteps − 1} is embedded with the same sinusoids (row t of
      the table), then an MLP, and enters through adaLN-Zero modulation of every sub-layer;
      the output projection starts at zero, so the untrained model predicts 0.

    Visibility: a speaker frame is visible where ``speaker_mask`` is True and ``keep_cond`` is
    True. A previous-window frame is visible where ``prev`` is given and the simultaneous
    speaker frame exists (``speaker_mask[:, k]``; ``keep_cond`` does not hide it, since
    guidance is about the speaker). So "no previous window" is ``prev=None``, or any
    values at frames outside the clip (e.g. zeros at the first window, whose past is masked).
    Hidden frames get zero attention weight and are zeroed before projection, so their
    values, even NaN, cannot leak.

    **Causal** (``config.causal``, the online track; needs ``context_after = 0``): listener
    frame j (shared position P + j) sees listener frames <= j in self-attention and, in
    cross-attention, the null token, the previous window (positions < P) and the speaker
    frames at positions <= P + j. Every other operation (projections, LayerNorm, adaLN
    modulation by the timestep, feed-forward) works token by token, so the output at frame j
    is a function of x_t and the speaker at frames <= j only; sampling (elementwise DDIM /
    DDPM updates, guidance, no clipping) keeps that at every step.
    """

    def __init__(self, config: DenoiserConfig, num_timesteps: int = 1000):
        super().__init__()
        self.config, self.num_timesteps = config, num_timesteps
        d, dz = config.dim, config.latent_dim
        self.in_proj = nn.Linear(dz, d)
        span = config.context_before + config.window + config.context_after
        self.flat = config.speaker_condition == "flat"
        self.speaker_proj = nn.Linear(span * dz if self.flat else dz, d)
        self.prev_proj = nn.Linear(dz, d)
        self.speaker_type = nn.Parameter(torch.zeros(d))
        self.prev_type = nn.Parameter(torch.zeros(d))
        self.null_token = nn.Parameter(torch.randn(d) * 0.02)
        self.memory_norm = nn.LayerNorm(d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(
            DenoiserBlock(d, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.out_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.out_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.out_proj = nn.Linear(d, dz)
        for layer in (self.out_modulation[1], self.out_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.register_buffer("positions", sinusoidal_positions(span, d), persistent=False)  # (S, D)
        self.register_buffer("time_table", sinusoidal_positions(num_timesteps, d), persistent=False)  # (T, D)

    def _check(self, x_t: Tensor, t: Tensor, speaker: Tensor, prev: Tensor | None) -> None:
        c = self.config
        S = c.context_before + c.window + c.context_after
        if x_t.ndim != 3 or x_t.shape[1:] != (c.window, c.latent_dim):
            raise ValueError(f"x_t has shape {tuple(x_t.shape)}, expected (B, {c.window}, {c.latent_dim})")
        if speaker.shape != (x_t.shape[0], S, c.latent_dim):
            raise ValueError(
                f"speaker has shape {tuple(speaker.shape)}, expected ({x_t.shape[0]}, {S}, "
                f"{c.latent_dim}) = context_before + window + context_after frames"
            )
        if prev is not None and prev.shape != (x_t.shape[0], c.context_before, c.latent_dim):
            raise ValueError(
                f"prev has shape {tuple(prev.shape)}, expected ({x_t.shape[0]}, {c.context_before}, {c.latent_dim})"
            )
        if t.shape != (x_t.shape[0],) or t.dtype != torch.long:
            raise ValueError(f"t is {t.dtype} {tuple(t.shape)}, expected torch.int64 ({x_t.shape[0]},)")

    def _speaker_tokens(self, speaker: Tensor, visible: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """Memory tokens of the (hidden-zeroed) speaker context (B, S, Dz) and their visibility:
        (B, S, D) and (B, S) per frame, or (B, 1, D) and (B, 1) flattened (visible unless dropped)."""
        if self.flat:
            return self.speaker_proj(speaker.flatten(1))[:, None] + self.speaker_type, keep[:, None]
        return self.speaker_proj(speaker) + self.positions[: speaker.shape[1]] + self.speaker_type, visible

    @staticmethod
    def _causal_masks(W: int, S: int, P: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """The causal model's masks: self-attention (1, W, W) and cross-attention (W, 1 + S + P).

        Every token has a time on the shared axis: listener frame j is at P + j, speaker slot s
        at s, previous-window frame p at p, and the null token at −1 (seen by every query). A
        query sees the keys whose time is <= its own.
        """
        null = torch.full((1,), -1, device=device)
        when = torch.cat([null, torch.arange(S, device=device), torch.arange(P, device=device)])  # (1 + S + P,)
        query = P + torch.arange(W, device=device)  # (W,)
        return causal_mask(W, device)[None], when[None] <= query[:, None]

    def forward(
        self,
        x_t: Tensor,
        t: Tensor,
        speaker: Tensor,
        speaker_mask: Tensor | None = None,
        prev: Tensor | None = None,
        keep_cond: Tensor | None = None,
    ) -> Tensor:
        """Args:
            x_t: noisy listener latent window (B, W, Dz). t: timesteps (B,) long.
            speaker: speaker latent (B, S, Dz), S = context_before + W + context_after;
                ``speaker[:, context_before:context_before + W]`` is simultaneous with x_t.
            speaker_mask: (B, S) bool, False = not visible (clip edges, the future online).
            prev: previous window's last context_before listener latent frames (B, P, Dz) or None.
            keep_cond: (B,) bool, False drops the speaker (classifier-free guidance).
        Returns:
            the model output (B, W, Dz).
        """
        self._check(x_t, t, speaker, prev)
        B, W, _ = x_t.shape
        P, S = self.config.context_before, speaker.shape[1]
        ones = torch.ones(B, S, dtype=torch.bool, device=x_t.device)
        exists = ones if speaker_mask is None else speaker_mask.bool()  # (B, S)
        keep = ones[:, 0] if keep_cond is None else keep_cond.bool()  # (B,)
        speaker_visible = exists & keep[:, None]  # (B, S)
        prev_visible = exists[:, :P] & (prev is not None)  # (B, P)
        prev = torch.zeros_like(speaker[:, :P]) if prev is None else prev

        pos = self.positions  # (S, D) on the shared time axis
        h = self.in_proj(x_t) + pos[P : P + W]  # (B, W, D)
        spk, spk_visible = self._speaker_tokens(
            speaker.masked_fill(~speaker_visible[..., None], 0), speaker_visible, keep
        )
        prv = self.prev_proj(prev.masked_fill(~prev_visible[..., None], 0)) + pos[:P] + self.prev_type
        null = self.null_token.expand(B, 1, -1)  # (B, 1, D)
        memory = self.memory_norm(torch.cat([null, spk, prv], dim=1))  # (B, 1 + S + P, D); S -> 1 when flat
        memory_mask = torch.cat([ones[:, :1], spk_visible, prev_visible], dim=1)  # (B, 1 + S + P)

        self_mask = None
        if self.config.causal:
            self_mask, sees = self._causal_masks(W, S, P, x_t.device)
            memory_mask = memory_mask[:, None] & sees  # (B, W, 1 + S + P)

        c = self.time_mlp(self.time_table[t])  # (B, D)
        for block in self.blocks:
            h = block(h, memory, memory_mask, c, self_mask)
        shift, scale = self.out_modulation(c).chunk(2, dim=-1)
        return self.out_proj(modulate(self.out_norm(h), shift, scale))  # (B, W, Dz)
