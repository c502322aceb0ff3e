"""Shared helpers for the datasets: errors, split handling, seeding and cache folders."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import DatasetError

__all__ = [
    "DatasetError",
    "OnError",
    "Split",
    "cache_root",
    "check_on_error",
    "check_split",
    "item_rng",
    "stratified_split",
]

Split = Literal["train", "test", "all"]
OnError = Literal["raise", "skip"]

#: Environment variable that overrides the root cache folder (default ``~/.cache/omniperceiver``).
CACHE_ENV_VAR = "OMNIPERCEIVER_CACHE"


def check_split(split: str, allowed: Sequence[str] = ("train", "test", "all")) -> str:
    if split not in allowed:
        raise ValueError(f"split must be one of {list(allowed)}, got {split!r}")
    return split


def check_on_error(on_error: str) -> str:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    return on_error


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def item_rng(*keys: int) -> np.random.Generator:
    """A NumPy generator seeded from a tuple of non-negative ints (e.g. ``(seed, split, index)``).

    The stream depends only on the keys, so item ``i`` of a generated dataset is identical
    across processes, instances and access orders.
    """
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def stratified_split(labels: np.ndarray, num_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified train/test split of ``labels``.

    Each class contributes test items in proportion to its size (largest-remainder rounding so
    that exactly ``num_test`` items are held out). Both index arrays are returned in a seeded
    shuffled order (so the first ``k`` items of a split are roughly class-balanced).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 <= num_test <= n:
        raise ValueError(f"num_test must be in [0, {n}], got {num_test}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * num_test / n
    per_class = np.floor(exact).astype(int)
    remainder = num_test - per_class.sum()
    # Give the left-over test slots to the classes with the largest fractional parts
    # (ties broken by class order, which is deterministic).
    order = np.argsort(-(exact - per_class), kind="stable")
    per_class[order[:remainder]] += 1
    train_idx, test_idx = [], []
    for cls, k in zip(classes, per_class, strict=True):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    train = np.concatenate(train_idx)
    test = np.concatenate(test_idx)
    return train[rng.permutation(len(train))], test[rng.permutation(len(test))]


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir`` if given, else ``$OMNIPERCEIVER_CACHE``, else
    ``$XDG_CACHE_HOME/omniperceiver`` (``~/.cache/omniperceiver``)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "omniperceiver"


def handle_bad_file(on_error: str, path: Path | str, exc: BaseException) -> None:
    """Raise a :class:`DatasetError` naming ``path`` or, with ``on_error="skip"``, warn."""
    message = str(exc)
    if str(path) not in message:
        message = f"{path}: {message}"
    if on_error == "skip":
        warnings.warn(f"skipping unreadable file {message}", stacklevel=3)
        return
    if isinstance(exc, DatasetError) and message == str(exc):
        raise exc
    raise DatasetError(message) from exc


def apply_transform(transform: Callable[[Any], Any] | None, x: Any) -> Any:
    return x if transform is None else transform(x)
