"""WAV reading (stdlib :mod:`wave`), resampling and length fixing for waveforms."""

from __future__ import annotations

import os
import wave

import numpy as np
import torch
import torch.nn.functional as F

from ._common import DatasetError

__all__ = ["fix_length", "read_wav", "read_wav_info", "resample", "pcm_to_float", "PCM_SCALES"]

#: Integer PCM sample types, as in WAV files, by NumPy type code: (offset, scale) mapping them
#: to [-1, 1). 8-bit samples are unsigned around 128.
PCM_SCALES = {"u1": (128.0, 128.0), "i2": (0.0, 32768.0), "i4": (0.0, float(1 << 31))}


def read_wav_info(path: str | os.PathLike[str]) -> tuple[int, int, int, int]:
    """Header of a PCM WAV file: ``(sample_rate, num_channels, sample_width_bytes, num_frames)``.

    Raises :class:`DatasetError` naming the file if it is not a readable PCM WAV.
    """
    try:
        with wave.open(os.fspath(path), "rb") as f:
            params = f.getparams()
    except (wave.Error, EOFError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable PCM WAV file ({exc})") from exc
    if params.sampwidth not in (1, 2, 3, 4):
        raise DatasetError(
            f"{path}: unsupported sample width {params.sampwidth} bytes "
            "(expected 1, 2, 3 or 4: 8/16/24/32-bit PCM)"
        )
    return params.framerate, params.nchannels, params.sampwidth, params.nframes


def pcm_to_float(samples: np.ndarray) -> np.ndarray:
    """Integer PCM samples (uint8, int16 or int32; see :data:`PCM_SCALES`) -> float32 in
    [-1, 1)."""
    offset, scale = PCM_SCALES[samples.dtype.str[1:]]
    return ((samples.astype(np.float64) - offset) / scale).astype(np.float32)


def _pcm_to_float(raw: bytes, sampwidth: int, nchannels: int) -> np.ndarray:
    if sampwidth == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        data = ints.astype(np.float32) / float(1 << 23)
    else:
        data = pcm_to_float(np.frombuffer(raw, dtype={1: "u1", 2: "<i2", 4: "<i4"}[sampwidth]))
    return data.reshape(-1, nchannels)


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read an uncompressed PCM WAV (8/16/24/32-bit, any number of channels).

    Returns ``(samples, sample_rate)`` with ``samples`` float32 of shape
    ``(num_frames, num_channels)`` in ``[-1, 1]``. Raises :class:`DatasetError` naming the file
    when it is not a readable PCM WAV (e.g. truncated, compressed, IEEE-float or
    WAVE_FORMAT_EXTENSIBLE files on Python < 3.12).
    """
    try:
        with wave.open(os.fspath(path), "rb") as f:
            params = f.getparams()
            if params.sampwidth not in (1, 2, 3, 4):
                raise DatasetError(
                    f"{path}: unsupported sample width {params.sampwidth} bytes "
                    "(expected 1, 2, 3 or 4: 8/16/24/32-bit PCM)"
                )
            raw = f.readframes(params.nframes)
    except DatasetError:
        raise
    except (wave.Error, EOFError, OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable PCM WAV file ({exc})") from exc
    frame_bytes = params.sampwidth * params.nchannels
    if params.nchannels < 1 or len(raw) % frame_bytes:
        raise DatasetError(f"{path}: corrupt WAV data ({len(raw)} bytes of sample data)")
    if len(raw) < params.nframes * frame_bytes:
        raise DatasetError(
            f"{path}: truncated WAV file: header promises {params.nframes} frames, "
            f"found {len(raw) // frame_bytes}"
        )
    if params.nframes == 0:
        raise DatasetError(f"{path}: WAV file contains no audio frames")
    return _pcm_to_float(raw, params.sampwidth, params.nchannels), params.framerate


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Linear-interpolation resampling along the first axis.

    ``waveform`` is ``(num_samples,)`` or ``(num_samples, C)``; the result has
    ``round(num_samples * new_rate / orig_rate)`` samples. No anti-aliasing filter is applied,
    so strong downsampling can alias (fine for speech-like data and small models).
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return waveform
    squeeze = waveform.ndim == 1
    x = waveform.unsqueeze(-1) if squeeze else waveform
    n_out = max(1, round(x.shape[0] * new_rate / orig_rate))
    y = F.interpolate(x.T.unsqueeze(0).float(), size=n_out, mode="linear", align_corners=False)
    y = y[0].T.contiguous()
    return y[:, 0] if squeeze else y


def fix_length(waveform: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Zero-pad at the end or crop the end so the first axis has exactly ``num_samples``."""
    n = waveform.shape[0]
    if n == num_samples:
        return waveform
    if n > num_samples:
        return waveform[:num_samples].contiguous()
    pad = waveform.new_zeros((num_samples - n, *waveform.shape[1:]))
    return torch.cat([waveform, pad], dim=0)
