"""The full suite in one command: every study of the main job's claims, then the results page.

    python -m experiments.suite [--quick] [--resume] [--out DIR]

On a 2-core CPU these small models use two threads poorly (the main job's model trains an
epoch in 3.0 s on two threads alone, `curve.json`, and in 4.8 s on one thread beside another
study, `permutation.json`: 0.6x, not 0.5x), so the suite runs two lanes side by side, each job
a separate process with one torch thread. The ablations are half of the work, so they are split
in two jobs that write one record (``--shared``):

* lane 1: the number of latents (the ablations' longest axis: 256 latents train 12 times
  longer than the main job's 16), then the modality study;
* lane 2: the ablations' other axes (and the reference model), then the permutation study;

and after both, the curve alone with every thread (its time axis is the main job's, so it must
not share the cores). Each study writes its files as when run by itself
(``<out>/<name>.json``, ``.md``, ``.png``) and each job its output to ``<out>/<job>.log``; the
suite writes ``<out>/suite.json`` (each job's command, exit status and wall time, the lanes' and
the whole suite's wall time, commit and machine) and, for the default output folder,
regenerates ``docs/results.md``. A job that fails does not stop the other lane; the suite then
exits with status 1 and names the log to read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import ablations, common

NAME = "suite"
#: The suite's jobs: name (its log and its entry in suite.json) -> (study, extra options).
JOBS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ablations-latents": ("ablations", ("--axes", "num_latents", "--no-reference", "--shared")),
    "ablations-other-axes": ("ablations", ("--axes", *ablations.AXES[1:], "--shared")),
    "permutation": ("permutation", ()),
    "modalities": ("modalities", ()),
    # the main job's 70 epochs, without the peer model
    "curve": ("curve", ("--peer-epochs", "0")),
}
#: Jobs that run side by side, one torch thread each; then the ones that run alone.
LANES: tuple[tuple[str, ...], ...] = (("ablations-latents", "modalities"),
                                      ("ablations-other-axes", "permutation"))
ALONE: tuple[str, ...] = ("curve",)


def job_command(name: str, *, threads: int, quick: bool, resume: bool,
                out: Path | None) -> list[str]:
    """The command line that runs job ``name`` as the suite runs it."""
    study, extra = JOBS[name]
    command = [sys.executable, "-m", f"experiments.{study}", "--threads", str(threads), *extra]
    if quick:
        command.append("--quick")
    if resume:
        command.append("--resume")
    if out is not None:
        command += ["--out", str(out)]
    return command


def run_job(name: str, command: list[str], log_path: Path, record: dict[str, Any]) -> None:
    """Run one job, its output to ``log_path``; ``record[name]`` gets its command, exit
    status and wall time."""
    env = dict(os.environ, OMP_NUM_THREADS=command[command.index("--threads") + 1],
               PYTHONUNBUFFERED="1")  # the log follows the study as it goes
    start = time.perf_counter()
    with open(log_path, "w") as log:
        status = subprocess.run(command, cwd=common.ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=env).returncode
    record[name] = {"command": " ".join(["python", *command[1:]]), "returncode": status,
                    "wall_seconds": round(time.perf_counter() - start, 1),
                    "log": str(log_path)}
    print(f"  {name}: {'done' if status == 0 else f'FAILED (exit status {status})'} in "
          f"{record[name]['wall_seconds'] / 60:.1f} min; output in {log_path}", flush=True)


def run_lane(names: Sequence[str], logs: Path, record: dict[str, Any], **options) -> None:
    """Run the jobs ``names`` one after another, each logging to ``logs / <name>.log``."""
    for name in names:
        run_job(name, job_command(name, **options), logs / f"{name}.log", record)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="every study's --quick (tiny data and models): the machinery")
    parser.add_argument("--resume", action="store_true",
                        help="every study keeps the runs already in its JSON")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default experiments/results, "
                             "experiments/results/quick with --quick)")
    args = parser.parse_args(argv)
    out = common.output_folder(args)
    out.mkdir(parents=True, exist_ok=True)
    meta = common.provenance(NAME, argv)
    meta.update(quick=args.quick, resume=args.resume, lanes=[list(lane) for lane in LANES],
                alone=list(ALONE))
    options = dict(quick=args.quick, resume=args.resume, out=args.out)
    if not args.resume:  # the jobs sharing a record merge into it: start it empty
        for study in {study for study, extra in JOBS.values() if "--shared" in extra}:
            (out / f"{study}.json").unlink(missing_ok=True)
    record: dict[str, Any] = {}
    start = time.perf_counter()
    print(f"{len(LANES)} lanes side by side ({'; '.join(', '.join(lane) for lane in LANES)}), "
          f"then {', '.join(ALONE)} alone", flush=True)
    lanes = [threading.Thread(target=run_lane, args=(lane, out, record),
                              kwargs=dict(threads=1, **options)) for lane in LANES]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    lanes_seconds = round(time.perf_counter() - start, 1)
    run_lane(ALONE, out, record, threads=os.cpu_count() or 1, **options)
    meta["lanes_wall_seconds"] = lanes_seconds
    meta["wall_seconds"] = round(time.perf_counter() - start, 1)
    result = {"meta": meta, "jobs": {name: record[name] for lane in (*LANES, ALONE)
                                     for name in lane}}
    path = common.write_text(out / f"{NAME}.json", json.dumps(result, indent=2) + "\n")
    failed = [name for name, r in record.items() if r["returncode"] != 0]
    print(f"suite: {meta['wall_seconds'] / 60:.1f} min (lanes {lanes_seconds / 60:.1f} min); "
          f"wrote {path}")
    if args.out is None and not args.quick and not failed:
        from . import results_page

        results_page.main([])
    if failed:
        print("failed: " + ", ".join(f"{name} (see {record[name]['log']})" for name in failed),
              file=sys.stderr)
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
