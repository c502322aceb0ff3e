"""perceiver-ar-pytorch (lucidrains, 0.0.10) ``PerceiverAR`` checkpoints -> our
:class:`~omniperceiver.PerceiverAR` (the ``perceiver-ar`` preset).

Reached through :func:`omniperceiver.convert.from_lucidrains` (module or state dict, and the
constructor keywords that made it); perceiver-ar-pytorch is not needed to convert.

How their model maps onto our options:

* ``max_seq_len`` -> ``max_context``; ``cross_attn_seq_len`` is their prefix length P, so
  their latents are the last ``N - P`` of N inputs: ``num_latents = max_seq_len -
  cross_attn_seq_len``, and an input shorter than ``max_seq_len`` is called with
  ``num_latents=N - cross_attn_seq_len``;
* their learned absolute ``pos_emb`` -> ``learned_positions=True``; their cross-attend's keys
  of the latent positions (normed with the queries' norm) -> ``separate_latent_norm=True``;
  no norm before their logits -> ``final_norm=False``;
* rotary embeddings on the first ``max(32, dim_head // 2)`` channels of each head with base
  10,000 -> ``rotary_fraction`` and ``max_wavelength=10000``;
* ``depth`` -> ``num_self_attends``, ``dim_head`` -> ``head_dim``, ``ff_mult`` ->
  ``widening_factor``, ``cross_attn_dropout`` -> ``prefix_dropout``, ``dropout`` -> ``dropout``
  (the two only act in training, and there their dropouts sit elsewhere).

Refused, naming the keyword: ``perceive_depth`` other than 1 (we have one cross-attend),
``depth=0`` (we have at least one self-attend), ``dim_head`` below 32 (their forward fails)
or with an odd ``dim_head // 2`` above 64 (their rotary channels and frequencies then
disagree), and an ``ff_mult`` that does not make a whole multiple of ``dim``.
``perceive_max_heads_process`` only saves memory and is ignored.

Their names -> ours: ``token_emb`` -> ``embedding``, ``pos_emb`` -> ``position_embedding``;
per attention ``norm`` -> ``norm_q``, ``context_norm`` -> ``norm_kv``, ``to_q``/``to_kv``/
``to_out`` -> ``attention.to_q/to_kv/to_out`` (a self-attend's fused ``to_qkv`` split into
``to_q`` and ``to_kv``); per feed-forward ``0``/``1``/``4`` -> ``norm_ff``/``ff.fc1``/
``ff.fc2``; ``perceive_layers.0`` -> ``cross_attend``, ``layers.i`` -> ``self_attends.i``.
Where they have no bias and we do, the bias is zero: the outputs are equal, and our model has
those few extra (zero) parameters.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ..errors import ConfigError
from ..perceiver_ar import PerceiverAR
from ..registry import create_model
from ._common import LayerWeights, layer_state, load_converted

#: perceiver-ar-pytorch's constructor keywords and their defaults (None: required).
KEYWORDS = dict(num_tokens=None, dim=None, depth=None, max_seq_len=None,
                cross_attn_seq_len=None, dim_head=64, heads=8, dropout=0.0,
                cross_attn_dropout=0.0, ff_mult=4, perceive_depth=1,
                perceive_max_heads_process=2)
#: Their rotary embeddings' base.
ROTARY_BASE = 10000.0


def is_perceiver_ar(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith("perceive_layers.") for k in state)


def perceiver_ar_options(kwargs: Mapping) -> dict:
    """Their constructor keywords -> our :class:`~omniperceiver.PerceiverAR` keywords."""
    unknown = sorted(set(kwargs) - set(KEYWORDS))
    if unknown:
        raise ConfigError(f"perceiver-ar-pytorch PerceiverAR has no keyword {unknown[0]!r} "
                          f"(its keywords: {', '.join(KEYWORDS)})")
    missing = [k for k, v in KEYWORDS.items() if v is None and k not in kwargs]
    if missing:
        raise ConfigError(f"perceiver-ar-pytorch PerceiverAR: give the constructor keyword(s) "
                          f"{', '.join(missing)} that made the checkpoint")
    k = {**KEYWORDS, **kwargs}
    if k["perceive_depth"] != 1:
        raise ConfigError(f"perceiver-ar-pytorch PerceiverAR: perceive_depth="
                          f"{k['perceive_depth']!r} cannot be converted (ours has one "
                          "cross-attend: perceive_depth=1)")
    if k["depth"] < 1:
        raise ConfigError(f"perceiver-ar-pytorch PerceiverAR: depth={k['depth']!r} cannot be "
                          "converted (ours has at least one latent self-attend)")
    if not 0 < k["cross_attn_seq_len"] < k["max_seq_len"]:
        raise ConfigError(f"perceiver-ar-pytorch PerceiverAR: cross_attn_seq_len must lie in "
                          f"[1, max_seq_len={k['max_seq_len']}), got {k['cross_attn_seq_len']}")
    head_dim = k["dim_head"]
    rotated = max(32, head_dim // 2)  # their rotary channels per head
    if head_dim < 32 or rotated % 2:
        raise ConfigError(f"perceiver-ar-pytorch PerceiverAR: dim_head={head_dim} cannot be "
                          "converted (their forward fails below 32; an odd dim_head // 2 "
                          "turns channels at frequencies that do not pair up)")
    hidden = int(k["dim"] * k["ff_mult"])
    if hidden % k["dim"]:
        raise ConfigError(f"perceiver-ar-pytorch PerceiverAR: ff_mult={k['ff_mult']!r} makes a "
                          f"feed-forward {hidden} wide, not a whole multiple of dim={k['dim']}")
    return dict(vocab_size=k["num_tokens"], max_context=k["max_seq_len"],
                num_latents=k["max_seq_len"] - k["cross_attn_seq_len"], dim=k["dim"],
                heads=k["heads"], head_dim=head_dim, num_self_attends=k["depth"],
                widening_factor=hidden // k["dim"], activation="gelu", dropout=k["dropout"],
                prefix_dropout=k["cross_attn_dropout"],
                # half a channel above `rotated`, so that rounding down lands on it
                rotary_fraction=min(1.0, (rotated + 0.5) / head_dim),
                max_wavelength=ROTARY_BASE, learned_positions=True,
                separate_latent_norm=True, final_norm=False)


def _linear(state: Mapping[str, Tensor], name: str) -> tuple[Tensor, Tensor]:
    """A linear layer's weight and its bias (zero where they have none)."""
    weight = state[f"{name}.weight"]
    return weight, state.get(f"{name}.bias", weight.new_zeros(weight.shape[0]))


def _norm(state: Mapping[str, Tensor], name: str) -> tuple[Tensor, Tensor]:
    return state[f"{name}.weight"], state[f"{name}.bias"]


def _feed_forward(state: Mapping[str, Tensor], ff: str) -> dict:
    """Their ``Sequential(LayerNorm, Linear, GELU, Dropout, Linear)`` at ``ff``."""
    return dict(norm_ff=_norm(state, f"{ff}.0"), fc1=_linear(state, f"{ff}.1"),
                fc2=_linear(state, f"{ff}.4"))


def convert_perceiver_ar(state: Mapping[str, Tensor], kwargs: Mapping) -> PerceiverAR:
    """Our model equal to perceiver-ar-pytorch's ``PerceiverAR(**kwargs)`` with ``state``."""
    options = perceiver_ar_options(kwargs)
    model = create_model("perceiver-ar", **options)
    if model.rotary.rotated != max(32, options["head_dim"] // 2):  # rounding guard
        raise ConfigError(f"dim_head={options['head_dim']}: rotary channels do not round to "
                          "theirs")
    ours: dict[str, Tensor] = {"embedding.weight": state["token_emb.weight"],
                               "position_embedding.weight": state["pos_emb.weight"]}
    cross, cross_ff = "perceive_layers.0.0", "perceive_layers.0.1"
    ours.update(layer_state("cross_attend", LayerWeights(
        norm_q=_norm(state, f"{cross}.norm"), norm_kv=_norm(state, f"{cross}.context_norm"),
        q=_linear(state, f"{cross}.to_q"), kv=_linear(state, f"{cross}.to_kv"),
        out=_linear(state, f"{cross}.to_out"), **_feed_forward(state, cross_ff))))
    for i in range(options["num_self_attends"]):
        attn = f"layers.{i}.0"
        qkv, qkv_bias = _linear(state, f"{attn}.to_qkv")
        inner = qkv.shape[0] // 3  # their fused rows: queries, keys, values
        ours.update(layer_state(f"self_attends.{i}", LayerWeights(
            norm_q=_norm(state, f"{attn}.norm"), q=(qkv[:inner], qkv_bias[:inner]),
            kv=(qkv[inner:], qkv_bias[inner:]), out=_linear(state, f"{attn}.to_out"),
            **_feed_forward(state, f"layers.{i}.1"))))
    ours["to_logits.weight"], ours["to_logits.bias"] = _linear(state, "to_logits")
    depth = options["num_self_attends"]
    extra = sorted(k for k in state if k.startswith((f"layers.{depth}.", "perceive_layers.1.")))
    if extra:
        raise ConfigError(f"perceiver-ar-pytorch PerceiverAR: the checkpoint has more layers "
                          f"than depth={depth}, perceive_depth=1 ({extra[0]})")
    return load_converted(model, ours, source="perceiver-ar-pytorch PerceiverAR",
                          dtype=state["token_emb.weight"].dtype)


__all__ = ["convert_perceiver_ar", "perceiver_ar_options", "is_perceiver_ar", "KEYWORDS"]
