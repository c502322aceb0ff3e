"""Every user mistake is a TypeError/ValueError naming what was expected and received."""

import re

import pytest
import torch
from helpers import tiny_io, tiny_perceiver

from omniperceiver import create_model
from omniperceiver.attention import AttentionSpec
from omniperceiver.errors import ConfigError
from omniperceiver.model import FourierConfig, GridDecoderConfig, QueryDecoderConfig

MODEL = tiny_perceiver()  # (batch, 4, 5, 3) -> (batch, 4)


def test_wrong_channel_count():
    with pytest.raises(ValueError, match=r"3 channels .* got 4"):
        MODEL(torch.randn(2, 4, 5, 4))


def test_channels_first_hint():
    with pytest.raises(ValueError, match="channels-first"):
        MODEL(torch.randn(2, 3, 16, 16))


def test_wrong_number_of_axes():
    with pytest.raises(ValueError, match=r"4 dimensions .* got 3: \(2, 20, 3\)"):
        MODEL(torch.randn(2, 20, 3))


def test_zero_size_axis():
    with pytest.raises(ValueError, match=r"zero-size axis: shape \(2, 0, 5, 3\)"):
        MODEL(torch.randn(2, 0, 5, 3))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_integer_data(dtype):
    with pytest.raises(TypeError, match=r"x\.float\(\)"):
        MODEL(torch.zeros(2, 4, 5, 3, dtype=dtype))


def test_not_a_tensor():
    with pytest.raises(TypeError, match="torch.Tensor"):
        MODEL([[1.0, 2.0]])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf(bad):
    x = torch.randn(2, 4, 5, 3)
    x[1, 2, 3, 0] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        MODEL(x)


def test_finite_check_can_be_switched_off():
    model = tiny_perceiver()
    model.input_adapter.check_finite = False
    x = torch.randn(2, 4, 5, 3)
    x[0, 0, 0, 0] = float("nan")
    out = model(x)
    assert torch.isnan(out[0]).all() and torch.isfinite(out[1]).all()


def test_mask_wrong_dtype():
    with pytest.raises(TypeError, match="torch.bool"):
        MODEL(torch.randn(2, 4, 5, 3), mask=torch.ones(2, 20))


@pytest.mark.parametrize("shape", [(2, 19), (3, 20), (2, 5, 4), (20,)])
def test_mask_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"\(2, 20\) or \(2, 4, 5\)"):
        MODEL(torch.randn(2, 4, 5, 3), mask=torch.ones(shape, dtype=torch.bool))


def test_grid_mask_shape_accepted():
    x = torch.randn(2, 4, 5, 3)
    mask = torch.rand(2, 4, 5) > 0.3
    torch.testing.assert_close(MODEL(x, mask=mask), MODEL(x, mask=mask.reshape(2, 20)))


def test_channels_first_option():
    from omniperceiver.adapters import GridAdapter

    adapter = GridAdapter(input_channels=3, input_axis=2, channels_last=False)
    out = adapter(torch.randn(2, 3, 4, 5))
    assert out.inputs.shape == (2, 20, 3) and out.grid_shape == (4, 5)
    with pytest.raises(ValueError, match="channels-last"):
        adapter(torch.randn(2, 4, 5, 3))


def test_io_model_validates_too():
    model = tiny_io()
    with pytest.raises(ValueError, match=r"5 channels"):
        model(torch.randn(2, 7, 6))


# --- options: a model, a run or a data set that cannot work does not build -----------------


@pytest.mark.parametrize("preset, option, value, expected", [
    ("mnist-perceiver", "encoder.num_latents", 0, "an integer >= 1"),
    ("mnist-perceiver", "encoder.num_latents", 2.5, "an integer >= 1"),
    ("mnist-perceiver", "encoder.latent_dim", -16, "an integer >= 1"),
    ("mnist-perceiver", "encoder.num_blocks", 0, "an integer >= 1"),
    ("mnist-perceiver", "encoder.num_cross_attends", 0, "an integer >= 1"),
    ("mnist-perceiver", "encoder.self_attend.heads", 0, "an integer >= 1"),
    ("mnist-perceiver", "num_bands", 0, "an integer >= 1"),
    ("mnist-perceiver", "num_classes", 0, "an integer >= 1"),
    ("mnist-perceiver", "image_shape", (-28, 28), "an integer >= 1 or a non-empty list of them"),
    ("mnist-perceiver", "encoder.cross_attend.attn_dropout", 1.0, r"a number in \[0, 1\)"),
    ("mnist-perceiver", "decoder.ff_dropout", -0.1, r"a number in \[0, 1\)"),
    ("mnist-perceiver", "encoder.latent_init_std", float("nan"), "a finite number > 0"),
    ("image-perceiver", "patch_size", 0, "an integer >= 1"),
    ("pointcloud-perceiver", "max_resolution", float("inf"), "a finite number > 0"),
    ("audio-perceiver", "sample_rate", 0, "an integer >= 1"),
    ("av-perceiver", "image.num_bands", 0, "an integer >= 1"),
    ("multimodal-perceiver", "audio.max_resolution", [0], "a finite number > 0 or a non-empty "
                                                          "list of them"),
    ("perceiver-pytorch", "depth", 0, "an integer >= 1"),
])
def test_a_preset_with_an_impossible_option_does_not_build(preset, option, value, expected):
    """Options inside a preset's dicts (encoder=, image= ...) are named by their path."""
    extra = {"mode": "patches"} if option == "patch_size" else {}
    if preset == "perceiver-pytorch":
        extra = {"num_freq_bands": 2, "max_freq": 4.0}
    given: dict = value
    for key in reversed(option.split(".")[1:]):
        given = {key: given}
    with pytest.raises(ConfigError, match=rf"^{preset}: {option} must be {expected}, "
                                          rf"got {re.escape(repr(value))}"):
        create_model(preset, **{option.split(".")[0]: given}, **extra)


def test_heads_that_do_not_divide_the_width_name_the_preset_and_the_option():
    with pytest.raises(ConfigError, match=r"mnist-perceiver with encoder=\{'self_attend': "
                                          r"\{'heads': 3\}\}: .*heads=3"):
        create_model("mnist-perceiver", encoder={"self_attend": {"heads": 3}})


def test_an_unknown_keyword_is_a_config_error():
    with pytest.raises(ConfigError, match="mnist-perceiver with num_latent=8: .*num_latent"):
        create_model("mnist-perceiver", num_latent=8)


def test_a_config_is_checked_field_by_field():
    with pytest.raises(ConfigError, match=r"PerceiverIOConfig.encoder: num_latents must be "
                                          r"an integer >= 1, got 0"):
        tiny_io(num_latents=0)
    with pytest.raises(ConfigError, match=r"PerceiverIOConfig.encoder.self_attend: attn_dropout "
                                          r"must be a number in \[0, 1\), got 1.5"):
        tiny_io(self_attend=AttentionSpec(heads=2, attn_dropout=1.5))


@pytest.mark.parametrize("option, value", [("lr", 0.0), ("lr", -1e-3), ("label_smoothing", 1.0),
                                           ("warmup", -1)])
def test_training_hyper_parameters_are_checked(option, value):
    from omniperceiver.training.module import ClassificationModule

    with pytest.raises(ConfigError, match=rf"model options: {option} must be .*, got {value}"):
        ClassificationModule(num_classes=10, **{option: value})


@pytest.mark.parametrize("option, value", [("batch_size", 0), ("eval_batch_size", -2),
                                           ("val_size", -0.1)])
def test_data_options_are_checked(option, value):
    from omniperceiver.training.data import MNISTData

    with pytest.raises(ConfigError, match=rf"MNISTData options: {option} must be .*, got "
                                          rf"{value}"):
        MNISTData(**{option: value})


# --- decoder queries and subsample indices -------------------------------------------------


@pytest.fixture(scope="module")
def grid_model():
    """A 2D grid model decoding a (6, 7) output grid: 42 outputs."""
    return tiny_io(input_axis=2, input_channels=3,
                   position=FourierConfig(num_bands=2, max_resolution=(4, 4)),
                   decoder=GridDecoderConfig(output_shape=(6, 7), output_channels=2,
                                             num_bands=2))


@pytest.mark.parametrize("subsample, kind, message", [
    (torch.tensor([0, 42]), ValueError, r"subsample must lie in \[0, 41\], got values in "
                                        r"\[0, 42\]"),
    (torch.tensor([-1, 3]), ValueError, r"subsample must lie in \[0, 41\], got values in "
                                        r"\[-1, 3\]"),
    (torch.tensor([0.0, 3.0]), TypeError, r"integer tensor .* got dtype torch.float32"),
    (torch.ones(42, dtype=torch.bool), TypeError, r"got dtype torch.bool"),
    (torch.tensor([[0, 1]]), ValueError, r"1-D tensor .* got shape \(1, 2\)"),
    (torch.tensor([], dtype=torch.long), ValueError, r"non-empty 1-D tensor .* shape \(0\)"),
    ([0, 1], TypeError, r"torch.Tensor .* got list"),
])
def test_subsample_indices_are_checked(grid_model, subsample, kind, message):
    with pytest.raises(kind, match=message):
        grid_model(torch.randn(2, 4, 4, 3), subsample=subsample)


def test_multimodal_subsample_names_the_modality():
    from omniperceiver.decoders import MultimodalDecoder
    from omniperceiver.position import FourierPositionEncoding

    decoder = MultimodalDecoder(
        latent_dim=8, output_channels=4, cross_attend=AttentionSpec(),
        queries={"image": FourierPositionEncoding(num_axes=2, num_bands=2,
                                                  max_resolution=(4, 4))},
        output_shapes={"image": (4, 4)})
    latents = torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"subsample\['image'\] must lie in \[0, 15\]"):
        decoder(latents, subsample={"image": torch.tensor([16])})
    with pytest.raises(ValueError, match=r"subsample has unknown modalities \['audio'\]"):
        decoder(latents, subsample={"audio": torch.tensor([0])})


@pytest.mark.parametrize("queries, kind, message", [
    (torch.randn(2, 5, 8), ValueError, r"queries must have shape \(2, num_outputs, 9\), got "
                                       r"\(2, 5, 8\)"),
    (torch.ones(2, 5, 9, dtype=torch.long), TypeError, r"queries has dtype torch.int64"),
    (torch.full((2, 5, 9), float("nan")), ValueError, r"queries contains NaN or Inf"),
    (torch.randn(2, 0, 9), ValueError, r"queries has a zero-size axis"),
])
def test_decoder_queries_are_checked(queries, kind, message):
    model = tiny_io(decoder=QueryDecoderConfig(query_channels=9, output_channels=4))
    with pytest.raises(kind, match=message):
        model(torch.randn(2, 5, 5), queries=queries)


def test_a_mean_pooling_classifier_refuses_queries_and_subsample():
    latents = torch.randn(2, 3, MODEL.encoder.config.latent_dim)
    with pytest.raises(ValueError, match="pooling='mean'.*got subsample"):
        MODEL.decoder(latents, subsample=torch.tensor([0]))
