"""The Perceiver Resampler (Flamingo, Alayrac et al. 2022): a fixed number of learned latents
summarise any number of media tokens (an image's patches, a video's frames).

Each of ``depth`` layers is an :class:`~omniperceiver.attention.AttentionLayer` whose latents
attend to ``[media tokens; latents]`` (keys and values from both, queries from the latents;
the media and the latents each with their own norm), then a feed-forward, each with a residual;
a final norm follows. Learned time embeddings, one per frame, are added to the media first.

Frames are resampled in one of two ways:

* ``frames="separate"`` (flamingo-pytorch, open_flamingo): each frame (or image) has its own
  latents; (batch, T, n, dim) -> (batch, T, num_latents, dim);
* ``frames="joint"`` (the paper's pseudo-code): the T x n tokens are flattened into one
  sequence; (batch, T, n, dim) -> (batch, num_latents, dim).

A 3D input (batch, n, dim) is one frame: (batch, num_latents, dim) either way.

The defaults are open_flamingo's (dim 1024, depth 6, 8 heads of 64 channels, 64 latents,
a GELU feed-forward 4x wide, projections without biases). IDEFICS' and Idefics2's resamplers
are the same module with other options (see :mod:`omniperceiver.convert.idefics`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import AttentionLayer, AttentionSpec, make_norm

FRAMES = ("separate", "joint")


class PerceiverResampler(nn.Module):
    """Media tokens (batch, [T,] n, dim) and an optional ``mask`` (batch, [T,] n) bool
    (True = a real token; padded tokens' keys are ignored, the latents' own keys never are)
    -> latents (batch, [T,] num_latents, dim) (no T with ``frames="joint"``).

    ``heads`` of ``head_dim`` channels each for queries, keys and values; ``kv_heads`` <
    ``heads`` shares each key/value head between ``heads / kv_heads`` query heads (Idefics2).
    ``qk_norm`` adds a LayerNorm over each head's queries and keys (IDEFICS' option).
    ``norm`` is ``"layer"`` (Flamingo, IDEFICS) or ``"rms"`` (Idefics2), with ``norm_eps``.
    ``activation`` and ``widening_factor`` set the feed-forward (``"swiglu"`` for Idefics2,
    ``"relu"`` for IDEFICS); ``bias`` adds biases to every linear layer.
    ``max_frames``: time embeddings for up to that many frames (None: no time embeddings).
    """

    def __init__(
        self,
        *,
        dim: int = 1024,
        depth: int = 6,
        num_latents: int = 64,
        heads: int = 8,
        head_dim: int = 64,
        kv_heads: int | None = None,
        qk_norm: bool = False,
        widening_factor: int = 4,
        activation: str = "gelu",
        norm: str = "layer",
        norm_eps: float = 1e-5,
        bias: bool = False,
        max_frames: int | None = None,
        frames: str = "separate",
        latent_init_std: float = 0.02,
    ):
        super().__init__()
        if frames not in FRAMES:
            raise ValueError(f"frames must be one of {FRAMES}, got {frames!r}")
        self.dim = dim
        self.frames = frames
        spec = AttentionSpec(
            heads=heads, qk_channels=heads * head_dim, v_channels=heads * head_dim,
            kv_heads=kv_heads, qk_norm=qk_norm, widening_factor=widening_factor,
            activation=activation, qkv_bias=bias, out_bias=bias, ff_bias=bias, norm=norm,
            norm_eps=norm_eps, keys_include_queries=True)
        self.latents = nn.Parameter(torch.empty(num_latents, dim))
        nn.init.normal_(self.latents, std=latent_init_std)
        self.time_embeddings = None
        if max_frames is not None:
            self.time_embeddings = nn.Parameter(torch.empty(max_frames, dim))
            nn.init.normal_(self.time_embeddings, std=latent_init_std)
        self.layers = nn.ModuleList(AttentionLayer(dim, dim, spec) for _ in range(depth))
        self.norm = make_norm(norm, dim, norm_eps)

    def forward(self, media: Tensor, mask: Tensor | None = None) -> Tensor:
        if media.dim() not in (3, 4) or media.shape[-1] != self.dim:
            raise ValueError(f"media must be (batch, n, {self.dim}) or (batch, frames, n, "
                             f"{self.dim}), got {tuple(media.shape)}")
        if mask is not None and (mask.dtype != torch.bool or mask.shape != media.shape[:-1]):
            raise ValueError(f"mask must be bool of shape {tuple(media.shape[:-1])} (the media "
                             f"without channels), got {mask.dtype} {tuple(mask.shape)}")
        has_frames = media.dim() == 4
        x = media if has_frames else media[:, None]  # (batch, T, n, dim)
        b, t, n, _ = x.shape
        if self.time_embeddings is not None:
            if t > self.time_embeddings.shape[0]:
                raise ValueError(f"at most max_frames={self.time_embeddings.shape[0]} frames "
                                 f"have time embeddings, got {t}")
            x = x + self.time_embeddings[:t, None]  # one per frame: (T, 1, dim)
        # separate: each frame its own example (batch * T, n, dim); joint: (batch, T * n, dim)
        groups = b * t if self.frames == "separate" else b
        x = x.reshape(groups, -1, self.dim)
        mask = None if mask is None else mask.reshape(groups, -1)
        latents = self.latents.expand(groups, -1, -1)  # (groups, num_latents, dim)
        for layer in self.layers:
            latents = layer(latents, x, mask)
        latents = self.norm(latents)
        if has_frames and self.frames == "separate":
            return latents.view(b, t, *latents.shape[1:])
        return latents


__all__ = ["PerceiverResampler", "FRAMES"]
