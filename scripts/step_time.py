"""Time one training step of a config's model under float32 and bf16 autocast.

    python scripts/step_time.py mnist permuted_mnist pointclouds --steps 10
    OMP_WAIT_POLICY=ACTIVE python scripts/step_time.py mnist     # OpenMP threads spin

Builds the model and a batch of real training data exactly as ``omniperceiver fit --config
configs/<name>.yaml`` would, then times forward + backward + AdamW step (the fastest of
``--steps`` after two warm-up steps) with ``precision`` 32-true and bf16-mixed (CPU autocast).
This is how the configs' ``trainer.precision`` was chosen: on a CPU with native bf16, autocast
pays off for wide matrix products and for the main job's model (``auto``), while most small task
models spend more on casts than they save (``32-true``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from omniperceiver.machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]


def step_times(config: str, steps: int) -> dict:
    from omniperceiver.training.lightning_cli import parse
    from omniperceiver.training.module import adamw

    cli = parse(["--config", str(ROOT / "configs" / f"{config}.yaml"),
                 "--trainer.default_root_dir", str(ROOT / "runs" / "step_time"),
                 "--trainer.logger", "false"])
    data = cli.datamodule
    loader = data.train_dataloader()
    x, y = next(iter(loader))
    model = cli.model.model.train()
    optimizer = adamw([{"params": list(model.parameters())}], lr=1e-3)  # the trainer's
    result = {"config": config, "batch_size": len(y),
              "parameters": sum(p.numel() for p in model.parameters())}
    for name, autocast in (("32-true", False), ("bf16-mixed", True)):
        times = []
        for _ in range(steps + 2):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = torch.nn.functional.cross_entropy(model(x).float(), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter() - start)
        result[f"{name} ms"] = round(1000 * min(times[2:]), 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    print(f"# {cpu_model()} (PyTorch CPU capability {torch.backends.cpu.get_cpu_capability()}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}, "
          f"load average {os.getloadavg()[0]:.2f}")
    for config in args.configs:
        print(json.dumps(step_times(config, args.steps)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
