"""The model registry: every name resolves after ``import omniperceiver`` alone, in a fresh
interpreter; the model package imports nothing beyond torch; saved models load in a fresh
interpreter with the same outputs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import omniperceiver
from omniperceiver import create_model, list_models
from omniperceiver.cli import main

SRC = str(Path(omniperceiver.__file__).resolve().parents[1])


def fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter that imports this checkout; its stdout."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_name_resolves_after_import_omniperceiver_alone():
    names = json.loads(fresh_python(
        "import json, omniperceiver; print(json.dumps(omniperceiver.list_models()))"))
    assert names == list_models()
    families = {"image-perceiver", "mnist-perceiver", "pointcloud-perceiver", "audio-perceiver",
                "video-perceiver", "av-perceiver", "perceiver-imagenet",
                "vision-perceiver-fourier", "vision-perceiver-learned", "vision-perceiver-conv",
                "language-perceiver", "optical-flow-perceiver", "multimodal-perceiver",
                "perceiver-seed", "perceiver-pytorch", "perceiver-pytorch-io"}
    assert families <= set(names)


def test_import_omniperceiver_loads_nothing_beyond_torch():
    new = json.loads(fresh_python(
        "import json, sys, torch\n"
        "before = set(sys.modules)\n"
        "import omniperceiver\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))"))
    top = {name.split(".")[0] for name in new}
    heavy = top & {"lightning", "pytorch_lightning", "PIL", "safetensors", "transformers",
                   "jsonargparse", "matplotlib", "onnx", "huggingface_hub"}
    assert not heavy
    assert not [name for name in new if name.startswith(("omniperceiver.training",
                                                          "omniperceiver.data",
                                                          "omniperceiver.convert"))]


def test_list_models_command_lists_the_registry(capsys):
    assert main(["list-models"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert listed == list_models()


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(omniperceiver.OmniPerceiverError, match="already registered"):
        omniperceiver.register_model("mnist-perceiver", "again")(lambda: None)


def test_unknown_name_is_a_user_error_naming_the_choices():
    with pytest.raises(omniperceiver.OmniPerceiverError, match="mnist-perceiver"):
        create_model("no-such-model")


def test_an_exported_mnist_run_loads_in_a_fresh_interpreter(tmp_path):
    """What the README's main job exports (an mnist-perceiver with its class names and input
    spec) loads with ``omniperceiver.from_pretrained`` after ``import omniperceiver`` alone."""
    model = create_model("mnist-perceiver", num_classes=10,
                         encoder=dict(num_latents=8, latent_dim=16, num_blocks=1,
                                      num_cross_attends=1)).eval()
    x = torch.rand(3, 28, 28, 1)
    with torch.no_grad():
        want = model(x)
    folder = omniperceiver.save_pretrained(
        model, tmp_path / "model", extra={"classes": [str(i) for i in range(10)],
                                          "input_spec": {"modality": "image",
                                                         "image_shape": [28, 28],
                                                         "input_channels": 1}})
    torch.save(x, tmp_path / "x.pt")
    got = json.loads(fresh_python(
        "import json, torch, omniperceiver\n"
        f"model = omniperceiver.from_pretrained({str(folder)!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
        "with torch.no_grad():\n"
        "    print(json.dumps(model(x).tolist()))"))
    torch.testing.assert_close(torch.tensor(got), want, rtol=0, atol=1e-6)


SMALL = dict(num_latents=4, latent_dim=16, num_blocks=1, self_attends_per_block=1)
SHRUNK = {  # every preset, small: (overrides, one input)
    "image-perceiver": (dict(image_shape=(6, 6), num_bands=2, encoder=SMALL),
                        lambda: torch.rand(2, 6, 6, 3)),
    "mnist-perceiver": (dict(num_bands=2, encoder=dict(SMALL, num_cross_attends=1)),
                        lambda: torch.rand(2, 28, 28, 1)),
    "pointcloud-perceiver": (dict(num_bands=2, encoder=SMALL), lambda: torch.rand(2, 20, 3)),
    "audio-perceiver": (dict(max_samples=800, n_mels=8, num_bands=2, encoder=SMALL),
                        lambda: torch.rand(2, 800) * 2 - 1),
    "video-perceiver": (dict(video_shape=(2, 8, 8), num_bands=2, encoder=SMALL),
                        lambda: torch.rand(2, 2, 8, 8, 1)),
    "av-perceiver": (dict(image=dict(image_shape=(8, 8), num_bands=2),
                          audio=dict(max_samples=800, n_mels=8, num_bands=2), encoder=SMALL),
                     lambda: {"image": torch.rand(2, 8, 8, 1),
                              "audio": torch.rand(2, 800) * 2 - 1}),
    "perceiver-imagenet": (dict(num_classes=5, image_shape=8, num_bands=2,
                                encoder=dict(SMALL, num_blocks=2, num_cross_attends=2)),
                           lambda: torch.rand(2, 8, 8, 3)),
    "vision-perceiver-fourier": (dict(num_classes=5, image_shape=8, num_bands=2, encoder=SMALL),
                                 lambda: torch.rand(2, 8, 8, 3)),
    "vision-perceiver-learned": (dict(num_classes=5, image_shape=8, pixel_channels=4,
                                      position_channels=4, projected_position_channels=4,
                                      encoder=SMALL), lambda: torch.rand(2, 8, 8, 3)),
    "vision-perceiver-conv": (dict(num_classes=5, image_shape=16, conv_channels=4, num_bands=2,
                                   max_resolution=(4, 4), encoder=SMALL),
                              lambda: torch.rand(2, 16, 16, 3)),
    "language-perceiver": (dict(vocab_size=32, max_length=12, num_channels=8,
                                encoder=dict(SMALL, cross_attend={"qk_channels": 8},
                                             self_attend={"qk_channels": 8, "v_channels": 16}),
                                decoder={"qk_channels": 8}),
                           lambda: torch.randint(1, 32, (2, 9))),
    "optical-flow-perceiver": (dict(image_shape=(4, 6), project_channels=8, num_bands=2,
                                    encoder=SMALL), lambda: torch.rand(2, 2, 4, 6, 27)),
    "multimodal-perceiver": (dict(image=dict(video_shape=(2, 8, 8), max_resolution=(2, 2, 2),
                                             num_bands=2),
                                  audio=dict(max_samples=32, samples_per_patch=8, num_bands=2,
                                             max_resolution=32),
                                  num_classes=3, label_query_channels=8, output_channels=8,
                                  encoder=SMALL),
                             lambda: {"image": torch.rand(2, 2, 8, 8, 3),
                                      "audio": torch.rand(2, 32, 1), "label": torch.rand(2, 3)}),
    "perceiver-seed": (dict(input_channels=3, num_freq_bands=2, depth=1, num_latents=4,
                            latent_dim=8, latent_heads=2, cross_dim_head=4, latent_dim_head=4,
                            num_classes=5), lambda: torch.rand(2, 6, 6, 3)),
    "perceiver-pytorch": (dict(input_channels=3, input_axis=2, num_freq_bands=2, max_freq=4.0,
                               depth=2, num_latents=4, latent_dim=8, latent_heads=2,
                               cross_dim_head=4, latent_dim_head=4, num_classes=5,
                               weight_tie_layers=True), lambda: torch.rand(2, 6, 6, 3)),
    "perceiver-pytorch-io": (dict(depth=2, dim=5, queries_dim=6, logits_dim=3, num_latents=4,
                                  latent_dim=8, latent_heads=2, cross_dim_head=4,
                                  latent_dim_head=4), lambda: torch.rand(2, 7, 5)),
    "perceiver-resampler": (dict(dim=8, depth=2, num_latents=3, heads=2, head_dim=4,
                                 max_frames=2), lambda: torch.rand(2, 2, 5, 8)),
    "perceiver-ar-bytes-small": (dict(max_context=12, num_latents=4, dim=8, heads=2,
                                      num_self_attends=1), lambda: torch.randint(0, 262, (2, 9))),
    "perceiver-ar-imagenet64": (dict(max_context=12, num_latents=4, dim=8, heads=2,
                                     num_self_attends=1), lambda: torch.randint(0, 256, (2, 9))),
    "perceiver-ar": (dict(vocab_size=20, max_context=12, num_latents=4, dim=8, heads=2,
                          head_dim=6, num_self_attends=1, learned_positions=True,
                          separate_latent_norm=True, final_norm=False),
                     lambda: torch.randint(0, 20, (2, 9))),
}


def test_the_round_trip_table_covers_every_preset():
    assert sorted(SHRUNK) == list_models()


def test_every_preset_round_trips_through_a_fresh_interpreter(tmp_path):
    """create, save_pretrained, then from_pretrained in a new interpreter: the same outputs."""
    from safetensors.torch import load_file

    torch.manual_seed(0)
    expected = {}
    for name, (overrides, make_input) in SHRUNK.items():
        model = create_model(name, **overrides).eval()
        x = make_input()
        queries = torch.rand(2, 3, 6) if name == "perceiver-pytorch-io" else None
        with torch.no_grad():
            y = model(x) if queries is None else model(x, queries=queries)
        omniperceiver.save_pretrained(model, tmp_path / name)
        torch.save({"x": x, "queries": queries}, tmp_path / name / "input.pt")
        flat = y if isinstance(y, dict) else {"": y}
        expected.update({f"{name}/{k}": v.contiguous() for k, v in flat.items()})
    fresh_python(
        "import torch, omniperceiver\n"
        "from safetensors.torch import save_file\n"
        "out = {}\n"
        f"for name in {sorted(SHRUNK)!r}:\n"
        f"    folder = {str(tmp_path)!r} + '/' + name\n"
        "    model = omniperceiver.from_pretrained(folder)\n"
        "    given = torch.load(folder + '/input.pt')\n"
        "    with torch.no_grad():\n"
        "        y = (model(given['x']) if given['queries'] is None\n"
        "             else model(given['x'], queries=given['queries']))\n"
        "    flat = y if isinstance(y, dict) else {'': y}\n"
        "    out.update({f'{name}/{k}': v.contiguous() for k, v in flat.items()})\n"
        f"save_file(out, {str(tmp_path / 'got.safetensors')!r})\n")
    got = load_file(str(tmp_path / "got.safetensors"))
    assert sorted(got) == sorted(expected)
    for key, want in expected.items():
        torch.testing.assert_close(got[key], want, rtol=0, atol=1e-6, msg=key)


def test_every_position_encoding_of_every_preset_has_the_one_interface():
    from omniperceiver.adapters import InputAdapter
    from omniperceiver.decoders import Decoder, OutputAdapter
    from omniperceiver.position import PositionEncoding

    for name, (overrides, _) in SHRUNK.items():
        model = create_model(name, **overrides)
        if isinstance(model, omniperceiver.PerceiverResampler):
            continue  # a component of vision-language models: media tokens in, latents out
        if isinstance(model, omniperceiver.PerceiverAR):
            continue  # autoregressive: its latents are its last inputs, and no decoder
        assert isinstance(model.input_adapter, InputAdapter), name
        assert model.decoder is None or isinstance(model.decoder, Decoder), name
        assert isinstance(model.output_adapter, OutputAdapter), name
        for module in model.modules():
            if callable(getattr(type(module), "grid", None)):  # a grid(shape) method
                assert isinstance(module, PositionEncoding), (name, type(module).__name__)


def test_recipe_records_the_preset_defaults():
    """A saved model stores the preset's keyword defaults with its overrides, so a later change
    of a default does not change what the folder rebuilds."""
    model = omniperceiver.create_model("mnist-perceiver", encoder={"num_latents": 8})
    overrides = model.recipe["overrides"]
    assert overrides["encoder"] == {"num_latents": 8}
    assert overrides["mode"] == "pixels" and overrides["image_shape"] == (28, 28)
    assert overrides["num_bands"] == 16 and overrides["input_channels"] == 1
