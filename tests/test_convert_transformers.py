"""transformers ``Perceiver*`` -> our models: the same outputs, the same parameter counts.

Reference models are randomly initialised from small ``PerceiverConfig``s (no downloads), two
configurations per family, compared in float64. Tolerances: 1e-10 where both sides compute the
same thing; 1e-6 where transformers computes Fourier features in float32 (ours: float64).
"""

import json

import pytest
import torch

from omniperceiver import create_model, from_pretrained, save_pretrained
from omniperceiver.convert import from_transformers
from omniperceiver.convert._common import count_parameters as n_params
from omniperceiver.convert.cli import main as convert_main

transformers = pytest.importorskip("transformers")

EXACT = dict(atol=1e-10, rtol=0)
FOURIER = dict(atol=1e-6, rtol=0)  # transformers' Fourier features are float32

# Two encoder configurations: DeepMind-like defaults, and every knob turned.
CONFIGS = {
    "plain": dict(num_latents=6, d_latents=16, num_blocks=2, num_self_attends_per_block=2,
                  num_self_attention_heads=2, num_cross_attention_heads=1),
    "knobs": dict(num_latents=5, d_latents=12, num_blocks=1, num_self_attends_per_block=3,
                  num_self_attention_heads=3, num_cross_attention_heads=2, qk_channels=6,
                  v_channels=12, cross_attention_widening_factor=2,
                  self_attention_widening_factor=3, hidden_act="gelu_new",
                  use_query_residual=False),
}


def hf_model(cls_name, config="plain", **kwargs):
    torch.manual_seed(0)
    config = transformers.PerceiverConfig(**CONFIGS[config], attention_probs_dropout_prob=0.0,
                                          **kwargs)
    model = getattr(transformers, cls_name)(config).double().eval()
    with torch.no_grad():  # transformers initialises some weights to 0/1: make them all matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                b.normal_(0, 0.2)
    return model


@pytest.mark.parametrize("config", list(CONFIGS))
def test_image_fourier(config):
    hf = hf_model("PerceiverForImageClassificationFourier", config, num_labels=5)
    ours = from_transformers(hf, semantics="transformers")
    assert n_params(ours) == n_params(hf)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x.permute(0, 2, 3, 1)), hf(pixel_values=x).logits,
                                   **FOURIER)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_image_learned(config):
    hf = hf_model("PerceiverForImageClassificationLearned", config, num_labels=4, image_size=6)
    ours = from_transformers(hf, semantics="transformers")
    assert n_params(ours) == n_params(hf)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        expected = hf(pixel_values=x).logits
        torch.testing.assert_close(ours(x.permute(0, 2, 3, 1)), expected, **EXACT)
        # semantics="deepmind": the decoder without transformers' query residual.
        reference = from_transformers(hf, semantics="deepmind")
        assert not reference.decoder.query.cross_attend.query_residual
        assert (reference(x.permute(0, 2, 3, 1)) - expected).abs().max() > 1e-3


@pytest.mark.parametrize("config", list(CONFIGS))
def test_image_conv(config):
    hf = hf_model("PerceiverForImageClassificationConvProcessing", config, num_labels=3)
    ours = from_transformers(hf, semantics="transformers")
    assert n_params(ours) == n_params(hf)
    x = torch.randn(2, 3, 24, 24, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x.permute(0, 2, 3, 1)), hf(pixel_values=x).logits,
                                   **FOURIER)
    # transformers' max-pool has no padding (55 x 55 from 224); DeepMind's is SAME (56 x 56).
    assert ours.input_adapter.stem.out_shape((224, 224)) == (55, 55)
    reference = from_transformers(hf, semantics="deepmind")
    assert reference.input_adapter.stem.out_shape((224, 224)) == (56, 56)
    assert reference.encoder.blocks[0][0].ff.activation == "gelu_tanh"


@pytest.mark.parametrize("config", list(CONFIGS))
def test_masked_language_model_with_mask(config):
    hf = hf_model("PerceiverForMaskedLM", config, d_model=16, max_position_embeddings=9)
    ours = from_transformers(hf, semantics="transformers")
    assert n_params(ours) == n_params(hf)
    ids = torch.randint(6, 262, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 5:] = False
    mask[2, 1:] = False
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask), hf(input_ids=ids, attention_mask=mask).logits,
                                   **EXACT)
        # Shorter inputs: transformers always decodes max_position_embeddings positions.
        short = ids[:, :4]
        torch.testing.assert_close(ours(short, torch.ones_like(short, dtype=torch.bool)),
                                   hf(input_ids=short).logits[:, :4], **EXACT)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_optical_flow(config):
    hf = hf_model("PerceiverForOpticalFlow", config, train_size=[4, 6])
    ours = from_transformers(hf, semantics="transformers", flow_scale=1.0)  # raw output
    assert n_params(ours) == n_params(hf)
    x = torch.randn(2, 2, 27, 4, 6, dtype=torch.float64)  # transformers: (batch, 2, 27, H, W)
    with torch.no_grad():
        torch.testing.assert_close(ours(x.permute(0, 1, 3, 4, 2)), hf(inputs=x).logits,
                                   **FOURIER)


def test_optical_flow_is_in_pixels_by_default():
    """Flow in pixels as DeepMind's examples compute it: 20x transformers' output, recorded
    in the saved recipe and kept through save_pretrained/from_pretrained and the CLI."""
    hf = hf_model("PerceiverForOpticalFlow", "plain", train_size=[4, 6])
    ours = from_transformers(hf, semantics="transformers")
    assert ours.recipe["overrides"]["flow_scale"] == 20.0
    x = torch.randn(2, 2, 27, 4, 6, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x.permute(0, 1, 3, 4, 2)), 20 * hf(inputs=x).logits,
                                   **FOURIER)
    with pytest.raises(ValueError, match="flow_scale"):
        from_transformers(hf_model("PerceiverForImageClassificationLearned", num_labels=3,
                                   image_size=4), flow_scale=1.0)


@pytest.mark.parametrize("config", ["plain", "knobs"])
def test_multimodal_autoencoding_subsampled(config):
    overrides = dict(CONFIGS[config], num_cross_attention_heads=1)
    if config == "knobs":
        overrides.update(qk_channels=None, v_channels=None)  # the inputs are 400+ channels wide
    torch.manual_seed(0)
    cfg = transformers.PerceiverConfig(
        **overrides, attention_probs_dropout_prob=0.0, num_labels=5, image_size=8, num_frames=2,
        audio_samples_per_frame=8, samples_per_patch=4, output_shape=[1, 2, 16, 16],
        output_num_channels=7, _label_trainable_num_channels=9)
    hf = transformers.PerceiverForMultimodalAutoencoding(cfg).double().eval()
    ours = from_transformers(hf, semantics="transformers")
    assert n_params(ours) == n_params(hf)
    images = torch.randn(2, 2, 3, 16, 16, dtype=torch.float64)  # (batch, T, C, H, W)
    audio = torch.randn(2, 16, 1, dtype=torch.float64)
    label = torch.zeros(2, 5, dtype=torch.float64)
    sub = {"image": torch.arange(100, 164), "audio": torch.arange(1, 3), "label": None}
    with torch.no_grad():
        expected = hf(inputs={"image": images, "audio": audio, "label": label},
                      subsampled_output_points=sub).logits
        got = ours({"image": images.permute(0, 1, 3, 4, 2), "audio": audio, "label": label},
                   subsample=sub)
    assert set(got) == set(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], **FOURIER)


def test_state_dict_and_config_dict_convert_like_the_model():
    hf = hf_model("PerceiverForOpticalFlow", "knobs", train_size=[4, 6])
    from_model = from_transformers(hf, semantics="transformers")
    config = json.loads(hf.config.to_json_string(use_diff=True))  # what config.json holds
    from_state = from_transformers(hf.state_dict(), config, semantics="transformers")
    theirs = from_state.state_dict()
    assert list(theirs) == list(from_model.state_dict())
    for k, v in from_model.state_dict().items():
        torch.testing.assert_close(v, theirs[k], atol=0, rtol=0, msg=k)


def test_round_trip_through_our_format(tmp_path):
    hf = hf_model("PerceiverForMaskedLM", "knobs", d_model=16, max_position_embeddings=9).float()
    ours = from_transformers(hf, semantics="transformers")
    save_pretrained(ours, tmp_path / "mlm")
    loaded = from_pretrained(tmp_path / "mlm")
    assert loaded.recipe == ours.recipe
    ids = torch.randint(6, 262, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), ours(ids), atol=0, rtol=0)


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_cli_converts_a_checkpoint_folder(tmp_path, weights):
    hf = hf_model("PerceiverForImageClassificationLearned", "plain", num_labels=4,
                  image_size=6).float()
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(hf.config.to_json_string(use_diff=True))
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    if weights == "model.safetensors":
        from safetensors.torch import save_file
        save_file(state, str(folder / weights))
    else:
        torch.save(state, folder / weights)
    out = tmp_path / "ours"
    args = ["--from", "transformers", "--semantics", "transformers", str(folder), str(out)]
    assert convert_main(args) == 0
    loaded = from_pretrained(out)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x.permute(0, 2, 3, 1)), hf(pixel_values=x).logits,
                                   atol=1e-5, rtol=1e-5)
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["preset"] == "vision-perceiver-learned"
    assert saved["extra"]["converted_from"] == "transformers"


def test_cli_reports_a_missing_checkpoint(tmp_path, capsys):
    assert convert_main(["--from", "transformers", str(tmp_path), str(tmp_path / "out")]) == 1
    assert "config.json" in capsys.readouterr().err


@pytest.mark.parametrize("name, count", [
    ("vision-perceiver-fourier", 48_440_627), ("vision-perceiver-learned", 62_255_848),
    ("vision-perceiver-conv", 48_646_522), ("language-perceiver", 201_108_230),
    ("optical-flow-perceiver", 41_057_134), ("multimodal-perceiver", 19_858_855)])
def test_published_presets_have_the_published_parameter_counts(name, count):
    # Counts of transformers' models built from the published PerceiverConfigs (verified
    # offline once: benchmarks/parity.py --counts); built on the meta device, nothing allocated.
    with torch.device("meta"):
        model = create_model(name)
    assert n_params(model) == count


def test_incomplete_checkpoint_is_a_value_error():
    hf = hf_model("PerceiverForOpticalFlow", "plain", train_size=[4, 6])
    state = {k: v for k, v in hf.state_dict().items() if "decoder" not in k}
    with pytest.raises(ValueError, match="lack"):
        from_transformers(state, hf.config.to_dict())
