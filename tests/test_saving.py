"""Saving loses nothing: a ``save_pretrained`` that fails or is killed at any step leaves the
previous model in the folder complete (its weights with its own config), and files are
written with the usual permissions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import omniperceiver
from omniperceiver.errors import ModelFileError
from omniperceiver.files import write_atomically

TINY = dict(num_bands=2, encoder=dict(num_latents=4, latent_dim=8, num_blocks=1,
                                    self_attends_per_block=1, num_cross_attends=1,
                                    self_attend={"heads": 2}))


def tiny(num_classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return omniperceiver.create_model("mnist-perceiver", num_classes=num_classes, **TINY)


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``'s parent, by path relative to it: what a save may touch."""
    return {str(p.relative_to(folder.parent)): p.read_bytes()
            for p in sorted(folder.parent.rglob("*")) if p.is_file()}


def assert_is(folder: Path, model: torch.nn.Module) -> None:
    loaded = omniperceiver.from_pretrained(folder)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


@pytest.fixture
def saved(tmp_path):
    """A folder holding a saved model (3 classes) and a file of the user's."""
    model = tiny(3, seed=0)
    folder = omniperceiver.save_pretrained(model, tmp_path / "model", extra={"classes": "abc"})
    (folder / "README.md").write_text("notes")
    return folder, model


def test_extra_that_is_not_json_fails_before_anything_is_written(saved):
    folder, model = saved
    before = contents(folder)
    with pytest.raises(ModelFileError, match="extra must be JSON-serialisable") as error:
        omniperceiver.save_pretrained(tiny(5, seed=1), folder, extra={"classes": {"a", "b"}})
    assert str(folder) in str(error.value)
    assert contents(folder) == before
    assert_is(folder, model)


@pytest.mark.parametrize("failing", ["write", "swap"])
def test_a_save_that_fails_leaves_the_previous_model(saved, monkeypatch, failing):
    folder, model = saved
    before = contents(folder)
    if failing == "write":  # the disk fills up once the new weights are written
        real_fsync, calls = os.fsync, []

        def fsync(fd):
            calls.append(fd)
            if len(calls) > 1:
                raise OSError(28, "No space left on device")
            real_fsync(fd)
        monkeypatch.setattr(os, "fsync", fsync)
    else:  # the new folder cannot be renamed into place
        real_rename = os.rename

        def rename(source, target):
            if str(source).endswith(".new"):
                raise OSError(13, "Permission denied")
            real_rename(source, target)
        monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError):
        omniperceiver.save_pretrained(tiny(5, seed=1), folder)
    monkeypatch.undo()
    assert contents(folder) == before  # no temporary folder left either
    assert_is(folder, model)


KILLED_BETWEEN_RENAMES = textwrap.dedent("""
    import os, signal, sys, torch
    import omniperceiver

    real_rename = os.rename
    def rename(source, target):
        if str(source).endswith(".new"):  # the old folder is set aside, the new one complete
            os.kill(os.getpid(), signal.SIGKILL)
        real_rename(source, target)
    os.rename = rename
    model = omniperceiver.create_model("mnist-perceiver", num_classes=5, **{tiny})
    omniperceiver.save_pretrained(model, sys.argv[1])
""")


def test_a_save_killed_between_its_renames_still_loads_and_recovers(saved):
    folder, model = saved
    script = KILLED_BETWEEN_RENAMES.replace("{tiny}", repr(TINY))
    process = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True,
                             text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert not folder.exists()
    assert_is(folder, model)  # the previous model, complete, from where it was set aside
    assert omniperceiver.hub.load_config(folder)["extra"] == {"classes": "abc"}

    newer = tiny(4, seed=2)
    omniperceiver.save_pretrained(newer, folder)
    assert_is(folder, newer)
    assert (folder / "README.md").read_text() == "notes"
    assert sorted(p.name for p in folder.parent.iterdir()
                  if not p.name.endswith(".new")) == ["model"]


def test_a_successful_save_replaces_the_model_and_keeps_other_files(saved):
    folder, _ = saved
    newer = tiny(5, seed=1)
    omniperceiver.save_pretrained(newer, folder)
    assert_is(folder, newer)
    assert "extra" in omniperceiver.hub.load_config(folder)
    assert (folder / "README.md").read_text() == "notes"
    assert [p.name for p in folder.parent.iterdir()] == ["model"]


def test_saving_to_a_file_is_refused(tmp_path):
    file = tmp_path / "model"
    file.write_text("mine")
    with pytest.raises(ModelFileError, match="is a file"):
        omniperceiver.save_pretrained(tiny(3, seed=0), file)
    assert file.read_text() == "mine"


def test_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        folder = omniperceiver.save_pretrained(tiny(3, seed=0), tmp_path / "model")
        written = write_atomically(tmp_path / "metrics.json", lambda f: f.write(b"{}"))
    finally:
        os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o755
    for file in (*folder.iterdir(), written):
        assert file.stat().st_mode & 0o777 == 0o644, file
    written.chmod(0o600)  # a replaced file keeps the permissions it was given
    write_atomically(written, lambda f: f.write(b"[]"))
    assert written.stat().st_mode & 0o777 == 0o600
