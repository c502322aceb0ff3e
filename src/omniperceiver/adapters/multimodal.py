"""Several modalities in one input array (Perceiver IO's multimodal preprocessing), and the
inverse for a decoder's outputs."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..validation import check_keys, shape_str
from .base import AdapterOutput, InputAdapter


class MultimodalAdapter(InputAdapter):
    """``{name: tensor}`` -> one input array (batch, sum of M_i, num_channels).

    Each modality goes through its own adapter (``adapters[name]``, producing (batch, M_i,
    C_i)); its channels are padded to ``num_channels = max C_i + min_padding_size`` with a
    learned padding vector of that modality (broadcast over its inputs, so it also tells the
    model which modality an input comes from); the modalities are concatenated in sorted name
    order. ``modality_sizes`` ({name: M_i}, in that order) comes back with the output.

    ``mask`` is None or a dict {name: mask} for some of the modalities (each in the form its
    adapter accepts). ``modality_dropout`` {name: p}: in training mode only, each example drops
    the modality with probability p by masking all its inputs out (the Perceiver drops video
    30% of the time on AudioSet); never random in eval mode. Unknown or missing modalities are
    a ValueError.
    """

    def __init__(self, adapters: Mapping[str, InputAdapter], *, min_padding_size: int = 2,
                 modality_dropout: Mapping[str, float] | None = None, init_std: float = 0.02):
        super().__init__()
        if not adapters:
            raise ValueError("adapters must name at least one modality")
        names = sorted(adapters)
        modality_dropout = dict(modality_dropout or {})
        check_keys(modality_dropout, names, name="modality_dropout", required=False)
        for name, p in modality_dropout.items():
            if not 0 <= p < 1:
                raise ValueError(f"modality_dropout[{name!r}] must be in [0, 1), got {p}")
        self.adapters = nn.ModuleDict({name: adapters[name] for name in names})
        self.modality_dropout = modality_dropout
        self.num_channels = max(a.num_channels for a in adapters.values()) + min_padding_size
        self.padding = nn.ParameterDict()
        for name in names:
            vector = torch.empty(self.num_channels - adapters[name].num_channels)
            nn.init.trunc_normal_(vector, std=init_std, a=-2 * init_std, b=2 * init_std)
            self.padding[name] = nn.Parameter(vector)

    @property
    def names(self) -> list[str]:
        return list(self.adapters)

    def forward(self, x: Mapping[str, Tensor], mask: Mapping[str, Tensor] | None = None
                ) -> AdapterOutput:
        check_keys(x, self.names, name="inputs")
        if mask is not None:
            check_keys(mask, self.names, name="mask", required=False)
        outs = {}
        for name, adapter in self.adapters.items():
            try:
                outs[name] = adapter(x[name], (mask or {}).get(name))
            except (TypeError, ValueError) as error:  # name the modality at fault
                raise type(error)(f"modality {name!r}: {error}") from error
        batches = {name: out.inputs.shape[0] for name, out in outs.items()}
        if len(set(batches.values())) > 1:
            raise ValueError(f"the modalities have different batch sizes: {batches}")
        batch = next(iter(batches.values()))
        inputs, masks, sizes = [], [], {}
        for name, out in outs.items():
            size = out.inputs.shape[1]
            pad = self.padding[name].to(out.inputs.dtype).expand(batch, size, -1)
            inputs.append(torch.cat([out.inputs, pad], dim=-1))  # (batch, M_i, num_channels)
            keep = out.mask
            p = self.modality_dropout.get(name, 0.0)
            if self.training and p > 0:
                kept = torch.rand(batch, device=out.inputs.device) >= p  # (batch,)
                keep = kept[:, None] if keep is None else keep & kept[:, None]
            masks.append(keep)
            sizes[name] = size
        if all(m is None for m in masks):
            joint_mask = None
        else:
            joint_mask = torch.cat([
                (m if m is not None else torch.ones(batch, 1, dtype=torch.bool,
                                                    device=inputs[0].device)).expand(batch, n)
                for m, n in zip(masks, sizes.values(), strict=True)], dim=1)
        return AdapterOutput(inputs=torch.cat(inputs, dim=1), mask=joint_mask,
                             modality_sizes=sizes)


def split_modalities(outputs: Tensor, modality_sizes: Mapping[str, int]) -> dict[str, Tensor]:
    """The inverse of the concatenation: (batch, sum of sizes, channels) ->
    {name: (batch, size, channels)}, in the order of ``modality_sizes``."""
    total = sum(modality_sizes.values())
    if not isinstance(outputs, Tensor) or outputs.ndim < 2 or outputs.shape[1] != total:
        got = shape_str(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
        raise ValueError(f"outputs must be (batch, {total}, ...) for modality sizes "
                         f"{dict(modality_sizes)}, got {got}")
    parts = outputs.split(list(modality_sizes.values()), dim=1)
    return dict(zip(modality_sizes, parts, strict=True))


class MaskTokens(InputAdapter):
    """Wraps a :class:`MultimodalAdapter`: the inputs of modality ``name`` are replaced by a
    learned mask token with probability ``mask_probs[name]``.

    Probability 1 replaces them always (the published multimodal autoencoder never sees the
    label it reconstructs); 0 never; in between, only in training mode (never random in eval
    mode).
    """

    def __init__(self, adapter: MultimodalAdapter, mask_probs: Mapping[str, float]):
        super().__init__()
        self.adapter = adapter
        self.mask_probs = dict(mask_probs)
        self.num_channels = adapter.num_channels
        self.tokens = nn.ParameterDict({
            name: nn.Parameter(torch.zeros(adapter.num_channels)) for name in sorted(mask_probs)})
        for token in self.tokens.values():
            nn.init.trunc_normal_(token, std=0.02, a=-0.04, b=0.04)

    def forward(self, x: Mapping[str, Tensor], mask=None) -> AdapterOutput:
        out = self.adapter(x, mask)
        parts = split_modalities(out.inputs, out.modality_sizes)
        for name, p in self.mask_probs.items():
            if p >= 1 or (self.training and p > 0):
                inputs = parts[name]
                drop = torch.rand(inputs.shape[:2], device=inputs.device) < p
                token = self.tokens[name].to(inputs.dtype)
                parts[name] = torch.where(drop[..., None], token, inputs)
        return AdapterOutput(inputs=torch.cat(list(parts.values()), dim=1), mask=out.mask,
                             modality_sizes=out.modality_sizes)


__all__ = ["MultimodalAdapter", "MaskTokens", "split_modalities"]
