"""Audio: raw waveform patches, or log-mel spectrogram frames, with 1D position features.

Both adapters take a waveform (batch, T) or (batch, T, C) and, for batches of clips of
different lengths, a mask (batch, T) of valid samples (True = sample, padding at the end).
Positions are those of the first patches / frames of a ``max_samples``-long clip, so a short
clip padded into a batch gives the same features, and the same model output, as the clip
alone. The spectrogram is computed in torch (``torch.stft`` and a mel filter bank built here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..position import PrefixPositions, build_position_encoding
from ..validation import mask_lengths
from .base import AdapterOutput
from .patches import Patches, StemAdapter

MEL_SCALES = ("htk", "slaney")

# Slaney's mel scale (Auditory Toolbox, librosa's default): linear below 1 kHz, log above.
_SLANEY_HZ_PER_MEL = 200.0 / 3
_SLANEY_LOG_HZ = 1000.0
_SLANEY_LOG_MEL = _SLANEY_LOG_HZ / _SLANEY_HZ_PER_MEL  # 15
_SLANEY_LOG_STEP = math.log(6.4) / 27


def hz_to_mel(freqs: Tensor, mel_scale: str = "htk") -> Tensor:
    """Frequencies in Hz -> mels: HTK ``2595 log10(1 + f / 700)``, or Slaney's scale."""
    if mel_scale == "htk":
        return 2595.0 * torch.log10(1.0 + freqs / 700.0)
    if mel_scale == "slaney":
        log_part = _SLANEY_LOG_MEL + torch.log(freqs.clamp(min=_SLANEY_LOG_HZ) / _SLANEY_LOG_HZ
                                               ) / _SLANEY_LOG_STEP
        return torch.where(freqs < _SLANEY_LOG_HZ, freqs / _SLANEY_HZ_PER_MEL, log_part)
    raise ValueError(f"mel_scale must be one of {MEL_SCALES}, got {mel_scale!r}")


def mel_to_hz(mels: Tensor, mel_scale: str = "htk") -> Tensor:
    """The inverse of :func:`hz_to_mel`."""
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    if mel_scale == "slaney":
        log_part = _SLANEY_LOG_HZ * torch.exp(_SLANEY_LOG_STEP * (mels - _SLANEY_LOG_MEL))
        return torch.where(mels < _SLANEY_LOG_MEL, mels * _SLANEY_HZ_PER_MEL, log_part)
    raise ValueError(f"mel_scale must be one of {MEL_SCALES}, got {mel_scale!r}")


def mel_filter_bank(
    *,
    num_freqs: int,
    num_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: str = "htk",
    norm: str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Triangular mel filters: (num_freqs, num_mels), for the ``num_freqs`` frequencies of a
    one-sided FFT (``n_fft // 2 + 1``, from 0 to ``sample_rate / 2``).

    The filter centres are ``num_mels`` points equally spaced in mels between ``f_min`` and
    ``f_max`` (default ``sample_rate / 2``); filter ``m`` rises linearly (in Hz) from centre
    ``m - 1`` to 1 at centre ``m`` and falls to 0 at centre ``m + 1``. ``norm="slaney"``
    scales each filter to unit area (``2 / bandwidth``), as librosa does by default.
    Matches torchaudio's ``melscale_fbanks`` / transformers' ``mel_filter_bank``.
    """
    if norm not in (None, "slaney"):
        raise ValueError(f"norm must be None or 'slaney', got {norm!r}")
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2 = {sample_rate / 2}, got "
                         f"f_min={f_min}, f_max={f_max}")
    freqs = torch.linspace(0, sample_rate / 2, num_freqs, dtype=torch.float64)
    edges = torch.tensor([f_min, f_max], dtype=torch.float64)
    mel_edges = hz_to_mel(edges, mel_scale)
    centres = mel_to_hz(torch.linspace(mel_edges[0], mel_edges[1], num_mels + 2,
                                       dtype=torch.float64), mel_scale)
    lower, centre, upper = centres[:-2], centres[1:-1], centres[2:]  # (num_mels,) each
    rising = (freqs[:, None] - lower) / (centre - lower)
    falling = (upper - freqs[:, None]) / (upper - centre)
    bank = torch.minimum(rising, falling).clamp(min=0)  # (num_freqs, num_mels)
    if norm == "slaney":
        bank = bank * (2.0 / (upper - lower))
    return bank.to(dtype)


class LogMelSpectrogram(nn.Module):
    """Stem: waveform (batch, T, C) -> log-mel frames (batch, 1 + T // hop_length,
    C * n_mels), ``log(mel power + log_eps)``.

    Frames are centred (frame ``i`` is centred on sample ``i * hop_length``; the clip is padded
    with ``n_fft // 2`` zeros at both ends) with a periodic Hann window of ``win_length``
    (default ``n_fft``) samples; the power spectrum goes through :func:`mel_filter_bank`. The
    mask (batch, T) must mark a prefix of valid samples: padded samples are zeroed and frame
    ``i`` of a clip of ``L`` valid samples is kept when ``i <= L // hop_length`` (the frames the
    clip alone would have).
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        n_fft: int = 400,
        hop_length: int = 160,
        win_length: int | None = None,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel_scale: str = "htk",
        mel_norm: str | None = None,
        log_eps: float = 1e-6,
    ):
        super().__init__()
        win_length = win_length or n_fft
        if not 0 < win_length <= n_fft or hop_length < 1:
            raise ValueError(f"need 0 < win_length <= n_fft and hop_length >= 1, got "
                             f"win_length={win_length}, n_fft={n_fft}, hop_length={hop_length}")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.log_eps = log_eps
        self.register_buffer("window", torch.hann_window(win_length, periodic=True,
                                                         dtype=torch.float64), persistent=False)
        self.register_buffer("filters", mel_filter_bank(
            num_freqs=n_fft // 2 + 1, num_mels=n_mels, sample_rate=sample_rate, f_min=f_min,
            f_max=f_max, mel_scale=mel_scale, norm=mel_norm), persistent=False)

    def out_channels(self, in_channels: int) -> int:
        return in_channels * self.n_mels

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        batch, num_samples, channels = x.shape
        if mask is not None:
            lengths = mask_lengths(mask, name="waveform mask")
            x = x.masked_fill(~mask[..., None], 0)
            frames = torch.arange(self.num_frames(num_samples), device=x.device)
            mask = (frames <= lengths[:, None] // self.hop_length) & (lengths[:, None] > 0)
        # The FFT runs in float32 at least (torch.stft has no half-precision CPU kernel).
        dtype = x.dtype if x.dtype == torch.float64 else torch.float32
        signals = x.movedim(-1, 1).reshape(batch * channels, num_samples).to(dtype)
        spec = torch.stft(signals, self.n_fft, hop_length=self.hop_length,
                          win_length=self.window.shape[0], window=self.window.to(dtype),
                          center=True, pad_mode="constant", return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # (batch * C, n_fft // 2 + 1, frames)
        mel = power.transpose(1, 2) @ self.filters.to(dtype)  # (batch * C, frames, n_mels)
        mel = mel.reshape(batch, channels, -1, self.n_mels).movedim(1, 2)
        return torch.log(mel + self.log_eps).flatten(2).to(x.dtype), mask

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
                f"hop_length={self.hop_length}, n_mels={self.n_mels}")


def _sequence_position(position, *, length: int, num_bands: int,
                       max_resolution: Sequence[float] | float | None, position_channels: int):
    """1D positions of the first inputs of a ``length``-long sequence (or None)."""
    if isinstance(max_resolution, (int, float)):
        max_resolution = (max_resolution,)
    position = build_position_encoding(position, grid_shape=(length,), num_bands=num_bands,
                                       max_resolution=max_resolution,
                                       num_channels=position_channels)
    return PrefixPositions(position, length) if position is not None else None


class _WaveformAdapter(StemAdapter):
    """Accepts (batch, T) as (batch, T, 1) and rejects clips longer than ``max_samples``."""

    max_samples: int

    def forward(self, x: Tensor, mask: Tensor | None = None) -> AdapterOutput:
        if isinstance(x, Tensor) and x.ndim == 2:
            x = x.unsqueeze(-1)
        if isinstance(x, Tensor) and x.ndim == 3 and x.shape[1] > self.max_samples:
            raise ValueError(f"the waveform has {x.shape[1]} samples, more than "
                             f"max_samples={self.max_samples}: shape {tuple(x.shape)}")
        return super().forward(x, mask)


class WaveformAdapter(_WaveformAdapter):
    """Raw audio (batch, T) or (batch, T, C) -> patches of ``samples_per_patch`` samples:
    (batch, ceil(T / samples_per_patch), samples_per_patch * C + position channels).

    The tail of a clip whose length is not a multiple of ``samples_per_patch`` is padded with
    zeros inside its last patch (the patch is kept). ``mask`` (batch, T) marks valid samples;
    a patch is kept if any of its samples is. 1D Fourier features (``num_bands`` bands,
    ``max_resolution`` defaulting to the patches in ``max_samples``; the multimodal Perceiver
    IO uses the samples) of the patch index, as a prefix of the positions of a
    ``max_samples``-long clip; ``position="learned"`` learns them instead.
    """

    def __init__(
        self,
        *,
        max_samples: int,
        samples_per_patch: int = 16,
        input_channels: int = 1,
        position: str | nn.Module | None = "fourier",
        num_bands: int = 64,
        max_resolution: float | Sequence[float] | None = None,
        position_channels: int = 256,
        project_channels: int | None = None,
        check_finite: bool = True,
    ):
        self.max_samples = max_samples
        self.samples_per_patch = samples_per_patch
        max_patches = -(-max_samples // samples_per_patch)
        super().__init__(
            input_channels=input_channels, input_axis=1,
            stem=Patches((samples_per_patch,), pad=True, axis_names=("samples",)),
            position=_sequence_position(position, length=max_patches, num_bands=num_bands,
                                        max_resolution=max_resolution,
                                        position_channels=position_channels),
            project_channels=project_channels, check_finite=check_finite)


class SpectrogramAdapter(_WaveformAdapter):
    """Audio (batch, T) or (batch, T, C) -> log-mel frames (batch, 1 + T // hop_length,
    C * n_mels + position channels), one input per frame.

    The spectrogram (:class:`LogMelSpectrogram`): ``n_fft`` (400 = 25 ms at 16 kHz),
    ``hop_length`` (160 = 10 ms), ``win_length``, ``n_mels`` (64), ``f_min``, ``f_max``,
    ``mel_scale`` (``"htk"``, default, or ``"slaney"``), ``mel_norm`` (None or ``"slaney"``),
    ``log_eps``. 1D Fourier features of the frame index over the frames of a
    ``max_samples``-long clip (``num_bands`` bands, ``max_resolution`` defaulting to that
    number of frames); ``position="learned"`` learns them.
    ``mask`` (batch, T) marks a prefix of valid samples; padded frames are masked out.
    """

    def __init__(
        self,
        *,
        max_samples: int,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        win_length: int | None = None,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel_scale: str = "htk",
        mel_norm: str | None = None,
        log_eps: float = 1e-6,
        input_channels: int = 1,
        position: str | nn.Module | None = "fourier",
        num_bands: int = 64,
        max_resolution: float | Sequence[float] | None = None,
        position_channels: int = 256,
        project_channels: int | None = None,
        check_finite: bool = True,
    ):
        stem = LogMelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                                 win_length=win_length, n_mels=n_mels, f_min=f_min, f_max=f_max,
                                 mel_scale=mel_scale, mel_norm=mel_norm, log_eps=log_eps)
        self.max_samples = max_samples
        super().__init__(
            input_channels=input_channels, input_axis=1, stem=stem,
            position=_sequence_position(position, length=stem.num_frames(max_samples),
                                        num_bands=num_bands, max_resolution=max_resolution,
                                        position_channels=position_channels),
            project_channels=project_channels, check_finite=check_finite)


__all__ = ["WaveformAdapter", "SpectrogramAdapter", "LogMelSpectrogram", "mel_filter_bank",
           "hz_to_mel", "mel_to_hz", "MEL_SCALES"]
