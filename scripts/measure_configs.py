"""Train the full configs and tabulate what they reach: the numbers in docs/training.md.

    python scripts/measure_configs.py mnist permuted_mnist digits pointclouds
    python scripts/measure_configs.py mnist --repeat 3 --out results/training.md

Each config runs as ``omniperceiver fit --config configs/<name>.yaml --trainer.default_root_dir
runs/measure/<name> --overwrite true`` (fit, then test on the held-out split; a new measurement
replaces the previous one); the table lists the test accuracy (and a language model's test
bits per byte) from the run's metrics.json, the wall time of the whole command (start-up,
data, training, test, plots, export) and the fit time alone. Extra arguments after ``--`` go
to every run. The machine should be otherwise idle: other processes on the same cores slow
PyTorch down (by far more than their share with multi-threaded kernels); the table gives the
1-minute load average before and during each run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from omniperceiver.machine import cpu_model, source_commit

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], cwd: Path, log: Path) -> tuple[float, list[float]]:
    """Run ``command`` with its output appended to ``log`` (stopping with an error naming the
    log if it fails); return its wall seconds and the 1-minute load average sampled every 10 s
    while it ran."""
    loads: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(10):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    with log.open("a") as out:
        code = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    done.set()
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {code}); see {log}")
    return wall, loads


def run_config(name: str, run_dir: Path, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "omniperceiver.cli", "fit",
               "--config", str(ROOT / "configs" / f"{name}.yaml"),
               "--trainer.default_root_dir", str(run_dir), "--overwrite", "true",
               "--trainer.enable_progress_bar", "false", *extra]
    load_before = os.getloadavg()[0]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = run_dir.parent / f"{run_dir.name}.log"
    log.unlink(missing_ok=True)
    wall, loads = timed(command, ROOT, log)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"config": name, "test_accuracy": metrics["test_accuracy"],
            "test_bits_per_byte": metrics.get("test_bits_per_byte"),  # language models
            "wall_seconds": round(wall, 1), "fit_seconds": metrics["fit_seconds"],
            "epochs": metrics["epochs"], "parameters": metrics["num_parameters"],
            "load_before": round(load_before, 2),
            "load_during": round(sum(loads) / len(loads), 2) if loads else None}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="config names (configs/<name>.yaml)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per config")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "measure"))
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    args = parser.parse_args(argv)

    rows = []
    for name in args.configs:
        for i in range(args.repeat):
            run_dir = Path(args.runs) / (name if args.repeat == 1 else f"{name}-{i}")
            row = run_config(name, run_dir, extra)
            rows.append(row)
            print(json.dumps(row), flush=True)

    commit = source_commit() or "unknown"
    lines = [f"Measured on {platform.node()} ({os.cpu_count()} CPUs, {cpu_model()}, PyTorch "
             f"CPU capability {torch.backends.cpu.get_cpu_capability()}), "
             f"{time.strftime('%Y-%m-%d')}, commit "
             f"{commit[:10]}{'-dirty' * commit.endswith('-dirty')}, command: "
             f"python scripts/measure_configs.py {' '.join(argv)}", "",
             "| config | test accuracy | test bits per byte | wall time (s) | fit time (s) "
             "| epochs | parameters | load before / during |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bits = "-" if r["test_bits_per_byte"] is None else f"{r['test_bits_per_byte']:.3f}"
        lines.append(f"| {r['config']} | {r['test_accuracy']:.2%} | {bits} | "
                     f"{r['wall_seconds']:.0f} | {r['fit_seconds']:.0f} | {r['epochs']} | "
                     f"{r['parameters']:,} | {r['load_before']} / {r['load_during']} |")
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
