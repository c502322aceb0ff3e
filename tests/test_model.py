"""Public API: the seed snippet, presets, decoders, schedules, dtypes, save/load."""

import pytest
import torch
from helpers import tiny_io, tiny_perceiver

import omniperceiver
from omniperceiver import (
    AttentionSpec,
    ClassificationDecoderConfig,
    EncoderConfig,
    FourierConfig,
    GridDecoderConfig,
    LearnedPositionConfig,
    Perceiver,
    PerceiverEncoder,
    PerceiverIO,
    PerceiverIOConfig,
    QueryDecoderConfig,
    create_model,
    list_models,
)
from omniperceiver.errors import ConfigError


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_seed_snippet():
    model = Perceiver(input_channels=3, input_axis=2, num_freq_bands=6, max_freq=10., depth=6,
                      num_latents=256, latent_dim=512, cross_heads=1, latent_heads=8,
                      cross_dim_head=64, latent_dim_head=64, num_classes=1000,
                      attn_dropout=0., ff_dropout=0., weight_tie_layers=False)
    assert count(model) == 45_187_140
    with torch.no_grad():
        out = model(torch.randn(1, 224, 224, 3))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,params", [
    ("perceiver-seed", 45_187_140),
    ("vision-perceiver-fourier", 48_440_627),
    ("perceiver-imagenet", 44_914_302),
    ("perceiver-ar-bytes-small", 4_084_230),
    ("perceiver-ar-imagenet64", 768_898_304),
    ("perceiver-resampler", 63_019_008),
])
def test_preset_parameter_counts(name, params):
    """The counts the README's preset table states."""
    assert name in list_models()
    with torch.device("meta"):  # sizes only: nothing allocated
        assert count(create_model(name)) == params


def test_vision_perceiver_fourier_matches_transformers_count():
    transformers = pytest.importorskip("transformers")
    config = transformers.PerceiverConfig(num_latents=512, d_latents=1024, d_model=261,
                                          num_blocks=8, num_self_attends_per_block=6,
                                          num_self_attention_heads=8,
                                          num_cross_attention_heads=1, num_labels=1000)
    with torch.device("meta"):
        hf = transformers.PerceiverForImageClassificationFourier(config)
    assert count(hf) == count(create_model("vision-perceiver-fourier"))


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("self_per_cross_attn", [1, 2])
def test_perceiver_matches_perceiver_pytorch_parameter_count(tie, self_per_cross_attn):
    perceiver_pytorch = pytest.importorskip("perceiver_pytorch")
    args = dict(input_channels=3, input_axis=2, num_freq_bands=4, max_freq=10.0, depth=4,
                num_latents=16, latent_dim=32, cross_heads=2, latent_heads=4, cross_dim_head=8,
                latent_dim_head=8, num_classes=7, weight_tie_layers=tie,
                self_per_cross_attn=self_per_cross_attn)
    assert count(Perceiver(**args)) == count(perceiver_pytorch.Perceiver(**args))


def test_perceiver_keywords_and_embeddings():
    model = tiny_perceiver(fourier_encode_data=False, self_per_cross_attn=3)
    x = torch.randn(2, 4, 5, 3)
    assert model(x).shape == (2, 4)
    assert model(x, return_embeddings=True).shape == (2, 6, 16)
    headless = tiny_perceiver(final_classifier_head=False)
    assert headless(x).shape == (2, 6, 16)
    mask = torch.ones(2, 4, 5, dtype=torch.bool)
    torch.testing.assert_close(model(x, mask=mask), model(x))
    with pytest.raises(ValueError, match="not supported"):
        tiny_perceiver(attn_residual=True)


def test_create_model_overrides_and_unknown_name():
    model = create_model("perceiver-seed", depth=1, num_classes=10, num_latents=8)
    assert model(torch.randn(1, 16, 16, 3)).shape == (1, 10)
    assert model.recipe == {"preset": "perceiver-seed",
                            "overrides": {"depth": 1, "num_classes": 10, "num_latents": 8}}
    with pytest.raises(ValueError, match="available"):
        create_model("no-such-model")


@pytest.mark.parametrize("sharing,expected", [("none", (3, 3)), ("after_first", (2, 2)),
                                              ("all", (1, 1))])
def test_encoder_weight_sharing(sharing, expected):
    enc = PerceiverEncoder(4, EncoderConfig(num_latents=2, latent_dim=8, num_blocks=3,
                                            num_cross_attends=3, self_attends_per_block=1,
                                            cross_attend_sharing=sharing,
                                            block_sharing=sharing))
    assert (len(enc.cross_attends), len(enc.blocks)) == expected
    assert enc(torch.randn(2, 5, 4)).shape == (2, 2, 8)


def test_encoder_schedule_runs_cross_attends_before_first_blocks():
    enc = PerceiverEncoder(4, EncoderConfig(num_latents=2, latent_dim=8, num_blocks=4,
                                            num_cross_attends=2, self_attends_per_block=1,
                                            cross_attend_sharing="none", block_sharing="none"))
    calls = []
    for i, m in enumerate(enc.cross_attends):
        m.register_forward_hook(lambda *a, i=i: calls.append(f"x{i}"))
    for i, m in enumerate(enc.blocks):
        m.register_forward_hook(lambda *a, i=i: calls.append(f"b{i}"))
    enc(torch.randn(1, 3, 4))
    assert calls == ["x0", "b0", "x1", "b1", "b2", "b3"]


def test_encoder_rejects_bad_schedules():
    with pytest.raises(ValueError, match="num_cross_attends"):
        PerceiverEncoder(4, EncoderConfig(num_blocks=2, num_cross_attends=3))
    with pytest.raises(ValueError, match="block_sharing"):
        PerceiverEncoder(4, EncoderConfig(block_sharing="some"))


@pytest.mark.parametrize("fraction, kept", [(0.5, 5), (0.25, 8), (0.95, 1)])
def test_input_dropout_gives_a_random_subset_of_each_examples_inputs(fraction, kept):
    from omniperceiver.encoder import drop_inputs

    inputs = torch.arange(3 * 10 * 2, dtype=torch.float64).view(3, 10, 2)
    mask = torch.rand(3, 10) > 0.3
    torch.manual_seed(0)
    subset, subset_mask = drop_inputs(inputs, mask, fraction)
    assert subset.shape == (3, kept, 2) and subset_mask.shape == (3, kept)
    for row, rows, row_mask in zip(inputs, subset, subset_mask, strict=True):
        index = (rows[:, 0] - row[0, 0]).long() // 2  # each kept input is one of the row's
        assert torch.equal(row[index], rows) and len(set(index.tolist())) == kept
        assert torch.equal(mask[int(row[0, 0]) // 20][index], row_mask)
    assert not all(torch.equal(subset[0], drop_inputs(inputs, mask, fraction)[0][0])
                   for _ in range(5))  # a new draw each time


def test_input_dropout_trains_on_the_subset_and_evaluates_on_every_input():
    from omniperceiver.encoder import drop_inputs

    config = dict(num_latents=3, latent_dim=8, num_blocks=2, num_cross_attends=2,
                  self_attends_per_block=1)
    torch.manual_seed(0)
    dropping = PerceiverEncoder(4, EncoderConfig(**config, input_dropout=0.5)).double()
    plain = PerceiverEncoder(4, EncoderConfig(**config)).double()
    plain.load_state_dict(dropping.state_dict())
    x = torch.randn(2, 12, 4, dtype=torch.float64)
    torch.manual_seed(1)
    trained = dropping.train()(x)
    torch.manual_seed(1)
    subset, _ = drop_inputs(x, None, 0.5)
    torch.testing.assert_close(trained, plain.train()(subset), rtol=0, atol=0)
    assert not torch.allclose(trained, plain(x))
    torch.testing.assert_close(dropping.eval()(x), plain.eval()(x), rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"input_dropout must be a number in \[0, 1\), "
                                          r"got 1.0"):
        create_model("mnist-perceiver", encoder={"input_dropout": 1.0})


def test_latents_truncated_normal():
    enc = PerceiverEncoder(4, EncoderConfig(num_latents=256, latent_dim=64))
    assert enc.latents.abs().max() <= 0.04 + 1e-7
    assert 0.012 < enc.latents.std() < 0.02


def test_grid_decoder_and_subsampling():
    model = tiny_io(input_axis=2, input_channels=3,
                    position=FourierConfig(num_bands=4, max_resolution=(8, 8)),
                    decoder=GridDecoderConfig(output_shape=(6, 7), output_channels=2,
                                              num_bands=3))
    x = torch.randn(2, 8, 8, 3)
    with torch.no_grad():
        full = model(x)
        assert full.shape == (2, 6, 7, 2)
        idx = torch.tensor([0, 5, 41, 17])
        part = model(x, subsample=idx)
    assert part.shape == (2, 4, 2)
    torch.testing.assert_close(part, full.reshape(2, 42, 2)[:, idx], atol=1e-6, rtol=1e-5)


def test_learned_grid_queries_and_learned_input_positions():
    model = tiny_io(input_axis=2, input_channels=3,
                    position=LearnedPositionConfig(shape=(4, 4), num_channels=6),
                    decoder=GridDecoderConfig(output_shape=(4, 4), output_channels=5,
                                              query="learned"))
    assert model(torch.randn(2, 4, 4, 3)).shape == (2, 4, 4, 5)
    with pytest.raises(ValueError, match="16 positions"):
        model(torch.randn(2, 5, 4, 3))


def test_query_decoder_requires_queries():
    model = tiny_io(decoder=QueryDecoderConfig(query_channels=9, output_channels=4))
    x = torch.randn(2, 5, 5)
    with pytest.raises(ValueError, match="no queries of its own"):
        model(x)
    with pytest.raises(ValueError, match=r"\(2, num_outputs, 9\)"):
        model(x, queries=torch.randn(2, 3, 8))
    assert model(x, queries=torch.randn(2, 3, 9)).shape == (2, 3, 4)


@pytest.mark.parametrize("pooling", ["query", "mean"])
def test_classification_pooling(pooling):
    model = tiny_io(decoder=ClassificationDecoderConfig(num_classes=7, pooling=pooling))
    assert model(torch.randn(3, 4, 5)).shape == (3, 7)


@pytest.mark.parametrize("factory", [
    lambda: tiny_perceiver(),
    lambda: tiny_perceiver(weight_tie_layers=True, depth=3),
    lambda: tiny_io(input_axis=2, input_channels=3,
                    position=FourierConfig(num_bands=2, max_resolution=(4, 5)),
                    decoder=GridDecoderConfig(output_shape=(3,), output_channels=2)),
    lambda: tiny_io(num_cross_attends=2, cross_attend_sharing="none", block_sharing="none"),
])
def test_gradients_reach_every_parameter(factory):
    torch.manual_seed(0)
    model = factory().train()
    two_d = isinstance(model, Perceiver) or model.input_adapter.input_axis == 2
    x = torch.randn(2, 4, 5, 3) if two_d else torch.randn(2, 4, 5)
    model(x).square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_dtypes(dtype):
    model = tiny_perceiver().to(dtype)
    out = model(torch.randn(2, 4, 5, 3, dtype=dtype))
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_bf16_autocast_close_to_float32():
    torch.manual_seed(0)
    model = tiny_perceiver()
    x = torch.randn(2, 4, 5, 3)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)


def test_torch_compile_smoke():
    """The whole forward traces as one graph (inductor's timings are in benchmarks/)."""
    torch.manual_seed(0)
    model = tiny_perceiver()
    x = torch.randn(2, 4, 5, 3)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-4)


def test_state_dict_round_trip():
    a, b = tiny_perceiver(weight_tie_layers=True, depth=3), tiny_perceiver(weight_tie_layers=True,
                                                                          depth=3)
    x = torch.randn(2, 4, 5, 3)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x), b(x))


def test_config_dict_round_trip():
    config = create_model("vision-perceiver-fourier", image_shape=32).config
    again = PerceiverIOConfig.from_dict(config.to_dict())
    assert again == config


@pytest.mark.parametrize("factory", [
    lambda: create_model("perceiver-seed", depth=1, num_latents=4, latent_dim=16,
                         num_classes=3),
    lambda: tiny_io(input_axis=2, input_channels=3,
                    position=FourierConfig(num_bands=2, max_resolution=(4, 4))),
])
def test_save_and_load_pretrained(tmp_path, factory):
    pytest.importorskip("safetensors")
    model = factory().eval()
    omniperceiver.save_pretrained(model, tmp_path / "m", extra={"classes": ["a", "b", "c"]})
    loaded = omniperceiver.from_pretrained(tmp_path / "m")
    x = torch.randn(2, 4, 4, 3)
    torch.testing.assert_close(loaded(x), model(x))
    assert omniperceiver.hub.load_config(tmp_path / "m")["extra"]["classes"] == ["a", "b", "c"]


def test_save_refuses_models_it_cannot_rebuild(tmp_path):
    from omniperceiver import PerceiverModel
    from omniperceiver.adapters import GridAdapter

    model = PerceiverModel(input_adapter=GridAdapter(input_channels=3, input_axis=1),
                           encoder=PerceiverEncoder(3, EncoderConfig(num_latents=2,
                                                                     latent_dim=8)))
    with pytest.raises(ValueError, match="register"):
        omniperceiver.save_pretrained(model, tmp_path)


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, omniperceiver; heavy = [m for m in ('lightning', 'safetensors', "
            "'transformers', 'matplotlib', 'onnx', 'PIL') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_attention_spec_defaults_follow_deepmind():
    spec = AttentionSpec()
    assert (spec.heads, spec.widening_factor, spec.qkv_bias, spec.query_residual) == (1, 1, True,
                                                                                     True)
    assert isinstance(create_model("vision-perceiver-fourier"), PerceiverIO)
