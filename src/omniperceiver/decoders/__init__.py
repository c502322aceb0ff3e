"""Decoders (output queries cross-attend to the latents) and output adapters (the decoder's
outputs to the task's output), behind the interfaces of :mod:`omniperceiver.decoders.base`."""

from .base import Decoder, OutputAdapter
from .multimodal import MultimodalDecoder, MultimodalOutput, subsampled_positions
from .outputs import ClassificationOutput, EmbeddingLogits, FlowOutput, GridOutput, SequenceOutput
from .query import (
    ClassificationDecoder,
    InputQueryDecoder,
    QueryDecoder,
    TokenQueryDecoder,
    grid_decoder,
)

__all__ = [
    "Decoder", "OutputAdapter", "QueryDecoder", "InputQueryDecoder", "TokenQueryDecoder",
    "ClassificationDecoder", "grid_decoder", "MultimodalDecoder", "MultimodalOutput",
    "subsampled_positions", "ClassificationOutput", "GridOutput", "SequenceOutput", "FlowOutput",
    "EmbeddingLogits",
]
