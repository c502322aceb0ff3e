"""The machine description every benchmark and result file carries."""

from __future__ import annotations

import subprocess

import torch

from omniperceiver import machine


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


def test_source_commit_is_the_checkouts_head_and_says_when_it_is_dirty(monkeypatch):
    root = machine.Path(machine.__file__).resolve().parents[2]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                          text=True)
    commit = machine.source_commit()
    if head.returncode != 0:  # not a git checkout: nothing to name
        assert commit is None
        return
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True).stdout.strip()
    assert commit == head.stdout.strip() + ("-dirty" if dirty else "")

    def missing(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", missing)
    assert machine.source_commit() is None
