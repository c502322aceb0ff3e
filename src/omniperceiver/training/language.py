"""Byte-level language modelling: a corpus of text files, its windows, the data module and the
LightningModule (next-token prediction, loss and bits per byte).

The corpus by default is CPython's own standard library, the ``.py`` files under
``sysconfig.get_paths()["stdlib"]`` (without site-packages and test folders): real text that
every Python installation has, so nothing is downloaded. Each file goes to one split by a hash
of its path relative to the root, so no file is in two splits and the split does not depend
on which other files exist::

    files -> train / validation / test by sha256(relative path)
          -> each split's files concatenated (in hash order) -> one byte stream per split
          -> windows of context + 1 bytes: inputs ids[:-1], targets ids[1:]
             (training: random offsets; evaluation: fixed offsets spread over the split)

A byte ``b`` is token ``b + ByteTokenizer.NUM_SPECIAL``, as :class:`ByteTokenizer` encodes it.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from ..adapters.text import ByteTokenizer
from ..data import DatasetError
from ..errors import ConfigError, NonFiniteLossError
from ..registry import create_model
from ..validation import check_options
from .module import TrainingModule
from .resumable import ResumableData

SPLITS = ("train", "val", "test")
#: Folders left out of a corpus: installed packages, test suites and caches.
EXCLUDED_FOLDERS = ("site-packages", "dist-packages", "test", "tests", "idle_test",
                    "__pycache__")


def stdlib_root() -> Path:
    """The folder of this Python's standard library sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def file_split(relative_path: str, fractions: tuple[float, float]) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a file, from the sha256 of its relative path
    (``/``-separated): a fraction ``fractions[0]`` of files goes to validation and
    ``fractions[1]`` to test."""
    u = int(hashlib.sha256(relative_path.encode()).hexdigest()[:12], 16) / 16 ** 12
    val, test = fractions
    return "val" if u < val else "test" if u < val + test else "train"


@dataclass
class ByteCorpus:
    """The bytes of a folder's text files, split into train / validation / test by file.

    ``root`` (None: the standard library); files whose name ends with one of ``suffixes``,
    outside folders named in ``exclude``; ``fractions`` of files for validation and test;
    ``max_bytes``: the most bytes read per split (files in hash order, the last one cut).
    """

    root: Path | None = None
    suffixes: tuple[str, ...] = (".py",)
    exclude: tuple[str, ...] = EXCLUDED_FOLDERS
    fractions: tuple[float, float] = (0.05, 0.05)
    max_bytes: int | None = None
    splits: dict[str, np.ndarray] = field(init=False, repr=False)  # uint8 per split
    files: dict[str, int] = field(init=False)  # files read per split

    def __post_init__(self):
        root = stdlib_root() if self.root is None else Path(self.root).expanduser()
        if not root.is_dir():
            raise DatasetError(f"text corpus root {root} does not exist or is not a folder")
        self.root = root
        chosen: dict[str, list[tuple[str, Path]]] = {split: [] for split in SPLITS}
        for folder, subfolders, names in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if d not in self.exclude)
            for name in names:
                if name.endswith(tuple(self.suffixes)):
                    path = Path(folder, name)
                    relative = path.relative_to(root).as_posix()
                    chosen[file_split(relative, tuple(self.fractions))].append((relative, path))
        self.splits, self.files = {}, {}
        for split, paths in chosen.items():
            paths.sort(key=lambda item: hashlib.sha256(item[0].encode()).hexdigest())
            parts, size = [], 0
            for _, path in paths:
                if self.max_bytes is not None and size >= self.max_bytes:
                    break
                data = path.read_bytes()
                if self.max_bytes is not None:
                    data = data[:self.max_bytes - size]
                parts.append(data)
                size += len(data)
            self.splits[split] = np.frombuffer(b"".join(parts), dtype=np.uint8)
            self.files[split] = len(parts)
        if not self.files["train"]:
            raise DatasetError(f"no {'/'.join(self.suffixes)} files in {root} (outside "
                               f"{', '.join(self.exclude)})")

    def tokens(self, split: str) -> Tensor:
        """The split's bytes as token ids (num_bytes,) long."""
        return torch.from_numpy(self.splits[split].astype(np.int64)) + ByteTokenizer.NUM_SPECIAL

    @property
    def description(self) -> dict[str, Any]:
        is_stdlib = self.root == stdlib_root()
        return {"corpus": "the Python standard library" if is_stdlib else str(self.root),
                "root": str(self.root), "python": sys.version.split()[0],
                "suffixes": list(self.suffixes), "excluded_folders": list(self.exclude),
                "split_by": "sha256 of the relative path", "max_bytes": self.max_bytes,
                **{split: {"files": self.files[split], "bytes": len(self.splits[split])}
                   for split in SPLITS}}


class ByteWindows(Dataset):
    """Windows of ``context + 1`` tokens of one split -> ``(ids, targets)``, each (context,):
    the window without its last token, and without its first.

    ``random``: window ``i`` starts at an offset drawn from ``(seed, i)`` (training); else the
    ``count`` windows start at offsets spread evenly over the split (evaluation).
    """

    def __init__(self, tokens: Tensor, context: int, count: int, *, random: bool,
                 seed: int = 0):
        self.tokens, self.context, self.random, self.seed = tokens, context, random, seed
        self.last_start = len(tokens) - context - 1
        if self.last_start < 0:
            raise DatasetError(f"a split of {len(tokens)} bytes is shorter than one window of "
                               f"context + 1 = {context + 1} bytes")
        self.count = count

    def __len__(self) -> int:
        return self.count

    def start(self, index: int) -> int:
        if self.random:
            return int(np.random.default_rng([self.seed, index]).integers(self.last_start + 1))
        return self.last_start * index // max(1, self.count - 1)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        window = self.tokens[self.start(index):][:self.context + 1]
        return window[:-1], window[1:]


class TextBytesData(ResumableData):
    """Byte-level language modelling on a folder of text files (default: the Python standard
    library's sources), split by file; see the module docstring.

    Args:
        context: Bytes per window (the model's N).
        root: The folder of text files (default: the standard library).
        suffixes: File name endings read (default ``.py``).
        max_bytes: The most bytes read per split (default: all).
        val_fraction: The fraction of files held out for validation.
        test_fraction: The fraction of files held out for testing.
        train_windows: Training windows per epoch (default: the training bytes / context).
        eval_windows: Windows per evaluation split (default: as many as fit side by side,
            at most 256).
        batch_size: Windows per training batch.
        eval_batch_size: Windows per evaluation batch (default: ``batch_size``).
        num_workers: Loader worker processes.
        seed: Seeds the training windows and their order (default: the run's seed).
    """

    def __init__(self, *, context: int = 1024, root: str | None = None,
                 suffixes: list[str] | None = None, max_bytes: int | None = None,
                 val_fraction: float = 0.05, test_fraction: float = 0.05,
                 train_windows: int | None = None, eval_windows: int | None = None,
                 batch_size: int = 16, eval_batch_size: int | None = None,
                 num_workers: int = 0, seed: int | None = None):
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size,
                         num_workers=num_workers, seed=seed)
        check_options(dict(context=context, batch_size=batch_size,
                           eval_batch_size=eval_batch_size, max_bytes=max_bytes,
                           train_windows=train_windows, eval_windows=eval_windows),
                      where=f"{type(self).__name__} options")
        if not (0 < val_fraction and 0 < test_fraction and val_fraction + test_fraction < 1):
            raise ConfigError(f"val_fraction and test_fraction must be > 0 with a sum < 1, got "
                              f"{val_fraction} and {test_fraction}")
        self.context = context
        self.corpus = ByteCorpus(None if root is None else Path(root),
                                 tuple(suffixes or (".py",)), max_bytes=max_bytes,
                                 fractions=(val_fraction, test_fraction))
        self.train_windows = train_windows
        self.eval_windows = eval_windows
        self._datasets: dict[str, ByteWindows] = {}
        self.description = {**self.corpus.description, "context": context}

    def dataset(self, split: str) -> ByteWindows:
        """The ``"train"``, ``"val"`` or ``"test"`` windows."""
        if split not in self._datasets:
            tokens = self.corpus.tokens(split)
            if len(tokens) <= self.context:
                raise DatasetError(
                    f"the {split} split of {self.corpus.root} has {len(tokens)} bytes "
                    f"({self.corpus.files[split]} files), fewer than one window of context + 1 "
                    f"= {self.context + 1} bytes: use a larger folder, a larger max_bytes or a "
                    "shorter context")
            if split == "train":
                count = self.train_windows or max(1, len(tokens) // self.context)
                windows = ByteWindows(tokens, self.context, count, random=True, seed=self.seed)
            else:
                fit = max(1, len(tokens) // (self.context + 1))
                count = min(fit, self.eval_windows or 256)
                windows = ByteWindows(tokens, self.context, count, random=False)
            self._datasets[split] = windows
        return self._datasets[split]


def bits_per_byte(loss: Tensor | float) -> Tensor | float:
    """A cross-entropy in nats per byte -> bits per byte."""
    return loss / math.log(2)


class LanguageModelModule(TrainingModule):
    """Next-token prediction with a causal language-model preset (``perceiver-ar-*``): the
    model maps ids (batch, N) to the logits of the tokens after its last M positions (batch,
    M, vocab_size), and the loss is their cross-entropy with the targets. Logs ``*_loss``
    (nats per byte), ``*_bits_per_byte`` (loss / ln 2) and ``*_accuracy`` (of the most likely
    next byte).

    Args:
        model: A causal language-model preset (``omniperceiver list-models``).
        model_args: Overrides of the preset's keywords (e.g. ``{max_context: 2048}``).
        optimizer, lr, weight_decay, betas, schedule, warmup, min_lr_ratio, step_milestones,
            step_gamma, compile: As in :class:`~omniperceiver.training.ClassificationModule`.
    """

    def __init__(
        self,
        model: str = "perceiver-ar-bytes-small",
        model_args: dict[str, Any] | None = None,
        optimizer: Literal["adamw", "lamb"] = "adamw",
        lr: float = 2e-3,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        schedule: Literal["cosine", "step", "constant"] = "cosine",
        warmup: float = 0.05,
        min_lr_ratio: float = 0.0,
        step_milestones: list[float] | None = None,
        step_gamma: float = 0.1,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.model = self._build_model()

    def create_model(self):
        h = self.hparams
        return create_model(h.model, **(h.model_args or {}))

    def export_extra(self) -> dict[str, Any]:
        return {"task": "language-modelling"}

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        context = getattr(datamodule, "context", None)
        max_context = getattr(self.model, "max_context", None)
        if context is not None and max_context is not None and context > max_context:
            raise ConfigError(f"the data's context ({context}) is longer than the model's "
                              f"max_context ({max_context}): set --model.model_args "
                              f"'{{max_context: {context}}}' or a shorter "
                              "--data.init_args.context")

    def forward(self, ids: Tensor) -> Tensor:
        return self.model(ids)

    def _step(self, batch: tuple[Tensor, Tensor], split: str) -> Tensor:
        ids, targets = batch
        logits = self.model(ids)  # (batch, M, vocab_size): the tokens after the last M
        targets = targets[:, -logits.shape[1]:]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        if split == "train" and not torch.isfinite(loss):
            raise NonFiniteLossError(self._non_finite_message(loss, ids))
        accuracy = (logits.detach().argmax(-1) == targets).float().mean()
        size = targets.numel()
        train = split == "train"
        self.log(f"{split}_loss", loss, prog_bar=True, on_step=train, on_epoch=True,
                 sync_dist=not train, batch_size=size)
        self.log(f"{split}_bits_per_byte", bits_per_byte(loss.detach()), prog_bar=not train,
                 on_step=False, on_epoch=True, sync_dist=not train, batch_size=size)
        self.log(f"{split}_accuracy", accuracy, on_step=False, on_epoch=True,
                 sync_dist=not train, batch_size=size)
        if train:
            self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True,
                     on_epoch=False, batch_size=size)
        return loss

    def training_step(self, batch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")


__all__ = ["ByteCorpus", "ByteWindows", "TextBytesData", "LanguageModelModule",
           "bits_per_byte", "file_split", "stdlib_root"]
