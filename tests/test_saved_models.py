"""Models saved by earlier releases still load, with the same outputs.

``tests/fixtures/saved_models/<name>/`` holds ``save_pretrained`` folders written by
omniperceiver 0.1.0 and ``expected.safetensors`` (a fixed input and the output it gave);
``tests/fixtures/make_saved_models.py`` wrote them.
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

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
    import omniperceiver.training  # noqa: F401  (registers the task presets)

    expected = load_file(str(SAVED / name / "expected.safetensors"))
    model = omniperceiver.from_pretrained(SAVED / name)
    with torch.no_grad():
        got = model(unflatten(expected, "input"))
    assert_close(got, unflatten(expected, "output"))
