"""The Perceiver Resampler (Flamingo): media tokens -> a fixed number of latents."""

from __future__ import annotations

from ..registry import register_model
from ..resampler import PerceiverResampler

register_model(
    "perceiver-resampler",
    "Flamingo's Perceiver Resampler with open_flamingo's sizes: media tokens (batch, [T,] n, "
    "1024) -> (batch, [T,] 64, 1024), 6 layers, 8 heads of 64 channels; IDEFICS' and "
    "Idefics2's resamplers through its options (omniperceiver.convert.idefics)",
)(PerceiverResampler)

__all__ = ["PerceiverResampler"]
