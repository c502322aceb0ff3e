"""Checks of user input, run at the boundary: the options a model, a training run or a data
set is built with (:func:`check_options`, :func:`check_config`), and the tensors a model is
given (the input adapters, the decoders' queries and ``subsample`` indices).

Every user mistake becomes a ``TypeError`` or ``ValueError`` (for options a
:class:`~omniperceiver.errors.ConfigError`) that names what was expected and what was
received, instead of a shape error from deep inside a layer, or a model that builds and
computes nonsense.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .errors import ConfigError

# --- options ----------------------------------------------------------------------------------

#: Options that count or size something: integers >= 1 (or sequences of them, such as an
#: image size). One vocabulary names these everywhere: preset keywords, config fields,
#: training and data options.
POSITIVE_INTEGERS = frozenset({
    "num_latents", "latent_dim", "num_blocks", "self_attends_per_block", "num_cross_attends",
    "depth", "self_per_cross_attn", "heads", "cross_heads", "latent_heads", "kv_heads",
    "num_bands", "num_freq_bands", "num_classes", "input_channels", "input_axis",
    "output_channels", "query_channels", "label_query_channels", "logits_dim", "num_channels",
    "dim", "queries_dim", "head_dim", "cross_dim_head", "latent_dim_head", "qk_channels",
    "v_channels", "widening_factor", "project_channels", "conv_channels", "pixel_channels",
    "position_channels", "projected_position_channels", "image_shape", "patch_size",
    "patch_shape", "video_shape", "output_shape", "input_shape", "shape", "max_samples",
    "samples_per_patch", "sample_rate", "n_mels", "hop_length", "max_length", "vocab_size",
    "max_frames", "input_chunk_size", "num_points", "num_samples", "num_frames", "batch_size",
    "eval_batch_size", "max_context", "num_self_attends", "context", "max_bytes",
    "train_windows", "eval_windows",
})
#: Probabilities of dropping or smoothing: in [0, 1).
FRACTIONS = frozenset({"dropout", "attn_dropout", "ff_dropout", "seq_dropout_prob",
                       "prefix_dropout", "input_dropout", "label_smoothing"})
#: Frequencies, resolutions, scales and rates: finite numbers > 0.
POSITIVE_NUMBERS = frozenset({"max_freq", "max_resolution", "latent_init_std",
                              "rescale_factor", "norm_eps", "lr", "step_gamma",
                              "pretrained_lr_ratio", "init_std", "max_wavelength"})
#: Finite numbers >= 0.
NON_NEGATIVE_NUMBERS = frozenset({"num_features", "weight_decay", "warmup", "min_lr_ratio",
                                  "val_size", "test_size"})


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def _option_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the option ``name`` (``encoder.num_latents``: the rule
    of ``num_latents``), or None."""
    rule = name.rsplit(".", 1)[-1]
    if rule in POSITIVE_INTEGERS:
        ok, expected = (lambda v: _is_int(v) and v >= 1), "an integer >= 1"
    elif rule in FRACTIONS:
        ok, expected = (lambda v: _is_number(v) and 0 <= v < 1), "a number in [0, 1)"
    elif rule in POSITIVE_NUMBERS:
        ok, expected = (lambda v: _is_number(v) and v > 0), "a finite number > 0"
    elif rule in NON_NEGATIVE_NUMBERS:
        ok, expected = (lambda v: _is_number(v) and v >= 0), "a finite number >= 0"
    else:
        return None
    if value is None:  # the default, or the feature switched off
        return None
    if isinstance(value, (list, tuple)):
        if value and all(ok(v) for v in value):
            return None
        return f"{name} must be {expected} or a non-empty list of them, got {value!r}"
    return None if ok(value) else f"{name} must be {expected}, got {value!r}"


def check_options(options: Mapping[str, Any], *, where: str) -> None:
    """Raise a :class:`~omniperceiver.errors.ConfigError` ``"<where>: <name> must be ...,
    got ..."`` for the first option whose name has a rule (a count or size >= 1, a fraction in
    [0, 1), a finite positive number) and whose value breaks it; None always passes. Options
    that are dicts (a preset's ``encoder={...}``, ``image={...}``) are checked inside, named
    ``encoder.self_attend.heads``."""
    for name, value in options.items():
        if isinstance(value, Mapping):
            check_options({f"{name}.{key}": v for key, v in value.items()}, where=where)
            continue
        problem = _option_problem(name, value)
        if problem is not None:
            raise ConfigError(f"{where}: {problem}")


def check_config(config: Any, *, where: str | None = None) -> None:
    """:func:`check_options` on the fields of a config dataclass and, recursively, of the
    configs in its fields (``where``: ``PerceiverIOConfig.encoder.self_attend`` ...)."""
    where = where or type(config).__name__
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    check_options({k: v for k, v in fields.items() if not dataclasses.is_dataclass(v)},
                  where=where)
    for name, value in fields.items():
        if dataclasses.is_dataclass(value):
            check_config(value, where=f"{where}.{name}")


# --- tensors ----------------------------------------------------------------------------------


def shape_str(shape: Sequence) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_float_tensor(x, *, name: str = "input", check_finite: bool = True) -> Tensor:
    """A floating-point tensor with no zero-size axis (and, optionally, no NaN or Inf).

    The NaN/Inf check reads the data, so it is skipped while ``torch.compile`` or
    ``torch.export`` trace the model (it would break the graph).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} has dtype {x.dtype}; a floating-point tensor is expected. Convert it "
            f"explicitly, e.g. x.float() (and scale integer pixels, e.g. x.float() / 255)")
    if x.numel() == 0:
        raise ValueError(f"{name} has a zero-size axis: shape {shape_str(x.shape)}")
    if check_finite and not torch.compiler.is_compiling() and not torch.isfinite(x).all():
        raise ValueError(
            f"{name} contains NaN or Inf values (pass check_finite=False to skip this check)")
    return x


def check_layout(x: Tensor, *, axes: int, channels: int, name: str = "input",
                 channels_last: bool = True) -> None:
    """``x`` must be (batch, *axes, channels) (or (batch, channels, *axes))."""
    expected = (("batch",) + tuple(f"axis{i}" for i in range(axes)) + (channels,) if channels_last
                else ("batch", channels) + tuple(f"axis{i}" for i in range(axes)))
    if x.ndim != axes + 2:
        raise ValueError(
            f"{name} must have {axes + 2} dimensions {shape_str(expected)}, got "
            f"{x.ndim}: {shape_str(x.shape)}")
    got = x.shape[-1] if channels_last else x.shape[1]
    if got != channels:
        hint = ""
        other = x.shape[1] if channels_last else x.shape[-1]
        if other == channels:
            hint = (" It looks channels-first; pass channels-last data "
                    "(e.g. x.movedim(1, -1)) or use channels_last=False."
                    if channels_last else " It looks channels-last; use channels_last=True.")
        raise ValueError(
            f"{name} must have {channels} channels {shape_str(expected)}, got {got}: "
            f"shape {shape_str(x.shape)}.{hint}")


def check_mask(mask, *, batch: int, axes: Sequence[int], name: str = "mask") -> Tensor | None:
    """A bool mask, True = keep, shaped (batch, num_inputs) or (batch, *axes); returns it
    flattened to (batch, num_inputs)."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of dtype torch.bool, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must have dtype torch.bool (True = keep), got {mask.dtype}")
    num_inputs = 1
    for a in axes:
        num_inputs *= a
    allowed = [(batch, num_inputs), (batch, *axes)]
    if tuple(mask.shape) not in allowed:
        options = " or ".join(shape_str(s) for s in dict.fromkeys(allowed))
        raise ValueError(f"{name} must have shape {options}, got {shape_str(mask.shape)}")
    return mask.reshape(batch, num_inputs)


def check_grid_input(x, mask, *, axes: int, channels: int, channels_last: bool = True,
                     check_finite: bool = True, name: str = "input"
                     ) -> tuple[Tensor, Tensor | None]:
    """Checks a grid input (batch, *axes, channels) (``channels_last=False``: (batch, channels,
    *axes)) and its mask; returns ``x`` channels-last and the mask flattened to
    (batch, prod(axes)) (or None)."""
    check_float_tensor(x, name=name, check_finite=check_finite)
    check_layout(x, axes=axes, channels=channels, name=name, channels_last=channels_last)
    if not channels_last:
        x = x.movedim(1, -1)
    return x, check_mask(mask, batch=x.shape[0], axes=x.shape[1:-1])


def check_divisible(shape: Sequence[int], patch_shape: Sequence[int], *, axis_names: Sequence[str],
                    name: str = "input") -> None:
    """Every axis size in ``shape`` must be a multiple of the matching ``patch_shape`` entry."""
    for size, patch, axis in zip(shape, patch_shape, axis_names, strict=True):
        if size % patch:
            lower, upper = size - size % patch, size - size % patch + patch
            raise ValueError(
                f"{name} {axis} {size} is not divisible by the patch size {patch} "
                f"(patch shape {shape_str(patch_shape)}, {name} axes {shape_str(shape)}); crop or "
                f"pad it to a multiple of {patch}, e.g. {lower or upper} or {upper}")


def check_token_ids(ids, *, vocab_size: int, max_length: int, name: str = "token ids") -> Tensor:
    """Integer token ids (batch, length) with ``0 <= id < vocab_size`` and
    ``length <= max_length``."""
    if not isinstance(ids, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integers, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(
            f"{name} must be an integer tensor (batch, length), e.g. torch.long; got dtype "
            f"{ids.dtype}. Token ids are indices, not values: build them with an integer dtype "
            f"(for example ByteTokenizer().encode(texts))")
    if ids.ndim != 2:
        raise ValueError(f"{name} must have 2 dimensions (batch, length), got {ids.ndim}: "
                         f"{shape_str(ids.shape)}")
    if ids.numel() == 0:
        raise ValueError(f"{name} has a zero-size axis: shape {shape_str(ids.shape)}")
    if ids.shape[1] > max_length:
        raise ValueError(f"{name} have length {ids.shape[1]}, more than max_length={max_length}: "
                         f"shape {shape_str(ids.shape)}")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} must lie in [0, {vocab_size - 1}], got values in [{low}, {high}]")
    return ids


def mask_lengths(mask: Tensor, *, name: str = "mask") -> Tensor:
    """Lengths (batch,) of a (batch, length) bool mask whose True entries come first in each
    row (valid samples, then padding); a ValueError for a mask with holes."""
    lengths = mask.sum(dim=1)
    prefix = torch.arange(mask.shape[1], device=mask.device) < lengths[:, None]
    if not torch.equal(prefix, mask):
        raise ValueError(f"{name} must mark a prefix of each row as valid (the samples first, "
                         f"then the padding); it has False entries before True ones")
    return lengths


def check_keys(given, expected: Sequence[str], *, name: str, required: bool = True) -> None:
    """``given`` must be a dict with keys from ``expected`` (all of them if ``required``)."""
    if not isinstance(given, dict):
        raise TypeError(f"{name} must be a dict {{modality name: tensor}} with keys "
                        f"{sorted(expected)}, got {type(given).__name__}")
    unknown = sorted(set(given) - set(expected))
    if unknown:
        raise ValueError(f"{name} has unknown modalities {unknown}; expected {sorted(expected)}")
    missing = sorted(set(expected) - set(given))
    if required and missing:
        raise ValueError(f"{name} is missing modalities {missing}; expected {sorted(expected)}, "
                         f"got {sorted(given)}")


def check_indices(indices, *, size: int, name: str = "subsample") -> Tensor:
    """Flat output indices: a 1-D integer tensor (not bool) with ``0 <= index < size``."""
    if not isinstance(indices, Tensor):
        raise TypeError(f"{name} must be a 1-D integer torch.Tensor of indices in [0, {size}), "
                        f"got {type(indices).__name__}")
    if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of indices in [0, {size}) (e.g. "
                        f"torch.long), got dtype {indices.dtype}")
    if indices.ndim != 1 or indices.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor (num_outputs,) of indices in "
                         f"[0, {size}), got shape {shape_str(indices.shape)}")
    if not torch.compiler.is_compiling():
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= size:
            raise ValueError(f"{name} must lie in [0, {size - 1}], got values in "
                             f"[{low}, {high}]")
    return indices


def check_queries(queries, *, batch: int, channels: int, name: str = "queries") -> Tensor:
    """Decoder queries: a finite floating-point tensor (batch, num_outputs, channels)."""
    if not isinstance(queries, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape ({batch}, num_outputs, "
                        f"{channels}), got {type(queries).__name__}")
    if (queries.ndim != 3 or queries.shape[0] != batch or queries.shape[2] != channels):
        raise ValueError(f"{name} must have shape ({batch}, num_outputs, {channels}), got "
                         f"{shape_str(queries.shape)}")
    return check_float_tensor(queries, name=name)


__all__ = ["check_options", "check_config", "check_indices", "check_queries",
           "check_float_tensor", "check_layout", "check_mask", "shape_str", "check_grid_input",
           "check_divisible", "check_token_ids", "mask_lengths", "check_keys"]
