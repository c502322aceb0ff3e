"""Hugging Face transformers ``Perceiver*`` models -> our models.

``from_transformers(model)`` (or ``from_transformers(state_dict, config)``, or a checkpoint
folder or Hugging Face Hub repository id) returns our equivalent of
``PerceiverForImageClassificationFourier``, ``...Learned``, ``...ConvProcessing``,
``PerceiverForMaskedLM``, ``PerceiverForOpticalFlow`` and
``PerceiverForMultimodalAutoencoding``. transformers itself is not needed: a state dict and the
``config.json`` contents (a dict) are enough.

Inputs follow our conventions: images channels-last, so ``ours(x.permute(0, 2, 3, 1))`` equals
``hf(pixel_values=x).logits``; flow frames (batch, 2, H, W, 27); the masked language model maps
token ids (batch, length) to logits (batch, length, vocab).

``semantics="deepmind"`` (the default) reproduces what the weights were trained with in
DeepMind's JAX code where transformers deviates: tanh-approximated GELU, the conv stem's
SAME padding (56x56, not 55x55), no query residual in the learned-position classifier's
decoder. ``semantics="transformers"`` reproduces transformers' forward pass exactly.

Their names -> ours, per attention layer: ``attention.self.layernorm1/layernorm2`` ->
``norm_q/norm_kv``, ``attention.self.query`` -> ``attention.to_q``, ``attention.self.key`` and
``.value`` -> ``attention.to_kv`` (concatenated: keys, then values), ``attention.output.dense``
-> ``attention.to_out``, ``layernorm`` -> ``norm_ff``, ``mlp.dense1/dense2`` -> ``ff.fc1/fc2``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ModelFileError
from ..files import read_file
from ..hub_repos import download, locate, parse_repo_id
from ..registry import create_model
from ._common import (
    LayerWeights,
    count_parameters,
    layer_state,
    load_converted,
    read_torch_state_dict,
)

SEMANTICS = ("transformers", "deepmind")

# PerceiverConfig's defaults: a saved config.json leaves out the fields that equal them.
CONFIG_DEFAULTS = dict(
    num_latents=256, d_latents=1280, d_model=768, num_blocks=1, num_self_attends_per_block=26,
    num_self_attention_heads=8, num_cross_attention_heads=8, qk_channels=None, v_channels=None,
    cross_attention_shape_for_attention="kv", self_attention_widening_factor=1,
    cross_attention_widening_factor=1, hidden_act="gelu", use_query_residual=True,
    vocab_size=262, max_position_embeddings=2048, image_size=56, train_size=(368, 496),
    num_frames=16, audio_samples_per_frame=1920, samples_per_patch=16,
    output_shape=(1, 16, 224, 224), output_num_channels=512, _label_trainable_num_channels=1024)

ARCHITECTURES = {
    "PerceiverForImageClassificationFourier": "fourier",
    "PerceiverForImageClassificationLearned": "learned",
    "PerceiverForImageClassificationConvProcessing": "conv",
    "PerceiverForMaskedLM": "language",
    "PerceiverForOpticalFlow": "flow",
    "PerceiverForMultimodalAutoencoding": "multimodal",
}

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


class _Config:
    """Attribute access to a config dict with PerceiverConfig's defaults."""

    def __init__(self, config):
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        self._d = {**CONFIG_DEFAULTS, **dict(config)}

    def __getattr__(self, name):
        try:
            return self._d[name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, name, default=None):
        return self._d.get(name, default)


# --- reading transformers' names ----------------------------------------------------------


def _pair(state: Mapping[str, Tensor], name: str) -> tuple[Tensor, Tensor | None]:
    return state[f"{name}.weight"], state.get(f"{name}.bias")


def _layer(state: Mapping[str, Tensor], prefix: str, *, cross: bool) -> LayerWeights:
    """One ``PerceiverLayer`` at ``prefix``."""
    a = f"{prefix}.attention"
    return LayerWeights(
        norm_q=_pair(state, f"{a}.self.layernorm1"),
        norm_kv=_pair(state, f"{a}.self.layernorm2") if cross else None,
        q=_pair(state, f"{a}.self.query"), k=_pair(state, f"{a}.self.key"),
        v=_pair(state, f"{a}.self.value"), out=_pair(state, f"{a}.output.dense"),
        norm_ff=_pair(state, f"{prefix}.layernorm"),
        fc1=_pair(state, f"{prefix}.mlp.dense1"), fc2=_pair(state, f"{prefix}.mlp.dense2"))


def _spec_override(state: Mapping[str, Tensor], prefix: str, *, heads: int,
                   query_residual: bool | None = None) -> dict:
    """The AttentionSpec fields of the layer at ``prefix``, read from its weights' shapes."""
    q_dim = state[f"{prefix}.layernorm.weight"].shape[0]
    spec = dict(heads=heads,
                qk_channels=state[f"{prefix}.attention.self.query.weight"].shape[0],
                v_channels=state[f"{prefix}.attention.self.value.weight"].shape[0],
                widening_factor=state[f"{prefix}.mlp.dense1.weight"].shape[0] // q_dim)
    if query_residual is not None:
        spec["query_residual"] = query_residual
    return spec


def _num_self_attends(state: Mapping[str, Tensor]) -> int:
    layers = {k.split(".")[2] for k in state if k.startswith("encoder.self_attends.")}
    return len(layers)


def _encoder_override(state: Mapping[str, Tensor], cfg: _Config) -> dict:
    latents = state["embeddings.latents"]
    return dict(
        num_latents=latents.shape[0], latent_dim=latents.shape[1], num_blocks=cfg.num_blocks,
        self_attends_per_block=_num_self_attends(state),
        cross_attend=_spec_override(state, "encoder.cross_attention",
                                    heads=cfg.num_cross_attention_heads,
                                    query_residual=cfg.use_query_residual),
        self_attend=_spec_override(state, "encoder.self_attends.0",
                                   heads=cfg.num_self_attention_heads))


def _encoder_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    ours = {"encoder.latents": state["embeddings.latents"]}
    ours.update(layer_state("encoder.cross_attends.0",
                            _layer(state, "encoder.cross_attention", cross=True)))
    for i in range(_num_self_attends(state)):
        ours.update(layer_state(f"encoder.blocks.0.{i}",
                                _layer(state, f"encoder.self_attends.{i}", cross=False)))
    return ours


def _classifier_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """transformers' ``PerceiverClassificationDecoder`` -> our ClassificationDecoder."""
    d = "decoder.decoder"
    ours = {"decoder.query.queries.embedding":
            state[f"{d}.output_position_encodings.position_embeddings"]}
    ours.update(layer_state("decoder.query.cross_attend",
                            _layer(state, f"{d}.decoding_cross_attention", cross=True)))
    ours["decoder.query.final.weight"], ours["decoder.query.final.bias"] = _pair(
        state, f"{d}.final_layer")
    return ours


def _classifier_override(state: Mapping[str, Tensor], **kwargs) -> dict:
    return _spec_override(state, "decoder.decoder.decoding_cross_attention", heads=1, **kwargs)


# --- one builder per family ---------------------------------------------------------------


def _fourier(state, cfg, activation, semantics):
    # transformers' Fourier preprocessor: raw pixels, 64 bands, max_resolution fixed at 224.
    model = create_model(
        "vision-perceiver-fourier",
        num_classes=state["decoder.decoder.final_layer.weight"].shape[0], image_shape=224,
        num_bands=64, max_resolution=(224, 224), activation=activation,
        encoder=_encoder_override(state, cfg),
        decoder=_classifier_override(state, query_residual=True))
    return model, {**_encoder_state(state), **_classifier_state(state)}


def _learned(state, cfg, activation, semantics):
    p = "input_preprocessor"
    conv = state[f"{p}.convnet_1x1.weight"]  # (out, in, 1, 1)
    model = create_model(
        "vision-perceiver-learned",
        num_classes=state["decoder.decoder.final_layer.weight"].shape[0],
        image_shape=cfg.image_size, pixel_channels=conv.shape[0],
        position_channels=state[f"{p}.position_embeddings.position_embeddings"].shape[1],
        projected_position_channels=state[f"{p}.positions_projection.weight"].shape[0],
        activation=activation, encoder=_encoder_override(state, cfg),
        # transformers adds a query residual that DeepMind's decoder does not have.
        decoder=_classifier_override(state, query_residual=semantics == "transformers"))
    ours = {"input_adapter.project.weight": conv[:, :, 0, 0],
            "input_adapter.project.bias": state[f"{p}.convnet_1x1.bias"],
            "input_adapter.grid.position.encoding.embedding":
                state[f"{p}.position_embeddings.position_embeddings"]}
    (ours["input_adapter.grid.position.projection.weight"],
     ours["input_adapter.grid.position.projection.bias"]) = _pair(
        state, f"{p}.positions_projection")
    return model, {**ours, **_encoder_state(state), **_classifier_state(state)}


def _conv(state, cfg, activation, semantics):
    p = "input_preprocessor.convnet"
    model = create_model(
        "vision-perceiver-conv",
        num_classes=state["decoder.decoder.final_layer.weight"].shape[0],
        conv_channels=state[f"{p}.conv.weight"].shape[0],
        padding="transformers" if semantics == "transformers" else "same",
        activation=activation, encoder=_encoder_override(state, cfg),
        decoder=_classifier_override(state, query_residual=True))
    ours = {"input_adapter.stem.conv.weight": state[f"{p}.conv.weight"]}
    for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        if f"{p}.batchnorm.{name}" in state:
            ours[f"input_adapter.stem.norm.{name}"] = state[f"{p}.batchnorm.{name}"]
    ours.setdefault("input_adapter.stem.norm.num_batches_tracked", torch.tensor(0))
    return model, {**ours, **_encoder_state(state), **_classifier_state(state)}


def _flow(state, cfg, activation, semantics, flow_scale=None):
    project = state["input_preprocessor.conv_after_patches.weight"]  # (64, 2 * 27)
    d = "decoder.decoder"
    model = create_model(
        "optical-flow-perceiver", image_shape=list(cfg.train_size),
        **({} if flow_scale is None else {"flow_scale": flow_scale}),
        input_channels=project.shape[1] // 2, project_channels=project.shape[0],
        activation=activation, encoder=_encoder_override(state, cfg),
        decoder=_spec_override(state, f"{d}.decoding_cross_attention", heads=1,
                               query_residual=False))
    ours = {"input_adapter.project.weight": project,
            "input_adapter.project.bias": state["input_preprocessor.conv_after_patches.bias"]}
    ours.update(layer_state("decoder.cross_attend",
                            _layer(state, f"{d}.decoding_cross_attention", cross=True)))
    ours["decoder.final.weight"], ours["decoder.final.bias"] = _pair(state, f"{d}.final_layer")
    return model, {**ours, **_encoder_state(state)}


def _language(state, cfg, activation, semantics):
    p = "input_preprocessor"
    embedding = state[f"{p}.embeddings.weight"]  # (vocab, channels)
    positions = state[f"{p}.position_embeddings.weight"]  # (max_length, channels)
    model = create_model(
        "language-perceiver", vocab_size=embedding.shape[0], max_length=positions.shape[0],
        num_channels=embedding.shape[1], activation=activation,
        encoder=_encoder_override(state, cfg),
        decoder=_spec_override(state, "decoder.decoding_cross_attention", heads=8,
                               query_residual=False))
    ours = {"input_adapter.embedding.weight": embedding,
            "input_adapter.position.encoding.embedding": positions,
            "decoder.queries.embedding":
                state["decoder.output_position_encodings.position_embeddings"],
            "output_adapter.bias": state["embedding_decoder.bias"]}
    ours.update(layer_state("decoder.cross_attend",
                            _layer(state, "decoder.decoding_cross_attention", cross=True)))
    return model, {**ours, **_encoder_state(state)}


def _multimodal(state, cfg, activation, semantics):
    audio_samples = cfg.num_frames * cfg.audio_samples_per_frame
    names = ("audio", "image", "label")
    heads = "output_postprocessor.modalities"
    d = "decoder.decoder"
    model = create_model(
        "multimodal-perceiver",
        image={"video_shape": list(cfg.output_shape[1:]), "patch_shape": [1, 4, 4],
               "num_bands": 32, "max_resolution": [cfg.num_frames, cfg.image_size,
                                                   cfg.image_size]},
        audio={"max_samples": audio_samples, "samples_per_patch": cfg.samples_per_patch,
               "num_bands": 192, "max_resolution": [audio_samples]},
        num_classes=state[f"{heads}.label.classifier.weight"].shape[0],
        label_query_channels=state["decoder.modalities.label.decoder.output_position_encodings"
                                   ".position_embeddings"].shape[1],
        output_channels=state[f"{d}.final_layer.weight"].shape[0],
        mask_probs={"audio": 0.0, "image": 0.0, "label": 1.0}, activation=activation,
        encoder=_encoder_override(state, cfg),
        decoder=_spec_override(state, f"{d}.decoding_cross_attention", heads=1,
                               query_residual=False))
    ours = {"decoder.queries.label.embedding":
            state["decoder.modalities.label.decoder.output_position_encodings.position_embeddings"]}
    for name in names:
        ours[f"input_adapter.adapter.padding.{name}"] = (
            state[f"input_preprocessor.padding.{name}"][0])
        ours[f"input_adapter.tokens.{name}"] = state[f"input_preprocessor.mask.{name}"][0]
        ours[f"decoder.padding.{name}"] = state[f"decoder.padding.{name}"][0]
        (ours[f"output_adapter.heads.{name}.weight"],
         ours[f"output_adapter.heads.{name}.bias"]) = _pair(state, f"{heads}.{name}.classifier")
    ours.update(layer_state("decoder.cross_attend",
                            _layer(state, f"{d}.decoding_cross_attention", cross=True)))
    ours["decoder.final.weight"], ours["decoder.final.bias"] = _pair(state, f"{d}.final_layer")
    return model, {**ours, **_encoder_state(state)}


_BUILDERS = {"fourier": _fourier, "learned": _learned, "conv": _conv, "language": _language,
             "flow": _flow, "multimodal": _multimodal}


# --- reading a checkpoint folder ----------------------------------------------------------

#: The files of a checkpoint folder the converters read, weights as safetensors (one file or
#: shards); a checkpoint without them has ``pytorch_model.bin``.
CHECKPOINT_FILES = ("config.json", "preprocessor_config.json", "model.safetensors",
                    "model.safetensors.index.json", "model-*-of-*.safetensors")
TORCH_WEIGHTS = "pytorch_model.bin"


def locate_checkpoint(source: str | os.PathLike, *, revision: str | None = None,
                      cache_dir: str | os.PathLike | None = None,
                      token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """The local folder of the checkpoint ``source``: a folder, or a Hugging Face Hub
    repository id (see :func:`omniperceiver.hub_repos.locate`) whose config and safetensors
    weights are read through huggingface_hub's cache, or its ``pytorch_model.bin`` when it
    has no safetensors."""
    hub = dict(cache_dir=cache_dir, token=token, local_files_only=local_files_only)
    folder = locate(source, CHECKPOINT_FILES, revision=revision, **hub)
    if folder == Path(source) or any(folder.glob("*.safetensors")):
        return folder
    # A snapshot folder is named by its commit: the weights come from the same commit.
    return download(parse_repo_id(source)[0], (TORCH_WEIGHTS,), revision=folder.name,
                    source=str(source), **hub)


def read_checkpoint(folder: str | os.PathLike) -> tuple[dict, dict]:
    """A transformers checkpoint folder -> (state dict, config dict), without transformers:
    ``config.json`` and ``model.safetensors`` (or its shards), else ``pytorch_model.bin``
    read with ``torch.load(weights_only=True)``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: {'is a file' if folder.exists() else 'no such folder'}; "
                             f"expected a transformers checkpoint folder (config.json and "
                             f"model.safetensors or {TORCH_WEIGHTS})")

    def json_file(path: Path) -> dict:
        return read_file(path, lambda p: json.loads(p.read_text(encoding="utf-8")),
                         what="a JSON file", error=ModelFileError)

    def safetensors_file(path: Path) -> dict:
        return read_file(path, lambda p: load_file(str(p)), what="a safetensors file",
                         error=ModelFileError)

    config = json_file(folder / "config.json")
    if (folder / "model.safetensors").exists():
        state = safetensors_file(folder / "model.safetensors")
    elif (folder / "model.safetensors.index.json").exists():
        index = json_file(folder / "model.safetensors.index.json")
        state = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(safetensors_file(folder / shard))
    elif (folder / TORCH_WEIGHTS).exists():
        state = read_torch_state_dict(folder / TORCH_WEIGHTS)
    else:
        raise ModelFileError(f"{folder}: no model.safetensors or {TORCH_WEIGHTS}")
    return state, config


# --- entry point --------------------------------------------------------------------------


def _family(architecture: str | None, state: Mapping[str, Tensor]) -> str:
    if architecture in ARCHITECTURES:
        return ARCHITECTURES[architecture]
    if architecture is not None:
        raise ModelFileError(f"unsupported transformers architecture {architecture!r}; supported: "
                             f"{', '.join(ARCHITECTURES)}")
    keys = set(state)
    for marker, family in (("input_preprocessor.convnet_1x1.weight", "learned"),
                           ("input_preprocessor.convnet.conv.weight", "conv"),
                           ("input_preprocessor.embeddings.weight", "language"),
                           ("input_preprocessor.conv_after_patches.weight", "flow"),
                           ("input_preprocessor.padding.audio", "multimodal"),
                           ("decoder.decoder.final_layer.weight", "fourier")):
        if marker in keys:
            return family
    raise ModelFileError("cannot tell which Perceiver model these weights belong to; pass a config "
                         "with 'architectures'")


def _activation(cfg: _Config, semantics: str) -> str:
    if semantics == "deepmind":
        return "gelu_tanh"
    act = cfg.hidden_act
    if act not in _ACTIVATIONS:
        raise ConfigError(f"hidden_act={act!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[act]


def from_transformers(model, config=None, *, semantics: str = "deepmind",
                      flow_scale: float | None = None, revision: str | None = None,
                      cache_dir: str | os.PathLike | None = None,
                      token: str | bool | None = None,
                      local_files_only: bool = False) -> nn.Module:
    """Convert a transformers Perceiver model, its ``(state_dict, config)``, or a checkpoint:
    a folder transformers' ``save_pretrained`` wrote, or a Hugging Face Hub repository id such
    as ``"deepmind/vision-perceiver-fourier"`` (read through huggingface_hub's cache, pinned
    with ``"user/name@revision"`` or ``revision``; ``cache_dir``, ``token`` and
    ``local_files_only`` go to huggingface_hub). transformers is not needed for a checkpoint.

    ``config`` is a ``PerceiverConfig`` or the ``config.json`` dict (needed with a state dict;
    its ``architectures`` entry names the model, else the weights tell). Returns our model in
    eval mode, in the weights' dtype, built from a registered preset (``model.recipe``) so
    ``save_pretrained``/``from_pretrained`` work.

    ``flow_scale`` (optical flow only): the output is transformers' times this; by default
    the preset's 20, flow in pixels as DeepMind's examples compute it (1: transformers' raw
    output).
    """
    if semantics not in SEMANTICS:
        raise ConfigError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
    reference_count = None
    if isinstance(model, (str, os.PathLike)):
        model, saved = read_checkpoint(locate_checkpoint(
            model, revision=revision, cache_dir=cache_dir, token=token,
            local_files_only=local_files_only))
        config = saved if config is None else config
    if isinstance(model, nn.Module):
        config = model.config if config is None else config
        architecture = type(model).__name__
        reference_count = count_parameters(model)
        state = model.state_dict()
    else:
        if config is None:
            raise ModelFileError("converting a state dict needs its config (PerceiverConfig or the "
                                 "config.json dict)")
        state = dict(model)
        archs = (config.get("architectures") if isinstance(config, Mapping)
                 else getattr(config, "architectures", None)) or [None]
        architecture = archs[0]
    cfg = _Config(config)
    state = {k.removeprefix("perceiver."): v for k, v in state.items()}
    family = _family(architecture, state)
    dtype = state["embeddings.latents"].dtype
    options = {}
    if flow_scale is not None:
        if family != "flow":
            raise ConfigError(f"flow_scale is for optical flow models, not {family!r}")
        options["flow_scale"] = flow_scale
    try:
        ours, weights = _BUILDERS[family](state, cfg, _activation(cfg, semantics), semantics,
                                          **options)
    except KeyError as error:
        raise ModelFileError(f"these weights lack {error.args[0]!r}: not a complete transformers "
                             f"{architecture or family} checkpoint") from None
    ours = load_converted(ours, weights, source=f"transformers {architecture or family}",
                          dtype=dtype)
    if reference_count is not None and count_parameters(ours) != reference_count:
        raise ModelFileError(f"parameter count differs: transformers {reference_count:,}, ours "
                             f"{count_parameters(ours):,}")
    return ours


# --- how inputs are prepared ---------------------------------------------------------------

IMAGE_PRESETS = ("vision-perceiver-fourier", "vision-perceiver-learned", "vision-perceiver-conv")


def _height_width(size) -> tuple[int, int]:
    """transformers' sizes: ``{"height": h, "width": w}``, ``[h, w]`` or one number."""
    if isinstance(size, Mapping):
        return int(size["height"]), int(size["width"])
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def image_input_spec(model: nn.Module, processor: Mapping | None = None) -> dict | None:
    """The ``input_spec`` (see :mod:`omniperceiver.training.inputs`) of a converted image
    classifier: RGB images of the model's size, prepared as transformers'
    ``PerceiverImageProcessor`` does (``processor``: a checkpoint's
    ``preprocessor_config.json``; its absent fields take the processor's defaults). None for
    other models.

    The processor crops ``size / crop_size`` of the shorter side; the resize goes to the
    model's own image size, which a checkpoint's ``size`` matches.
    """
    from ..data.preprocess import PERCEIVER_IMAGE_PROCESSOR, RESAMPLE, image_preprocess

    recipe = getattr(model, "recipe", None) or {}
    if recipe.get("preset") not in IMAGE_PRESETS:
        return None
    p = {**PERCEIVER_IMAGE_PROCESSOR, **(processor or {})}
    size = _height_width(recipe["overrides"]["image_shape"])
    crop = None
    if p.get("do_center_crop", True):
        (h, w), (crop_h, crop_w) = _height_width(p["size"]), _height_width(p["crop_size"])
        crop = (h / crop_h, w / crop_w)
    names = {number: name for name, number in RESAMPLE.items()}
    resample = names.get(p["resample"], p["resample"])
    normalize = p.get("do_normalize", True)
    preprocess = image_preprocess(
        size=size, crop_fraction=crop, resample=resample,
        rescale=p["rescale_factor"] if p.get("do_rescale", True) else 1.0,
        mean=p["image_mean"] if normalize else (0.0, 0.0, 0.0),
        std=p["image_std"] if normalize else (1.0, 1.0, 1.0))
    return {"modality": "image", "image_shape": list(size), "input_channels": 3,
            "preprocess": preprocess}


def class_names(config: Mapping, num_classes: int) -> list[str]:
    """The class names in a config's ``id2label`` (keys "0".."N-1"); "0".."N-1" themselves
    when it has none or not one for every class."""
    id2label = config.get("id2label") or {}
    names = [id2label.get(str(i), id2label.get(i)) for i in range(num_classes)]
    if any(name is None for name in names):
        return [str(i) for i in range(num_classes)]
    return [str(name) for name in names]


__all__ = ["from_transformers", "locate_checkpoint", "read_checkpoint", "image_input_spec",
           "class_names", "ARCHITECTURES", "SEMANTICS", "IMAGE_PRESETS", "CHECKPOINT_FILES",
           "TORCH_WEIGHTS"]
