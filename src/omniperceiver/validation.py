"""Checks of user input, run at the boundary (the input adapters).

Every user mistake becomes a ``TypeError`` or ``ValueError`` that names what was expected and
what was received, instead of a shape error from deep inside a layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


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


__all__ = ["check_float_tensor", "check_layout", "check_mask", "shape_str", "check_grid_input",
           "check_divisible", "check_token_ids", "mask_lengths", "check_keys"]
