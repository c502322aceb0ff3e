"""Training: Lightning modules for classification and byte-level language modelling, data
modules, callbacks, plots and the ``omniperceiver`` command line (fit / validate / test /
predict).

Needs the ``train`` extra (``pip install "omniperceiver[train]"``). Lightning is imported only
when one of the names below is used; the models the configs build by name are registered by
``import omniperceiver`` (:mod:`omniperceiver.models.classifiers`).
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError, NonFiniteLossError

_LAZY = {
    "TrainingModule": "module",
    "ClassificationModule": "module",
    "LanguageModelModule": "language",
    "TextBytesData": "language",
    "ResumableData": "resumable",
    "ClassificationData": "data",
    "MNISTData": "data",
    "DigitsData": "data",
    "ImageFolderData": "data",
    "PointCloudData": "data",
    "ModelNetData": "data",
    "SpokenDigitsData": "data",
    "MovingDigitsData": "data",
    "AVDigitsData": "data",
    "AtomicCheckpointIO": "checkpoint",
    "RunReport": "callbacks",
}

__all__ = ["ConfigError", "NonFiniteLossError", *sorted(_LAZY)]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
