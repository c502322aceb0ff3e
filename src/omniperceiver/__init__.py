"""omniperceiver: the Perceiver family (Perceiver, Perceiver IO) for any input.

The model package imports only torch. Training, data loading, conversion and export live in
their own sub-packages and import their dependencies there.
"""

from .adapters import AdapterOutput, GridAdapter, InputAdapter
from .attention import AttentionLayer, AttentionSpec, attend
from .decoders import ClassificationDecoder, QueryDecoder, grid_decoder
from .encoder import EncoderConfig, PerceiverEncoder
from .hub import from_pretrained, save_pretrained
from .model import (
    ClassificationDecoderConfig,
    FourierConfig,
    GridDecoderConfig,
    LearnedPositionConfig,
    Perceiver,
    PerceiverIO,
    PerceiverIOConfig,
    PerceiverModel,
    QueryDecoderConfig,
)
from .position import FourierPositionEncoding, LearnedPositionEncoding, fourier_features
from .presets import create_model, describe_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "AdapterOutput", "GridAdapter", "InputAdapter", "AttentionLayer", "AttentionSpec", "attend",
    "ClassificationDecoder", "QueryDecoder", "grid_decoder", "EncoderConfig", "PerceiverEncoder",
    "ClassificationDecoderConfig", "FourierConfig", "GridDecoderConfig", "LearnedPositionConfig",
    "Perceiver", "PerceiverIO", "PerceiverIOConfig", "PerceiverModel", "QueryDecoderConfig",
    "FourierPositionEncoding", "LearnedPositionEncoding", "fourier_features", "create_model",
    "describe_model", "list_models", "register_model", "from_pretrained", "save_pretrained",
]
