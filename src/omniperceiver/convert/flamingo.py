"""flamingo-pytorch's and open_flamingo's Perceiver Resamplers -> our
:class:`~omniperceiver.resampler.PerceiverResampler` (the ``perceiver-resampler`` preset).

``from_flamingo_resampler(checkpoint)`` takes either library's ``PerceiverResampler``, the
module or its state dict (then with ``heads=``; an open_flamingo ``Flamingo`` state dict's
``perceiver.`` entries are found by their prefix). Neither library is imported here. Both are
our resampler with LayerNorms, no biases and a GELU feed-forward ``ff_mult`` wide, each media
item (frame) with its own latents; they differ in their time embeddings and input shapes:

=========================  ==============================  ===================================
theirs                     input -> output                 ours
=========================  ==============================  ===================================
flamingo-pytorch           (B, n, D) -> (B, 1, L, D);      ``frames="separate"``,
(``media_pos_emb``)        (B, T, n, D) -> (B, T, L, D)    ``max_frames=num_media_embeds``;
                                                           ``ours(x)`` -> (B, [T,] L, D)
open_flamingo, no          (B, T, F, v, D) ->              ``frames="separate"``,
``frame_embs``             (B, T, L, D)                    ``max_frames=max_num_media``;
                                                           ``ours(x.flatten(2, 3))``
open_flamingo with         (B, T, F, v, D) ->              ``frames="joint"``,
``frame_embs``, no         (B, T, L, D)                    ``max_frames=max_num_frames``;
``media_time_embs``                                        ``ours(x.flatten(0, 1))`` ->
                                                           (B * T, L, D)
=========================  ==============================  ===================================

open_flamingo with both ``frame_embs`` and ``media_time_embs`` (one embedding per frame and
one per media item) has no equivalent (ours has one time embedding per frame) and is refused.
Neither library takes a media mask; ours does (``mask`` (B, [T,] n), True = a real token).

Their names -> ours, per layer ``i``: ``layers.i.0.norm_latents``/``norm_media`` ->
``layers.i.norm_q``/``norm_kv``; ``to_q``/``to_kv``/``to_out`` -> ``attention.to_q/to_kv/
to_out`` (keys, then values, in both); ``layers.i.1.0``/``1``/``3`` -> ``norm_ff``/``ff.fc1``/
``ff.fc2``; and ``latents`` -> ``latents``, ``norm`` -> ``norm``, the time embeddings ->
``time_embeddings``.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ..errors import ConfigError, ModelFileError
from ..registry import create_model
from ..resampler import PerceiverResampler
from ._common import LayerWeights, layer_state, load_converted

#: An open_flamingo ``Flamingo``'s resampler entries start with this.
FLAMINGO_PREFIX = "perceiver."


def _pair(state: Mapping[str, Tensor], name: str) -> tuple[Tensor, Tensor | None]:
    return state[f"{name}.weight"], state.get(f"{name}.bias")


def _resampler_state(checkpoint: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    state = checkpoint.state_dict() if isinstance(checkpoint, nn.Module) else dict(checkpoint)
    if "latents" not in state and f"{FLAMINGO_PREFIX}latents" in state:
        state = {k[len(FLAMINGO_PREFIX):]: v for k, v in state.items()
                 if k.startswith(FLAMINGO_PREFIX)}
    if "latents" not in state or "layers.0.0.to_q.weight" not in state:
        raise ModelFileError("not a flamingo-pytorch or open_flamingo PerceiverResampler "
                             f"state dict (keys start {sorted(state)[:4]})")
    return state


def _heads(checkpoint: nn.Module | Mapping[str, Tensor], heads: int | None) -> int:
    if isinstance(checkpoint, nn.Module):
        theirs = checkpoint.layers[0][0].heads
        if heads is not None and heads != theirs:
            raise ConfigError(f"heads={heads} given, but the module has {theirs} heads")
        return theirs
    if heads is None:
        raise ConfigError("a resampler state dict does not show its number of heads: pass "
                          "heads= (the constructor's heads, 8 by default)")
    return heads


def _time_embeddings(state: Mapping[str, Tensor]) -> tuple[Tensor | None, str]:
    """The per-frame embeddings (frames, dim) and our ``frames`` mode."""
    media = state.get("media_pos_emb", state.get("media_time_embs"))  # (frames, 1, dim)
    frames = state.get("frame_embs")  # (frames, dim)
    if media is not None and frames is not None:
        raise ConfigError("open_flamingo PerceiverResampler with both max_num_media and "
                          "max_num_frames (time embeddings per media item and per frame) "
                          "cannot be converted: ours has one time embedding per frame")
    if frames is not None:
        return frames, "joint"
    return (None if media is None else media[:, 0]), "separate"


def from_flamingo_resampler(checkpoint: nn.Module | Mapping[str, Tensor], *,
                            heads: int | None = None) -> PerceiverResampler:
    """Our resampler equal to flamingo-pytorch's or open_flamingo's ``PerceiverResampler``
    (module or state dict; ``heads`` needed for a state dict). In eval mode, in the
    checkpoint's dtype; see the module docstring for how to call it."""
    state = _resampler_state(checkpoint)
    heads = _heads(checkpoint, heads)
    try:
        return _convert(state, heads)
    except KeyError as error:
        raise ModelFileError(f"flamingo PerceiverResampler: the state dict has no "
                             f"{error.args[0]!r}") from None


def _convert(state: Mapping[str, Tensor], heads: int) -> PerceiverResampler:
    latents = state["latents"]
    dim = latents.shape[1]
    depth = len({k.split(".")[1] for k in state if k.startswith("layers.")})
    inner, hidden = state["layers.0.0.to_q.weight"].shape[0], state["layers.0.1.1.weight"].shape[0]
    if inner % heads:
        raise ConfigError(f"heads={heads} does not divide the attention's {inner} channels")
    if hidden % dim:
        raise ConfigError(f"the feed-forward width {hidden} is not a whole multiple of "
                          f"dim={dim} (ff_mult={hidden / dim:g})")
    time_embeddings, frames = _time_embeddings(state)
    overrides = dict(dim=dim, depth=depth, num_latents=latents.shape[0], heads=heads,
                     head_dim=inner // heads, widening_factor=hidden // dim, activation="gelu",
                     norm="layer", norm_eps=1e-5, bias=False, frames=frames,
                     max_frames=None if time_embeddings is None else time_embeddings.shape[0])
    ours = {"latents": latents, "norm.weight": state["norm.weight"],
            "norm.bias": state["norm.bias"]}
    if time_embeddings is not None:
        ours["time_embeddings"] = time_embeddings
    for i in range(depth):
        a, f = f"layers.{i}.0", f"layers.{i}.1"
        ours.update(layer_state(f"layers.{i}", LayerWeights(
            norm_q=_pair(state, f"{a}.norm_latents"), norm_kv=_pair(state, f"{a}.norm_media"),
            q=_pair(state, f"{a}.to_q"), kv=_pair(state, f"{a}.to_kv"),
            out=_pair(state, f"{a}.to_out"), norm_ff=_pair(state, f"{f}.0"),
            fc1=_pair(state, f"{f}.1"), fc2=_pair(state, f"{f}.3"))))
    return load_converted(create_model("perceiver-resampler", **overrides), ours,
                          source="flamingo PerceiverResampler", dtype=latents.dtype)


__all__ = ["from_flamingo_resampler"]
