"""Models saved by earlier releases still load, with the same outputs.

``tests/fixtures/saved_models/<name>/`` holds ``save_pretrained`` folders written by
omniperceiver 0.1.0 and ``expected.safetensors`` (a fixed input and the output it gave);
``tests/fixtures/make_saved_models.py`` wrote them.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import omniperceiver

SAVED = Path(__file__).resolve().parent / "fixtures" / "saved_models"
NAMES = sorted(p.name for p in SAVED.iterdir() if p.is_dir())


def unflatten(tensors: dict, prefix: str):
    if prefix in tensors:
        return tensors[prefix]
    return {k.removeprefix(prefix + "."): v for k, v in tensors.items()
            if k.startswith(prefix + ".")}


def assert_close(got, want):
    if isinstance(want, dict):
        assert sorted(got) == sorted(want)
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6)
    else:
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_fixtures_are_there():
    assert len(NAMES) >= 6


@pytest.mark.parametrize("name", NAMES)
def test_saved_model_loads_with_the_same_outputs(name):
    expected = load_file(str(SAVED / name / "expected.safetensors"))
    model = omniperceiver.from_pretrained(SAVED / name)
    with torch.no_grad():
        got = model(unflatten(expected, "input"))
    assert_close(got, unflatten(expected, "output"))


def test_saved_models_load_in_a_fresh_interpreter():
    """``import omniperceiver`` alone registers every preset the saved models name."""
    src = Path(omniperceiver.__file__).resolve().parents[1]
    code = ("import sys, omniperceiver\n"
            f"for name in {NAMES!r}:\n"
            f"    omniperceiver.from_pretrained({str(SAVED)!r} + '/' + name)\n"
            "print(sorted(m for m in sys.modules if m.startswith('omniperceiver.training')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("version, scale", [("0.1.0", 1.0), ("0.2.0", 1.0), ("0.3.0", 20.0),
                                            (None, 20.0)])
def test_flow_folders_keep_the_units_of_the_release_that_wrote_them(version, scale):
    """Flow in pixels (x20) since 0.3.0; a folder written before keeps transformers' units."""
    from omniperceiver.hub import build_from_recipe

    with torch.device("meta"):
        model = build_from_recipe({"preset": "optical-flow-perceiver", "overrides": {}}, version)
    assert model.output_adapter.flow_scale == scale
