"""transformers' IDEFICS and Idefics2 Perceiver Resamplers -> our
:class:`~omniperceiver.resampler.PerceiverResampler` (the ``perceiver-resampler`` preset).

``from_idefics_resampler(module)`` takes an ``IdeficsPerceiverResampler``,
``from_idefics2_resampler(module)`` an ``Idefics2PerceiverResampler``; both read only the
module's attributes (or config) and state dict, so transformers is never imported here. The
result maps the same media (batch, n, dim) to the same latents (batch, num_latents, dim), and
takes a media mask (batch, n) bool where Idefics2 takes ``attention_mask`` (1 = keep); IDEFICS'
resampler has no mask (ours with a mask equals IDEFICS' on the unpadded tokens).

How the variants map onto our options:

* IDEFICS: LayerNorms, no biases in attention or feed-forward, a ReLU feed-forward
  (``activation="relu"``), ``qk_layer_norms_perceiver`` -> ``qk_norm=True``;
* Idefics2: RMSNorms (``norm="rms"``, ``norm_eps=rms_norm_eps``), grouped-query attention
  (``kv_heads=num_key_value_heads``), a gated feed-forward 4x wide
  (``hidden_act="silu"`` -> ``"swiglu"``, ``"gelu"`` -> ``"geglu"``).

Their names -> ours, per layer ``i`` (IDEFICS ``blocks.i.0``/``blocks.i.1``; Idefics2
``layers.i``):

* latents norm ``latents_layer_norm`` / ``input_latents_norm`` -> ``layers.i.norm_q``;
* media norm ``context_layer_norm`` / ``input_context_norm`` -> ``layers.i.norm_kv``;
* ``q_proj`` -> ``attention.to_q``; ``k_proj`` and ``v_proj`` -> ``attention.to_kv`` (keys,
  then values); ``output_proj`` / ``o_proj`` -> ``attention.to_out``;
* IDEFICS' ``q_layer_norm``/``k_layer_norm`` -> ``attention.norm_q``/``attention.norm_k``;
* feed-forward norm ``ln`` / ``post_attention_layernorm`` -> ``norm_ff``; ``fc`` -> ``ff.fc1``
  or Idefics2's ``up_proj`` and ``gate_proj`` -> ``ff.fc1`` (up, then gate); ``c_proj`` /
  ``down_proj`` -> ``ff.fc2``;

and ``latents`` -> ``latents``, ``layer_norm`` (IDEFICS) / ``norm`` (Idefics2) -> ``norm``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import create_model
from ..resampler import PerceiverResampler
from ._common import LayerWeights, layer_state, load_converted

#: Idefics2's ``hidden_act`` -> our gated feed-forward.
IDEFICS2_ACTIVATIONS = {"silu": "swiglu", "gelu": "geglu"}


def _pair(state: Mapping[str, Tensor], name: str) -> tuple[Tensor, Tensor | None]:
    return state[f"{name}.weight"], state.get(f"{name}.bias")


def _convert(module: nn.Module, state: dict[str, Tensor], overrides: dict,
             source: str) -> PerceiverResampler:
    dtype = next(module.parameters()).dtype
    return load_converted(create_model("perceiver-resampler", **overrides), state,
                          source=source, dtype=dtype)


def from_idefics_resampler(module: nn.Module) -> PerceiverResampler:
    """Our resampler equal to transformers' ``IdeficsPerceiverResampler`` ``module``."""
    state = module.state_dict()
    dim, depth = module.embed_dim, len(module.blocks)
    hidden = state["blocks.0.1.fc.weight"].shape[0]
    if hidden % dim:
        raise ConfigError(f"IDEFICS resampler: the feed-forward width {hidden} must be a "
                          f"multiple of embed_dim={dim}")
    overrides = dict(dim=dim, depth=depth, num_latents=module.n_latents, heads=module.n_heads,
                     head_dim=module.head_dim, qk_norm=bool(module.qk_layer_norms),
                     widening_factor=hidden // dim, activation="relu", norm="layer",
                     norm_eps=module.layer_norm.eps, bias=False)
    ours = {"latents": state["latents"], "norm.weight": state["layer_norm.weight"],
            "norm.bias": state["layer_norm.bias"]}
    for i in range(depth):
        a, f = f"blocks.{i}.0", f"blocks.{i}.1"
        ours.update(layer_state(f"layers.{i}", LayerWeights(
            norm_q=_pair(state, f"{a}.latents_layer_norm"),
            norm_kv=_pair(state, f"{a}.context_layer_norm"),
            q=_pair(state, f"{a}.q_proj"), k=_pair(state, f"{a}.k_proj"),
            v=_pair(state, f"{a}.v_proj"), out=_pair(state, f"{a}.output_proj"),
            head_norm_q=_pair(state, f"{a}.q_layer_norm") if module.qk_layer_norms else None,
            head_norm_k=_pair(state, f"{a}.k_layer_norm") if module.qk_layer_norms else None,
            norm_ff=_pair(state, f"{f}.ln"), fc1=_pair(state, f"{f}.fc"),
            fc2=_pair(state, f"{f}.c_proj"))))
    return _convert(module, ours, overrides, "IdeficsPerceiverResampler")


def from_idefics2_resampler(module: nn.Module) -> PerceiverResampler:
    """Our resampler equal to transformers' ``Idefics2PerceiverResampler`` ``module``."""
    config, state = module.config, module.state_dict()
    if config.hidden_act not in IDEFICS2_ACTIVATIONS:
        raise ConfigError(f"Idefics2 resampler: hidden_act must be one of "
                          f"{sorted(IDEFICS2_ACTIVATIONS)} (a gated feed-forward we have), "
                          f"got {config.hidden_act!r}")
    depth = config.resampler_depth
    overrides = dict(dim=config.hidden_size, depth=depth, num_latents=config.resampler_n_latents,
                     heads=config.resampler_n_heads, head_dim=config.resampler_head_dim,
                     kv_heads=config.num_key_value_heads, widening_factor=4,
                     activation=IDEFICS2_ACTIVATIONS[config.hidden_act], norm="rms",
                     norm_eps=config.rms_norm_eps, bias=False)
    ours = {"latents": state["latents"], "norm.weight": state["norm.weight"]}
    for i in range(depth):
        p = f"layers.{i}"
        ours.update(layer_state(p, LayerWeights(
            norm_q=_pair(state, f"{p}.input_latents_norm"),
            norm_kv=_pair(state, f"{p}.input_context_norm"),
            q=_pair(state, f"{p}.self_attn.q_proj"), k=_pair(state, f"{p}.self_attn.k_proj"),
            v=_pair(state, f"{p}.self_attn.v_proj"), out=_pair(state, f"{p}.self_attn.o_proj"),
            norm_ff=_pair(state, f"{p}.post_attention_layernorm"),
            fc1=(torch.cat([state[f"{p}.mlp.up_proj.weight"],
                            state[f"{p}.mlp.gate_proj.weight"]]), None),
            fc2=_pair(state, f"{p}.mlp.down_proj"))))
    return _convert(module, ours, overrides, "Idefics2PerceiverResampler")


__all__ = ["from_idefics_resampler", "from_idefics2_resampler", "IDEFICS2_ACTIVATIONS"]
