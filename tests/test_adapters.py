"""Modality adapters: shapes and channel counts, position features, masks and padding
equivalence, the conv stem, the mel filter bank, the byte tokenizer, multimodal inputs, and
every user error."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from omniperceiver import (
    AttentionSpec,
    ClassificationDecoderConfig,
    EncoderConfig,
    FourierPositionEncoding,
    Perceiver,
    PerceiverIO,
    PerceiverIOConfig,
)
from omniperceiver.adapters import (
    ByteTokenizer,
    ConvStem,
    ImageAdapter,
    MultimodalAdapter,
    PointCloudAdapter,
    SpectrogramAdapter,
    TextAdapter,
    VideoAdapter,
    WaveformAdapter,
    mel_filter_bank,
    pad_point_clouds,
    pad_sequences,
    space_to_depth,
    split_modalities,
)
from omniperceiver.adapters.audio import hz_to_mel, mel_to_hz


def fourier_channels(num_axes: int, num_bands: int) -> int:
    return num_axes * (2 * num_bands + 1)


def tiny_model(adapter, dtype=torch.float64):
    """A small Perceiver IO classifier behind ``adapter``, in eval mode."""
    torch.manual_seed(0)
    config = PerceiverIOConfig(
        input_channels=adapter.num_channels, input_axis=1, position=None,
        encoder=EncoderConfig(num_latents=4, latent_dim=16, num_blocks=1,
                              self_attends_per_block=1, cross_attend=AttentionSpec(heads=1),
                              self_attend=AttentionSpec(heads=2)),
        decoder=ClassificationDecoderConfig(num_classes=3))
    return PerceiverIO(config, input_adapter=adapter).to(dtype).eval()


def assert_padding_invariant(model, padded, mask, singles):
    """Each row of the padded, masked batch gives the output of its unpadded example alone."""
    with torch.no_grad():
        out = model(padded, mask)
        for i, single in enumerate(singles):
            torch.testing.assert_close(out[i:i + 1], model(single), atol=1e-6, rtol=0)


# --- images ---------------------------------------------------------------------------------


def test_image_pixels_shape_and_features():
    x = torch.rand(2, 12, 10, 3)
    adapter = ImageAdapter(image_shape=(12, 10), num_bands=6)
    out = adapter(x)
    assert adapter.num_channels == 3 + fourier_channels(2, 6)
    assert out.inputs.shape == (2, 120, adapter.num_channels)
    assert out.grid_shape == (12, 10) and out.mask is None
    torch.testing.assert_close(out.inputs[..., :3], x.reshape(2, 120, 3))
    expected = FourierPositionEncoding(num_axes=2, num_bands=6, max_resolution=(12, 10))
    torch.testing.assert_close(out.inputs[0, :, 3:], expected.grid((12, 10)))


def test_image_channels_first_equals_channels_last():
    x = torch.rand(2, 8, 8, 3)
    last = ImageAdapter(image_shape=(8, 8), mode="patches", patch_size=4, num_bands=4)
    first = ImageAdapter(image_shape=(8, 8), mode="patches", patch_size=4, num_bands=4,
                         channels_last=False)
    torch.testing.assert_close(first(x.permute(0, 3, 1, 2)).inputs, last(x).inputs)


def test_image_patches_content_and_patch_grid_positions():
    x = torch.rand(2, 16, 24, 3)
    adapter = ImageAdapter(image_shape=(16, 24), mode="patches", patch_size=4, num_bands=5)
    out = adapter(x)
    assert adapter.num_channels == 4 * 4 * 3 + fourier_channels(2, 5)
    assert out.inputs.shape == (2, 4 * 6, adapter.num_channels) and out.grid_shape == (4, 6)
    # Patch (1, 2) is flat index 1 * 6 + 2; its values in (row, column, channel) order.
    torch.testing.assert_close(out.inputs[:, 8, :48], x[:, 4:8, 8:12, :].reshape(2, 48))
    grid = FourierPositionEncoding(num_axes=2, num_bands=5, max_resolution=(4, 6)).grid((4, 6))
    torch.testing.assert_close(out.inputs[1, :, 48:], grid)


@given(st.lists(st.integers(1, 3), min_size=1, max_size=3), st.integers(1, 3), st.data())
def test_space_to_depth_is_a_rearrangement(patch, channels, draw):
    grid = draw.draw(st.lists(st.integers(1, 3), min_size=len(patch), max_size=len(patch)))
    axes = [g * p for g, p in zip(grid, patch, strict=True)]
    x = torch.arange(2 * math.prod(axes) * channels, dtype=torch.float32)
    x = x.reshape(2, *axes, channels)
    out = space_to_depth(x, patch)
    assert out.shape == (2, *grid, math.prod(patch) * channels)
    assert torch.equal(out.flatten().sort().values, x.flatten())
    # The first patch holds the block x[:, :p_0, :p_1, ...].
    block = x[(slice(None), *(slice(0, p) for p in patch))]
    assert torch.equal(out[(slice(None), *([0] * len(patch)))], block.reshape(2, -1))


def test_image_patch_mask_keeps_patches_with_any_valid_pixel():
    x = torch.rand(1, 8, 8, 1)
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 5, 1] = True  # inside patch (1, 0)
    out = ImageAdapter(image_shape=(8, 8), input_channels=1, mode="patches", patch_size=4,
                       num_bands=2)(x, mask)
    assert out.mask.tolist() == [[False, False, True, False]]
    # Masked-out pixels are zeroed inside a kept patch.
    assert out.inputs[0, 2, :16].count_nonzero() == 1


def test_conv_stem_224_gives_56x56():
    adapter = ImageAdapter(image_shape=(224, 224), mode="conv", num_bands=64)
    out = adapter(torch.rand(1, 224, 224, 3))
    assert out.grid_shape == (56, 56)
    assert out.inputs.shape == (1, 56 * 56, 64 + 258) and adapter.num_channels == 322
    grid = FourierPositionEncoding(num_axes=2, num_bands=64, max_resolution=(56, 56))
    torch.testing.assert_close(out.inputs[0, :, 64:], grid.grid((56, 56)))
    valid = ImageAdapter(image_shape=(224, 224), mode="conv", padding="transformers", num_bands=4)
    assert valid(torch.rand(1, 224, 224, 3)).grid_shape == (55, 55)


def test_conv_stem_is_tensorflow_same():
    """SAME conv on 32 x 32 pads 2 before / 3 after; SAME max-pool on 16 x 16: output i takes
    rows 2i..2i+2, the last window cut off."""
    stem = ConvStem(3, 4).eval()
    x = torch.randn(2, 32, 32, 3)
    with torch.no_grad():
        out, _ = stem(x)
        padded = torch.nn.functional.pad(x.movedim(-1, 1), (2, 3, 2, 3))
        h = torch.relu(stem.norm(stem.conv(padded)))  # (2, 4, 16, 16)
    assert out.shape == (2, 8, 8, 4)
    for i in range(8):
        for j in range(8):
            window = h[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            torch.testing.assert_close(out[:, i, j], window.amax(dim=(-2, -1)))


def test_conv_stem_valid_matches_transformers():
    modeling = pytest.importorskip("transformers.models.perceiver.modeling_perceiver")
    theirs = modeling.Conv2DDownsample(in_channels=3, out_channels=8).eval()
    ours = ConvStem(3, 8, padding="transformers").eval()
    ours.conv.weight.data.copy_(theirs.conv.weight.data)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(ours.norm, name).data.copy_(torch.rand(8) + 0.5)
        getattr(theirs.batchnorm, name).data.copy_(getattr(ours.norm, name).data)
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(ours(x.permute(0, 2, 3, 1))[0], theirs(x).permute(0, 2, 3, 1))


def test_image_learned_positions_and_projection():
    adapter = ImageAdapter(image_shape=(8, 8), mode="patches", patch_size=2, position="learned",
                           position_channels=7, project_channels=5)
    out = adapter(torch.rand(3, 8, 8, 3))
    assert adapter.num_channels == 12 and out.inputs.shape == (3, 16, 12)
    with pytest.raises(ValueError, match="learned positions cover 16 positions"):
        adapter(torch.rand(3, 16, 16, 3))
    none = ImageAdapter(image_shape=(8, 8), position=None)
    assert none.num_channels == 3 and none(torch.rand(1, 8, 8, 3)).inputs.shape == (1, 64, 3)


@pytest.mark.parametrize("x,error,match", [
    (torch.rand(8, 8, 3), ValueError, "4 dimensions"),
    (torch.rand(2, 8, 8, 4), ValueError, "3 channels"),
    (torch.rand(2, 3, 8, 8), ValueError, "channels-first"),
    (torch.rand(2, 10, 8, 3), ValueError, "height 10 is not divisible by the patch size 4"),
    (torch.rand(2, 8, 6, 3), ValueError, "width 6 is not divisible"),
    (torch.randint(0, 255, (2, 8, 8, 3), dtype=torch.uint8), TypeError, "floating-point"),
    ([[0.0]], TypeError, "torch.Tensor"),
])
def test_image_errors(x, error, match):
    adapter = ImageAdapter(image_shape=(8, 8), mode="patches", patch_size=4, num_bands=2)
    with pytest.raises(error, match=match):
        adapter(x)


def test_image_construction_errors():
    with pytest.raises(ValueError, match="mode must be one of"):
        ImageAdapter(image_shape=(8, 8), mode="tiles")
    with pytest.raises(ValueError, match="needs patch_size"):
        ImageAdapter(image_shape=(8, 8), mode="patches")
    with pytest.raises(ValueError, match="image_shape width 10 is not divisible"):
        ImageAdapter(image_shape=(8, 10), mode="patches", patch_size=4)
    with pytest.raises(ValueError, match="padding"):
        ImageAdapter(image_shape=(8, 8), mode="conv", padding="full")
    with pytest.raises(ValueError, match="position must be"):
        ImageAdapter(image_shape=(8, 8), position="sinusoid")
    conv = ImageAdapter(image_shape=(32, 32), mode="conv", num_bands=2)
    with pytest.raises(ValueError, match="masks are not supported"):
        conv(torch.rand(1, 32, 32, 3), torch.ones(1, 32, 32, dtype=torch.bool))


# --- video ----------------------------------------------------------------------------------


def test_video_patches_and_3d_positions():
    x = torch.rand(2, 4, 8, 12, 3)
    adapter = VideoAdapter(video_shape=(4, 8, 12), patch_shape=(2, 4, 4), num_bands=3)
    out = adapter(x)
    assert adapter.num_channels == 2 * 4 * 4 * 3 + fourier_channels(3, 3)
    assert out.inputs.shape == (2, 2 * 2 * 3, adapter.num_channels)
    assert out.grid_shape == (2, 2, 3)
    # Patch (1, 0, 2) is flat index 1 * 6 + 0 * 3 + 2.
    torch.testing.assert_close(out.inputs[:, 8, :96], x[:, 2:4, 0:4, 8:12].reshape(2, 96))
    grid = FourierPositionEncoding(num_axes=3, num_bands=3, max_resolution=(2, 2, 3))
    torch.testing.assert_close(out.inputs[0, :, 96:], grid.grid((2, 2, 3)))
    first = VideoAdapter(video_shape=(4, 8, 12), patch_shape=(2, 4, 4), num_bands=3,
                         channels_last=False)
    torch.testing.assert_close(first(x.permute(0, 4, 1, 2, 3)).inputs, out.inputs)


def test_video_errors():
    adapter = VideoAdapter(video_shape=(4, 16, 16), num_bands=2)  # patches 2 x 8 x 8
    with pytest.raises(ValueError, match="frames 3 is not divisible by the patch size 2"):
        adapter(torch.rand(1, 3, 16, 16, 3))
    with pytest.raises(ValueError, match="5 dimensions"):
        adapter(torch.rand(1, 16, 16, 3))
    with pytest.raises(ValueError, match="channels-first"):
        adapter(torch.rand(1, 3, 4, 16, 16))
    with pytest.raises(ValueError, match="video_shape height 12 is not divisible"):
        VideoAdapter(video_shape=(4, 12, 16))


# --- audio ----------------------------------------------------------------------------------


def test_waveform_patches_and_positions():
    adapter = WaveformAdapter(max_samples=100, samples_per_patch=8, num_bands=4)
    x = torch.randn(2, 100)
    out = adapter(x)
    assert adapter.num_channels == 8 + fourier_channels(1, 4)
    assert out.inputs.shape == (2, 13, adapter.num_channels) and out.mask is None
    torch.testing.assert_close(out.inputs[:, 3, :8], x[:, 24:32])
    # The tail (samples 96..99) is zero-padded inside the last, kept patch.
    torch.testing.assert_close(out.inputs[:, 12, :8], torch.cat([x[:, 96:], torch.zeros(2, 4)], 1))
    grid = FourierPositionEncoding(num_axes=1, num_bands=4, max_resolution=13).grid((13,))
    torch.testing.assert_close(out.inputs[0, :, 8:], grid)
    # A shorter clip gets the positions of the first patches, not a stretched grid.
    short = adapter(x[:, :40])
    torch.testing.assert_close(short.inputs[0, :, 8:], grid[:5])
    torch.testing.assert_close(adapter(x[..., None]).inputs, out.inputs)


def test_waveform_mask_and_multichannel():
    adapter = WaveformAdapter(max_samples=32, samples_per_patch=4, input_channels=2, num_bands=2)
    x = torch.randn(2, 30, 2)
    mask = torch.arange(30) < torch.tensor([[30], [9]])
    out = adapter(x, mask)
    assert out.inputs.shape == (2, 8, 8 + 5)
    assert out.mask.tolist() == [[True] * 8, [True] * 3 + [False] * 5]
    torch.testing.assert_close(out.inputs[1, 2, :8], torch.cat([x[1, 8], torch.zeros(6)]))


def test_waveform_variable_length_batch_matches_unpadded():
    adapter = WaveformAdapter(max_samples=64, samples_per_patch=8, num_bands=4)
    model = tiny_model(adapter)
    clips = [torch.randn(n, dtype=torch.float64) for n in (37, 64, 8, 1)]
    padded, mask = pad_sequences(clips)
    padded[~mask] = 5.0  # whatever the padding holds is ignored
    assert_padding_invariant(model, padded, mask, [c[None] for c in clips])


def test_waveform_errors():
    adapter = WaveformAdapter(max_samples=64, samples_per_patch=8, num_bands=2)
    with pytest.raises(ValueError, match="more than max_samples=64"):
        adapter(torch.randn(1, 65))
    with pytest.raises(ValueError, match="3 dimensions"):
        adapter(torch.randn(1, 8, 8, 1))
    with pytest.raises(ValueError, match="1 channels"):
        adapter(torch.randn(1, 64, 2))
    with pytest.raises(TypeError, match="floating-point"):
        adapter(torch.ones(1, 64, dtype=torch.int16))
    with pytest.raises(ValueError, match="mask must have shape"):
        adapter(torch.randn(2, 64), torch.ones(2, 63, dtype=torch.bool))


@pytest.mark.parametrize("mel_scale", ["htk", "slaney"])
def test_mel_filter_bank_shape_and_peaks(mel_scale):
    bank = mel_filter_bank(num_freqs=257, num_mels=40, sample_rate=16000, mel_scale=mel_scale)
    assert bank.shape == (257, 40) and bank.dtype == torch.float64
    assert (bank >= 0).all() and (bank <= 1).all()
    assert (bank.sum(dim=0) > 0).all()  # no empty filter at this resolution
    peaks = bank.argmax(dim=0)
    assert (peaks[1:] >= peaks[:-1]).all() and peaks[-1] > peaks[0]
    # Each frequency lies in at most two filters, which overlap as a partition of unity
    # between the first and last centres.
    assert ((bank > 0).sum(dim=1) <= 2).all()
    inner = bank[peaks[0] + 1:peaks[-1]].sum(dim=1)
    torch.testing.assert_close(inner, torch.ones_like(inner))


@pytest.mark.parametrize("mel_scale,norm", [("htk", None), ("slaney", None), ("slaney", "slaney"),
                                            ("htk", "slaney")])
def test_mel_filter_bank_matches_transformers(mel_scale, norm):
    audio_utils = pytest.importorskip("transformers.audio_utils")
    theirs = audio_utils.mel_filter_bank(num_frequency_bins=201, num_mel_filters=32,
                                         min_frequency=20.0, max_frequency=7600.0,
                                         sampling_rate=16000, norm=norm, mel_scale=mel_scale)
    ours = mel_filter_bank(num_freqs=201, num_mels=32, sample_rate=16000, f_min=20.0,
                           f_max=7600.0, mel_scale=mel_scale, norm=norm)
    torch.testing.assert_close(ours, torch.from_numpy(theirs), atol=1e-10, rtol=1e-7)


@given(st.floats(0.0, 20000.0))
@pytest.mark.parametrize("mel_scale", ["htk", "slaney"])
def test_mel_scale_inverts(mel_scale, hz):
    f = torch.tensor([hz], dtype=torch.float64)
    torch.testing.assert_close(mel_to_hz(hz_to_mel(f, mel_scale), mel_scale), f)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3500.0])
def test_spectrogram_sine_peaks_at_its_mel_bin(freq):
    sample_rate, n_mels = 16000, 40
    adapter = SpectrogramAdapter(max_samples=sample_rate, sample_rate=sample_rate, n_fft=512,
                                 hop_length=256, n_mels=n_mels, position=None)
    t = torch.arange(sample_rate) / sample_rate
    frames = adapter(torch.sin(2 * math.pi * freq * t)[None]).inputs  # (1, 63, n_mels)
    assert frames.shape == (1, 1 + sample_rate // 256, n_mels)
    bank = mel_filter_bank(num_freqs=257, num_mels=n_mels, sample_rate=sample_rate)
    centres = torch.linspace(0, sample_rate / 2, 257)[bank.argmax(dim=0)]
    expected = (centres - freq).abs().argmin()
    assert frames[0, 10:-10].mean(dim=0).argmax() == expected


def test_spectrogram_shape_positions_and_channels():
    adapter = SpectrogramAdapter(max_samples=1600, n_mels=16, num_bands=3)
    x = torch.randn(2, 1600)
    out = adapter(x)
    assert adapter.num_channels == 16 + fourier_channels(1, 3)
    assert out.inputs.shape == (2, 11, adapter.num_channels) and out.grid_shape == (11,)
    grid = FourierPositionEncoding(num_axes=1, num_bands=3, max_resolution=11).grid((11,))
    torch.testing.assert_close(out.inputs[1, :, 16:], grid)
    stereo = SpectrogramAdapter(max_samples=1600, n_mels=16, num_bands=3, input_channels=2)
    both = stereo(torch.stack([x[0], x[1]], dim=-1)[None]).inputs  # (1, 11, 2 * 16 + 7)
    torch.testing.assert_close(both[0, :, :16], out.inputs[0, :, :16])
    torch.testing.assert_close(both[0, :, 16:32], out.inputs[1, :, :16])


def test_spectrogram_variable_length_batch_matches_unpadded():
    adapter = SpectrogramAdapter(max_samples=2000, n_fft=128, hop_length=64, n_mels=12,
                                 num_bands=4)
    model = tiny_model(adapter)
    clips = [torch.randn(n, dtype=torch.float64) for n in (2000, 1000, 640, 100)]
    padded, mask = pad_sequences(clips)
    padded[~mask] = -3.0
    out = adapter(padded, mask)
    assert out.mask.sum(dim=1).tolist() == [1 + n // 64 for n in (2000, 1000, 640, 100)]
    assert_padding_invariant(model, padded, mask, [c[None] for c in clips])


def test_spectrogram_mask_must_be_a_prefix():
    adapter = SpectrogramAdapter(max_samples=1000, n_mels=8, num_bands=2)
    mask = torch.ones(1, 1000, dtype=torch.bool)
    mask[0, 10] = False
    with pytest.raises(ValueError, match="prefix"):
        adapter(torch.randn(1, 1000), mask)


# --- point clouds ---------------------------------------------------------------------------


def test_point_cloud_features_are_per_example():
    adapter = PointCloudAdapter(num_features=3, num_bands=6, max_resolution=40.0)
    x = torch.rand(4, 50, 6) * 2 - 1
    out = adapter(x)
    assert adapter.num_channels == 3 + fourier_channels(3, 6)
    assert out.inputs.shape == (4, 50, adapter.num_channels)
    torch.testing.assert_close(out.inputs[..., :3], x[..., 3:])
    torch.testing.assert_close(out.inputs[..., 3:], adapter.position.points(x[..., :3]))
    # Each example's own coordinates (not the first example's for the whole batch).
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(adapter(x[perm]).inputs, out.inputs[perm])
    assert not torch.allclose(out.inputs[1], out.inputs[0])


def test_point_cloud_band_frequencies_run_to_half_the_max_resolution():
    """The Perceiver's ModelNet40 setting: 64 bands up to the paper's maximum frequency 1120,
    max_resolution 2240 (DeepMind's convention for grids too)."""
    adapter = PointCloudAdapter(num_bands=64, max_resolution=2240.0)
    coords = torch.rand(1, 5, 3, dtype=torch.float64) * 2 - 1
    features = adapter(coords).inputs  # [x, y, z, sines (3 axes x 64), cosines (likewise)]
    freqs = torch.linspace(1.0, 1120.0, 64, dtype=torch.float64)
    sines = torch.sin(torch.pi * coords[..., :, None] * freqs).flatten(-2)
    torch.testing.assert_close(features[..., 3:3 + 3 * 64], sines)


@given(st.permutations(list(range(12))))
def test_point_cloud_permuting_points_permutes_inputs(perm):
    torch.manual_seed(0)
    adapter = PointCloudAdapter(num_features=2, num_bands=4, max_resolution=16.0)
    x = torch.rand(2, 12, 5) * 2 - 1
    perm = torch.tensor(perm)
    torch.testing.assert_close(adapter(x[:, perm]).inputs, adapter(x).inputs[:, perm])


def test_point_cloud_model_is_permutation_invariant_and_padding_invariant():
    adapter = PointCloudAdapter(num_bands=4, max_resolution=16.0)
    model = tiny_model(adapter)
    clouds = [torch.rand(n, 3, dtype=torch.float64) * 2 - 1 for n in (20, 7, 13)]
    points, mask = pad_point_clouds(clouds)
    assert points.shape == (3, 20, 3) and mask.sum(dim=1).tolist() == [20, 7, 13]
    assert_padding_invariant(model, points, mask, [c[None] for c in clouds])
    with torch.no_grad():
        perm = torch.randperm(20)
        torch.testing.assert_close(model(clouds[0][perm][None]), model(clouds[0][None]))


def test_point_cloud_errors():
    adapter = PointCloudAdapter(num_features=3, num_bands=2)
    with pytest.raises(ValueError, match="6 channels"):
        adapter(torch.rand(2, 10, 3))
    with pytest.raises(ValueError, match="channels-first"):
        adapter(torch.rand(2, 6, 10))
    with pytest.raises(ValueError, match="3 dimensions"):
        adapter(torch.rand(10, 6))
    with pytest.raises(ValueError, match="point cloud 1 must be"):
        pad_point_clouds([torch.rand(5, 3), torch.rand(5)])
    with pytest.raises(ValueError, match="share everything but their length"):
        pad_point_clouds([torch.rand(5, 3), torch.rand(4, 6)])
    with pytest.raises(TypeError, match="non-empty list"):
        pad_point_clouds([])


# --- text -----------------------------------------------------------------------------------


def test_byte_vocabulary_layout():
    tok = ByteTokenizer()
    assert tok.VOCAB_SIZE == 262
    assert (tok.PAD, tok.BOS, tok.EOS, tok.MASK, tok.CLS, tok.SEP) == (0, 1, 2, 3, 4, 5)
    ids, mask = tok.encode(["hé", "a"])
    assert ids.dtype == torch.long
    assert ids.tolist() == [[4, 104 + 6, 0xC3 + 6, 0xA9 + 6, 5], [4, 97 + 6, 5, 0, 0]]
    assert mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    plain, _ = tok.encode("abc", add_special_tokens=False)
    assert plain.tolist() == [[103, 104, 105]]
    short, short_mask = tok.encode(["abcdef", "ab"], max_length=4)
    assert short.tolist() == [[4, 103, 104, 5], [4, 103, 104, 5]] and short_mask.all()


@given(st.lists(st.text(max_size=30), min_size=1, max_size=4))
def test_encode_decode_round_trip(texts):
    tok = ByteTokenizer()
    ids, mask = tok.encode(texts)
    assert tok.decode(ids) == texts
    assert mask.sum(dim=1).tolist() == [len(t.encode("utf-8")) + 2 for t in texts]


def test_decode_truncated_multibyte_and_errors():
    tok = ByteTokenizer()
    ids, _ = tok.encode("é", max_length=3)  # [CLS] 0xC3 [SEP]: half a character
    assert tok.decode(ids) == ["\ufffd"]
    assert tok.decode([4, 110, 5]) == ["h"]
    with pytest.raises(ValueError, match=r"\[0, 261\]"):
        tok.decode([[300]])
    with pytest.raises(TypeError, match="integers"):
        tok.decode(torch.tensor([[110.0]]))
    with pytest.raises(ValueError, match="at least 3"):
        tok.encode("abc", max_length=2)


def test_text_adapter_embedding_plus_positions():
    adapter = TextAdapter(num_channels=8, max_length=16)
    ids, mask = ByteTokenizer().encode(["hello", "hi"])
    out = adapter(ids)
    assert adapter.num_channels == 8 and out.inputs.shape == (2, 7, 8)
    assert torch.equal(out.mask, mask)
    expected = adapter.embedding.weight[ids] + adapter.position.encoding.embedding[:7]
    torch.testing.assert_close(out.inputs, expected)


def test_text_variable_length_batch_matches_unpadded():
    adapter = TextAdapter(num_channels=8, max_length=32)
    model = tiny_model(adapter)
    texts = ["a longer sentence", "short", "ü"]
    tok = ByteTokenizer()
    ids, mask = tok.encode(texts)
    assert_padding_invariant(model, ids, mask, [tok.encode(t)[0] for t in texts])


def test_text_errors():
    adapter = TextAdapter(num_channels=8, max_length=6)
    with pytest.raises(TypeError, match="integer tensor"):
        adapter(torch.tensor([[4.0, 110.0, 5.0]]))
    with pytest.raises(ValueError, match="more than max_length=6"):
        adapter(torch.ones(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 261\]"):
        adapter(torch.tensor([[4, 262]]))
    with pytest.raises(ValueError, match="2 dimensions"):
        adapter(torch.tensor([4, 5]))


# --- multimodal -----------------------------------------------------------------------------


def av_adapter(**kwargs):
    return MultimodalAdapter({
        "image": ImageAdapter(image_shape=(8, 8), input_channels=1, mode="patches",
                              patch_size=4, num_bands=2),
        "audio": WaveformAdapter(max_samples=40, samples_per_patch=8, num_bands=3),
    }, **kwargs)


def av_inputs(batch=2, dtype=torch.float32):
    return {"image": torch.rand(batch, 8, 8, 1, dtype=dtype),
            "audio": torch.randn(batch, 40, dtype=dtype)}


def test_multimodal_padding_order_and_split_round_trip():
    adapter = av_adapter(min_padding_size=3)
    image_channels, audio_channels = 16 + 10, 8 + 7
    assert adapter.num_channels == 26 + 3 and adapter.names == ["audio", "image"]
    x = av_inputs()
    out = adapter(x)
    assert out.inputs.shape == (2, 5 + 4, 29) and out.mask is None
    assert out.modality_sizes == {"audio": 5, "image": 4}
    parts = split_modalities(out.inputs, out.modality_sizes)
    assert list(parts) == ["audio", "image"]
    for name, channels in (("image", image_channels), ("audio", audio_channels)):
        own = adapter.adapters[name](x[name]).inputs
        torch.testing.assert_close(parts[name][..., :channels], own)
        torch.testing.assert_close(parts[name][..., channels:],
                                   adapter.padding[name].expand_as(parts[name][..., channels:]))
    assert adapter.padding["audio"].shape == (29 - audio_channels,)


def test_multimodal_masks_per_modality():
    adapter = av_adapter()
    audio_mask = torch.arange(40) < torch.tensor([[40], [12]])
    out = adapter(av_inputs(), {"audio": audio_mask})
    assert out.mask.tolist() == [[True] * 9, [True, True, False, False, False] + [True] * 4]


def test_multimodal_masked_modality_is_ignored():
    adapter = av_adapter()
    model = tiny_model(adapter)
    x = av_inputs(dtype=torch.float64)
    noisy = dict(x, audio=torch.randn(2, 40, dtype=torch.float64))
    off = {"audio": torch.zeros(2, 40, dtype=torch.bool)}
    with torch.no_grad():
        torch.testing.assert_close(model(x, off), model(noisy, off), atol=1e-6, rtol=0)


def test_multimodal_dropout_only_in_training():
    adapter = av_adapter(modality_dropout={"audio": 0.3})
    x = {"image": torch.rand(400, 8, 8, 1), "audio": torch.randn(400, 40)}
    torch.manual_seed(0)
    mask = adapter.train()(x).mask  # (400, 9)
    audio, image = mask[:, :5], mask[:, 5:]
    assert image.all()
    assert (audio.all(dim=1) | ~audio.any(dim=1)).all()  # a whole modality at a time
    assert 0.2 < (~audio[:, 0]).float().mean() < 0.4
    assert adapter.eval()(x).mask is None
    assert adapter.eval()(x, {"audio": torch.ones(400, 40, dtype=torch.bool)}).mask.all()


def test_multimodal_works_with_both_models():
    x = av_inputs()
    adapter = av_adapter()
    perceiver = Perceiver(num_freq_bands=2, depth=2, max_freq=4.0, num_latents=4, latent_dim=16,
                          cross_dim_head=8, latent_dim_head=8, latent_heads=2, num_classes=5,
                          input_adapter=adapter)
    assert perceiver(x).shape == (2, 5)
    assert perceiver(x, {"audio": torch.ones(2, 40, dtype=torch.bool)}).shape == (2, 5)
    model = tiny_model(av_adapter(), dtype=torch.float32)
    assert model(x).shape == (2, 3)


def test_multimodal_errors():
    adapter = av_adapter()
    x = av_inputs()
    with pytest.raises(TypeError, match="must be a dict"):
        adapter(x["image"])
    with pytest.raises(ValueError, match=r"unknown modalities \['text'\]"):
        adapter(dict(x, text=torch.zeros(2, 3)))
    with pytest.raises(ValueError, match=r"missing modalities \['audio'\]"):
        adapter({"image": x["image"]})
    with pytest.raises(ValueError, match=r"mask has unknown modalities \['video'\]"):
        adapter(x, {"video": torch.ones(2, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="different batch sizes"):
        adapter(dict(x, audio=torch.randn(3, 40)))
    with pytest.raises(ValueError, match="modality 'image': .*1 channels"):
        adapter(dict(x, image=torch.rand(2, 8, 8, 3)))
    with pytest.raises(ValueError, match="unknown modalities"):
        av_adapter(modality_dropout={"video": 0.3})
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        av_adapter(modality_dropout={"audio": 1.0})
    with pytest.raises(ValueError, match=r"outputs must be \(batch, 9, ...\)"):
        split_modalities(torch.zeros(2, 8, 4), {"audio": 5, "image": 4})
