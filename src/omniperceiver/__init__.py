"""omniperceiver: the Perceiver family (Perceiver, Perceiver IO, Perceiver AR) for any input.

The model package imports only torch. Importing it registers every model family
(:mod:`omniperceiver.models`), so ``create_model(name)`` and ``from_pretrained(folder)`` work
in a fresh interpreter. Training, data loading, conversion and export live in their own
sub-packages and import their dependencies there.
"""

from . import models  # noqa: F401  (registers every model family)
from .adapters import AdapterOutput, GridAdapter, InputAdapter
from .attention import AttentionLayer, AttentionSpec
from .decoders import ClassificationDecoder, Decoder, OutputAdapter, QueryDecoder, grid_decoder
from .encoder import EncoderConfig, PerceiverEncoder
from .errors import OmniPerceiverError
from .hub import from_pretrained, save_pretrained
from .hub_repos import push_to_hub
from .kernels import attend
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
from .perceiver_ar import PerceiverAR
from .position import (
    FourierPositionEncoding,
    LearnedPositionEncoding,
    PositionEncoding,
    fourier_features,
)
from .registry import create_model, describe_model, list_models, register_model
from .resampler import PerceiverResampler

__version__ = "0.6.0"

__all__ = [
    "AdapterOutput", "GridAdapter", "InputAdapter", "AttentionLayer", "AttentionSpec", "attend",
    "Decoder", "OutputAdapter", "ClassificationDecoder", "QueryDecoder", "grid_decoder",
    "EncoderConfig", "PerceiverEncoder", "ClassificationDecoderConfig", "FourierConfig",
    "GridDecoderConfig", "LearnedPositionConfig", "Perceiver", "PerceiverIO", "PerceiverIOConfig",
    "PerceiverModel", "QueryDecoderConfig", "PositionEncoding", "FourierPositionEncoding",
    "LearnedPositionEncoding", "fourier_features", "PerceiverResampler", "PerceiverAR",
    "OmniPerceiverError",
    "create_model", "describe_model", "list_models", "register_model", "from_pretrained",
    "save_pretrained", "push_to_hub",
]
