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
