"""Assemble docs/results.md from the committed result files.

    python -m experiments.results_page

Reads ``benchmarks/results/fit-mnist-cpu.json`` (the main job in a fresh virtualenv) and each
study's ``experiments/results/<name>.md`` / ``.json`` / ``.png`` (written by ``python -m
experiments.<name>``), and writes ``docs/results.md``: every table with the command, commit and
machine that produced it. A study without results is listed with the command that makes them.
The sentences that quote numbers compute them from the same files.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from . import common
from .ablations import measured_axes

ROOT = common.ROOT
DOCS = ROOT / "docs" / "results.md"
STUDIES = [  # (name, what it shows)
    ("curve", "The main job's accuracy against training time"),
    ("permutation", "Permutation: the raw-pixel Perceiver, a CNN and a ViT on shuffled pixels"),
    ("ablations", "Ablations of the main job's model, one axis at a time"),
    ("modalities", "One architecture, every modality"),
]


def _load(name: str) -> dict | None:
    path = common.RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _demote(markdown: str) -> str:
    """A study's page as a section of this one: its headings one level down."""
    return "\n".join("#" + line if line.startswith("#") else line
                     for line in markdown.splitlines()) + "\n"


def main_job_section() -> str:
    path = ROOT / "benchmarks" / "results" / "fit-mnist-cpu.json"
    if not path.exists():
        return "## The main job\n\nNot measured yet: `python scripts/measure_main_job.py`.\n\n"
    r = json.loads(path.read_text())
    met = r["test_accuracy"] >= 0.975 and r["fit_command_seconds"] <= 600
    return (
        "## The main job\n\n"
        f"`{r['command']}` in a fresh clone and a brand-new virtualenv "
        f"(`{r['measured_by'].strip()}`; "
        f"commit `{r['commit'][:10]}`, {r['date']}, {r['cpu']}, {r['cpus']} CPUs, PyTorch "
        f"{r['torch']}, capability {r['cpu_capability']}): **{100 * r['test_accuracy']:.1f}% "
        f"test accuracy** on the {r['test_examples']:,} held-out digits; install "
        f"{r['install_seconds']:.0f} s, `omniperceiver fit` {r['fit_command_seconds']:.0f} s "
        f"({r['epochs']} epochs of {r['fit_seconds'] / r['epochs']:.1f} s, "
        f"{r['parameters']:,} parameters, raw pixels). Target: at least 97.5% in at most "
        f"10 minutes: {'met' if met else 'not met on this machine'}.\n\n")


def step_time_note() -> str:
    """The main job's training step beside perceiver-pytorch's (benchmarks/run.py)."""
    path = ROOT / "benchmarks" / "results" / "cpu-raw_pixels.json"
    if not path.exists():
        return ""
    results = json.loads(path.read_text())
    (table,) = [t for t in results["tables"] if t["name"] == "raw_pixels_step"]
    column = table["columns"].index
    rows = {row[0]: row for row in table["rows"]}
    ours, peer = rows["omniperceiver mnist-perceiver"], rows["perceiver-pytorch 0.11"]
    return (f"Per training step on the same machine (`{results['meta']['command']}`, "
            f"`benchmarks/results/cpu-raw_pixels.md`): the main job's model "
            f"{ours[column('step ms')]} ms, perceiver-pytorch's calibration model "
            f"({peer[column('parameters')]} parameters) {peer[column('step ms')]} ms, "
            f"{ours[column('vs perceiver-pytorch')]}x longer.\n\n")


def permutation_summary(data: dict) -> str:
    """One sentence per model: its mean drop on each dataset."""
    runs = data["runs"]
    lines = []
    for model in sorted({r["model"] for r in runs}):
        parts = []
        for dataset in sorted({r["dataset"] for r in runs}):
            plain = [r["test_accuracy"] for r in runs
                     if (r["model"], r["dataset"], r["permuted"]) == (model, dataset, False)]
            shuffled = [r["test_accuracy"] for r in runs
                        if (r["model"], r["dataset"], r["permuted"]) == (model, dataset, True)]
            if plain and shuffled:
                before, after = statistics.fmean(plain), statistics.fmean(shuffled)
                parts.append(f"{dataset} {100 * before:.1f}% -> {100 * after:.1f}% "
                             f"({100 * (after - before):+.1f})")
        lines.append(f"- {model}: " + "; ".join(parts))
    check = data.get("extra", {}).get("logit_check")
    if check:
        lines.append(f"- one trained Perceiver, permuted against unpermuted inputs: max |logit "
                     f"difference| {check['max_abs_diff']:.1e}")
    return "Mean test accuracy, unpermuted -> permuted (drop in points):\n\n" + \
        "\n".join(lines) + "\n\n"


def _leaves(args: dict) -> dict:
    """Nested model arguments as {leaf name: value}."""
    out = {}
    for key, value in args.items():
        out.update(_leaves(value) if isinstance(value, dict) else {key: value})
    return out


def _recorded_model_args(name: str, data: dict) -> dict | None:
    meta = data["meta"]
    if name == "curve":
        return meta.get("perceiver", {}).get("model_args")
    if name == "permutation":
        return meta.get("perceivers", {}).get("mnist", {}).get("model_args")
    if name == "ablations":
        return meta.get("model_args")
    return None


#: The recipe fields a study's result is compared on (not the precision: ``auto`` resolves
#: differently from one CPU to the next, and the recipe line shows what ran).
RECIPE_FIELDS = ("batch_size", "lr", "weight_decay", "warmup", "label_smoothing", "grad_clip")


def _recorded_recipe(name: str, data: dict) -> dict | None:
    meta = data["meta"]
    if name == "permutation":
        return meta.get("recipes", {}).get("mnist")
    return meta.get("recipe") if name in ("curve", "ablations") else None


def model_change_note(name: str, data: dict) -> str:
    """Where a study of the main job's model ran with other model arguments or recipe than
    it would use today, which ones."""
    recorded = _recorded_model_args(name, data)
    if recorded is None:
        return ""
    config = common.main_job_config()
    then = _leaves(recorded)
    now = _leaves(dict(config["model"].get("model_args") or {}))
    changed = [f"`{key}` {then[key]} (now {now[key]})" for key in sorted(then.keys() & now.keys())
               if then[key] != now[key]]
    recipe_then = _recorded_recipe(name, data) or {}
    recipe_now = common.recipe_from_config(config, epochs=1)
    changed += [f"`{key}` {recipe_then[key]} (now {getattr(recipe_now, key)})"
                for key in RECIPE_FIELDS
                if key in recipe_then and recipe_then[key] != getattr(recipe_now, key)]
    if not changed:
        return ""
    return ("This study ran with other model arguments or recipe than it uses today: "
            + ", ".join(changed) + ".\n\n")


def ablation_summary(data: dict, permutation: dict | None) -> str:
    """The reference model, the seed noise of the same model and budget (from the permutation
    study, when it has the same epochs), and every change beyond twice that noise."""
    runs = {(r["variant"], r["seed"]): r["test_accuracy"] for r in data["runs"]}
    reference = statistics.fmean(a for (v, _), a in runs.items() if v == "{}")
    epochs = data["meta"]["recipe"]["epochs"]
    accuracies = [r["test_accuracy"] for r in (permutation or {}).get("runs", [])
                  if (r["model"], r["dataset"], r["permuted"], r["epochs"])
                  == ("perceiver", "mnist", False, epochs)]
    noise = statistics.stdev(accuracies) if len(accuracies) > 1 else None
    threshold = 2 * noise if noise is not None else 0.03
    text = f"The reference model: {100 * reference:.1f}% after {epochs} epochs. "
    if noise is not None:
        text += (f"Three seeds of the same model and budget in the permutation study spread "
                 f"by {100 * noise:.2f} points (standard deviation), so this one-seed table "
                 f"resolves only differences of more than {100 * threshold:.1f} points "
                 "(twice that). ")
    changes = []
    for axis, variants in measured_axes(data["meta"]["axes"], data["runs"]).items():
        for label, variant in variants:
            accuracy = statistics.fmean(a for (v, _), a in runs.items() if v == variant)
            if variant != "{}" and abs(accuracy - reference) > threshold:
                changes.append(f"{axis} {label}: {100 * (accuracy - reference):+.1f}")
    text += ("Changes beyond that: " + "; ".join(changes) + ".\n\n" if changes
             else "No change goes beyond that.\n\n")
    dips = isolated_dips(data, runs)
    if dips:
        text += ("Some of these are isolated dips, far below both neighbouring values of their "
                 "axis (" + "; ".join(dips) + "): more likely one run that started badly than "
                 "an effect of the value, which only more seeds would tell.\n\n")
    return text


#: How far (points) both neighbours on an axis must lie above a value to call it a dip.
DIP_POINTS = 5.0


def isolated_dips(data: dict, runs: dict) -> list[str]:
    """Values of an axis whose accuracy lies more than :data:`DIP_POINTS` below both of its
    neighbours on that axis (the axes' values are listed in order)."""
    dips = []
    for axis, variants in measured_axes(data["meta"]["axes"], data["runs"]).items():
        accuracy = [100 * statistics.fmean(a for (v, _), a in runs.items() if v == variant)
                    for _, variant in variants]
        for i in range(1, len(variants) - 1):
            if min(accuracy[i - 1], accuracy[i + 1]) - accuracy[i] > DIP_POINTS:
                dips.append(f"{axis} {variants[i][0]}: {accuracy[i]:.1f}% between "
                            f"{accuracy[i - 1]:.1f}% and {accuracy[i + 1]:.1f}%")
    return dips


#: The full suite's budget on the 2-core CPU (issue: at most 2 hours).
SUITE_BUDGET_MINUTES = 120


def suite_time_section() -> str:
    """How long the full suite took: the record of ``python -m experiments.suite`` when it
    ran every job from the start (not ``--quick`` or ``--resume``) and all succeeded: its
    wall time (lanes side by side, then the curve alone), against the suite's budget."""
    from .suite import JOBS

    suite = _load("suite")
    title = "## Time of the full suite\n\n"
    jobs = (suite or {}).get("jobs", {})
    if (suite is None or suite["meta"].get("quick") or suite["meta"].get("resume")
            or set(jobs) != set(JOBS) or any(job["returncode"] != 0 for job in jobs.values())):
        return title + "Not measured yet: `python -m experiments.suite` runs every study.\n\n"
    meta = suite["meta"]
    total = meta["wall_seconds"] / 60
    lane_of = {n: f"lane {i + 1}" for i, lane in enumerate(meta["lanes"]) for n in lane}
    rows = [[f"`{job['command']}`", lane_of.get(name, "alone"),
             f"{job['wall_seconds'] / 60:.1f}"] for name, job in jobs.items()]
    verdict = "within" if total <= SUITE_BUDGET_MINUTES else "over"
    return (title + f"`{meta['command']}` (commit `{meta['git_commit'][:10]}`, "
            f"{meta['date'][:10]}, {meta['cpu']}, {meta['cpu_count']} CPUs): the lanes side by "
            f"side, one torch thread per job, took {meta['lanes_wall_seconds'] / 60:.0f} "
            f"minutes; then the curve alone: **{total:.0f} minutes in all**, {verdict} the "
            f"budget of {SUITE_BUDGET_MINUTES} minutes.\n\n"
            + common.markdown_table(["command", "lane", "minutes"], rows) + "\n")


def build() -> str:
    text = ("# Results\n\n"
            "Every table below is copied from a result file in the repository, written by the "
            "command named above it, at the commit and on the machine it names; this page is "
            "assembled by `python -m experiments.results_page`. The studies run on a 2-core CPU, "
            "so their models and budgets are small; `experiments/README.md` describes them.\n\n")
    text += main_job_section()
    for name, title in STUDIES:
        md, png = common.RESULTS / f"{name}.md", common.RESULTS / f"{name}.png"
        data = _load(name)
        if not md.exists() or data is None or not data.get("runs"):
            text += (f"## {title}\n\nNot run yet: `python -m experiments.{name}` writes "
                     f"`experiments/results/{name}.md`, then run this script again.\n\n")
            continue
        text += f"## {title}\n\n"
        text += model_change_note(name, data)
        if name == "permutation":
            text += permutation_summary(data)
        if name == "curve":
            text += step_time_note()
        if name == "ablations":
            text += ablation_summary(data, _load("permutation"))
        if png.exists():
            text += f"![{name}](../experiments/results/{name}.png)\n\n"
        text += _demote(md.read_text().split("\n", 1)[1]) + "\n"
    return text + suite_time_section()


def main(argv: list[str] | None = None) -> Path:
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    text = build()
    common.write_text(DOCS, text)
    print(f"wrote {DOCS}")
    return DOCS


if __name__ == "__main__":
    main(sys.argv[1:])
