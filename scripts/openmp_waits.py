"""Training step time with spinning and with passive OpenMP waits, alone and beside a copy.

    python scripts/openmp_waits.py [--config mnist] [--rounds 3] [--steps 10]

Runs ``scripts/step_time.py <config>`` (forward + backward + AdamW step of the config's model on
one real batch, float32 and bf16 autocast, the fastest of ``--steps``) in a new process with
``OMP_WAIT_POLICY`` unset (PyTorch's OpenMP threads spin a while before they sleep) and with
``OMP_WAIT_POLICY=PASSIVE`` (they sleep at once), each alone and with a second copy of the
same command running beside it; the rounds alternate the policies. This is the measurement
behind the CLI's choice (``omniperceiver.cli.openmp_waits_passive``): spin on free cores, wait
passively when other processes use them. Writes ``benchmarks/results/openmp-waits.{json,md}``.
The machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from omniperceiver.machine import machine_info, source_commit

ROOT = Path(__file__).resolve().parents[1]
POLICIES = {"spinning (unset)": None, "passive": "PASSIVE"}


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
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "openmp-waits"))
    args = parser.parse_args(argv)
    samples: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.rounds):
        for copies, situation in ((1, "alone"), (2, "beside a copy")):
            for label, policy in POLICIES.items():
                for result in step_times(args.config, args.steps, policy, copies):
                    for precision in ("32-true", "bf16-mixed"):
                        samples.setdefault((situation, label, precision), []).append(
                            result[f"{precision} ms"])
    rows = [{"situation": s, "policy": p, "precision": q, "ms": v,
             "median_ms": statistics.median(v)} for (s, p, q), v in samples.items()]
    meta = {"command": f"python scripts/openmp_waits.py --config {args.config} --rounds "
                       f"{args.rounds} --steps {args.steps}",
            "commit": source_commit(), "date": datetime.now(timezone.utc).isoformat(),
            "machine": machine_info()}
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    cpu = meta["machine"]
    lines = [f"Command: `{meta['command']}`  ", f"Commit: `{meta['commit']}`; {meta['date']}  ",
             f"Machine: {cpu['cpu']} ({cpu['cpu_capability']}, {cpu['cpu_count']} CPUs, "
             f"{cpu['torch_threads']} torch threads); torch {cpu['torch']}", "",
             f"Training step of `configs/{args.config}.yaml`'s model on one batch (ms, median of "
             f"{args.rounds} rounds; each run the fastest of {args.steps} steps):", "",
             "| situation | OpenMP waits | float32 ms | bf16 autocast ms | runs (bf16) |",
             "|---|---|---|---|---|"]
    for situation in ("alone", "beside a copy"):
        for label in POLICIES:
            fp32, bf16 = (samples[(situation, label, q)] for q in ("32-true", "bf16-mixed"))
            lines.append(f"| {situation} | {label} | {statistics.median(fp32):.1f} | "
                         f"{statistics.median(bf16):.1f} | {', '.join(f'{v:.0f}' for v in bf16)} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
