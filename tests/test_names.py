"""One name per concept (docs/architecture.md, "Names"): no preset, data module or config uses a
retired keyword; every config builds the model it names; and the model arguments of 0.3.0
(flat encoder keywords, image_bands, max_frequency ...) upgrade to ones that build the same
model."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import yaml

import omniperceiver
from omniperceiver import create_model, list_models
from omniperceiver.registry import get_preset
from omniperceiver.renames import upgrade_model_args

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

#: Keywords that 0.4.0 renamed or moved (their new names: renames.py).
RETIRED = {"image_size", "size", "channels", "image_bands", "audio_bands", "max_frequency",
           "max_freq", "num_freq_bands", "cross_heads", "self_heads", "cross_qk_channels",
           "dropout", "train_size", "frames_shape", "audio_samples"}
#: perceiver-pytorch's constructor keywords, kept for its users and its checkpoints.
PERCEIVER_PYTORCH = {"perceiver-seed", "perceiver-pytorch", "perceiver-pytorch-io"}
#: Perceiver AR's one dropout rate is its own keyword (a decoder-only model, not Perceiver IO).
PERCEIVER_AR_OWN = {"dropout"}


def keywords(function) -> set[str]:
    return set(inspect.signature(function).parameters)


@pytest.mark.parametrize("name", list_models())
def test_no_preset_takes_a_retired_keyword(name):
    if name in PERCEIVER_PYTORCH:
        return
    retired = keywords(get_preset(name).factory) & RETIRED
    if name.startswith("perceiver-ar"):
        retired -= PERCEIVER_AR_OWN
    assert not retired, f"{name}: {sorted(retired)}"


def test_no_data_module_takes_a_retired_keyword():
    pytest.importorskip("lightning")
    from omniperceiver.training import data

    for name in data.__all__:
        retired = keywords(getattr(data, name).__init__) & RETIRED
        assert not retired, f"{name}: {sorted(retired)}"


def config_names(config: dict) -> set[str]:
    """Every key under a config's model_args and data init_args, at any depth."""
    def keys(value) -> set[str]:
        if not isinstance(value, dict):
            return set()
        return set(value) | {k for v in value.values() for k in keys(v)}

    model = config["model"].get("init_args", config["model"])
    return keys(model.get("model_args")) | keys(config.get("data", {}).get("init_args"))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_uses_todays_names_and_builds_its_model(path):
    config = yaml.safe_load(path.read_text())
    assert not config_names(config) & RETIRED
    model = config["model"].get("init_args", config["model"])
    args = dict(model.get("model_args") or {})
    if not model["model"].startswith("perceiver-ar"):
        args.setdefault("num_classes", 10)  # a classifier's classes come from its data
    with torch.device("meta"):
        assert isinstance(create_model(model["model"], **args), torch.nn.Module)


# --- 0.3.0's model arguments ------------------------------------------------------------------

TINY_0_3_0 = dict(num_latents=4, latent_dim=16, num_blocks=2, self_attends_per_block=1,
                  num_cross_attends=2, cross_heads=2, cross_qk_channels=8, self_heads=4,
                  widening_factor=2, dropout=0.1, latent_init_std=0.5, pooling="query")
#: The same encoder and decoder, written by hand in today's keywords.
SPEC = dict(widening_factor=2, attn_dropout=0.1, ff_dropout=0.1)
TINY = dict(encoder=dict(num_latents=4, latent_dim=16, num_blocks=2, self_attends_per_block=1,
                         num_cross_attends=2, latent_init_std=0.5,
                         cross_attend=dict(heads=2, qk_channels=8, **SPEC),
                         self_attend=dict(heads=4, **SPEC)),
            decoder=dict(pooling="query"))

SMALL = dict(num_latents=2, latent_dim=8, self_attends_per_block=1, self_attend={"heads": 2})
#: preset: (0.3.0's keywords, today's by hand, one input)
CASES = {
    "image-perceiver": (
        dict(image_size=(8, 6), channels=2, mode="patches", patch_size=2, num_bands=3,
             **TINY_0_3_0),
        dict(image_shape=(8, 6), input_channels=2, mode="patches", patch_size=2, num_bands=3,
             **TINY),
        lambda: torch.rand(2, 8, 6, 2)),
    "mnist-perceiver": (
        dict(image_size=(6, 6), channels=1, num_bands=2, **TINY_0_3_0),
        dict(image_shape=(6, 6), input_channels=1, num_bands=2, **TINY),
        lambda: torch.rand(2, 6, 6, 1)),
    "pointcloud-perceiver": (
        dict(num_features=1, num_bands=3, max_frequency=5.0, **TINY_0_3_0),
        dict(num_features=1, num_bands=3, max_resolution=10.0, **TINY),
        lambda: torch.rand(2, 12, 4) * 2 - 1),
    "audio-perceiver": (
        dict(max_samples=800, sample_rate=8000, n_mels=8, hop_length=80, num_bands=3,
             **TINY_0_3_0),
        dict(max_samples=800, sample_rate=8000, n_mels=8, hop_length=80, num_bands=3, **TINY),
        lambda: torch.rand(2, 800) * 2 - 1),
    "video-perceiver": (
        dict(video_shape=(2, 4, 4), channels=3, patch_shape=(1, 2, 2), num_bands=2,
             **TINY_0_3_0),
        dict(video_shape=(2, 4, 4), input_channels=3, patch_shape=(1, 2, 2), num_bands=2,
             **TINY),
        lambda: torch.rand(2, 2, 4, 4, 3)),
    "av-perceiver": (
        dict(image_size=(4, 4), channels=2, patch_size=2, image_bands=3, max_samples=800,
             sample_rate=8000, n_mels=8, hop_length=80, audio_bands=2, **TINY_0_3_0),
        dict(image=dict(image_shape=(4, 4), input_channels=2, patch_size=2, num_bands=3),
             audio=dict(max_samples=800, sample_rate=8000, n_mels=8, hop_length=80,
                        num_bands=2), **TINY),
        lambda: {"image": torch.rand(2, 4, 4, 2), "audio": torch.rand(2, 800) * 2 - 1}),
    "vision-perceiver-learned": (
        dict(num_classes=3, image_size=4, pixel_channels=4, position_channels=4,
             projected_position_channels=4, encoder=dict(num_latents=2, latent_dim=8)),
        dict(num_classes=3, image_shape=4, pixel_channels=4, position_channels=4,
             projected_position_channels=4, encoder=dict(num_latents=2, latent_dim=8)),
        lambda: torch.rand(2, 4, 4, 3)),
    "optical-flow-perceiver": (
        dict(train_size=(4, 6), project_channels=8, num_bands=2,
             encoder=SMALL),
        dict(image_shape=(4, 6), project_channels=8, num_bands=2,
             encoder=SMALL),
        lambda: torch.rand(2, 2, 4, 6, 27)),
    "multimodal-perceiver": (
        dict(frames_shape=(2, 4, 4), patch_size=2, max_resolution=(2, 3, 3), image_bands=2,
             audio_samples=24, samples_per_patch=8, audio_bands=3, num_classes=3,
             label_query_channels=8, output_channels=8,
             encoder=SMALL),
        dict(image=dict(video_shape=(2, 4, 4), patch_shape=(1, 2, 2), max_resolution=(2, 3, 3),
                        num_bands=2),
             audio=dict(max_samples=24, samples_per_patch=8, num_bands=3, max_resolution=24),
             num_classes=3, label_query_channels=8, output_channels=8,
             encoder=SMALL),
        lambda: {"image": torch.rand(2, 2, 4, 4, 3), "audio": torch.rand(2, 24, 1),
                 "label": torch.rand(2, 3)}),
}


def outputs(model, x):
    with torch.no_grad():
        y = model.eval()(x)
    return y if isinstance(y, dict) else {"": y}


@pytest.mark.parametrize("preset", sorted(CASES))
def test_0_3_0_model_args_upgrade_to_the_same_model(preset):
    old, today, make_input = CASES[preset]
    torch.manual_seed(0)
    upgraded = create_model(preset, **upgrade_model_args(preset, old, "0.3.0"))
    by_hand = create_model(preset, **today)
    assert {k: v.shape for k, v in upgraded.state_dict().items()} == \
        {k: v.shape for k, v in by_hand.state_dict().items()}
    by_hand.load_state_dict(upgraded.state_dict())
    x = make_input()
    want, got = outputs(by_hand, x), outputs(upgraded, x)
    assert sorted(got) == sorted(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
    if "encoder" in today and "self_attend" in today["encoder"]:  # the dropouts arrived too
        assert upgraded.encoder.config == by_hand.encoder.config


def test_the_0_3_0_cases_cover_every_task_preset_and_every_retired_keyword():
    from omniperceiver.models.classifiers import __all__ as classifiers

    tasks = {name for name in list_models()
             if get_preset(name).factory.__name__ in classifiers}
    assert tasks <= set(CASES)
    given = {key for old, _, _ in CASES.values() for key in old}
    assert RETIRED - given == {"size", "max_freq", "num_freq_bands"}  # data / perceiver-pytorch


def test_the_upgrade_leaves_todays_model_args_as_they_are():
    for preset, (old, today, _) in CASES.items():
        assert upgrade_model_args(preset, today, "0.3.0") == today
        assert upgrade_model_args(preset, old, omniperceiver.__version__) == old
        assert upgrade_model_args(preset, old, None) == old
    assert upgrade_model_args("perceiver-seed", {"max_freq": 10.0}, "0.3.0") == {"max_freq": 10.0}


def test_a_preset_whose_defaults_changed_loads_files_of_earlier_releases_as_they_were_built():
    """mnist-perceiver's default encoder changed in 0.5.0 (the arrangement) and in 0.6.0 (the
    number of latents): a file that left them at their defaults gets the defaults of the
    release that wrote it back, keywords the file gives still win, and files of 0.6.0 and
    later build today's default."""
    arrangement = {"num_blocks": 2, "self_attends_per_block": 2, "num_cross_attends": 2}
    assert upgrade_model_args("mnist-perceiver", {}, "0.4.0") == {
        "encoder": {**arrangement, "num_latents": 32}}
    assert upgrade_model_args("mnist-perceiver", {}, "0.5.0") == {"encoder": {"num_latents": 32}}
    given = {"encoder": {"num_cross_attends": 1, "num_latents": 8}}
    assert upgrade_model_args("mnist-perceiver", given, "0.4.0") == {
        "encoder": {**arrangement, "num_cross_attends": 1, "num_latents": 8}}
    assert upgrade_model_args("mnist-perceiver", given, "0.5.0") == given
    assert upgrade_model_args("mnist-perceiver", {}, "0.6.0") == {}
    assert upgrade_model_args("image-perceiver", {}, "0.4.0") == {}
    built = create_model("mnist-perceiver", **upgrade_model_args("mnist-perceiver", {}, "0.4.0"))
    assert len(built.encoder.cross_schedule) == 2 and len(built.encoder.block_schedule) == 2
    assert built.encoder.latents.shape[0] == 32
    built = create_model("mnist-perceiver", **upgrade_model_args("mnist-perceiver", {}, "0.5.0"))
    assert len(built.encoder.cross_schedule) == 4 and built.encoder.latents.shape[0] == 32
    today = create_model("mnist-perceiver")
    assert len(today.encoder.cross_schedule) == 4 and today.encoder.latents.shape[0] == 16
