"""What every converter shares: one attention layer's weights in a common form, loading a
converted state dict with errors that name the keys, and reading a state dict that
``torch.save`` wrote.

A converter reads its source's names into :class:`LayerWeights` (torch layout: weights are
``(out_features, in_features)``) and :func:`layer_state` writes them under our names, fusing
separate key and value projections into ``to_kv`` (keys first, then values).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ModelFileError
from ..files import read_file

Pair = tuple[Tensor, Tensor | None]  # (weight, bias)


@dataclass
class LayerWeights:
    """One :class:`~omniperceiver.attention.AttentionLayer`'s weights, source-independent.

    ``k`` and ``v`` are separate projections; a source that already fuses them passes ``kv``
    instead. ``norm_kv`` is set for cross-attends only; ``norm_ff``/``fc1``/``fc2`` are None for
    a layer without a feed-forward sub-layer. ``head_norm_q``/``head_norm_k`` are the per-head
    query and key norms of an attention with ``qk_norm``. A norm without a shift (RMSNorm) has
    bias None.
    """

    norm_q: Pair
    q: Pair
    out: Pair
    k: Pair | None = None
    v: Pair | None = None
    kv: Pair | None = None
    norm_kv: Pair | None = None
    norm_ff: Pair | None = None
    fc1: Pair | None = None
    fc2: Pair | None = None
    head_norm_q: Pair | None = None
    head_norm_k: Pair | None = None


def layer_state(prefix: str, w: LayerWeights) -> dict[str, Tensor]:
    """Our state-dict entries for one attention layer at ``prefix`` (``"encoder.blocks.0.1"``)."""
    state: dict[str, Tensor] = {}

    def put(name: str, pair: Pair | None) -> None:
        if pair is None:
            return
        weight, bias = pair
        state[f"{prefix}.{name}.weight"] = weight
        if bias is not None:
            state[f"{prefix}.{name}.bias"] = bias

    if w.kv is None:
        if w.k is None or w.v is None:
            raise ModelFileError(f"{prefix}: need either kv or both k and v")
        k_bias, v_bias = w.k[1], w.v[1]
        kv_bias = None if k_bias is None else torch.cat([k_bias, v_bias])
        kv = (torch.cat([w.k[0], w.v[0]]), kv_bias)
    else:
        kv = w.kv
    put("norm_q", w.norm_q)
    put("norm_kv", w.norm_kv)
    put("attention.to_q", w.q)
    put("attention.to_kv", kv)
    put("attention.to_out", w.out)
    put("attention.norm_q", w.head_norm_q)
    put("attention.norm_k", w.head_norm_k)
    put("norm_ff", w.norm_ff)
    put("ff.fc1", w.fc1)
    put("ff.fc2", w.fc2)
    return state


def load_converted(model: nn.Module, state: Mapping[str, Tensor], *, source: str,
                   dtype: torch.dtype) -> nn.Module:
    """Load ``state`` into ``model`` cast to ``dtype`` (every parameter and buffer must be
    covered, shapes must match) and return ``model`` in eval mode."""
    model = model.to(dtype)
    ours = model.state_dict()
    missing = sorted(set(ours) - set(state))
    unexpected = sorted(set(state) - set(ours))
    if missing or unexpected:
        raise ModelFileError(
            f"converting {source}: the converted weights do not cover the model"
            + (f"; missing {missing[:8]}{' ...' if len(missing) > 8 else ''}" if missing else "")
            + (f"; unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}"
               if unexpected else ""))
    wrong = [f"{k}: ours {tuple(ours[k].shape)}, theirs {tuple(state[k].shape)}"
             for k in ours if tuple(ours[k].shape) != tuple(state[k].shape)]
    if wrong:
        raise ModelFileError(f"converting {source}: shape mismatch (check the configuration): "
                             + "; ".join(wrong[:6]))
    model.load_state_dict({k: v.detach().to(ours[k].dtype) for k, v in state.items()})
    return model.eval()


def read_torch_state_dict(path: str | os.PathLike) -> dict:
    """The state dict in a file written by ``torch.save`` (a Lightning-style checkpoint's
    ``state_dict`` entry), read with ``weights_only=True``: tensors and plain containers only,
    no other pickled objects."""
    state = read_file(path, lambda p: torch.load(p, map_location="cpu", weights_only=True),
                      what="a PyTorch state dict saved with torch.save", error=ModelFileError)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["LayerWeights", "layer_state", "load_converted", "read_torch_state_dict",
           "count_parameters"]
