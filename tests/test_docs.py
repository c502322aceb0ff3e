"""The Python examples of README.md and docs/*.md run as written, each on its own in a fresh
interpreter: a reader copies one block, not the page, so every block has its own imports and
inputs.

A block that cannot run here says why in an HTML comment on the line before its fence, and only
the network or a GPU are reasons::

    <!-- not run: needs the network (downloads deepmind/vision-perceiver-conv) -->
    ```python

The blocks run in a folder that holds what the documented commands leave behind:
``runs/mnist/model``, a tiny stand-in for the model that ``omniperceiver fit`` exports.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- not run: (?P<reason>.*?) -->\n)?```python\n(?P<code>.*?)```", re.S)
REASONS = ("needs the network", "needs a GPU")
# What some blocks' comments promise, checked after the block.
CHECKS = {
    "flow = model(": "assert flow.shape == (2, 64, 64, 2) and part.shape == (2, 586, 2)",
    "logits = model(images)": "assert logits.shape == (2, 10)",
    "latents = encoder(chunks)": "assert latents.shape == (1, 64, 128)",
}


def python_blocks() -> list:
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            blocks.append(pytest.param(match["code"], match["reason"],
                                       id=f"{page.relative_to(ROOT)}:{line}"))
    return blocks


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    import omniperceiver

    folder = tmp_path_factory.mktemp("reader")
    model = omniperceiver.create_model("mnist-perceiver", encoder=dict(
        num_latents=4, latent_dim=16, num_blocks=1, num_cross_attends=1))
    omniperceiver.save_pretrained(model, folder / "runs" / "mnist" / "model")
    return folder


def test_the_pages_have_python_examples():
    ids = [block.id for block in python_blocks()]
    assert sum(i.startswith("README.md") for i in ids) >= 3
    assert sum(i.startswith("docs/modalities.md") for i in ids) >= 8


@pytest.mark.parametrize("code, reason", python_blocks())
def test_documented_example_runs_on_its_own(code, reason, workdir):
    if reason is not None:
        assert reason.startswith(REASONS), f"not a reason to skip an example: {reason!r}"
        pytest.skip(reason)
    checks = [check for marker, check in CHECKS.items() if marker in code]
    src = str(ROOT / "src")
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", "\n".join([code, *checks])], cwd=workdir,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
