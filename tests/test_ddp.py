"""Scale-out: two DDP processes (CPU, gloo) with batch B each reach the weights that one process
reaches with batch 2B, step for step (float32, no dropout, no random augmentation; the data
order is the same because the sampler shards one seeded permutation over the ranks).

Tolerance: 1e-5 on every weight, except the key biases of the attention layers. A key bias adds
``q . b_k`` to every score of a query, which the softmax cancels: its gradient is exactly zero
in exact arithmetic and rounding noise (~1e-10) in practice, which Adam rescales to steps of
the size of the learning rate. (A one-process run with gradient accumulation differs from the
batch-2B run in the same way, by ~2e-4 there and < 1e-6 elsewhere.)

Both runs then test their final model: each rank tests its own shard of the test set, and
``metrics.json`` holds the accuracy over the whole test set, every example counted once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import key_bias_entries

pytest.importorskip("lightning")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Raw pixels: the conv stem's batch norm normalises each process's batch on its own (use
# --trainer.sync_batchnorm true to make DDP match one process there).
# Small latents and MLPs keep Adam's rescaled rounding noise below the tolerance.
TINY = {"mode": "pixels", "num_bands": 4,
        "encoder": {"num_latents": 8, "latent_dim": 16, "num_blocks": 1,
                    "self_attends_per_block": 1, "num_cross_attends": 1, "latent_init_std": 0.02,
                    "cross_attend": {"widening_factor": 1},
                    "self_attend": {"heads": 2, "widening_factor": 1}}}
STEPS = 6
TOLERANCE = 1e-5  # largest absolute weight difference allowed (summation order differs)


def fit(root: Path, *, batch_size: int, extra: list[str]) -> None:
    args = [sys.executable, "-m", "omniperceiver.cli", "fit",
            "--config", str(CONFIGS / "mnist.yaml"), "--model.model_args", json.dumps(TINY),
            "--trainer.default_root_dir", str(root), "--trainer.max_steps", str(STEPS),
            "--trainer.precision", "32-true", "--data.init_args.shift", "0",
            "--data.init_args.rotate", "0", "--data.init_args.scale", "null",
            "--data.init_args.batch_size", str(batch_size), "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--report.plots", "false", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env)
    assert process.returncode == 0, (process.stdout + process.stderr)[-4000:]


def test_two_process_ddp_fits_and_tests_like_one_process_with_the_combined_batch(
        tmp_path):
    from safetensors.torch import load_file

    import omniperceiver
    import omniperceiver.training  # noqa: F401  (registers the task presets)
    from omniperceiver.data import MNIST

    fit(tmp_path / "single", batch_size=16, extra=["--trainer.devices", "1"])
    fit(tmp_path / "ddp", batch_size=8,
        extra=["--trainer.accelerator", "cpu", "--trainer.devices", "2",
               "--trainer.strategy", "ddp"])
    metrics = {run: json.loads((tmp_path / run / "metrics.json").read_text())
               for run in ("single", "ddp")}
    assert metrics["single"]["steps"] == metrics["ddp"]["steps"] == STEPS
    assert metrics["single"]["test_examples"] == len(MNIST("test"))
    for key in ("test_examples", "test_accuracy", "test_per_class_accuracy"):
        assert metrics["ddp"][key] == metrics["single"][key], key
    assert metrics["ddp"]["test_loss"] == pytest.approx(metrics["single"]["test_loss"], abs=1e-4)
    single = load_file(str(tmp_path / "single" / "model" / "model.safetensors"))
    ddp = load_file(str(tmp_path / "ddp" / "model" / "model.safetensors"))
    assert single.keys() == ddp.keys()
    key_biases = key_bias_entries(omniperceiver.from_pretrained(tmp_path / "single" / "model"))
    assert key_biases
    for name in single:
        diff = (single[name] - ddp[name]).abs()
        if name in key_biases:
            diff[key_biases[name]] = 0
        assert diff.max() <= TOLERANCE, (name, diff.max().item())
