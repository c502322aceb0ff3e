"""AdamW's step: PyTorch's per-tensor loop (its CPU default) against its fused kernel.

    python benchmarks/optimizer.py [--rounds 5] [--steps 5]

For the parameters of the seed model (``create_model("perceiver-seed")``) and of the main job's
model (``configs/mnist.yaml``), with random gradients: the median over ``--rounds`` alternating
rounds of each optimizer's mean step time over ``--steps`` steps, and the largest difference
between the two optimizers' parameters after the same 10 steps from the same start. This is the
measurement behind :func:`omniperceiver.training.module.adamw` (the trainer's AdamW is fused
where it can be). Writes ``benchmarks/results/cpu-optimizer.{json,md}``; the machine should be
otherwise idle.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import yaml
from common import Table, machine_info, median, write_results

import omniperceiver

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"per-tensor loop (default)": {}, "fused": {"fused": True}}


def models() -> dict[str, torch.nn.Module]:
    config = yaml.safe_load((ROOT / "configs" / "mnist.yaml").read_text())["model"]
    return {"perceiver-seed": omniperceiver.create_model("perceiver-seed"),
            "main job (configs/mnist.yaml)": omniperceiver.create_model(
                config["model"], **config["model_args"])}


def step_ms(params: list[torch.Tensor], options: dict, steps: int) -> float:
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05, **options)
    optimizer.step()  # the state is made on the first step
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1e3


def largest_difference(model: torch.nn.Module) -> float:
    """Both optimizers, 10 steps with the same gradients from the same weights."""
    copies = {kind: copy.deepcopy(model) for kind in KINDS}
    optimizers = {kind: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05, **options)
                  for (kind, options), m in zip(KINDS.items(), copies.values(), strict=True)}
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        grads = [torch.randn(p.shape, generator=generator) for p in model.parameters()]
        for kind, m in copies.items():
            for p, g in zip(m.parameters(), grads, strict=True):
                p.grad = g.clone()
            optimizers[kind].step()
    a, b = (list(m.parameters()) for m in copies.values())
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    meta = {**machine_info("cpu"), "command": "python benchmarks/optimizer.py "
            + " ".join(sys.argv[1:] if argv is None else argv)}
    table = Table("optimizer", f"AdamW step on the CPU: median of {args.rounds} alternating "
                  f"rounds, each the mean of {args.steps} steps", ["model", "parameters",
                  "tensors", "loop ms", "fused ms", "speed-up", "max |difference| after 10 steps"])
    for name, model in models().items():
        params = list(model.parameters())
        for p in params:
            p.grad = torch.randn_like(p)
        ms: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for _ in range(args.rounds):
            for kind, options in KINDS.items():
                ms[kind].append(step_ms(params, options, args.steps))
        loop, fused = (median(ms[kind]) for kind in KINDS)
        table.add(name, sum(p.numel() for p in params), len(params), round(loop, 2),
                  round(fused, 2), round(loop / fused, 2), f"{largest_difference(model):.1e}")
        print(table.rows[-1], flush=True)
    for path in write_results([table], meta, args.out, "cpu-optimizer"):
        print(f"wrote {path}")
    print(table.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
