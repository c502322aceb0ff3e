"""Presets for converted checkpoint families: a published model is one name.

Every family that :mod:`omniperceiver.convert` brings in is registered here, so a converted
model carries ``model.recipe`` (preset name + overrides) and ``from_pretrained`` rebuilds it.
The defaults are the published hyper-parameters; the overrides describe a checkpoint that
differs (the converters fill them in from the source's configuration).

=========================  ===========================================  ==============
preset                     model                                        parameters
=========================  ===========================================  ==============
vision-perceiver-learned   ImageNet, 1x1 conv + learned positions       62,255,848
vision-perceiver-conv      ImageNet, conv stem + 2D Fourier features    48,646,522
language-perceiver         masked language model on UTF-8 bytes         201,108,230
optical-flow-perceiver     Sintel/KITTI optical flow                    41,057,134
multimodal-perceiver       Kinetics-700 video+audio+label autoencoding
perceiver-pytorch          perceiver-pytorch's ``Perceiver`` keywords
perceiver-pytorch-io       perceiver-pytorch's ``PerceiverIO`` keywords
=========================  ===========================================  ==============

(``vision-perceiver-fourier``, 48,440,627 parameters, is in :mod:`omniperceiver.presets`.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .adapters.audio import WaveformAdapter
from .adapters.base import AdapterOutput, InputAdapter
from .adapters.grid import GridAdapter
from .adapters.image import ImageAdapter
from .adapters.multimodal import MultimodalAdapter, split_modalities
from .adapters.text import ByteTokenizer, TextAdapter
from .adapters.video import VideoAdapter
from .attention import AttentionLayer, AttentionSpec
from .decoders import ClassificationDecoder, QueryDecoder
from .encoder import EncoderConfig, PerceiverEncoder
from .model import Perceiver, PerceiverModel
from .outputs import ClassificationOutput, SequenceOutput
from .position import FourierPositionEncoding, LearnedPositionEncoding
from .presets import register_model
from .validation import check_float_tensor, check_layout

# --- configuration helpers ----------------------------------------------------------------
#
# ``encoder`` and ``decoder`` overrides are JSON-friendly dicts merged over the published
# configuration: ``encoder={"num_latents": 8, "self_attend": {"heads": 2}}`` changes only those
# fields (EncoderConfig fields; AttentionSpec fields for ``cross_attend``/``self_attend``).
# ``activation`` applies to every feed-forward ("gelu_tanh" for DeepMind's JAX weights).


def attention_spec(published: dict, override: dict | None, activation: str) -> AttentionSpec:
    """An AttentionSpec: ``override`` fields over ``published`` ones."""
    return AttentionSpec(**{"activation": activation, **published, **(override or {})})


def encoder_config(published: dict, override: dict | None, activation: str) -> EncoderConfig:
    """An EncoderConfig: ``override`` over ``published``, field by field (and within the
    ``cross_attend``/``self_attend`` specs)."""
    override = dict(override or {})
    fields = {**published, **override}
    for key in ("cross_attend", "self_attend"):
        fields[key] = attention_spec(published.get(key, {}), override.get(key), activation)
    return EncoderConfig(**fields)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


IMAGENET_ENCODER = dict(num_latents=512, latent_dim=1024, num_blocks=8, self_attends_per_block=6,
                        cross_attend=dict(heads=1), self_attend=dict(heads=8))
LANGUAGE_ENCODER = dict(num_latents=256, latent_dim=1280, num_blocks=1, self_attends_per_block=26,
                        cross_attend=dict(heads=8, qk_channels=256, v_channels=1280),
                        self_attend=dict(heads=8, qk_channels=256, v_channels=1280))
FLOW_ENCODER = dict(num_latents=2048, latent_dim=512, num_blocks=1, self_attends_per_block=24,
                    cross_attend=dict(heads=1), self_attend=dict(heads=16))
MULTIMODAL_ENCODER = dict(num_latents=784, latent_dim=512, num_blocks=1, self_attends_per_block=8,
                          cross_attend=dict(heads=1), self_attend=dict(heads=8))

# --- ImageNet: learned positions, conv stem -----------------------------------------------


class ProjectedPositions(nn.Module):
    """Learned positions followed by a linear layer (DeepMind's ``PositionEncodingProjector``,
    transformers' ``positions_projection``): ``grid(shape)`` -> (prod(shape), num_channels)."""

    def __init__(self, num_positions: int, channels: int, num_channels: int):
        super().__init__()
        self.encoding = LearnedPositionEncoding(num_positions, channels)
        self.projection = nn.Linear(channels, num_channels)
        self.num_channels = num_channels

    def grid(self, shape: Sequence[int], *, device=None, dtype=torch.float32) -> Tensor:
        return self.projection(self.encoding.grid(shape, device=device, dtype=dtype))


def _image_classifier(adapter: InputAdapter, *, num_classes: int, encoder: EncoderConfig,
                      decoder: AttentionSpec) -> PerceiverModel:
    return PerceiverModel(
        input_adapter=adapter, encoder=PerceiverEncoder(adapter.num_channels, encoder),
        decoder=ClassificationDecoder(latent_dim=encoder.latent_dim, num_classes=num_classes,
                                      pooling="query", cross_attend=decoder),
        output_adapter=ClassificationOutput())


@register_model("vision-perceiver-learned", "Perceiver IO for ImageNet: 1x1 conv to 256 "
                "channels + 256 learned position channels (projected), 512x1024 latents, "
                "8 x 6 shared self-attends (DeepMind's imagenet_learned_position_encoding, "
                "transformers' vision-perceiver-learned: 62,255,848 parameters)")
def vision_perceiver_learned(
    *,
    num_classes: int = 1000,
    image_size: int | Sequence[int] = 224,
    pixel_channels: int = 256,
    position_channels: int = 256,
    projected_position_channels: int = 256,
    activation: str = "gelu",
    encoder: dict | None = None,
    decoder: dict | None = None,
) -> PerceiverModel:
    """Images (batch, H, W, 3) of exactly ``image_size``: a linear layer maps each pixel to
    ``pixel_channels``, ``position_channels`` learned position channels are projected to
    ``projected_position_channels`` and concatenated. DeepMind's decoder has no query
    residual; transformers' adds one (``decoder={"query_residual": True}``)."""
    shape = _pair(image_size)
    adapter = ImageAdapter(
        image_shape=shape, mode="pixels", project_channels=pixel_channels,
        position=ProjectedPositions(shape[0] * shape[1], position_channels,
                                    projected_position_channels))
    return _image_classifier(
        adapter, num_classes=num_classes,
        encoder=encoder_config(IMAGENET_ENCODER, encoder, activation),
        decoder=attention_spec(dict(heads=1, query_residual=False), decoder, activation))


@register_model("vision-perceiver-conv", "Perceiver IO for ImageNet: conv stem (7x7 conv, "
                "batch norm, max-pool: 224 -> 56x56x64) + 2D Fourier features, 512x1024 "
                "latents, 8 x 6 shared self-attends (DeepMind's imagenet_conv_preprocessing, "
                "transformers' vision-perceiver-conv: 48,646,522 parameters)")
def vision_perceiver_conv(
    *,
    num_classes: int = 1000,
    image_size: int | Sequence[int] = 224,
    conv_channels: int = 64,
    padding: str = "same",
    num_bands: int = 64,
    max_resolution: Sequence[float] = (56, 56),
    activation: str = "gelu",
    encoder: dict | None = None,
    decoder: dict | None = None,
) -> PerceiverModel:
    """Images (batch, H, W, 3). ``padding="transformers"`` is transformers' stem (55x55)."""
    adapter = ImageAdapter(image_shape=_pair(image_size), mode="conv", conv_channels=conv_channels,
                           padding=padding, num_bands=num_bands,
                           max_resolution=tuple(max_resolution))
    return _image_classifier(
        adapter, num_classes=num_classes,
        encoder=encoder_config(IMAGENET_ENCODER, encoder, activation),
        decoder=attention_spec(dict(heads=1), decoder, activation))


# --- optical flow -------------------------------------------------------------------------


class FlowAdapter(InputAdapter):
    """Pairs of frames (batch, 2, H, W, C) -> (batch, H * W, project_channels + position
    channels).

    ``C`` is the per-pixel feature of one frame (27 for the published model: the 3x3
    neighbourhood of RGB, see :func:`flow_patches`). The two frames' features of a pixel are
    stacked (first frame first), projected by a linear layer, and 2D Fourier features of the
    pixel grid (``max_resolution`` the training size) are concatenated.
    """

    def __init__(self, *, image_shape: Sequence[int], input_channels: int = 27,
                 num_frames: int = 2, project_channels: int = 64, num_bands: int = 64,
                 max_resolution: Sequence[float] | None = None):
        super().__init__()
        self.input_channels = input_channels
        self.num_frames = num_frames
        self.project = nn.Linear(num_frames * input_channels, project_channels)
        position = FourierPositionEncoding(num_axes=2, num_bands=num_bands,
                                           max_resolution=tuple(max_resolution or image_shape))
        self.grid = GridAdapter(input_channels=project_channels, input_axis=2, position=position,
                                check_finite=False)
        self.num_channels = self.grid.num_channels

    def forward(self, x: Tensor, mask: Tensor | None = None) -> AdapterOutput:
        check_float_tensor(x)
        check_layout(x, axes=3, channels=self.input_channels)
        if x.shape[1] != self.num_frames:
            raise ValueError(f"expected {self.num_frames} frames (batch, {self.num_frames}, H, W, "
                             f"{self.input_channels}), got shape {tuple(x.shape)}")
        if mask is not None:
            raise ValueError("masks are not supported for optical flow inputs")
        b, t, h, w, c = x.shape
        x = x.movedim(1, 3).reshape(b, h, w, t * c)  # (batch, H, W, frames * C)
        return self.grid(self.project(x))


def flow_patches(frames: Tensor) -> Tensor:
    """(batch, 2, H, W, C) frames -> (batch, 2, H, W, 9 * C): each pixel's zero-padded 3x3
    neighbourhood, ordered (row offset, column offset, channel), the published model's input."""
    b, t, h, w, c = frames.shape
    x = torch.nn.functional.pad(frames, (0, 0, 1, 1, 1, 1))  # pad H and W by one
    rows = [x[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)]
    return torch.cat(rows, dim=-1)


class FlowOutput(nn.Module):
    """(batch, H * W, 2) -> flow (batch, H, W, 2), divided by ``rescale_factor``."""

    def __init__(self, rescale_factor: float = 100.0):
        super().__init__()
        self.rescale_factor = rescale_factor

    def forward(self, outputs: Tensor, adapted: AdapterOutput) -> Tensor:
        return (outputs / self.rescale_factor).reshape(
            outputs.shape[0], *adapted.grid_shape, outputs.shape[-1])


class FlowPerceiver(PerceiverModel):
    """Perceiver IO for optical flow: the decoder's queries are the encoder's inputs (each
    pixel's features with their position features), one flow vector per pixel.

    ``forward(frames)``: (batch, 2, H, W, C) -> (batch, H, W, 2).
    """

    def forward(self, inputs: Tensor, mask: Tensor | None = None) -> Tensor:
        adapted = self.input_adapter(inputs, mask)
        latents = self.encoder(adapted.inputs, adapted.mask)
        return self.output_adapter(self.decoder(latents, adapted.inputs), adapted)


@register_model("optical-flow-perceiver", "Perceiver IO for optical flow: pairs of frames as "
                "3x3 patches projected to 64 channels + 2D Fourier features, 2048x512 latents, "
                "24 self-attends, per-pixel queries from the inputs (DeepMind's optical_flow, "
                "transformers' optical-flow-perceiver: 41,057,134 parameters)")
def optical_flow_perceiver(
    *,
    train_size: Sequence[int] = (368, 496),
    input_channels: int = 27,
    project_channels: int = 64,
    num_bands: int = 64,
    rescale_factor: float = 100.0,
    activation: str = "gelu",
    encoder: dict | None = None,
    decoder: dict | None = None,
) -> FlowPerceiver:
    """Frames (batch, 2, H, W, 27) of the training size (see :func:`flow_patches`)."""
    adapter = FlowAdapter(image_shape=tuple(train_size), input_channels=input_channels,
                          project_channels=project_channels, num_bands=num_bands)
    config = encoder_config(FLOW_ENCODER, encoder, activation)
    spec = attention_spec(dict(heads=1, query_residual=False), decoder, activation)
    flow_decoder = QueryDecoder(latent_dim=config.latent_dim, output_channels=2,
                                query_channels=adapter.num_channels, cross_attend=spec)
    return FlowPerceiver(input_adapter=adapter,
                         encoder=PerceiverEncoder(adapter.num_channels, config),
                         decoder=flow_decoder, output_adapter=FlowOutput(rescale_factor))

# --- masked language model ---------------------------------------------------------------


class EmbeddingLogits(nn.Module):
    """Decoder outputs (batch, length, channels) -> logits (batch, length, vocab_size) with the
    input token embedding (vocab_size, channels) transposed, plus a bias (a tied output
    layer)."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, outputs: Tensor, embedding: Tensor) -> Tensor:
        return outputs @ embedding.t() + self.bias


class LanguagePerceiver(PerceiverModel):
    """Perceiver IO masked language model: token ids (batch, length) [+ mask] -> logits
    (batch, length, vocab_size).

    One learned query per position (the first ``length`` of ``max_length``) reads the latents;
    the logits reuse the input adapter's token embedding (tied weights).
    """

    def forward(self, inputs: Tensor, mask: Tensor | None = None) -> Tensor:
        adapted = self.input_adapter(inputs, mask)
        latents = self.encoder(adapted.inputs, adapted.mask)
        length = inputs.shape[1]
        subsample = (None if length == self.decoder.output_shape[0]
                     else torch.arange(length, device=inputs.device))
        outputs = self.decoder(latents, subsample=subsample)  # (batch, length, channels)
        return self.output_adapter(outputs, self.input_adapter.embedding.weight)


@register_model("language-perceiver", "Perceiver IO masked language model on UTF-8 bytes: "
                "vocabulary 262, 2048 positions of 768 channels, 256x1280 latents, 26 "
                "self-attends, tied output embedding (DeepMind's language_perceiver_io_bytes, "
                "transformers' language-perceiver: 201,108,230 parameters)")
def language_perceiver(
    *,
    vocab_size: int = ByteTokenizer.VOCAB_SIZE,
    max_length: int = 2048,
    num_channels: int = 768,
    activation: str = "gelu",
    encoder: dict | None = None,
    decoder: dict | None = None,
) -> LanguagePerceiver:
    """Token ids (batch, length <= max_length) of :class:`~omniperceiver.adapters.ByteTokenizer`.
    Without a mask, padding ids are masked out."""
    adapter = TextAdapter(num_channels=num_channels, max_length=max_length, vocab_size=vocab_size)
    config = encoder_config(LANGUAGE_ENCODER, encoder, activation)
    queries = QueryDecoder(
        latent_dim=config.latent_dim, output_channels=num_channels,
        queries=LearnedPositionEncoding(max_length, num_channels), final_project=False,
        cross_attend=attention_spec(dict(heads=8, qk_channels=256, v_channels=num_channels,
                                         query_residual=False), decoder, activation))
    return LanguagePerceiver(input_adapter=adapter,
                             encoder=PerceiverEncoder(adapter.num_channels, config),
                             decoder=queries, output_adapter=EmbeddingLogits(vocab_size))


# --- multimodal autoencoding --------------------------------------------------------------


class MaskTokens(InputAdapter):
    """Wraps a :class:`~omniperceiver.adapters.MultimodalAdapter`: the inputs of modality
    ``name`` are replaced by a learned mask token with probability ``mask_probs[name]``.

    Probability 1 replaces them always (the published model never sees the label it
    reconstructs); 0 never; in between, only in training mode (never random in eval mode).
    """

    def __init__(self, adapter: MultimodalAdapter, mask_probs: dict[str, float]):
        super().__init__()
        self.adapter = adapter
        self.mask_probs = dict(mask_probs)
        self.num_channels = adapter.num_channels
        self.tokens = nn.ParameterDict({
            name: nn.Parameter(torch.zeros(adapter.num_channels)) for name in sorted(mask_probs)})
        for token in self.tokens.values():
            nn.init.trunc_normal_(token, std=0.02, a=-0.04, b=0.04)

    def forward(self, x: dict[str, Tensor], mask=None) -> AdapterOutput:
        out = self.adapter(x, mask)
        parts = split_modalities(out.inputs, out.modality_sizes)
        for name, p in self.mask_probs.items():
            if p >= 1 or (self.training and p > 0):
                inputs = parts[name]
                drop = torch.rand(inputs.shape[:2], device=inputs.device) < p
                token = self.tokens[name].to(inputs.dtype)
                parts[name] = torch.where(drop[..., None], token, inputs)
        return AdapterOutput(inputs=torch.cat(list(parts.values()), dim=1), mask=out.mask,
                             modality_sizes=out.modality_sizes)


def subsampled_positions(indices: Tensor, shape: Sequence[int]) -> Tensor:
    """Flat indices (n,) into a grid of ``shape`` -> coordinates (n, len(shape)) in [-1, 1),
    ``-1 + 2 * index / size`` per axis (DeepMind's subsampled decoder queries)."""
    coords = torch.stack(torch.unravel_index(indices, tuple(shape)), dim=-1)
    return -1 + 2 * coords.double() / torch.tensor(shape, dtype=torch.float64,
                                                    device=indices.device)


class MultimodalDecoder(nn.Module):
    """Queries of every modality, padded to one width with a learned vector per modality and
    concatenated in sorted name order, cross-attend to the latents together; a linear layer
    maps them to ``output_channels``.

    ``queries[name]`` is a :class:`~omniperceiver.position.FourierPositionEncoding` of the
    modality's output grid ``output_shapes[name]`` or a
    :class:`~omniperceiver.position.LearnedPositionEncoding`. ``subsample`` {name: flat indices}
    decodes only those outputs (Fourier features of ``-1 + 2 * index / size``, as DeepMind's
    chunked decoding; without it the whole grid, ``linspace(-1, 1)``).
    """

    def __init__(self, *, latent_dim: int, queries: dict[str, nn.Module],
                 output_shapes: dict[str, tuple[int, ...]], output_channels: int,
                 cross_attend: AttentionSpec, min_padding_size: int = 2):
        super().__init__()
        names = sorted(queries)
        self.queries = nn.ModuleDict({name: queries[name] for name in names})
        self.output_shapes = {name: tuple(output_shapes[name]) for name in names}
        self.query_channels = max(q.num_channels for q in queries.values()) + min_padding_size
        self.padding = nn.ParameterDict({
            name: nn.Parameter(torch.zeros(self.query_channels - queries[name].num_channels))
            for name in names})
        for vector in self.padding.values():
            nn.init.trunc_normal_(vector, std=0.02, a=-0.04, b=0.04)
        self.cross_attend = AttentionLayer(self.query_channels, latent_dim, cross_attend)
        self.final = nn.Linear(self.query_channels, output_channels)

    def query_counts(self, subsample: dict[str, Tensor | None] | None = None) -> dict[str, int]:
        counts = {}
        for name, encoding in self.queries.items():
            indices = (subsample or {}).get(name)
            full = math.prod(self.output_shapes[name])
            learned = isinstance(encoding, LearnedPositionEncoding)
            counts[name] = full if indices is None or learned else len(indices)
        return counts

    def build_queries(self, batch: int, *, subsample: dict[str, Tensor | None] | None = None,
                      device=None, dtype=torch.float32) -> Tensor:
        parts = []
        for name, encoding in self.queries.items():
            shape, indices = self.output_shapes[name], (subsample or {}).get(name)
            if isinstance(encoding, LearnedPositionEncoding):
                q = encoding.grid(shape, dtype=dtype)
            elif indices is None:
                q = encoding.grid(shape, device=device, dtype=dtype)
            else:
                q = encoding.points(subsampled_positions(indices.to(device), shape)).to(dtype)
            pad = self.padding[name].to(dtype).expand(q.shape[0], -1)
            parts.append(torch.cat([q, pad], dim=-1))
        return torch.cat(parts).expand(batch, -1, -1)  # (batch, sum of counts, query_channels)

    def forward(self, latents: Tensor, queries: Tensor | None = None, *,
                subsample: dict[str, Tensor | None] | None = None) -> Tensor:
        if queries is None:
            queries = self.build_queries(latents.shape[0], subsample=subsample,
                                         device=latents.device, dtype=latents.dtype)
        return self.final(self.cross_attend(queries, latents))


class MultimodalOutput(nn.Module):
    """Decoder outputs (batch, sum of counts, channels) -> {name: output}: a linear head per
    modality; ``audio`` (batch, samples), ``image`` (batch, n, 3) or, decoded whole,
    (batch, T, H, W, 3), ``label`` logits (batch, num_classes)."""

    def __init__(self, heads: dict[str, nn.Module], image_shape: Sequence[int]):
        super().__init__()
        self.heads = nn.ModuleDict(heads)
        self.image_shape = tuple(image_shape)

    def forward(self, outputs: Tensor, counts: dict[str, int]) -> dict[str, Tensor]:
        result = {}
        for name, part in split_modalities(outputs, counts).items():
            out = self.heads[name](part)
            if name == "audio":
                out = out.reshape(out.shape[0], -1)
            elif name == "label":
                out = out[:, 0]
            elif part.shape[1] == math.prod(self.image_shape):
                out = out.reshape(out.shape[0], *self.image_shape, out.shape[-1])
            result[name] = out
        return result


class MultimodalPerceiver(PerceiverModel):
    """Perceiver IO multimodal autoencoder (video, audio, class label).

    ``forward({"image": (batch, T, H, W, 3), "audio": (batch, samples, 1),
    "label": (batch, num_classes)}, subsample={"image": idx, "audio": idx})`` -> {name: output}
    (see :class:`MultimodalOutput`); ``subsample`` decodes chunks of the outputs.
    """

    def forward(self, inputs: dict[str, Tensor], mask=None, *,
                subsample: dict[str, Tensor | None] | None = None) -> dict[str, Tensor]:
        adapted = self.input_adapter(inputs, mask)
        latents = self.encoder(adapted.inputs, adapted.mask)
        outputs = self.decoder(latents, subsample=subsample)
        return self.output_adapter(outputs, self.decoder.query_counts(subsample))


@register_model("multimodal-perceiver", "Perceiver IO multimodal autoencoding on Kinetics-700: "
                "16 frames of 224x224 video (4x4 patches, 3D Fourier features), 30,720 audio "
                "samples (16-sample patches, 1D Fourier features) and the label, 784x512 "
                "latents, 8 self-attends, per-modality decoder queries (DeepMind's "
                "video_autoencoding, transformers' multimodal-perceiver)")
def multimodal_perceiver(
    *,
    frames_shape: Sequence[int] = (16, 224, 224),
    patch_size: int = 4,
    max_resolution: Sequence[float] = (16, 56, 56),
    image_bands: int = 32,
    audio_samples: int = 30720,
    samples_per_patch: int = 16,
    audio_bands: int = 192,
    num_classes: int = 700,
    label_query_channels: int = 1024,
    output_channels: int = 512,
    mask_probs: dict[str, float] | None = None,
    activation: str = "gelu",
    encoder: dict | None = None,
    decoder: dict | None = None,
) -> MultimodalPerceiver:
    frames_shape, max_resolution = tuple(frames_shape), tuple(max_resolution)
    image_positions = dict(num_axes=3, num_bands=image_bands, max_resolution=max_resolution)
    audio_positions = dict(num_axes=1, num_bands=audio_bands, max_resolution=(audio_samples,))
    adapters = {
        "audio": WaveformAdapter(max_samples=audio_samples, samples_per_patch=samples_per_patch,
                                 position=FourierPositionEncoding(**audio_positions)),
        "image": VideoAdapter(video_shape=frames_shape, patch_shape=(1, patch_size, patch_size),
                              position=FourierPositionEncoding(**image_positions)),
        "label": GridAdapter(input_channels=num_classes, input_axis=0),
    }
    probs = {"audio": 0.0, "image": 0.0, "label": 1.0} if mask_probs is None else mask_probs
    adapter = MaskTokens(MultimodalAdapter(adapters, min_padding_size=4), probs)
    config = encoder_config(MULTIMODAL_ENCODER, encoder, activation)
    audio_patches = audio_samples // samples_per_patch
    queries = {"audio": FourierPositionEncoding(**audio_positions),
               "image": FourierPositionEncoding(**image_positions),
               "label": LearnedPositionEncoding(1, label_query_channels)}
    multimodal_decoder = MultimodalDecoder(
        latent_dim=config.latent_dim, queries=queries,
        output_shapes={"audio": (audio_patches,), "image": frames_shape, "label": (1,)},
        output_channels=output_channels,
        cross_attend=attention_spec(dict(heads=1, query_residual=False), decoder, activation))
    heads = {"audio": nn.Linear(output_channels, samples_per_patch),
             "image": nn.Linear(output_channels, 3),
             "label": nn.Linear(output_channels, num_classes)}
    return MultimodalPerceiver(input_adapter=adapter,
                               encoder=PerceiverEncoder(adapter.num_channels, config),
                               decoder=multimodal_decoder,
                               output_adapter=MultimodalOutput(heads, frames_shape))


# --- perceiver-pytorch --------------------------------------------------------------------


def _lucidrains_spec(heads: int, dim_head: int, **kwargs) -> AttentionSpec:
    """perceiver-pytorch's attention: no q/k/v biases, GEGLU feed-forward widening 4."""
    return AttentionSpec(heads=heads, qk_channels=heads * dim_head, v_channels=heads * dim_head,
                         widening_factor=4, activation="geglu", qkv_bias=False, **kwargs)


@register_model("perceiver-pytorch", "perceiver-pytorch's Perceiver, built from the same "
                "constructor keywords (for checkpoints converted with from_lucidrains)")
def perceiver_pytorch(**kwargs) -> Perceiver:
    return Perceiver(**kwargs)


@register_model("perceiver-pytorch-io", "perceiver-pytorch's PerceiverIO, built from the same "
                "constructor keywords: inputs (batch, num_inputs, dim), queries passed by the "
                "caller (batch, num_outputs, queries_dim)")
def perceiver_pytorch_io(
    *,
    depth: int,
    dim: int,
    queries_dim: int,
    logits_dim: int | None = None,
    num_latents: int = 512,
    latent_dim: int = 512,
    cross_heads: int = 1,
    latent_heads: int = 8,
    cross_dim_head: int = 64,
    latent_dim_head: int = 64,
    weight_tie_layers: bool = False,
    decoder_ff: bool = False,
    seq_dropout_prob: float = 0.0,
) -> PerceiverModel:
    """One cross-attend, ``depth`` latent self-attends (one shared set of weights with
    ``weight_tie_layers``), then the queries cross-attend to the latents without a residual,
    with a feed-forward only when ``decoder_ff``; ``logits_dim`` adds a final linear layer.
    ``seq_dropout_prob`` (training-time input dropout) is not reproduced."""
    if seq_dropout_prob:
        raise ValueError("seq_dropout_prob (perceiver-pytorch's training-time structured "
                         "dropout) is not supported; convert with seq_dropout_prob=0")
    adapter = GridAdapter(input_channels=dim, input_axis=1)
    encoder = PerceiverEncoder(dim, EncoderConfig(
        num_latents=num_latents, latent_dim=latent_dim, num_blocks=depth,
        self_attends_per_block=1, num_cross_attends=1, cross_attend_sharing="all",
        block_sharing="all" if weight_tie_layers else "none",
        cross_attend=_lucidrains_spec(cross_heads, cross_dim_head),
        self_attend=_lucidrains_spec(latent_heads, latent_dim_head)))
    decoder = QueryDecoder(
        latent_dim=latent_dim, output_channels=logits_dim or queries_dim,
        query_channels=queries_dim, final_project=logits_dim is not None,
        cross_attend=_lucidrains_spec(cross_heads, cross_dim_head, query_residual=False,
                                      feed_forward=decoder_ff))
    return PerceiverModel(input_adapter=adapter, encoder=encoder, decoder=decoder,
                          output_adapter=SequenceOutput())


__all__ = [
    "attention_spec", "encoder_config", "ProjectedPositions", "FlowAdapter", "flow_patches",
    "FlowOutput", "FlowPerceiver", "EmbeddingLogits", "LanguagePerceiver", "MaskTokens",
    "subsampled_positions", "MultimodalDecoder", "MultimodalOutput", "MultimodalPerceiver",
    "vision_perceiver_learned", "vision_perceiver_conv", "optical_flow_perceiver",
    "language_perceiver", "multimodal_perceiver", "perceiver_pytorch", "perceiver_pytorch_io",
]
