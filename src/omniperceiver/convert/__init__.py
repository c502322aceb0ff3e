"""Bring your checkpoints: convert other libraries' Perceivers into our models.

* :func:`from_transformers` — Hugging Face transformers ``Perceiver*`` models;
* :func:`from_lucidrains` — perceiver-pytorch ``Perceiver`` / ``PerceiverIO`` and
  perceiver-ar-pytorch ``PerceiverAR`` (-> :class:`~omniperceiver.PerceiverAR`);
* :func:`from_deepmind` — DeepMind's Haiku parameter pickles (read only with
  ``trust_pickle=True``; see :func:`load_deepmind_params`);
* :func:`from_idefics_resampler`, :func:`from_idefics2_resampler` — transformers' IDEFICS and
  Idefics2 Perceiver Resamplers (-> :class:`~omniperceiver.PerceiverResampler`);
* :func:`from_flamingo_resampler` — flamingo-pytorch's and open_flamingo's Perceiver
  Resamplers (-> :class:`~omniperceiver.PerceiverResampler`).

Each returns our model in eval mode, built from a registered preset (so it can be saved with
:func:`omniperceiver.save_pretrained` and rebuilt with :func:`omniperceiver.from_pretrained`).
The command line is ``omniperceiver convert --from {transformers,lucidrains,deepmind} SRC OUT``.
Nothing here imports transformers, perceiver-pytorch or the other libraries converted from.
"""

from __future__ import annotations

from .deepmind import from_deepmind, load_deepmind_params
from .flamingo import from_flamingo_resampler
from .idefics import from_idefics2_resampler, from_idefics_resampler
from .lucidrains import from_lucidrains
from .transformers import from_transformers

__all__ = ["from_transformers", "from_lucidrains", "from_deepmind", "load_deepmind_params",
           "from_idefics_resampler", "from_idefics2_resampler", "from_flamingo_resampler"]
