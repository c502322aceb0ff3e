"""Scale-out with FSDP2 on the CPU (gloo, 2 processes, ``--trainer.strategy fsdp2``).

Sharding: each attention layer and then the model are sharded over the two processes (a
second call changes nothing); a weight-shared layer, run several times in one forward, gets
the gradient it gets unsharded, and norm clipping (Lightning's, ``clip_grad_norm_`` over the
sharded gradients) clips by the norm of the whole gradient.

The fit journey: two FSDP2 processes with batch B reach, after 6 steps, the weights one
process reaches with batch 2B (the tolerance of ``tests/test_ddp.py``); a run resumed with
``--ckpt_path last`` from a checkpoint of that run ends with exactly its weights and metrics;
the model folder exported at the end of fit loads with ``omniperceiver.from_pretrained`` in a
fresh process, and its predictions reproduce the test accuracy of ``metrics.json`` (over the
whole test set, every example once) class by class."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import key_bias_entries, tiny_io

pytest.importorskip("lightning")

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# Three blocks over one set of weights, three cross-attends over two: weight sharing.
TINY = {"encoder": {"num_latents": 16, "latent_dim": 32, "num_blocks": 3, "num_cross_attends": 3,
                    "self_attends_per_block": 1, "self_attend": {"heads": 2}},
        "project_channels": 16}
STEPS = 60  # enough to leave chance accuracy behind (about 20%), so predictions vary
COMPARED_STEP = 6  # the step whose weights the one-process run is held to
RESUMED_STEP = 30
TOLERANCE = 1e-5  # as tests/test_ddp.py: largest weight difference after 6 steps


def environment() -> dict[str, str]:
    paths = [str(ROOT / "src"), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(paths)}


def run_python(args: list[str]) -> str:
    process = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                             timeout=600, env=environment())
    assert process.returncode == 0, (process.stdout + process.stderr)[-4000:]
    return process.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Two gloo processes: rank r shards a copy of the reference model and takes half the batch;
# rank 0 writes what the test compares.
SHARDING = textwrap.dedent("""
    import copy, json, sys
    import torch, torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor, Shard
    from helpers import tiny_io
    from omniperceiver.attention import AttentionLayer
    from omniperceiver.training.sharding import shard_model

    MAX_NORM = 0.01  # well below the gradient's norm: every gradient is scaled

    def clipped_gradients(model, x, y):
        torch.nn.functional.cross_entropy(model(x), y).backward()
        return torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)

    def main(rank, port, out):
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=2)
        mesh = init_device_mesh("cpu", (2, 1),
                                mesh_dim_names=("data_parallel", "tensor_parallel"))
        torch.manual_seed(0)
        reference = tiny_io(num_blocks=3, num_cross_attends=3,
                            cross_attend_sharing="after_first").train()
        x, y = torch.randn(8, 7, 5), torch.randint(0, 3, (8,))
        sharded = copy.deepcopy(reference)
        shard_model(sharded, mesh)
        units = sorted(name for name, m in sharded.named_modules() if isinstance(m, FSDPModule))
        shard_model(sharded, mesh)
        again = sorted(name for name, m in sharded.named_modules() if isinstance(m, FSDPModule))
        reference_norm = clipped_gradients(reference, x, y)
        norm = clipped_gradients(sharded, x[rank::2], y[rank::2])
        grads = {name: p.grad.full_tensor() for name, p in sharded.named_parameters()}
        result = {
            "units": units, "units_after_second_call": again,
            "attention_layers": sorted(name for name, m in sharded.named_modules()
                                       if isinstance(m, AttentionLayer)),
            "sharded": all(isinstance(p, DTensor) and p.placements == (Shard(0),)
                           for p in sharded.parameters()),
            "norm": norm.full_tensor().item(), "reference_norm": reference_norm.item(),
            "largest_gradient": max(p.grad.abs().max().item() for p in reference.parameters()),
            "gradient_difference": max((grads[name] - p.grad).abs().max().item()
                                       for name, p in reference.named_parameters()),
        }
        if rank == 0:
            with open(out, "w") as f:
                json.dump(result, f)
        # neither rank leaves while the other still talks to it (rank 0 holds the store):
        # without it a loaded machine can abort the slower rank's gloo thread at exit
        dist.barrier()
        dist.destroy_process_group()

    if __name__ == "__main__":
        torch.multiprocessing.spawn(main, args=(int(sys.argv[1]), sys.argv[2]), nprocs=2)
""")


def test_sharded_layers_get_the_clipped_gradients_of_the_unsharded_model(tmp_path):
    script, out = tmp_path / "shard.py", tmp_path / "result.json"
    script.write_text(SHARDING)
    run_python([str(script), str(free_port()), str(out)])
    result = json.loads(out.read_text())
    # Units: every attention layer (two cross-attends, the two self-attends of the one
    # block, the decoder's cross-attend), then the model itself.
    assert result["attention_layers"] == [
        "decoder.query.cross_attend", "encoder.blocks.0.0", "encoder.blocks.0.1",
        "encoder.cross_attends.0", "encoder.cross_attends.1"]
    assert result["units"] == sorted(["", *result["attention_layers"]])
    assert result["units_after_second_call"] == result["units"]
    assert result["sharded"]
    assert result["norm"] == pytest.approx(result["reference_norm"], rel=1e-5)
    assert result["norm"] > 10 * 0.01  # the clipping scaled the gradients
    # Clipped to norm 0.01: the sharded run sums the two halves of the batch in another order.
    assert result["gradient_difference"] <= 1e-5 * result["largest_gradient"]


def test_tensor_parallelism_is_refused_naming_the_option():
    from torch.distributed.fsdp import FSDPModule

    from omniperceiver.errors import ConfigError
    from omniperceiver.training.sharding import shard_model

    class Mesh:  # a ModelParallelStrategy's mesh of 1 data-parallel x 2 tensor-parallel ranks
        sizes = {"data_parallel": 1, "tensor_parallel": 2}

        def __getitem__(self, name):
            return SimpleNamespace(size=lambda: self.sizes[name])

    model = tiny_io()
    with pytest.raises(ConfigError, match="tensor_parallel_size is 2"):
        shard_model(model, Mesh())
    assert not any(isinstance(m, FSDPModule) for m in model.modules())


def fit(root: Path, *, batch_size: int, extra: list[str]) -> None:
    run_python([
        "-m", "omniperceiver.cli", "fit", "--config", str(CONFIGS / "digits.yaml"),
        "--model.model_args", json.dumps(TINY), "--model.lr", "0.01",
        "--trainer.default_root_dir", str(root), "--trainer.max_steps", str(STEPS),
        "--trainer.precision", "32-true", "--data.init_args.shift", "0",
        "--data.init_args.batch_size", str(batch_size),
        "--checkpoint.every_n_train_steps", str(COMPARED_STEP),
        "--checkpoint.save_top_k", "-1", "--checkpoint.filename", "{step}",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--report.plots", "false", *extra])


FSDP2 = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "fsdp2"]

# The exported model, alone in a fresh process, over the digits' test split.
EVALUATE = textwrap.dedent("""
    import json, sys
    import torch
    import omniperceiver
    from omniperceiver.training.data import DigitsData

    model = omniperceiver.from_pretrained(sys.argv[1]).eval()
    test = DigitsData(batch_size=1).dataset("test")
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.tensor([test[i][1] for i in range(len(test))])
    with torch.no_grad():
        correct = model(x).argmax(-1) == y
    print(json.dumps({"examples": len(y), "accuracy": correct.float().mean().item(),
                      "per_class": [correct[y == c].float().mean().item() for c in range(10)]}))
""")


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["state_dict"]


def test_two_process_fsdp2_fits_resumes_tests_and_exports(tmp_path):
    from safetensors.torch import load_file

    import omniperceiver

    single, fsdp, resumed = tmp_path / "single", tmp_path / "fsdp", tmp_path / "resumed"
    fit(single, batch_size=16, extra=["--trainer.devices", "1", "--test_after_fit", "false"])
    fit(fsdp, batch_size=8, extra=FSDP2)
    # An interrupted run: its last checkpoint is the one of step 30.
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(fsdp / "checkpoints" / f"step={RESUMED_STEP}.ckpt",
                resumed / "checkpoints" / "last.ckpt")
    fit(resumed, batch_size=8, extra=[*FSDP2, "--ckpt_path", "last"])

    # Two processes with batch B step like one with batch 2B (key biases aside).
    name = f"step={COMPARED_STEP}.ckpt"
    one, two = weights(single / "checkpoints" / name), weights(fsdp / "checkpoints" / name)
    assert one.keys() == two.keys()
    model = omniperceiver.from_pretrained(fsdp / "model")
    key_biases = {f"model.{k}": v for k, v in key_bias_entries(model).items()}
    for key in one:
        diff = (one[key] - two[key]).abs()
        if key in key_biases:
            diff[key_biases[key]] = 0
        assert diff.max() <= TOLERANCE, (key, diff.max().item())

    metrics = {run: json.loads((run / "metrics.json").read_text()) for run in (fsdp, resumed)}
    assert metrics[fsdp]["steps"] == metrics[resumed]["steps"] == STEPS
    for key in ("test_examples", "test_accuracy", "test_loss", "test_per_class_accuracy"):
        assert metrics[resumed][key] == metrics[fsdp][key], key
    exported = load_file(str(fsdp / "model" / "model.safetensors"))
    exported_resumed = load_file(str(resumed / "model" / "model.safetensors"))
    assert exported.keys() == exported_resumed.keys()
    for key, tensor in exported.items():
        assert torch.equal(tensor, exported_resumed[key]), key
        assert torch.equal(tensor, weights(fsdp / "checkpoints" / f"step={STEPS}.ckpt")[
            f"model.{key}"]), key

    evaluated = json.loads(run_python(["-c", EVALUATE, str(fsdp / "model")]))
    assert evaluated["examples"] == metrics[fsdp]["test_examples"] == 360
    assert metrics[fsdp]["test_accuracy"] > 0.15  # predictions that are not one class
    assert round(evaluated["accuracy"], 6) == metrics[fsdp]["test_accuracy"]
    assert [round(a, 4) for a in evaluated["per_class"]] == list(
        metrics[fsdp]["test_per_class_accuracy"].values())
