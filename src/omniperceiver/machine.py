"""The machine a measurement ran on, for the provenance of every benchmark and result file,
and how busy its CPUs are right now (:func:`busy_cpus`).

CPUs that look alike differ by orders of magnitude in bf16 speed (see
:mod:`omniperceiver.training.precision`), so a timing means little without the CPU's model
name and PyTorch's CPU capability (``AVX2``, ``AVX512``, ...) beside it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
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


#: Folders whose files are a run's outputs, not its source: a study that rewrites its result
#: file, or the one before it in a suite, leaves the source it ran from clean.
RESULT_FOLDERS = ("benchmarks/results", "experiments/results", "docs/results.md")


def source_commit(root: Path | None = None) -> str | None:
    """The git commit of the source tree this package runs from (or ``root``), with
    ``-dirty`` appended when tracked files other than results (:data:`RESULT_FOLDERS`) differ
    from it; None when it is not a git checkout (an installed wheel)."""
    root = Path(__file__).resolve().parents[2] if root is None else root

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
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ":/",
                  *(f":(top,exclude){folder}" for folder in RESULT_FOLDERS))
    return commit + ("-dirty" if changed else "")


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


def _cpu_times() -> tuple[int, int, int]:
    """(CPUs, total jiffies, idle jiffies) of all CPUs, from Linux's /proc/stat."""
    lines = Path("/proc/stat").read_text().splitlines()
    values = [int(v) for v in lines[0].split()[1:9]]  # user .. steal; guest time is in user
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return cpus, sum(values), values[3] + values[4]  # idle + iowait


def busy_cpus(interval: float = 0.2) -> tuple[float, int] | None:
    """(how many CPUs' worth of time was spent running during the next ``interval`` seconds,
    the number of CPUs): e.g. (1.0, 2) while another process keeps one of two cores busy.
    Linux reads /proc/stat over the interval; elsewhere the 1-minute load average stands in;
    None where neither exists."""
    try:
        cpus, total, idle = _cpu_times()
        time.sleep(interval)
        _, total_after, idle_after = _cpu_times()
    except (OSError, ValueError, IndexError):
        if hasattr(os, "getloadavg") and os.cpu_count():
            return os.getloadavg()[0], os.cpu_count()
        return None
    elapsed = total_after - total
    if elapsed <= 0 or cpus < 1:
        return None
    return cpus * (1 - (idle_after - idle) / elapsed), cpus


__all__ = ["busy_cpus", "cpu_model", "machine_info", "source_commit"]
