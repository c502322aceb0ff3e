"""Training: a Lightning module for classification, data modules, callbacks, plots and the
``omniperceiver`` command line (fit / validate / test / predict).

Needs the ``train`` extra (``pip install "omniperceiver[train]"``). Importing this package
registers the task presets (:mod:`omniperceiver.training.presets`, torch only); Lightning is
imported only when one of the names below is used.
"""

from __future__ import annotations

import importlib

from . import presets  # noqa: F401  (registers the task presets)

_LAZY = {
    "ClassificationModule": "module",
    "NonFiniteLossError": "module",
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
    "ConfigError": "errors",
    "RunReport": "callbacks",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
