"""Measure the README's main job as a new user meets it: a fresh clone, a brand-new virtualenv.

    python scripts/measure_main_job.py [--config mnist] [--out benchmarks/results/fit-mnist-cpu]

Clones this repository's HEAD into a temporary folder, times ``python3 -m venv .venv`` plus
``pip install -c constraints.txt -e ".[train]"``, then times ``omniperceiver fit --config
configs/<config>.yaml`` there (the whole command: start-up, data, training, test, plots,
export) and reads the run's ``metrics.json``. Writes ``<out>.json`` (every number, the command,
commit, date, CPU model, PyTorch's CPU capability and version, load averages) and ``<out>.md``
(the table the docs quote). The machine should be otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure_configs import timed  # scripts/ is on the path when this file runs

from omniperceiver.machine import cpu_model, source_commit

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="mnist")
    parser.add_argument("--out", help="result files without suffix (default "
                        "benchmarks/results/fit-<config>-cpu)")
    args = parser.parse_args(argv)
    args.out = args.out or str(ROOT / "benchmarks" / "results" / f"fit-{args.config}-cpu")
    # the fresh clone below is of HEAD: uncommitted changes are not measured
    commit = (source_commit() or "unknown").removesuffix("-dirty")
    with tempfile.TemporaryDirectory(prefix="omniperceiver-fresh-") as tmp:
        clone = Path(tmp) / "omniperceiver"
        log = Path(tmp) / "log.txt"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        load_before = os.getloadavg()[0]
        venv = clone / ".venv" / "bin"
        install, _ = timed(["python3", "-m", "venv", ".venv"], clone, log)
        more, _ = timed([str(venv / "pip"), "install", "-q", "-c", "constraints.txt", "-e",
                         ".[train]"], clone, log)
        install += more
        fit, loads = timed([str(venv / "omniperceiver"), "fit", "--config",
                            f"configs/{args.config}.yaml"], clone, log)
        root = clone / "runs" / ("mnist" if args.config == "mnist" else args.config)
        metrics = json.loads((root / "metrics.json").read_text())
        probe = ("import torch; print(torch.__version__, "
                 "torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())")
        version, capability, threads = subprocess.run(
            [str(venv / "python"), "-c", probe], capture_output=True, text=True,
            check=True).stdout.split()
    result = {
        "command": f"omniperceiver fit --config configs/{args.config}.yaml",
        "measured_by": "python scripts/measure_main_job.py " + " ".join(argv or sys.argv[1:]),
        "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_model(), "cpus": os.cpu_count(), "torch": version,
        "cpu_capability": capability, "torch_threads": int(threads),
        "install_seconds": round(install, 1), "fit_command_seconds": round(fit, 1),
        "fit_seconds": metrics["fit_seconds"], "epochs": metrics["epochs"],
        "parameters": metrics["num_parameters"], "test_accuracy": metrics["test_accuracy"],
        "test_examples": metrics.get("test_examples"),
        "precision": metrics.get("precision"),  # what trainer.precision resolved to
        "load_before": round(load_before, 2),
        "load_during": round(sum(loads) / len(loads), 2) if loads else None,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    table = (f"{result['command']}, in a fresh clone and a brand-new virtualenv; commit "
             f"{commit[:10]}, {result['date']}, {result['cpu']} ({result['cpus']} CPUs, "
             f"PyTorch {version}, capability {capability}); measured by "
             f"`{result['measured_by'].strip()}`.\n\n"
             "| test accuracy | install (s) | `omniperceiver fit` (s) | training (s) | epochs "
             "| precision | parameters | load before / during |\n"
             "|---|---|---|---|---|---|---|---|\n"
             f"| {result['test_accuracy']:.2%} | {result['install_seconds']:.0f} | "
             f"{result['fit_command_seconds']:.0f} | {result['fit_seconds']:.0f} | "
             f"{result['epochs']} | {result['precision']} | {result['parameters']:,} | "
             f"{result['load_before']} / {result['load_during']} |\n")
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
