"""A run folder loses nothing by mistake: a second ``fit`` into a folder that holds a run, a
resume without a checkpoint and a resume of another model all stop with a message naming the
folder or the settings, before anything is written; ``--ckpt_path last`` and
``--overwrite true`` say what to do instead."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

from test_cli import tiny_args  # noqa: E402

import omniperceiver  # noqa: E402
from omniperceiver.cli import load_trained, main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

NO_PLOTS = ["--report.plots", "false"]
#: A tiny run of the main job written by 0.3.0 (tests/fixtures/run_folders/README.md).
RUN_0_3_0 = Path(__file__).resolve().parent / "fixtures" / "run_folders" / "mnist-0.3.0"


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny MNIST run of 2 steps, trained, tested and exported: its folder."""
    root = tmp_path_factory.mktemp("finished") / "run"
    assert main(["fit", *tiny_args("mnist.yaml", root, extra=NO_PLOTS)]) == 0
    assert (root / "model").is_dir() and (root / "metrics.json").is_file()
    return root


@pytest.fixture
def run_copy(finished, tmp_path):
    """A copy of the finished run that a test may change."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def test_a_second_fit_into_a_finished_run_is_refused(finished, capsys):
    before = snapshot(finished)
    assert main(["fit", *tiny_args("mnist.yaml", finished, extra=NO_PLOTS)]) == 1
    err = capsys.readouterr().err
    assert f"--trainer.default_root_dir {finished} already holds a run" in err
    assert "metrics.json" in err and "checkpoints/last.ckpt" in err
    assert "--ckpt_path last" in err and "--overwrite true" in err
    assert snapshot(finished) == before


def test_overwrite_replaces_the_run(run_copy):
    args = tiny_args("mnist.yaml", run_copy, steps=3, extra=[*NO_PLOTS, "--overwrite", "true"])
    assert main(["fit", *args]) == 0
    assert json.loads((run_copy / "metrics.json").read_text())["steps"] == 3


def test_resuming_a_finished_run_with_its_own_config_continues_it(run_copy):
    assert main(["fit", "--config", str(run_copy / "config.yaml"), "--trainer.default_root_dir",
                 str(run_copy), "--trainer.max_steps", "3", "--ckpt_path", "last"]) == 0
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert metrics["steps"] == 3 and "test_accuracy" in metrics


def test_ckpt_path_last_without_a_checkpoint_is_an_error(tmp_path, capsys):
    root = tmp_path / "run"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    args = tiny_args("mnist.yaml", root, extra=[*NO_PLOTS, "--ckpt_path", "last"])
    assert main(["fit", *args]) == 1
    err = capsys.readouterr().err
    assert f"--ckpt_path last: no last checkpoint in {root / 'checkpoints'}" in err
    assert snapshot(root) == {"notes.txt": b"mine"}


def test_ckpt_path_that_is_not_a_file_is_an_error(tmp_path, capsys):
    root, missing = tmp_path / "run", tmp_path / "nothing.ckpt"
    args = tiny_args("mnist.yaml", root, extra=[*NO_PLOTS, "--ckpt_path", str(missing)])
    assert main(["fit", *args]) == 1
    assert f"--ckpt_path {missing}: no such checkpoint file" in capsys.readouterr().err
    assert not root.exists()


@pytest.mark.parametrize("changed, named", [
    ({"latent_dim": 32}, "model_args.encoder.latent_dim 16 in the checkpoint, 32 now; "
                         "parameters of other shapes: model.encoder.latents (8, 16) in the "
                         "checkpoint, (8, 32)"),
    ({"self_attend": {"heads": 4}},
     "model_args.encoder.self_attend.heads 2 in the checkpoint, 4 now"),  # same shapes
])
def test_resuming_another_model_is_refused_before_anything_is_written(finished, changed,
                                                                      named, capsys):
    before = snapshot(finished)
    args = tiny_args("mnist.yaml", finished, model_args={"encoder": changed},
                     extra=[*NO_PLOTS, "--ckpt_path", "last"])
    assert main(["fit", *args]) == 1
    err = capsys.readouterr().err
    assert f"--ckpt_path {finished / 'checkpoints' / 'last.ckpt'} holds another model" in err
    assert named in err
    assert snapshot(finished) == before


def test_resuming_with_other_training_settings_names_them(run_copy):
    args = tiny_args("mnist.yaml", run_copy, steps=3,
                     extra=[*NO_PLOTS, "--ckpt_path", "last", "--model.lr", "0.0005",
                            "--model.label_smoothing", "0.0"])
    with pytest.warns(UserWarning, match=r"resuming with training settings other than the "
                      r"checkpoint's: label_smoothing 0.1 in the checkpoint, 0.0 now; lr 0.002 "
                      r"in the checkpoint, 0.0005 now\. The optimizer"):
        assert main(["fit", *args]) == 0


def test_a_resume_that_fails_keeps_the_previous_results(run_copy, monkeypatch, capsys):
    from omniperceiver.errors import NonFiniteLossError
    from omniperceiver.training.module import ClassificationModule

    def fail(self, batch, batch_idx):
        raise NonFiniteLossError("training loss is nan")
    monkeypatch.setattr(ClassificationModule, "training_step", fail)
    results = {name: (run_copy / name).read_bytes()
               for name in ("metrics.json", "model/config.json", "model/model.safetensors")}
    args = tiny_args("mnist.yaml", run_copy, steps=4, extra=[*NO_PLOTS, "--ckpt_path", "last"])
    assert main(["fit", *args]) == 1
    assert "training loss is nan" in capsys.readouterr().err
    assert {name: (run_copy / name).read_bytes() for name in results} == results


def test_a_run_of_0_3_0_resumes_with_its_own_config(tmp_path):
    """A run written by 0.3.0 (flat model_args: self_heads, cross_heads, dropout, pooling ...)
    continues from its last checkpoint with its own config.yaml; the checkpoints it writes
    hold the same model in today's keywords and name their release."""
    root = Path(shutil.copytree(RUN_0_3_0, tmp_path / "run"))
    old = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert "omniperceiver" not in old and "self_heads" in old["hyper_parameters"]["model_args"]
    assert main(["fit", "--config", str(root / "config.yaml"), "--trainer.default_root_dir",
                 str(root), "--trainer.max_steps", "3", "--ckpt_path", "last", *NO_PLOTS]) == 0
    newest = max(root.glob("checkpoints/last*.ckpt"), key=lambda path: path.stat().st_mtime)
    new = torch.load(newest, weights_only=True)
    assert new["omniperceiver"] == omniperceiver.__version__ and new["global_step"] == 3
    args = new["hyper_parameters"]["model_args"]
    assert args["encoder"]["self_attend"] == {"heads": 2, "widening_factor": 2,
                                              "attn_dropout": 0.1, "ff_dropout": 0.1}
    assert args["decoder"] == {"pooling": "query"} and "self_heads" not in args
    assert new["state_dict"].keys() == old["state_dict"].keys()
    assert json.loads((root / "metrics.json").read_text())["steps"] == 3


def test_a_0_3_0_checkpoint_loads_as_the_model_its_run_exported():
    """``omniperceiver predict CKPT`` rebuilds a 0.3.0 checkpoint's model from its flat
    model_args: the same model as the one the run exported."""
    model, classes, spec = load_trained(RUN_0_3_0 / "checkpoints" / "last.ckpt")
    exported = omniperceiver.from_pretrained(RUN_0_3_0 / "model")
    x = torch.rand(3, 28, 28, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), exported(x), rtol=0, atol=0)
    assert classes == [str(i) for i in range(10)] and spec["modality"] == "image"
