"""The encoder: learned latents cross-attend to the inputs, then latent self-attention blocks.

One schedule covers both papers. Blocks ``0..num_blocks-1`` each run
``self_attends_per_block`` latent self-attends; a cross-attend to the inputs precedes each of
the first ``num_cross_attends`` blocks.

Weight sharing is set separately for the cross-attends and the blocks: ``"none"`` (each has
its own weights), ``"after_first"`` (the first has its own, all others share one set) or
``"all"`` (one set for all).

* Perceiver (2021, ImageNet): 8 cross-attends interleaved with 8 blocks of 6 self-attends; all
  cross-attends but the first share weights (``cross_attend_sharing="after_first"``) and the
  latent Transformer is one block reused (``block_sharing="all"``): 44.9M parameters.
* Perceiver IO: one cross-attend, then ``num_blocks`` blocks with one set of weights.
* perceiver-pytorch: ``num_cross_attends == num_blocks == depth``, both ``"none"`` (untied) or
  both ``"after_first"`` (``weight_tie_layers=True``).

``input_chunk_size`` (None = off) makes the cross-attends visit the inputs that many at a time
(online softmax, :func:`~omniperceiver.kernels.attend_chunks`): the same result up to
rounding, with memory bounded by one chunk instead of growing with the number of inputs.
The inputs may also be :class:`~omniperceiver.chunks.InputChunks`, built chunk by chunk
(an input adapter's ``input_chunks``), for inputs too large to exist whole.

``input_dropout`` (0 = off): in training, each example's cross-attends see a random
``1 - input_dropout`` of its inputs (the same number for every example; a new draw every
forward), a regulariser that also makes the cross-attends that much cheaper. The inputs are a
set to the encoder, each carrying its own position features, so a subset is a smaller input
of the same kind; evaluation reads every input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import AttentionLayer, AttentionSpec, self_attention_block
from .chunks import InputChunks

WEIGHT_SHARING = ("none", "after_first", "all")


@dataclass
class EncoderConfig:
    num_latents: int = 256
    latent_dim: int = 512
    num_blocks: int = 1
    self_attends_per_block: int = 6
    num_cross_attends: int = 1
    cross_attend_sharing: str = "all"
    block_sharing: str = "all"
    cross_attend: AttentionSpec = field(default_factory=AttentionSpec)
    self_attend: AttentionSpec = field(default_factory=lambda: AttentionSpec(heads=8))
    latent_init_std: float = 0.02
    input_chunk_size: int | None = None
    input_dropout: float = 0.0


def _schedule(count: int, sharing: str) -> list[int]:
    """Which unique module runs at each of ``count`` steps."""
    if sharing == "none":
        return list(range(count))
    if sharing == "after_first":
        return [min(i, 1) for i in range(count)]
    return [0] * count


class PerceiverEncoder(nn.Module):
    """(batch, num_inputs, input_channels) [+ mask (batch, num_inputs)] -> latents
    (batch, num_latents, latent_dim). The inputs may be :class:`InputChunks`."""

    def __init__(self, input_channels: int, config: EncoderConfig | None = None):
        super().__init__()
        config = config or EncoderConfig()
        for name in ("cross_attend_sharing", "block_sharing"):
            if getattr(config, name) not in WEIGHT_SHARING:
                raise ValueError(f"{name} must be one of {WEIGHT_SHARING}, "
                                 f"got {getattr(config, name)!r}")
        if config.input_chunk_size is not None and config.input_chunk_size < 1:
            raise ValueError(
                f"input_chunk_size must be None or a positive int, got {config.input_chunk_size}")
        if not 1 <= config.num_cross_attends <= config.num_blocks:
            raise ValueError(
                f"num_cross_attends must be between 1 and num_blocks={config.num_blocks}, "
                f"got {config.num_cross_attends}")
        self.config = config
        self.input_channels = input_channels
        self.latents = nn.Parameter(torch.empty(config.num_latents, config.latent_dim))
        std = config.latent_init_std
        nn.init.trunc_normal_(self.latents, std=std, a=-2 * std, b=2 * std)

        self.cross_schedule = _schedule(config.num_cross_attends, config.cross_attend_sharing)
        self.block_schedule = _schedule(config.num_blocks, config.block_sharing)
        self.cross_attends = nn.ModuleList(
            AttentionLayer(config.latent_dim, input_channels, config.cross_attend)
            for _ in range(max(self.cross_schedule) + 1))
        self.blocks = nn.ModuleList(
            self_attention_block(config.latent_dim, config.self_attends_per_block,
                                 config.self_attend)
            for _ in range(max(self.block_schedule) + 1))

    def forward(self, inputs: Tensor | InputChunks, mask: Tensor | None = None) -> Tensor:
        if isinstance(inputs, Tensor) and self.config.input_chunk_size is not None:
            inputs = InputChunks.from_tensor(inputs, self.config.input_chunk_size)
        batch = inputs.shape[0] if isinstance(inputs, Tensor) else inputs.batch_size
        if self.training and self.config.input_dropout:
            inputs, mask = drop_inputs(inputs, mask, self.config.input_dropout)
        standardized = (isinstance(inputs, Tensor)
                        and isinstance(self.cross_attends[0].norm_kv, nn.LayerNorm))
        if standardized:
            # Every cross-attend's LayerNorm standardises the same inputs: done once here
            # (it is slow for a few channels per input), each applies its scale and shift.
            inputs = F.layer_norm(inputs, inputs.shape[-1:],
                                  eps=self.cross_attends[0].norm_kv.eps)
        x = self.latents.expand(batch, -1, -1)
        for i, b in enumerate(self.block_schedule):
            if i < len(self.cross_schedule):
                x = self.cross_attends[self.cross_schedule[i]](
                    x, inputs, mask, context_standardized=standardized)
            x = self.blocks[b](x)
        return x


def drop_inputs(inputs: Tensor | InputChunks, mask: Tensor | None, fraction: float
                ) -> tuple[Tensor, Tensor | None]:
    """A random ``1 - fraction`` of each example's inputs (batch, n, channels) and of its
    mask, in a random order (the encoder ignores it)."""
    if not isinstance(inputs, Tensor):
        raise ValueError("input_dropout needs the inputs as one tensor, not InputChunks")
    batch, n, channels = inputs.shape
    keep = max(1, n - round(n * fraction))
    index = torch.rand(batch, n, device=inputs.device).argsort(dim=1)[:, :keep]
    inputs = inputs.gather(1, index[:, :, None].expand(-1, -1, channels))
    return inputs, None if mask is None else mask.gather(1, index)


__all__ = ["EncoderConfig", "PerceiverEncoder", "WEIGHT_SHARING", "drop_inputs"]
