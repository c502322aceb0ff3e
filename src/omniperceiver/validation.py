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
    """A floating-point tensor with no zero-size axis (and, optionally, no NaN or Inf)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} has dtype {x.dtype}; a floating-point tensor is expected. Convert it "
            f"explicitly, e.g. x.float() (and scale integer pixels, e.g. x.float() / 255)")
    if x.numel() == 0:
        raise ValueError(f"{name} has a zero-size axis: shape {shape_str(x.shape)}")
    if check_finite and not torch.isfinite(x).all():
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
        raise TypeError(f"{name} must be a torch.Tensor of dtype torch.bool, got {type(mask).__name__}")
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


__all__ = ["check_float_tensor", "check_layout", "check_mask", "shape_str"]
