"""The decoder and output-adapter interfaces.

A model is ``output_adapter(decoder(encoder(input_adapter(x))))`` and runs the same
``forward`` for every task (:class:`~omniperceiver.model.PerceiverModel`); tasks differ in
where their output queries come from and in how the outputs are shaped:

* :meth:`Decoder.decoder_query` builds the output queries (batch, num_outputs,
  query_channels) from the input adapter's output (after DeepMind's ``decoder_query``):
  learned or Fourier queries of an output grid, the encoder inputs themselves (optical flow),
  one learned query per input token (masked language modelling), per-modality queries
  (multimodal autoencoding); None when the caller supplies them;
* ``Decoder.forward(latents, queries=None, *, adapted=None, subsample=None)`` lets the queries
  (built by ``decoder_query`` when not given) cross-attend to the latents;
* ``OutputAdapter.forward(outputs, adapted)`` maps the decoder's outputs to what the task
  needs (logits, a grid, a dict per modality).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from ..adapters.base import AdapterOutput


class Decoder(nn.Module, ABC):
    """Output queries cross-attend to latents (batch, num_latents, latent_dim)."""

    output_channels: int

    @abstractmethod
    def decoder_query(self, latents: Tensor, adapted: AdapterOutput | None = None, *,
                      subsample=None) -> Tensor | None:
        """The output queries (batch, num_outputs, query_channels), or None when the caller
        must pass them. ``latents`` gives the batch size, device and dtype; ``subsample``
        selects the outputs to decode (for training on part of a large output)."""

    @abstractmethod
    def forward(self, latents: Tensor, queries: Tensor | None = None, *,
                adapted: AdapterOutput | None = None, subsample=None):
        """The decoder outputs, (batch, num_outputs, output_channels) (a dict of them for
        multimodal decoders)."""


class OutputAdapter(nn.Module, ABC):
    """The decoder's outputs -> the task's output."""

    @abstractmethod
    def forward(self, outputs, adapted: AdapterOutput | None = None):
        """``adapted`` is the input adapter's output (grid shape, token embedding, ...)."""


__all__ = ["Decoder", "OutputAdapter"]
