"""perceiver-pytorch and perceiver-ar-pytorch (lucidrains) checkpoints -> our models.

``from_lucidrains(checkpoint, **kwargs)`` takes a perceiver-pytorch ``Perceiver`` or
``PerceiverIO``, or a perceiver-ar-pytorch ``PerceiverAR`` (the module or its
``state_dict()``) and the constructor keywords that made it, and returns our equivalent:
:class:`omniperceiver.Perceiver` (preset ``perceiver-pytorch``), a
:class:`omniperceiver.PerceiverModel` (preset ``perceiver-pytorch-io``) whose forward is
``model(data, mask=None, queries=queries)``, or a :class:`omniperceiver.PerceiverAR` (preset
``perceiver-ar``; see :mod:`omniperceiver.convert.perceiver_ar`). Neither library is needed
to convert.

Their names -> ours: ``PreNorm.norm`` -> ``norm_q`` (``norm_ff`` before a feed-forward),
``norm_context`` -> ``norm_kv``, ``fn.to_q/to_kv/to_out`` -> ``attention.to_q/to_kv/to_out``
(``to_kv`` is fused keys|values in both), ``fn.net.0/net.2`` -> ``ff.fc1/fc2``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..errors import ModelFileError
from ..registry import create_model
from ._common import LayerWeights, layer_state, load_converted
from .perceiver_ar import convert_perceiver_ar, is_perceiver_ar


def _pair(state: Mapping[str, Tensor], name: str) -> tuple[Tensor, Tensor | None]:
    return state[f"{name}.weight"], state.get(f"{name}.bias")


def _layer(state: Mapping[str, Tensor], attn: str, ff: str | None, *, cross: bool) -> LayerWeights:
    """An attention ``PreNorm`` at ``attn`` and a feed-forward ``PreNorm`` at ``ff``."""
    return LayerWeights(
        norm_q=_pair(state, f"{attn}.norm"),
        norm_kv=_pair(state, f"{attn}.norm_context") if cross else None,
        q=_pair(state, f"{attn}.fn.to_q"),
        kv=_pair(state, f"{attn}.fn.to_kv"),
        out=_pair(state, f"{attn}.fn.to_out"),
        norm_ff=_pair(state, f"{ff}.norm") if ff else None,
        fc1=_pair(state, f"{ff}.fn.net.0") if ff else None,
        fc2=_pair(state, f"{ff}.fn.net.2") if ff else None)


def _check_tied(state: Mapping[str, Tensor], depth: int) -> None:
    """With ``weight_tie_layers=True`` layers 1..depth-1 are one module: refuse a checkpoint
    whose layers differ (it was made untied)."""
    for i in range(2, depth):
        for key, value in state.items():
            if key.startswith("layers.1."):
                other = state.get(f"layers.{i}.{key[len('layers.1.'):]}")
                if other is not None and not torch.equal(other, value):
                    raise ModelFileError(
                        f"weight_tie_layers=True but the checkpoint's layer {i} differs from "
                        f"layer 1 ({key}): it was made with weight_tie_layers=False")


def _convert_perceiver(state: Mapping[str, Tensor], kwargs: dict) -> nn.Module:
    model = create_model("perceiver-pytorch", **kwargs)
    depth = kwargs["depth"]
    if kwargs.get("weight_tie_layers", False):
        _check_tied(state, depth)
    ours: dict[str, Tensor] = {"encoder.latents": state["latents"]}
    encoder = model.encoder
    for i in range(len(encoder.cross_attends)):  # unique layers: 0..depth-1, or 0 and 1 if tied
        ours.update(layer_state(f"encoder.cross_attends.{i}", _layer(
            state, f"layers.{i}.cross_attn", f"layers.{i}.cross_ff", cross=True)))
        for j in range(len(encoder.blocks[i])):
            ours.update(layer_state(f"encoder.blocks.{i}.{j}", _layer(
                state, f"layers.{i}.self_attns.{j}.0", f"layers.{i}.self_attns.{j}.1",
                cross=False)))
    if kwargs.get("final_classifier_head", True):
        ours["decoder.norm.weight"], ours["decoder.norm.bias"] = _pair(state, "to_logits.1")
        ours["decoder.final.weight"], ours["decoder.final.bias"] = _pair(state, "to_logits.2")
    return load_converted(model, ours, source="perceiver-pytorch Perceiver",
                          dtype=state["latents"].dtype)


def _convert_perceiver_io(state: Mapping[str, Tensor], kwargs: dict) -> nn.Module:
    model = create_model("perceiver-pytorch-io", **kwargs)
    ours: dict[str, Tensor] = {"encoder.latents": state["latents"]}
    ours.update(layer_state("encoder.cross_attends.0", _layer(
        state, "cross_attend_block.cross_attn", "cross_attend_block.cross_ff", cross=True)))
    for i in range(len(model.encoder.blocks)):  # depth blocks, or one if tied
        ours.update(layer_state(f"encoder.blocks.{i}.0", _layer(
            state, f"layers.{i}.self_attns.0.0", f"layers.{i}.self_attns.0.1", cross=False)))
    ours.update(layer_state("decoder.cross_attend", _layer(
        state, "decoder_cross_attn", "decoder_ff" if kwargs.get("decoder_ff") else None,
        cross=True)))
    if kwargs.get("logits_dim") is not None:
        ours["decoder.final.weight"], ours["decoder.final.bias"] = _pair(state, "to_logits")
    return load_converted(model, ours, source="perceiver-pytorch PerceiverIO",
                          dtype=state["latents"].dtype)


def from_lucidrains(checkpoint: nn.Module | Mapping[str, Tensor], **kwargs) -> nn.Module:
    """Convert a perceiver-pytorch ``Perceiver`` or ``PerceiverIO``, or a perceiver-ar-pytorch
    ``PerceiverAR`` (module or state dict).

    ``kwargs`` are the constructor keywords that made the checkpoint (``weight_tie_layers``
    included). Returns the model in eval mode, in the checkpoint's dtype.
    """
    state = checkpoint.state_dict() if isinstance(checkpoint, nn.Module) else dict(checkpoint)
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel checkpoints
    if any(k.startswith("perceiver_io.") for k in state):
        raise ModelFileError("perceiver-pytorch's PerceiverLM is not supported; convert its "
                             "perceiver_io.* weights with from_lucidrains as a PerceiverIO")
    if is_perceiver_ar(state):
        convert = convert_perceiver_ar
    elif any(k.startswith("cross_attend_block.") for k in state):
        convert = _convert_perceiver_io
    elif any(k.startswith("layers.0.cross_attn.") for k in state):
        convert = _convert_perceiver
    else:
        raise ModelFileError("not a perceiver-pytorch Perceiver or PerceiverIO, nor a "
                             "perceiver-ar-pytorch PerceiverAR state dict "
                             f"(keys start {sorted(state)[:4]})")
    try:
        return convert(state, kwargs)
    except KeyError as error:  # a missing weight, or a missing constructor keyword
        raise ModelFileError(f"missing {error.args[0]!r}: check the checkpoint and that kwargs are "
                             "the constructor keywords that made it") from None


__all__ = ["from_lucidrains"]
