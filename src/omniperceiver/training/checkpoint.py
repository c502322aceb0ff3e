"""Checkpoint files: atomic writes (:func:`omniperceiver.files.write_atomically`), loading
without unpickling code, and the model arguments a checkpoint holds, in this release's names
(:func:`checkpoint_model_args`).

Lightning's default writer streams the checkpoint into its final path (through a temporary file
in the system temp folder, then a copy), so a run killed during a save can leave a truncated
``last.ckpt`` behind. :class:`AtomicCheckpointIO` writes the whole file next to its destination,
flushes it to disk, then renames it over the destination: the old checkpoint stays complete
until the new one is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from ..files import write_atomically
from ..renames import upgrade_model_args


def load_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu", *,
                         mmap: bool = False) -> dict:
    """``torch.load(path, weights_only=True)``: tensors and plain Python values only
    (``mmap``: the tensors stay in the file until they are read)."""
    return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)


#: The checkpoint entry naming the release that wrote it (checkpoints of releases before 0.4.0
#: have none).
VERSION_KEY = "omniperceiver"


def checkpoint_release(checkpoint: dict[str, Any]) -> str:
    """The release that wrote a Lightning checkpoint (one without the entry: 0.3.0 or
    earlier, whose keywords are 0.3.0's)."""
    return checkpoint.get(VERSION_KEY, "0.3.0")


def checkpoint_model_args(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The ``model_args`` of a Lightning checkpoint's hyper-parameters, in this release's
    keywords (:func:`omniperceiver.renames.upgrade_model_args`)."""
    hparams = checkpoint.get("hyper_parameters", {})
    return upgrade_model_args(hparams.get("model") or "", hparams.get("model_args") or {},
                              checkpoint_release(checkpoint))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O with atomic saves and ``weights_only=True`` loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, "
                            f"got {storage_options!r}")
        write_atomically(path, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None
                        ) -> dict[str, Any]:
        if not Path(path).is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        if map_location is None:
            map_location = lambda storage, loc: storage  # noqa: E731  (keep on CPU)
        return load_checkpoint_file(path, map_location)


__all__ = ["AtomicCheckpointIO", "load_checkpoint_file", "checkpoint_model_args",
           "checkpoint_release", "VERSION_KEY"]
