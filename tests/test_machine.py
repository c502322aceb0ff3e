"""The machine description every benchmark and result file carries, and the CPU-load check
that picks how the CLI's OpenMP threads wait."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
import torch

from omniperceiver import machine
from omniperceiver.cli import openmp_waits_passive


def test_machine_info_names_the_cpu_and_its_capability():
    info = machine.machine_info()
    assert info["cpu"] and isinstance(info["cpu"], str)
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["torch"] == torch.__version__
    assert ("gpu" in info) == torch.cuda.is_available()


def test_cpu_model_without_lscpu(monkeypatch):
    def missing(*args, **kwargs):
        raise FileNotFoundError("lscpu")

    monkeypatch.setattr(subprocess, "run", missing)
    name = machine.cpu_model()
    assert isinstance(name, str) and name


def test_source_commit_is_head_and_dirty_only_when_source_changed(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "experiments" / "results").mkdir(parents=True)
    (tmp_path / "model.py").write_text("x = 1\n")
    (tmp_path / "experiments" / "results" / "study.json").write_text("{}\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    assert machine.source_commit(tmp_path) == head
    # a study rewriting its result file leaves the source clean; an untracked file too
    (tmp_path / "experiments" / "results" / "study.json").write_text('{"runs": []}\n')
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert machine.source_commit(tmp_path) == head
    (tmp_path / "model.py").write_text("x = 2\n")
    assert machine.source_commit(tmp_path) == head + "-dirty"
    # from a folder of the checkout: the whole checkout, results still left out
    assert machine.source_commit(tmp_path / "experiments") == head + "-dirty"
    (tmp_path / "model.py").write_text("x = 1\n")
    assert machine.source_commit(tmp_path / "experiments") == head
    assert machine.source_commit(tmp_path.parent / "elsewhere-not-a-repo") is None

    def missing(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", missing)
    assert machine.source_commit() is None


def test_busy_cpus_sees_a_busy_core():
    """A thread of this process spinning for the whole interval shows as about one busy CPU
    (Linux; elsewhere the load average stands in)."""
    if not Path("/proc/stat").exists():
        pytest.skip("reads /proc/stat")
    idle = machine.busy_cpus(0.2)
    assert idle is not None and idle[1] >= 1 and 0 <= idle[0] <= idle[1] + 1e-9
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            pass

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        busy = machine.busy_cpus(0.3)
    finally:
        stop.set()
        thread.join()
    assert busy is not None and busy[0] >= 0.6


def test_openmp_threads_spin_only_where_each_has_a_free_cpu():
    assert not openmp_waits_passive((0.1, 2), threads=2)
    assert openmp_waits_passive((1.0, 2), threads=2)  # another job holds a core
    assert not openmp_waits_passive((1.0, 4), threads=2)
    assert openmp_waits_passive((0.0, 2), threads=4)  # more threads than CPUs
    assert openmp_waits_passive(None, threads=1)  # unknown: passive, the safe choice
