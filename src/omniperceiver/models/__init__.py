"""Every registered model, one module per family; importing this package registers them all.

==================  =========================================================================
module              presets
==================  =========================================================================
vision              perceiver-imagenet, vision-perceiver-fourier, -learned, -conv
language            language-perceiver
flow                optical-flow-perceiver
multimodal          multimodal-perceiver
perceiver_pytorch   perceiver-seed, perceiver-pytorch, perceiver-pytorch-io
resampler           perceiver-resampler (Flamingo's Perceiver Resampler)
perceiver_ar        perceiver-ar, perceiver-ar-bytes-small, perceiver-ar-imagenet64 (Perceiver AR)
classifiers         image-, mnist-, pointcloud-, audio-, video-, av-perceiver (the training
                    configs' task classifiers)
==================  =========================================================================

A preset is a factory of keyword arguments (its overrides) registered with
:func:`omniperceiver.register_model`; :func:`omniperceiver.create_model` builds one by name.
Published families take the same three overrides beside their own: ``activation``,
``encoder`` and ``decoder`` (dicts merged over the published configuration, see
:mod:`omniperceiver.config`). The modules import only torch and the model package.
"""

from . import (
    classifiers,
    flow,
    language,
    multimodal,
    perceiver_ar,
    perceiver_pytorch,
    resampler,
    vision,
)
from .classifiers import perceiver_classifier

__all__ = ["classifiers", "flow", "language", "multimodal", "perceiver_ar", "perceiver_pytorch",
           "resampler", "vision", "perceiver_classifier"]
