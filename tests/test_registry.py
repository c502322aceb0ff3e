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
                   "jsonargparse", "matplotlib", "onnx"}
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
    model = create_model("mnist-perceiver", num_classes=10, num_latents=8, latent_dim=16,
                         num_blocks=1, num_cross_attends=1).eval()
    x = torch.rand(3, 28, 28, 1)
    with torch.no_grad():
        want = model(x)
    folder = omniperceiver.save_pretrained(
        model, tmp_path / "model", extra={"classes": [str(i) for i in range(10)],
                                          "input_spec": {"modality": "image",
                                                         "image_size": [28, 28],
                                                         "channels": 1}})
    torch.save(x, tmp_path / "x.pt")
    got = json.loads(fresh_python(
        "import json, torch, omniperceiver\n"
        f"model = omniperceiver.from_pretrained({str(folder)!r})\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
        "with torch.no_grad():\n"
        "    print(json.dumps(model(x).tolist()))"))
    torch.testing.assert_close(torch.tensor(got), want, rtol=0, atol=1e-6)
