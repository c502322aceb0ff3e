"""Fourier features against the papers' definitions and perceiver-pytorch's implementation."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from omniperceiver.position import (
    FourierPositionEncoding,
    LearnedPositionEncoding,
    fourier_features,
    grid_positions,
)


def deepmind_reference(shape, num_bands, max_resolution):
    """DeepMind's definition, written independently in numpy (ANCHORS.md)."""
    axes = [np.linspace(-1.0, 1.0, n) for n in shape]
    pos = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(shape))
    freqs = np.stack([np.linspace(1.0, r / 2.0, num_bands) for r in max_resolution])
    per_pos = (pos[:, :, None] * freqs[None]).reshape(len(pos), -1)
    return np.concatenate([pos, np.sin(np.pi * per_pos), np.cos(np.pi * per_pos)], axis=-1)


@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
       num_bands=st.integers(1, 8), res=st.floats(2.0, 300.0))
def test_deepmind_layout_matches_definition(shape, num_bands, res):
    max_res = [res * (i + 1) for i in range(len(shape))]
    enc = FourierPositionEncoding(num_axes=len(shape), num_bands=num_bands, max_resolution=max_res)
    got = enc.grid(shape, dtype=torch.float64).numpy()
    want = deepmind_reference(shape, num_bands, max_res)
    assert got.shape == (math.prod(shape), len(shape) * (2 * num_bands + 1)) == want.shape
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert enc.num_channels == got.shape[1]


def test_imagenet_channel_count():
    enc = FourierPositionEncoding(num_axes=2, num_bands=64, max_resolution=224)
    assert enc.num_channels == 258
    assert enc.grid((224, 224)).shape == (224 * 224, 258)


@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=3), num_bands=st.integers(1, 6),
       max_freq=st.floats(1.0, 20.0))
def test_lucidrains_layout_matches_perceiver_pytorch(shape, num_bands, max_freq):
    from einops import rearrange
    from perceiver_pytorch.perceiver_pytorch import fourier_encode

    axes = [torch.linspace(-1.0, 1.0, n, dtype=torch.float64) for n in shape]
    pos = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    want = rearrange(fourier_encode(pos, max_freq, num_bands), "... n d -> (...) (n d)")
    enc = FourierPositionEncoding(num_axes=len(shape), num_bands=num_bands,
                                  max_resolution=max_freq, layout="lucidrains")
    torch.testing.assert_close(enc.grid(shape, dtype=torch.float64), want, atol=1e-10, rtol=0)


@pytest.mark.parametrize("sine_only", [False, True])
@pytest.mark.parametrize("concat_pos", [False, True])
def test_options_change_channels(sine_only, concat_pos):
    enc = FourierPositionEncoding(num_axes=3, num_bands=5, max_resolution=(4, 8, 8),
                                  sine_only=sine_only, concat_pos=concat_pos)
    feats = enc.grid((2, 3, 4))
    assert feats.shape == (24, enc.num_channels)
    assert enc.num_channels == 3 * (5 * (1 if sine_only else 2) + int(concat_pos))
    if concat_pos:
        torch.testing.assert_close(feats[:, :3], grid_positions((2, 3, 4)))


def test_grid_is_cached_per_shape_device_dtype():
    enc = FourierPositionEncoding(num_axes=2, num_bands=4, max_resolution=16)
    a = enc.grid((5, 6))
    assert enc.grid((5, 6)) is a
    assert enc.grid((5, 7)) is not a
    b = enc.grid((5, 6), dtype=torch.float64)
    assert b.dtype == torch.float64 and b is not a
    torch.testing.assert_close(b.float(), a)


def test_points_use_each_examples_own_coordinates():
    enc = FourierPositionEncoding(num_axes=3, num_bands=6, max_resolution=64)
    coords = torch.rand(4, 10, 3) * 2 - 1
    feats = enc.points(coords)
    assert feats.shape == (4, 10, enc.num_channels)
    for b in range(4):
        torch.testing.assert_close(feats[b], enc.points(coords[b]))
    assert not torch.allclose(feats[0], feats[1])


def test_fourier_rejects_bad_arguments():
    with pytest.raises(ValueError, match="layout"):
        FourierPositionEncoding(num_axes=1, num_bands=2, max_resolution=4, layout="other")
    with pytest.raises(ValueError, match="max_resolution"):
        FourierPositionEncoding(num_axes=2, num_bands=2, max_resolution=(4, 4, 4))
    with pytest.raises(ValueError, match="max_resolution"):
        fourier_features(torch.zeros(3, 2), num_bands=2, max_resolution=(4,))


def test_learned_positions():
    enc = LearnedPositionEncoding(12, 8)
    assert enc.grid((3, 4)).shape == (12, 8)
    assert enc.embedding.abs().max() <= 0.04 + 1e-7  # truncated at two standard deviations
    with pytest.raises(ValueError, match="12 positions"):
        enc.grid((5, 5))
