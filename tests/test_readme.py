"""The README's Python examples run as written."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    with torch.no_grad():
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)
    assert namespace["flow"].shape == (2, 64, 64, 2)
    assert namespace["part"].shape == (2, 586, 2)


def test_the_loading_example_runs_in_a_fresh_interpreter(tmp_path):
    """docs/training.md's example loads the main job's exported model after ``import
    omniperceiver`` alone (``images`` is the one name it leaves to the reader)."""
    import subprocess
    import sys

    import omniperceiver

    text = (README.parent / "docs" / "training.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S)
                 if "from_pretrained" in b)
    model = omniperceiver.create_model("mnist-perceiver", num_latents=4, latent_dim=16,
                                       num_blocks=1, num_cross_attends=1)
    omniperceiver.save_pretrained(model, tmp_path / "runs" / "mnist" / "model")
    code = "import torch\nimages = torch.rand(2, 28, 28, 1)\n" + block + \
        "\nassert logits.shape == (2, 10)\n"
    src = str(Path(omniperceiver.__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
                            timeout=300)
    assert result.returncode == 0, result.stderr
