"""DeepMind's Perceiver IO release (JAX/Haiku parameter pickles) -> our models.

The release (github.com/google-deepmind/deepmind-research, ``perceiver/``) ships Haiku
parameters as pickles: ImageNet with Fourier features, learned positions or the conv stem
(``{"params": ..., "state": ...}``, the state holding batch-norm statistics), the masked
language model, optical flow and video autoencoding. :func:`load_deepmind_params` reads one
(only with ``trust_pickle=True``: unpickling can run arbitrary code) into a flat dict
``{"module/path/param": numpy array}``; :func:`from_deepmind` builds our model from it.

Haiku names -> ours: ``linear`` (``w`` is (in, out): transposed), ``linear_1``, ``linear_2``,
``linear_3`` of an ``attention`` module are the query, key, value (fused into ``to_kv``) and
output projections; ``layer_norm`` (``scale``/``offset``) is the query norm, ``layer_norm_1``
the key/value norm of a cross-attend (the feed-forward norm of a self-attend) and
``layer_norm_2`` the feed-forward norm of a cross-attend; ``mlp/linear``, ``mlp/linear_1`` the
feed-forward; ``trainable_position_encoding/pos_embs`` learned latents/queries/positions.
Converted models use ``activation="gelu_tanh"`` (``jax.nn.gelu`` is the tanh approximation).

Hyper-parameters the weights do not show (heads, number of blocks, image or flow size) are the
published ones; pass ``encoder``/``decoder``/preset overrides for other configurations.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..config import merge
from ..errors import ConfigError, ModelFileError
from ..files import read_file
from ..registry import create_model
from ._common import LayerWeights, layer_state, load_converted

FAMILIES = ("vision-perceiver-fourier", "vision-perceiver-learned", "vision-perceiver-conv",
            "language-perceiver", "optical-flow-perceiver", "multimodal-perceiver")

# The release's file names (and the colabs' model types) -> our preset names.
ALIASES = {
    "imagenet_fourier_position_encoding": "vision-perceiver-fourier",
    "fourier_position_encoding": "vision-perceiver-fourier",
    "imagenet_learned_position_encoding": "vision-perceiver-learned",
    "learned_position_encoding": "vision-perceiver-learned",
    "imagenet_conv_preprocessing": "vision-perceiver-conv",
    "conv_preprocessing": "vision-perceiver-conv",
    "language_perceiver_io_bytes": "language-perceiver",
    "optical_flow_checkpoint": "optical-flow-perceiver",
    "optical_flow": "optical-flow-perceiver",
    "video_autoencoding_checkpoint": "multimodal-perceiver",
    "video_autoencoding": "multimodal-perceiver",
}


# --- reading the pickle -------------------------------------------------------------------


def _as_dict(data=None, *args):
    """Stand-in for Haiku's ``FlatMapping``/``frozendict`` (pickled as the class + a dict)."""
    return dict(data or {})


def _reconstruct_jax_array(fun, args, arr_state, aval_state):
    """Stand-in for ``jax._src.array._reconstruct_array``: the numpy array it wraps."""
    array = fun(*args)
    array.__setstate__(arr_state)
    return array


class _HaikuUnpickler(pickle.Unpickler):
    """Reads Haiku checkpoints without Haiku or JAX installed: their mapping classes become
    dicts and JAX arrays numpy arrays. Everything else unpickles as usual (trusted input only)."""

    def find_class(self, module: str, name: str):
        if module.startswith("haiku") and name in ("FlatMapping", "FlatMap", "frozendict"):
            return _as_dict
        if module.startswith("jax") and name == "_reconstruct_array":
            return _reconstruct_jax_array
        return super().find_class(module, name)


def flatten_params(checkpoint: Mapping) -> dict[str, np.ndarray]:
    """Haiku parameters (and state) -> ``{"module/path/param": array}``.

    Accepts ``{"params": ..., "state": ...}`` (merged: the names do not collide),
    ``{module: {param: array}}`` or an already flat dict.
    """
    if "params" in checkpoint and isinstance(checkpoint["params"], Mapping):
        flat = flatten_params(checkpoint["params"])
        if isinstance(checkpoint.get("state"), Mapping):
            flat.update(flatten_params(checkpoint["state"]))
        return flat
    flat = {}
    for module, value in checkpoint.items():
        if isinstance(value, Mapping):
            for name, array in value.items():
                flat[f"{module}/{name}"] = np.asarray(array)
        else:
            flat[module] = np.asarray(value)
    return flat


def load_deepmind_params(path: str | os.PathLike, *, trust_pickle: bool = False
                         ) -> dict[str, np.ndarray]:
    """Read a DeepMind Perceiver checkpoint (a Python pickle) into a flat dict of arrays.

    A pickle can run arbitrary code when it is read, so this refuses unless
    ``trust_pickle=True`` (command line: ``--trust-pickle``), and warns when it does.
    """
    path = Path(path)
    if not trust_pickle:
        raise ModelFileError(
            f"{path} is a Python pickle, and reading a pickle can run arbitrary code. Pass "
            f"trust_pickle=True (command line: --trust-pickle) only for a file from a source "
            f"you trust, such as DeepMind's release (storage.googleapis.com/perceiver_io)")
    warnings.warn(f"unpickling {path} (trust_pickle=True): a pickle can run arbitrary code",
                  UserWarning, stacklevel=2)
    checkpoint = read_file(path, lambda p: _HaikuUnpickler(io.BytesIO(p.read_bytes())).load(),
                           what="a DeepMind Perceiver checkpoint (a pickle of Haiku parameters)",
                           error=ModelFileError)
    if not isinstance(checkpoint, Mapping):
        raise ModelFileError(f"{path} does not hold Haiku parameters "
                             f"(got {type(checkpoint).__name__})")
    return flatten_params(checkpoint)


# --- Haiku names -> ours ------------------------------------------------------------------


def _t(array) -> Tensor:
    return torch.from_numpy(np.array(array, copy=True))


def _linear(p: Mapping, name: str) -> tuple[Tensor, Tensor | None]:
    bias = p.get(f"{name}/b")
    return _t(p[f"{name}/w"]).t(), None if bias is None else _t(bias)


def _norm(p: Mapping, name: str) -> tuple[Tensor, Tensor]:
    return _t(p[f"{name}/scale"]).reshape(-1), _t(p[f"{name}/offset"]).reshape(-1)


def _layer(p: Mapping, prefix: str, *, cross: bool) -> LayerWeights:
    """A Haiku ``CrossAttention`` or ``SelfAttention`` module at ``prefix``."""
    a = f"{prefix}/attention"
    return LayerWeights(
        norm_q=_norm(p, f"{prefix}/layer_norm"),
        norm_kv=_norm(p, f"{prefix}/layer_norm_1") if cross else None,
        q=_linear(p, f"{a}/linear"), k=_linear(p, f"{a}/linear_1"),
        v=_linear(p, f"{a}/linear_2"), out=_linear(p, f"{a}/linear_3"),
        norm_ff=_norm(p, f"{prefix}/layer_norm_2" if cross else f"{prefix}/layer_norm_1"),
        fc1=_linear(p, f"{prefix}/mlp/linear"), fc2=_linear(p, f"{prefix}/mlp/linear_1"))


def _spec_override(p: Mapping, prefix: str) -> dict:
    """AttentionSpec fields the weights show (not the heads)."""
    q_dim = p[f"{prefix}/layer_norm/scale"].size
    return dict(qk_channels=p[f"{prefix}/attention/linear/w"].shape[1],
                v_channels=p[f"{prefix}/attention/linear_2/w"].shape[1],
                widening_factor=p[f"{prefix}/mlp/linear/w"].shape[1] // q_dim)


def _self_attend(encoder: str, i: int) -> str:
    return f"{encoder}/~/self_attention" + (f"_{i}" if i else "")


def _num_self_attends(p: Mapping, encoder: str) -> int:
    n = 0
    while f"{_self_attend(encoder, n)}/layer_norm/scale" in p:
        n += 1
    return n


def _encoder_name(p: Mapping) -> str:
    for name in ("perceiver_encoder", "encoder"):
        if f"{name}/~/trainable_position_encoding/pos_embs" in p:
            return name
    raise ModelFileError("no Perceiver encoder in these parameters (expected "
                         "'perceiver_encoder/~/trainable_position_encoding/pos_embs')")


def _encoder_override(p: Mapping) -> dict:
    enc = _encoder_name(p)
    latents = p[f"{enc}/~/trainable_position_encoding/pos_embs"]
    return dict(num_latents=latents.shape[0], latent_dim=latents.shape[1],
                self_attends_per_block=_num_self_attends(p, enc),
                cross_attend=_spec_override(p, f"{enc}/~/cross_attention"),
                self_attend=_spec_override(p, _self_attend(enc, 0)))


def _encoder_state(p: Mapping) -> dict[str, Tensor]:
    enc = _encoder_name(p)
    ours = {"encoder.latents": _t(p[f"{enc}/~/trainable_position_encoding/pos_embs"])}
    ours.update(layer_state("encoder.cross_attends.0",
                            _layer(p, f"{enc}/~/cross_attention", cross=True)))
    for i in range(_num_self_attends(p, enc)):
        ours.update(layer_state(f"encoder.blocks.0.{i}",
                                _layer(p, _self_attend(enc, i), cross=False)))
    return ours


_CLASSIFIER = "classification_decoder/~/basic_decoder"


def _classifier_state(p: Mapping) -> dict[str, Tensor]:
    ours = {"decoder.query.queries.embedding":
            _t(p[f"{_CLASSIFIER}/~/trainable_position_encoding/pos_embs"])}
    ours.update(layer_state("decoder.query.cross_attend",
                            _layer(p, f"{_CLASSIFIER}/cross_attention", cross=True)))
    ours["decoder.query.final.weight"], ours["decoder.query.final.bias"] = _linear(
        p, f"{_CLASSIFIER}/output")
    return ours


# --- one builder per family ---------------------------------------------------------------


def _fourier(p, encoder, decoder, overrides):
    unknown = sorted(set(overrides) - {"num_bands", "max_resolution"})
    if unknown:
        raise ConfigError(f"unknown overrides {unknown} for vision-perceiver-fourier; "
                          "expected num_bands, max_resolution, encoder, decoder")
    model = create_model("vision-perceiver-fourier", **{
        "num_classes": p[f"{_CLASSIFIER}/output/w"].shape[1], **overrides,
        "activation": "gelu_tanh", "encoder": merge(_encoder_override(p), encoder),
        "decoder": merge(_spec_override(p, f"{_CLASSIFIER}/cross_attention"), decoder)})
    return model, {**_encoder_state(p), **_classifier_state(p)}


def _learned(p, encoder, decoder, overrides):
    pre = "image_preprocessor/~_build_network_inputs"
    positions = p[f"{pre}/trainable_position_encoding/pos_embs"]
    side = math.isqrt(positions.shape[0])
    conv_w, conv_b = p["image_preprocessor/~/conv2_d/w"], p["image_preprocessor/~/conv2_d/b"]
    model = create_model("vision-perceiver-learned", **{
        "num_classes": p[f"{_CLASSIFIER}/output/w"].shape[1], "image_shape": side,
        "pixel_channels": conv_w.shape[-1], "position_channels": positions.shape[1],
        "projected_position_channels": p[f"{pre}/position_encoding_projector/linear/w"].shape[1],
        **overrides, "activation": "gelu_tanh",
        "encoder": merge(_encoder_override(p), encoder),
        "decoder": merge(_spec_override(p, f"{_CLASSIFIER}/cross_attention"), decoder)})
    ours = {"input_adapter.project.weight": _t(conv_w[0, 0]).t(),
            "input_adapter.project.bias": _t(conv_b),
            "input_adapter.grid.position.encoding.embedding": _t(positions)}
    (ours["input_adapter.grid.position.projection.weight"],
     ours["input_adapter.grid.position.projection.bias"]) = _linear(
        p, f"{pre}/position_encoding_projector/linear")
    return model, {**ours, **_encoder_state(p), **_classifier_state(p)}


def _conv(p, encoder, decoder, overrides):
    stem = "image_preprocessor/~/conv2_d_downsample/~"
    conv_w = p[f"{stem}/conv/w"]  # (kh, kw, in, out)
    model = create_model("vision-perceiver-conv", **{
        "num_classes": p[f"{_CLASSIFIER}/output/w"].shape[1], "conv_channels": conv_w.shape[-1],
        **overrides, "activation": "gelu_tanh",
        "encoder": merge(_encoder_override(p), encoder),
        "decoder": merge(_spec_override(p, f"{_CLASSIFIER}/cross_attention"), decoder)})
    scale, offset = _norm(p, f"{stem}/batchnorm")
    ours = {"input_adapter.stem.conv.weight": _t(conv_w).permute(3, 2, 0, 1),
            "input_adapter.stem.norm.weight": scale, "input_adapter.stem.norm.bias": offset,
            "input_adapter.stem.norm.num_batches_tracked": torch.tensor(0)}
    for ours_name, theirs in (("running_mean", "mean_ema"), ("running_var", "var_ema")):
        key = f"{stem}/batchnorm/~/{theirs}/average"
        if key not in p:
            raise ModelFileError(f"the conv checkpoint's batch-norm statistics are missing "
                                 f"({key}): load the whole pickle, params and state")
        ours[f"input_adapter.stem.norm.{ours_name}"] = _t(p[key]).reshape(-1)
    return model, {**ours, **_encoder_state(p), **_classifier_state(p)}


def _language(p, encoder, decoder, overrides):
    embedding, positions = p["embed/embeddings"], p["trainable_position_encoding/pos_embs"]
    model = create_model("language-perceiver", **{
        "vocab_size": embedding.shape[0], "max_length": positions.shape[0],
        "num_channels": embedding.shape[1], **overrides, "activation": "gelu_tanh",
        "encoder": merge(_encoder_override(p), encoder),
        "decoder": merge(_spec_override(p, "basic_decoder/cross_attention"), decoder)})
    ours = {"input_adapter.embedding.weight": _t(embedding),
            "input_adapter.position.encoding.embedding": _t(positions),
            "decoder.queries.embedding":
                _t(p["basic_decoder/~/trainable_position_encoding/pos_embs"]),
            "output_adapter.bias": _t(p["embedding_decoder/bias"])}
    ours.update(layer_state("decoder.cross_attend",
                            _layer(p, "basic_decoder/cross_attention", cross=True)))
    return model, {**ours, **_encoder_state(p)}


def _flow(p, encoder, decoder, overrides):
    dec = "flow_decoder/~/basic_decoder"
    project_w, project_b = _linear(p, "image_preprocessor/patches_linear")  # (64, 2 * 27)
    model = create_model("optical-flow-perceiver", **{
        "input_channels": project_w.shape[1] // 2, "project_channels": project_w.shape[0],
        **overrides, "activation": "gelu_tanh",
        "encoder": merge(_encoder_override(p), encoder),
        "decoder": merge(_spec_override(p, f"{dec}/cross_attention"), decoder)})
    ours = {"input_adapter.project.weight": project_w, "input_adapter.project.bias": project_b}
    ours.update(layer_state("decoder.cross_attend", _layer(p, f"{dec}/cross_attention",
                                                           cross=True)))
    ours["decoder.final.weight"], ours["decoder.final.bias"] = _linear(p, f"{dec}/output")
    return model, {**ours, **_encoder_state(p)}


def _multimodal(p, encoder, decoder, overrides):
    dec = "multimodal_decoder/~/basic_decoder"
    heads = {"audio": "audio_postprocessor/linear", "image": "projection_postprocessor/linear",
             "label": "classification_postprocessor/linear"}
    label_queries = p[f"{_CLASSIFIER}/~/trainable_position_encoding/pos_embs"]
    audio = {"samples_per_patch": p[f"{heads['audio']}/w"].shape[1]}
    model = create_model("multimodal-perceiver", **{
        "num_classes": p[f"{heads['label']}/w"].shape[1],
        "label_query_channels": label_queries.shape[1],
        "output_channels": p[f"{dec}/output/w"].shape[1], **overrides,
        "audio": merge(audio, overrides.get("audio")), "activation": "gelu_tanh",
        "encoder": merge(_encoder_override(p), encoder),
        "decoder": merge(_spec_override(p, f"{dec}/cross_attention"), decoder)})
    ours = {"decoder.queries.label.embedding": _t(label_queries)}
    for name, head in heads.items():
        pads = {"input_adapter.adapter.padding": f"multimodal_preprocessor/{name}_padding",
                "decoder.padding": f"multimodal_decoder/~decoder_query/{name}_padding"}
        for ours_name, theirs in pads.items():
            ours[f"{ours_name}.{name}"] = _t(p[f"{theirs}/pos_embs"]).reshape(-1)
        token = f"multimodal_preprocessor/{name}_mask_token/pos_embs"
        if token in p:
            ours[f"input_adapter.tokens.{name}"] = _t(p[token]).reshape(-1)
        (ours[f"output_adapter.heads.{name}.weight"],
         ours[f"output_adapter.heads.{name}.bias"]) = _linear(p, head)
    ours.update(layer_state("decoder.cross_attend", _layer(p, f"{dec}/cross_attention",
                                                           cross=True)))
    ours["decoder.final.weight"], ours["decoder.final.bias"] = _linear(p, f"{dec}/output")
    return model, {**ours, **_encoder_state(p)}


_BUILDERS = {
    "vision-perceiver-fourier": _fourier, "vision-perceiver-learned": _learned,
    "vision-perceiver-conv": _conv, "language-perceiver": _language,
    "optical-flow-perceiver": _flow, "multimodal-perceiver": _multimodal,
}


def detect_family(params: Mapping) -> str:
    """Which published model ``params`` (flat Haiku names) belong to."""
    for marker, family in (
            ("image_preprocessor/~/conv2_d/w", "vision-perceiver-learned"),
            ("image_preprocessor/~/conv2_d_downsample/~/conv/w", "vision-perceiver-conv"),
            ("embed/embeddings", "language-perceiver"),
            ("image_preprocessor/patches_linear/w", "optical-flow-perceiver"),
            ("multimodal_preprocessor/audio_padding/pos_embs", "multimodal-perceiver"),
            (f"{_CLASSIFIER}/output/w", "vision-perceiver-fourier")):
        if marker in params:
            return family
    raise ModelFileError("cannot tell which Perceiver model these parameters belong to; pass "
                         f"family= one of {FAMILIES}")


def from_deepmind(checkpoint: str | os.PathLike | Mapping, family: str | None = None, *,
                  trust_pickle: bool = False, encoder: dict | None = None,
                  decoder: dict | None = None, **overrides) -> nn.Module:
    """Convert DeepMind Perceiver IO parameters to our model (eval mode, the arrays' dtype).

    ``checkpoint`` is the path of a release pickle (read only with ``trust_pickle=True``), or
    its contents: ``{"params": ..., "state": ...}``, ``{module: {param: array}}`` or a flat
    ``{"module/param": array}``. ``family`` is a preset name (see :data:`FAMILIES`) or a
    release file name such as ``"optical_flow"``; by default the parameter names tell.
    ``encoder``/``decoder`` (e.g. ``{"self_attend": {"heads": 4}}``) and preset ``overrides``
    (e.g. ``image_shape=(...)``) describe a configuration other than the published one.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        if family is None:
            family = ALIASES.get(Path(checkpoint).stem)
        params = load_deepmind_params(checkpoint, trust_pickle=trust_pickle)
    else:
        params = flatten_params(checkpoint)
    family = ALIASES.get(family, family) if family is not None else detect_family(params)
    if family not in _BUILDERS:
        raise ConfigError(f"unknown family {family!r}; expected one of {FAMILIES}")
    try:
        model, weights = _BUILDERS[family](params, encoder, decoder, overrides)
    except KeyError as error:
        raise ModelFileError(f"these parameters lack {error.args[0]!r}: not a complete DeepMind "
                             f"{family} checkpoint") from None
    dtype = weights["encoder.latents"].dtype  # the release's float32 (or the arrays' dtype)
    return load_converted(model, weights, source=f"DeepMind {family}", dtype=dtype)


__all__ = ["from_deepmind", "load_deepmind_params", "flatten_params", "detect_family",
           "FAMILIES"]
