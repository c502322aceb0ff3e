"""The machine a measurement ran on, for the provenance of every benchmark and result file.

CPUs that look alike differ by orders of magnitude in bf16 speed (see
:mod:`omniperceiver.training.precision`), so a timing means little without the CPU's model
name and PyTorch's CPU capability (``AVX2``, ``AVX512``, ...) beside it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch


def cpu_model() -> str:
    """``lscpu``'s "Model name", else /proc/cpuinfo's, else the platform's name."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def source_commit() -> str | None:
    """The git commit of the source tree this package runs from, with ``-dirty`` appended when
    tracked files differ from it; None when it is not a git checkout (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine_info() -> dict:
    """CPU model and capability, core and thread counts, load, versions, and the CUDA device
    when there is one."""
    info = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


__all__ = ["cpu_model", "machine_info", "source_commit"]
