"""Reliability: a run killed with SIGKILL mid-epoch and resumed from its last checkpoint ends
exactly where an uninterrupted run ends; a save killed half-way leaves the previous checkpoint
intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("lightning")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = {"num_bands": 4,
        "encoder": {"num_latents": 8, "latent_dim": 16, "num_blocks": 1,
                    "self_attends_per_block": 1, "num_cross_attends": 1,
                    "self_attend": {"heads": 2}}}

# Runs the CLI; with --pause-at STEP MARKER, training stops (sleeps) after step STEP and
# writes MARKER, so that the test can kill it at a known point.
RUNNER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from lightning.pytorch import Callback

    class PauseAt(Callback):
        def __init__(self, step, marker):
            self.step, self.marker = step, marker
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == self.step:
                Path(self.marker).write_text(str(self.step))
                time.sleep(600)

    from omniperceiver.cli import main
    args = sys.argv[1:]
    if args[0] == "--pause-at":
        step, marker, args = int(args[1]), args[2], args[3:]
        import omniperceiver.training.lightning_cli as lc
        original = lc.OmniperceiverCLI.instantiate_trainer
        def with_pause(self, **kwargs):
            trainer = original(self, **kwargs)
            trainer.callbacks.insert(0, PauseAt(step, marker))
            return trainer
        lc.OmniperceiverCLI.instantiate_trainer = with_pause
    sys.exit(main(args))
""")


def fit_args(root: Path, batches: int = 12) -> list[str]:
    return ["fit", "--config", str(CONFIGS / "mnist.yaml"),
            "--model.model_args", json.dumps(TINY), "--trainer.default_root_dir", str(root),
            "--trainer.max_epochs", "2", "--trainer.limit_train_batches", str(batches),
            "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
            "--data.init_args.batch_size", "16", "--data.init_args.val_size", "100",
            "--checkpoint.every_n_train_steps", "5",
            "--trainer.enable_progress_bar", "false", "--report.plots", "false"]


def run(args: list[str], log: Path) -> subprocess.Popen:
    """The CLI in a subprocess, its output going to ``log``."""
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", RUNNER, *args], stdout=out,
                                   stderr=subprocess.STDOUT)
    process.log = log
    return process


def finish(process: subprocess.Popen) -> str:
    process.wait(timeout=300)
    out = process.log.read_text()
    assert process.returncode == 0, out[-3000:]
    return out


def kill_after(step: int, args: list[str], tmp_path: Path) -> None:
    """Run the CLI with ``args`` and SIGKILL it once it has trained ``step`` steps."""
    marker = tmp_path / "paused"
    killed = run(["--pause-at", str(step), str(marker), *args], tmp_path / "killed.log")
    for _ in range(1200):  # up to about 4 minutes
        if marker.exists():
            break
        assert killed.poll() is None, killed.log.read_text()[-3000:]
        time.sleep(0.2)
    assert marker.exists(), f"the run never reached step {step}"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL


def final_state(root: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    metrics = json.loads((root / "metrics.json").read_text())
    return metrics, load_file(str(root / "model" / "model.safetensors"))


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    uninterrupted = run(fit_args(whole), tmp_path / "whole.log")  # alongside the killed one
    kill_after(7, fit_args(broken), tmp_path)  # mid-epoch: step 7 of a 12-step epoch
    last = torch.load(broken / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 5 and last["epoch"] == 0

    resumed = finish(run([*fit_args(broken), "--ckpt_path", "last"], tmp_path / "resumed.log"))
    assert "Restored all states from the checkpoint" in resumed
    finish(uninterrupted)

    (m_whole, w_whole), (m_broken, w_broken) = final_state(whole), final_state(broken)
    for key in ("steps", "epochs", "val_accuracy", "val_loss", "test_accuracy", "test_loss",
                "train_loss_epoch"):
        assert m_broken[key] == m_whole[key], key
    for name, tensor in w_whole.items():
        assert torch.equal(tensor, w_broken[name]), name


def test_resuming_a_run_resumed_after_an_epoch_end_step_trains_no_more(tmp_path):
    # Killed after the checkpoint of step 10, the last batch of the first 10-step epoch: the
    # resume trains the second epoch; resuming the finished run again trains nothing and
    # leaves its checkpoint, report and model as they are.
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    uninterrupted = run(fit_args(whole, batches=10), tmp_path / "whole.log")
    kill_after(11, fit_args(broken, batches=10), tmp_path)
    last = broken / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 10

    resume = [*fit_args(broken, batches=10), "--ckpt_path", "last"]
    finish(run(resume, tmp_path / "resumed.log"))
    finish(uninterrupted)
    (m_whole, w_whole), (m_broken, w_broken) = final_state(whole), final_state(broken)
    assert m_broken["steps"] == m_whole["steps"] == 20
    for name, tensor in w_whole.items():
        assert torch.equal(tensor, w_broken[name]), name

    def files():
        checkpoint = torch.load(last, weights_only=True)
        metrics = json.loads((broken / "metrics.json").read_text())
        metrics.pop("test_seconds")  # the test after the fit runs again
        model = {p.name: p.read_bytes() for p in (broken / "model").iterdir()}
        return checkpoint["global_step"], checkpoint["state_dict"], metrics, model

    step, weights, metrics, model = files()
    for again in range(2):
        out = finish(run(resume, tmp_path / f"again{again}.log"))
        step_again, weights_again, metrics_again, model_again = files()
        assert step_again == step == 20
        assert "Nothing left to train" in out
        assert weights_again.keys() == weights.keys()
        for name, tensor in weights.items():
            assert torch.equal(tensor, weights_again[name]), name
        assert metrics_again == metrics
        assert model_again == model


KILL_DURING_SAVE = textwrap.dedent("""
    import os, signal, sys, torch
    from omniperceiver.training.checkpoint import AtomicCheckpointIO

    real_save = torch.save
    def save_then_die(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.flush()
        f.truncate(f.tell() // 2)  # half of the new checkpoint is on disk...
        os.kill(os.getpid(), signal.SIGKILL)  # ...when the process is killed
    torch.save = save_then_die
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(2), "w": torch.ones(1000)},
                                         sys.argv[1])
""")


def test_kill_during_a_save_keeps_the_previous_checkpoint(tmp_path):
    from omniperceiver.training.checkpoint import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": torch.tensor(1), "w": torch.zeros(1000)},
                                         path)
    process = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(path)],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == -signal.SIGKILL, process.stderr
    temporaries = [p for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert len(temporaries) == 1 and temporaries[0].name.endswith(".tmp")  # the torn write
    assert 0 < temporaries[0].stat().st_size < os.path.getsize(path)
    checkpoint = AtomicCheckpointIO().load_checkpoint(path)  # the previous one, complete
    assert int(checkpoint["step"]) == 1 and torch.equal(checkpoint["w"], torch.zeros(1000))


def progress(ready, started, processed, completed):
    counts = {"ready": ready, "started": started, "processed": processed, "completed": completed}
    return {"total": dict(counts), "current": dict(counts)}


def test_a_checkpoint_of_such_a_resume_gets_its_started_epoch_back():
    from omniperceiver.training.resumable import repair_epoch_progress

    # What a resume after an epoch-end step used to save during the next epoch: a step
    # checkpoint (a batch not yet completed) while no epoch is under way.
    broken = {"loops": {"fit_loop": {"epoch_progress": progress(1, 1, 1, 1),
                                     "epoch_loop.batch_progress": progress(10, 10, 10, 9)}}}
    repair_epoch_progress(broken)
    assert broken["loops"]["fit_loop"]["epoch_progress"] == progress(2, 2, 1, 1)
    for epochs, batches in [(progress(2, 2, 1, 1), progress(10, 10, 10, 9)),  # mid-epoch
                            (progress(1, 1, 1, 1), progress(2, 2, 2, 2))]:  # epoch end
        sound = {"loops": {"fit_loop": {"epoch_progress": epochs,
                                        "epoch_loop.batch_progress": batches}}}
        repair_epoch_progress(sound)
        assert sound["loops"]["fit_loop"]["epoch_progress"] == epochs
