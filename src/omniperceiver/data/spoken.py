"""Spoken digits synthesised offline with the ``espeak-ng`` program, and AV-MNIST-style pairs.

``espeak-ng`` is a small Debian/Ubuntu package (``apt-get install espeak-ng``); nothing is
downloaded at run time. Clips are rendered once into a cache folder and reused afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import MissingProgramError
from ..files import write_atomically
from ._common import (
    DatasetError,
    apply_transform,
    cache_root,
    check_positive_int,
    check_split,
    item_rng,
)
from .audio import fix_length, read_wav, resample
from .mnist import DIGIT_CLASSES, load_mnist_arrays, mnist_split_indices

__all__ = [
    "AudioVisualDigits",
    "DIGIT_WORDS",
    "EspeakNotFoundError",
    "SpokenDigits",
    "espeak_available",
    "espeak_missing_reason",
    "synthesis_settings",
]

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DEFAULT_VOICES = (
    "en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029",
    "en+f2", "en+f4", "en+m3", "en-us+f3", "en-us+m7",
)  # fmt: skip
DEFAULT_SPEEDS = (120, 145, 170, 195)  # words per minute
DEFAULT_PITCHES = (25, 45, 65, 85)  # espeak-ng pitch, 0..99
#: Fraction of each digit's (voice, speed, pitch) settings held out for the test split.
TEST_FRACTION = 0.2
_INSTALL_HINT = (
    "SpokenDigits needs the 'espeak-ng' speech synthesiser, which was not found on PATH. "
    "Install it with `apt-get install espeak-ng` (Debian/Ubuntu) or your system's package "
    "manager, or set the ESPEAK_NG environment variable to the program's path."
)


class EspeakNotFoundError(MissingProgramError):
    """``espeak-ng`` is not installed (the message says how to install it)."""


def _espeak_program() -> str | None:
    env = os.environ.get("ESPEAK_NG")
    if env:
        return env if (os.path.isfile(env) and os.access(env, os.X_OK)) else None
    return shutil.which("espeak-ng")


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` program can be found (on PATH or via ``$ESPEAK_NG``)."""
    return _espeak_program() is not None


def espeak_missing_reason() -> str:
    """A user-facing explanation of why espeak-ng is needed and how to install it."""
    return _INSTALL_HINT


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "_", text)


def _clip_filename(word: str, voice: str, speed: int, pitch: int) -> str:
    return f"{word}__{_safe(voice)}__s{speed}__p{pitch}.wav"


def _synthesise(program: str, text: str, voice: str, speed: int, pitch: int, out: Path) -> None:
    """Render one clip to ``out``: espeak-ng writes a scratch file, which is then written to
    ``out`` atomically."""
    fd, tmp = tempfile.mkstemp(suffix=".wav", prefix=".tmp-", dir=out.parent)
    os.close(fd)
    try:
        cmd = [program, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", tmp, text]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if result.returncode != 0 or os.path.getsize(tmp) == 0:
            raise DatasetError(
                f"espeak-ng failed (exit code {result.returncode}) for voice {voice!r}, "
                f"speed {speed}, pitch {pitch}, text {text!r}: {result.stderr.strip()[:300]}"
            )
        wav = Path(tmp).read_bytes()
        write_atomically(out, lambda f: f.write(wav))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _trim_silence(x: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """Drop leading/trailing samples quieter than ``threshold`` times the peak."""
    peak = x.abs().max()
    if peak <= 0:
        return x
    loud = torch.nonzero(x.abs() > threshold * peak).flatten()
    return x[loud[0] : loud[-1] + 1]


def synthesis_settings(
    split: str,
    *,
    seed: int = 0,
    voices: Sequence[str] = DEFAULT_VOICES,
    speeds: Sequence[int] = DEFAULT_SPEEDS,
    pitches: Sequence[int] = DEFAULT_PITCHES,
    num_samples: int | None = None,
) -> list[tuple[int, str, int, int]]:
    """The ``(digit, voice, speed, pitch)`` clips of a :class:`SpokenDigits` split.

    For each digit the ``voices x speeds x pitches`` grid is shuffled with ``(seed, digit)``;
    the first ``round(TEST_FRACTION * len(grid))`` settings form ``"test"``, the rest
    ``"train"``. Clips are listed round-robin over the digits (balanced prefixes) and the first
    ``num_samples`` are returned (all by default).
    """
    check_split(split)
    grid = [(v, int(s), int(p)) for v in voices for s in speeds for p in pitches]
    num_test = max(1, round(TEST_FRACTION * len(grid))) if len(grid) > 1 else 0
    per_digit: list[list[tuple[str, int, int]]] = []
    for digit in range(10):
        order = item_rng(seed, digit).permutation(len(grid))
        if split == "train":
            order = order[num_test:]
        elif split == "test":
            order = order[:num_test]
        per_digit.append([grid[i] for i in order])
    per_class = len(per_digit[0])
    if per_class == 0:
        raise ValueError(
            f"the {split!r} split is empty with {len(grid)} synthesis setting(s) per digit; "
            "give more voices, speeds or pitches"
        )
    if num_samples is not None and num_samples > 10 * per_class:
        raise ValueError(
            f"num_samples={num_samples} exceeds the {10 * per_class} clips available in the "
            f"{split!r} split (10 digits x {per_class} settings)"
        )
    settings = [(d, *per_digit[d][k]) for k in range(per_class) for d in range(10)]
    return settings if num_samples is None else settings[:num_samples]


class SpokenDigits(Dataset):
    """The words "zero" .. "nine" spoken by the ``espeak-ng`` synthesiser (offline).

    Items are ``(x, label)`` with ``x`` a float32 waveform ``(clip_length,)`` in ``[-1, 1]``
    where ``clip_length = round(duration * sample_rate)`` (attribute :attr:`clip_length`), at
    :attr:`sample_rate` Hz, and ``label`` the digit (``0..9``).

    Each clip is one (voice, speed, pitch) setting from the grid ``voices x speeds x pitches``
    (default 10 x 4 x 4 = 160 settings per digit). For every digit the settings are shuffled
    with ``seed`` and a fixed 20% of them are held out as ``"test"`` (so test clips use
    settings not heard for that digit in training); ``"all"`` uses every setting. Clips are
    ordered round-robin over digits, so ``num_samples`` (the number of clips to use; default:
    all of the split, 1,280 train / 320 test with the default grid) keeps classes balanced.

    Clips are rendered by running ``espeak-ng -w <file>.wav`` (in parallel) into
    ``cache_dir`` (default ``$OMNIPERCEIVER_CACHE/spoken_digits`` or
    ``~/.cache/omniperceiver/spoken_digits``), one file per (word, voice, speed, pitch), and
    reused by later instances; when every needed clip is cached espeak-ng is not required.
    At load time clips are read with the WAV reader, trimmed of leading/trailing silence
    (``trim_silence``), linearly resampled to ``sample_rate`` and zero-padded/cropped to
    ``clip_length``. All clips are loaded into memory at construction.

    Raises :class:`EspeakNotFoundError` (a ``RuntimeError``) with install instructions when
    clips must be synthesised and ``espeak-ng`` is missing; see :func:`espeak_available`.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        num_samples: int | None = None,
        sample_rate: int = 16000,
        duration: float = 1.0,
        seed: int = 0,
        voices: Sequence[str] = DEFAULT_VOICES,
        speeds: Sequence[int] = DEFAULT_SPEEDS,
        pitches: Sequence[int] = DEFAULT_PITCHES,
        trim_silence: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        num_workers: int | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        self.split = check_split(split)
        check_positive_int("num_samples", num_samples, allow_none=True)
        check_positive_int("sample_rate", sample_rate)
        if not duration > 0:
            raise ValueError(f"duration must be positive (seconds), got {duration!r}")
        if not voices or not speeds or not pitches:
            raise ValueError("voices, speeds and pitches must each contain at least one value")
        for name, values, lo, hi in (("speeds", speeds, 80, 450), ("pitches", pitches, 0, 99)):
            bad = [v for v in values if not (isinstance(v, (int, np.integer)) and lo <= v <= hi)]
            if bad:
                raise ValueError(f"{name} must be integers in [{lo}, {hi}], got {bad}")
        self.sample_rate = int(sample_rate)
        self.duration = float(duration)
        self.clip_length = max(1, round(self.duration * self.sample_rate))
        self.seed = int(seed)
        self.voices = tuple(voices)
        self.speeds = tuple(int(s) for s in speeds)
        self.pitches = tuple(int(p) for p in pitches)
        self.trim_silence = bool(trim_silence)
        self.transform = transform
        self.classes = list(DIGIT_CLASSES)
        self.num_classes = 10
        self.words = list(DIGIT_WORDS)
        self.cache_dir = cache_root(cache_dir) / "spoken_digits"

        self.settings = synthesis_settings(
            split,
            seed=self.seed,
            voices=self.voices,
            speeds=self.speeds,
            pitches=self.pitches,
            num_samples=num_samples,
        )
        self.targets = torch.tensor([d for d, *_ in self.settings], dtype=torch.int64)
        paths = self._ensure_rendered(num_workers)
        self.waveforms = torch.stack([self._load_clip(p) for p in paths])

    # ----------------------------------------------------------------------------------------
    def _ensure_rendered(self, num_workers: int | None) -> list[Path]:
        paths = [
            self.cache_dir / _clip_filename(DIGIT_WORDS[d], v, s, p) for d, v, s, p in self.settings
        ]
        missing = [
            (st, path) for st, path in zip(self.settings, paths, strict=True) if not path.is_file()
        ]
        if missing:
            program = _espeak_program()
            if program is None:
                raise EspeakNotFoundError(_INSTALL_HINT)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            workers = num_workers or min(8, (os.cpu_count() or 1) * 2)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [
                    pool.submit(_synthesise, program, DIGIT_WORDS[d], v, s, p, path)
                    for (d, v, s, p), path in missing
                ]
                for fut in futures:
                    fut.result()
        return paths

    def _load_clip(self, path: Path) -> torch.Tensor:
        data, rate = read_wav(path)
        x = torch.from_numpy(data).mean(dim=1)
        if self.trim_silence:
            x = _trim_silence(x)
        x = resample(x, rate, self.sample_rate)
        return fix_length(x, self.clip_length).clamp_(-1.0, 1.0)

    # ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.settings)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return apply_transform(self.transform, self.waveforms[index]), int(self.targets[index])

    def describe(self, index: int) -> dict[str, Any]:
        """The synthesis setting of clip ``index``: digit, word, voice, speed and pitch."""
        d, v, s, p = self.settings[index]
        return {"digit": d, "word": DIGIT_WORDS[d], "voice": v, "speed": s, "pitch": p}

    def __repr__(self) -> str:
        return (
            f"SpokenDigits(split={self.split!r}, len={len(self)}, sample_rate={self.sample_rate}, "
            f"clip_length={self.clip_length})"
        )


class AudioVisualDigits(Dataset):
    """AV-MNIST-style pairs: an MNIST image and a spoken digit of the same class.

    Items are ``({"image": image, "audio": audio}, label)`` with ``image`` float32
    ``(28, 28, 1)`` (H, W, C) in ``[0, 1]`` from :class:`MNIST`'s fixed split and ``audio`` a
    float32 waveform ``(clip_length,)`` in ``[-1, 1]`` from :class:`SpokenDigits` of the same
    split (so test pairs combine test images with held-out synthesis settings).

    Length: ``num_samples`` if given (at most the split's MNIST size), else the number of MNIST
    images in the split (4,000 / 1,000 / 5,000). Item ``i`` pairs the split's image ``i`` with a
    clip of the same digit chosen by a generator seeded with ``(seed, i)``, so pairing is
    deterministic. ``num_clips`` limits the pool of spoken clips (default: the whole
    :class:`SpokenDigits` split); other keyword options are passed to :class:`SpokenDigits`.
    ``transform`` is applied to the whole dict. Attributes: ``sample_rate``, ``clip_length``.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        num_samples: int | None = None,
        num_clips: int | None = None,
        sample_rate: int = 16000,
        duration: float = 1.0,
        seed: int = 0,
        cache_dir: str | os.PathLike[str] | None = None,
        transform: Callable[[dict[str, torch.Tensor]], Any] | None = None,
        **spoken_kwargs: Any,
    ) -> None:
        self.split = check_split(split)
        check_positive_int("num_samples", num_samples, allow_none=True)
        check_positive_int("num_clips", num_clips, allow_none=True)
        if num_clips is not None and num_clips < 10:
            raise ValueError(f"num_clips must be >= 10 (one clip per digit), got {num_clips}")
        self.seed = int(seed)
        self.transform = transform
        self.classes = list(DIGIT_CLASSES)
        self.num_classes = 10
        images, labels = load_mnist_arrays()
        idx = mnist_split_indices(split)
        if num_samples is not None:
            if num_samples > len(idx):
                raise ValueError(
                    f"num_samples={num_samples} exceeds the {len(idx)} MNIST images of the "
                    f"{split!r} split"
                )
            idx = idx[:num_samples]
        self.images = torch.from_numpy(images[idx].astype(np.float32) / 255.0).unsqueeze(-1)
        self.targets = torch.from_numpy(labels[idx].copy())
        self.audio = SpokenDigits(
            split,
            num_samples=num_clips,
            sample_rate=sample_rate,
            duration=duration,
            seed=seed,
            cache_dir=cache_dir,
            **spoken_kwargs,
        )
        self.sample_rate = self.audio.sample_rate
        self.clip_length = self.audio.clip_length
        by_digit = [torch.nonzero(self.audio.targets == d).flatten() for d in range(10)]
        missing = [d for d in range(10) if len(by_digit[d]) == 0]
        if missing:
            raise ValueError(f"no spoken clips for digits {missing}; increase num_clips")
        choice = []
        for i, label in enumerate(self.targets.tolist()):
            pool = by_digit[label]
            choice.append(int(pool[item_rng(self.seed, 1, i).integers(len(pool))]))
        self.clip_index = torch.tensor(choice, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        sample = {
            "image": self.images[index],
            "audio": self.audio.waveforms[self.clip_index[index]],
        }
        return apply_transform(self.transform, sample), int(self.targets[index])

    def __repr__(self) -> str:
        return f"AudioVisualDigits(split={self.split!r}, len={len(self)})"
