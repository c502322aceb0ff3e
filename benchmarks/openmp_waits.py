"""Training step time with spinning and with passive OpenMP waits, alone and beside a copy.

    python benchmarks/openmp_waits.py [--config mnist] [--rounds 3] [--steps 10]

Runs ``scripts/step_time.py <config>`` (forward + backward + AdamW step of the config's model on
one real batch, float32 and bf16 autocast, the fastest of ``--steps``) in a new process with
``OMP_WAIT_POLICY`` unset (PyTorch's OpenMP threads spin a while before they sleep) and with
``OMP_WAIT_POLICY=PASSIVE`` (they sleep at once), each alone and with a second copy of the
same command running beside it; the rounds alternate the policies. This is the measurement
behind the CLI's choice (``omniperceiver.cli.openmp_waits_passive``): spin on free cores, wait
passively when other processes use them. Writes ``benchmarks/results/cpu-openmp_waits.{json,md}``.
The machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import Table, machine_info, median, write_results

ROOT = Path(__file__).resolve().parents[1]
POLICIES = {"spinning (unset)": None, "passive": "PASSIVE"}
SITUATIONS = {"alone": 1, "beside a copy": 2}
PRECISIONS = ("32-true", "bf16-mixed")


def step_times(config: str, steps: int, policy: str | None, copies: int) -> list[dict]:
    """``copies`` simultaneous runs of step_time.py under ``policy``; their results."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, str(ROOT / "scripts" / "step_time.py"), config,
               "--steps", str(steps)]
    runs = [subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True) for _ in range(copies)]
    results = []
    for run in runs:
        out, _ = run.communicate()
        if run.returncode:
            raise SystemExit(f"{' '.join(command)} failed with exit code {run.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mnist")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    meta = {**machine_info("cpu"), "command": "python benchmarks/openmp_waits.py "
            + " ".join(sys.argv[1:] if argv is None else argv)}
    ms: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.rounds):
        for situation, copies in SITUATIONS.items():
            for label, policy in POLICIES.items():
                for result in step_times(args.config, args.steps, policy, copies):
                    for precision in PRECISIONS:
                        ms.setdefault((situation, label, precision), []).append(
                            result[f"{precision} ms"])
    table = Table("openmp_waits", f"Training step of configs/{args.config}.yaml's model on one "
                  f"batch: median ms of {args.rounds} rounds (each run the fastest of "
                  f"{args.steps} steps)",
                  ["situation", "OpenMP waits", "float32 ms", "bf16 autocast ms",
                   "bf16 runs (ms)"])
    for situation in SITUATIONS:
        for label in POLICIES:
            fp32, bf16 = (ms[(situation, label, precision)] for precision in PRECISIONS)
            table.add(situation, label, median(fp32), median(bf16),
                      ", ".join(f"{v:.0f}" for v in bf16))
    for path in write_results([table], meta, args.out, "cpu-openmp_waits"):
        print(f"wrote {path}")
    print(table.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
