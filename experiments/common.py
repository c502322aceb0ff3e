"""What every experiment shares: the training loop, the recipe read from a config, the record
of the machine, and the JSON / markdown / PNG outputs.

Identical treatment is the point: every model of a comparison goes through
:func:`train_and_test` with the same :class:`Recipe` (epochs, batch size, AdamW with linear
warm-up and cosine decay, label smoothing, gradient clipping, precision) and the same
augmentation, drawn from the same seeded generators.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omniperceiver.machine import machine_info, source_commit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"

Inputs = Tensor | dict[str, Tensor]
Batch = Callable[[Inputs], Inputs]


# --- the recipe -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How every model of one comparison is trained."""

    epochs: int
    batch_size: int
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # a fraction of all steps
    label_smoothing: float = 0.1
    grad_clip: float | None = 1.0
    precision: str = "32-true"  # or "bf16-mixed" (CPU autocast)
    max_steps: int | None = None  # stop early (the quick mode)


def load_config(name: str) -> dict[str, Any]:
    """``configs/<name>.yaml`` as a dict."""
    import yaml

    path = ROOT / "configs" / f"{name}.yaml"
    with open(path) as f:
        return yaml.safe_load(f)


def main_job_config() -> dict[str, Any]:
    """``configs/mnist.yaml`` as a dict: the main job's model and recipe, which the curve
    trains for its epochs and the permutation study and the ablations for 15."""
    return load_config("mnist")


def recipe_from_config(config: dict[str, Any], *, epochs: int, **overrides) -> Recipe:
    """The optimiser, schedule, batch size and precision of a training config, with
    ``epochs`` (and any ``overrides``) replacing the config's. ``precision: auto`` is resolved
    as the trainer resolves it on this CPU (``bf16-mixed`` where bf16 matrix products are
    fast, else ``32-true``), so the recipe recorded is the one that ran."""
    from omniperceiver.training.precision import resolve_precision

    model, trainer = config.get("model", {}), config.get("trainer", {})
    data = config.get("data", {}).get("init_args", {})
    if model.get("optimizer", "adamw") != "adamw" or model.get("schedule", "cosine") != "cosine":
        print(f"note: the config uses {model.get('optimizer')} / {model.get('schedule')}; "
              "the experiments train every model with AdamW + warm-up + cosine")
    recipe = Recipe(epochs=epochs, batch_size=int(data.get("batch_size", 64)),
                    lr=float(model.get("lr", 2e-3)),
                    weight_decay=float(model.get("weight_decay", 0.05)),
                    warmup=float(model.get("warmup", 0.05)),
                    label_smoothing=float(model.get("label_smoothing", 0.0)),
                    grad_clip=trainer.get("gradient_clip_val"),
                    precision=str(resolve_precision(trainer.get("precision", "32-true"),
                                                    accelerator="cpu")))
    return replace(recipe, **overrides)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def closest_in_size(build: Callable[[int], nn.Module], widths: Iterable[int],
                    target: int) -> nn.Module:
    """``build(width)`` for the width whose parameter count is closest to ``target`` (in
    ratio), so a baseline follows the size of the model it is compared with. Candidates are
    built on the meta device (no memory, no initialisation) in increasing width until one
    exceeds the target."""
    best, best_distance = None, math.inf
    for width in sorted(widths):
        with torch.device("meta"):
            count = count_parameters(build(width))
        distance = abs(math.log(count / target))
        if distance < best_distance:
            best, best_distance = width, distance
        if count > target:
            break
    return build(best)


# --- the training loop ------------------------------------------------------------------------


def take(x: Inputs, index: Tensor) -> Inputs:
    """Rows ``index`` of a tensor or of every tensor of a dict."""
    if isinstance(x, dict):
        return {k: v[index] for k, v in x.items()}
    return x[index]


def num_examples(x: Inputs) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def augmentation(config: dict[str, Any]) -> dict[str, Any]:
    """The augmentation a config's data module applies (its class's defaults where the config
    says nothing): ``shift``, ``rotate`` and ``scale``."""
    from omniperceiver.training import data as data_modules

    spec = config["data"]
    module = getattr(data_modules, spec["class_path"].rsplit(".", 1)[-1])(
        **{k: v for k, v in spec.get("init_args", {}).items() if k != "permuted"})
    return dict(shift=int(module.shift), rotate=float(module.rotate),
                scale=tuple(module.scale) if module.scale else None)


def _autocast(precision: str):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16"))


def train_and_test(model: nn.Module, train: tuple[Inputs, Tensor], test: tuple[Inputs, Tensor],
                   recipe: Recipe, *, seed: int, augment: Batch | None = None,
                   transform: Batch | None = None, curve: bool = False) -> dict[str, Any]:
    """Train ``model`` on ``train = (inputs, labels)`` and return its accuracy on ``test``.

    Each step takes a batch (a fresh shuffle per epoch, incomplete last batch dropped), applies
    ``augment`` (training only), then ``transform`` (training and test: e.g. the pixel
    permutation, so that augmentation happens to the image before it is permuted), and takes
    an AdamW step under a linear warm-up + cosine schedule. The shuffles, the augmentation and
    dropout draw from generators seeded by ``seed`` (seed the model's initialisation before
    building it). Returns ``test_accuracy``, ``train_seconds`` (the loop alone), ``steps`` and
    ``final_loss`` (mean of the last epoch); ``curve=True`` also tests after every epoch and
    returns ``curve``: [epoch, training seconds so far, test accuracy] (testing not timed).
    """
    from omniperceiver.training.module import WarmupSchedule, weight_decay_groups

    inputs, labels = train
    n = len(labels)
    per_epoch = max(1, n // recipe.batch_size)
    total = recipe.epochs * per_epoch
    if recipe.max_steps is not None:
        total = min(total, recipe.max_steps)
    optimizer = torch.optim.AdamW(weight_decay_groups(model, recipe.weight_decay), lr=recipe.lr)
    schedule = WarmupSchedule("cosine", total_steps=total,
                              warmup_steps=int(recipe.warmup * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    order_generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # augmentation, modality dropout, dropout
    model.train()
    step, losses, points, testing = 0, [], [], 0.0
    start = time.perf_counter()
    while step < total:
        if curve and step and step % per_epoch == 0:
            pause = time.perf_counter()
            points.append([step // per_epoch, round(pause - start - testing, 2),
                           _accuracy(model, test, transform, recipe.precision)])
            model.train()
            testing += time.perf_counter() - pause
        order = torch.randperm(n, generator=order_generator)
        losses = []
        for i in range(per_epoch):
            if step >= total:
                break
            index = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            x, y = take(inputs, index), labels[index]
            if augment is not None:
                x = augment(x)
            if transform is not None:
                x = transform(x)
            with _autocast(recipe.precision):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            step += 1
    seconds = time.perf_counter() - start - testing
    accuracy = _accuracy(model, test, transform, recipe.precision)
    result = {"test_accuracy": accuracy, "train_seconds": round(seconds, 2), "steps": step,
              "final_loss": round(statistics.fmean(losses), 4) if losses else None}
    if curve:
        result["curve"] = points + [[-(-step // per_epoch), round(seconds, 2), accuracy]]
    return result


def _accuracy(model: nn.Module, test: tuple[Inputs, Tensor], transform: Batch | None,
              precision: str) -> float:
    logits = predict(model, test[0], transform=transform, batch_size=256, precision=precision)
    return (logits.argmax(-1) == test[1]).float().mean().item()


@torch.no_grad()
def predict(model: nn.Module, inputs: Inputs, *, transform: Batch | None = None,
            batch_size: int = 256, precision: str = "32-true") -> Tensor:
    """Logits (num_examples, num_classes) in eval mode, float32."""
    model.eval()
    out = []
    for start in range(0, num_examples(inputs), batch_size):
        x = take(inputs, torch.arange(start, min(start + batch_size, num_examples(inputs))))
        if transform is not None:
            x = transform(x)
        with _autocast(precision):
            out.append(model(x).float())
    return torch.cat(out)


def stack_dataset(dataset, limit: int | None = None) -> tuple[Inputs, Tensor]:
    """A map-style dataset of ``(x, label)`` items as ``(inputs, labels)`` tensors (``x`` a
    tensor or a dict of tensors); the first ``limit`` items if given."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    items = [dataset[i] for i in range(n)]
    xs = [x for x, _ in items]
    labels = torch.tensor([int(y) for _, y in items])
    if isinstance(xs[0], dict):
        return {k: torch.stack([x[k] for x in xs]) for k in xs[0]}, labels
    return torch.stack(xs), labels


# --- command line -----------------------------------------------------------------------------


def base_parser(description: str, *, epochs: int | None, seeds: Sequence[int],
                quick_seeds: Sequence[int] = (0,),
                epochs_help: str | None = None) -> argparse.ArgumentParser:
    """The options every experiment has; ``--seeds`` defaults to ``seeds`` (``quick_seeds``
    with ``--quick``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="tiny data, tiny models, a few steps: checks the machinery (CI)")
    parser.add_argument("--epochs", type=int, default=epochs,
                        help=epochs_help or f"training epochs (default {epochs})")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help=f"training seeds (default {' '.join(map(str, seeds))}; with "
                             f"--quick {' '.join(map(str, quick_seeds))})")
    parser.set_defaults(default_seeds=list(seeds), quick_seeds=list(quick_seeds))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default experiments/results, "
                             "experiments/results/quick with --quick)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in the output JSON and do only the rest")
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``, fill in the seeds and set the number of torch threads."""
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = args.quick_seeds if args.quick else args.default_seeds
    torch.set_num_threads(args.threads)
    return args


def describe_recipe(recipe: Recipe) -> str:
    steps = f", at most {recipe.max_steps} steps" if recipe.max_steps else ""
    return (f"{recipe.epochs} epochs{steps}, batch {recipe.batch_size}, AdamW lr {recipe.lr:g} "
            f"(weight decay {recipe.weight_decay:g}), {100 * recipe.warmup:g}% linear warm-up "
            f"then cosine, label smoothing {recipe.label_smoothing:g}, gradient clipping "
            f"{recipe.grad_clip}, {recipe.precision}")


def output_folder(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return args.out
    return RESULTS / "quick" if args.quick else RESULTS


# --- provenance -------------------------------------------------------------------------------


def provenance(name: str, argv: Sequence[str] | None) -> dict[str, Any]:
    """The command (``python -m experiments.<name> ...``), commit, date and machine."""
    args = list(sys.argv[1:] if argv is None else argv)
    commit = source_commit()
    return {
        "command": shlex.join(["python", "-m", f"experiments.{name}", *args]),
        "git_commit": commit.removesuffix("-dirty") if commit else None,
        "git_dirty": commit.endswith("-dirty") if commit else None,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        **machine_info(),
    }


# --- results ----------------------------------------------------------------------------------


class RunLog:
    """Every run of an experiment, written to ``<out>/<name>.json`` after each one (a long
    study interrupted keeps what it finished; ``resume=True`` skips runs already there).

    ``shared=True``: other processes write the same record at the same time (the suite runs
    the ablations' axes in two lanes). Each save then locks the output folder, merges the runs
    the file holds into this log's (a run of the file with the same ``key`` fields as one of
    this log's is replaced by it; without ``key``, runs are the same when all their fields
    are) and writes the union; ``meta["jobs"]`` holds every command
    that wrote to it, each with its commit, date and wall time. The file is not cleared at the
    start: remove it first for a fresh record."""

    def __init__(self, out: Path, name: str, meta: dict[str, Any], *, resume: bool = False,
                 shared: bool = False, key: Sequence[str] | None = None):
        self.path = out / f"{name}.json"
        self.meta = meta
        self.shared = shared
        self.key = tuple(key) if key is not None else None
        self._lock: int | None = None  # the locked folder's descriptor while held
        self.runs: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        if resume and self.path.exists():
            previous = json.loads(self.path.read_text())
            self.runs = previous.get("runs", [])
            self.extra = previous.get("extra", {})
            if self.runs:  # where the runs kept come from
                before = previous.get("meta", {})
                self.meta["resumed_from"] = before.get("resumed_from") or {
                    k: before.get(k) for k in ("command", "git_commit", "date")}

    def find(self, **key) -> dict[str, Any] | None:
        for run in self.runs:
            if all(run.get(k) == v for k, v in key.items()):
                return run
        return None

    def add(self, run: dict[str, Any]) -> None:
        self.runs.append(run)
        self.save()

    def save(self) -> None:
        with self.locked():
            self.merge()
            self._write()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """For a shared log: hold the output folder's lock (one writer at a time; a save
        inside keeps it); else nothing."""
        if not self.shared or self._lock is not None:
            yield
            return
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(self._lock)  # closing releases the lock
            self._lock = None

    def merge(self) -> None:
        """For a shared log: add the runs of the file that this log lacks (see
        :meth:`identity`), and this log's command to the file's ``meta["jobs"]``."""
        if not self.shared:
            return
        jobs: dict[str, Any] = {}
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            mine = {self.identity(run) for run in self.runs}
            self.runs += [run for run in saved.get("runs", [])
                          if self.identity(run) not in mine]
            jobs = saved.get("meta", {}).get("jobs", {})
        jobs[self.meta["command"]] = {k: self.meta.get(k)
                                      for k in ("git_commit", "git_dirty", "date", "wall_seconds")}
        self.meta["jobs"] = dict(sorted(jobs.items()))

    def identity(self, run: dict[str, Any]) -> str:
        """What makes two runs the same run: their ``key`` fields, or all their fields."""
        fields = run if self.key is None else {k: run.get(k) for k in self.key}
        return json.dumps(fields, sort_keys=True)

    def _write(self) -> None:
        write_text(self.path, json.dumps({"meta": self.meta, "runs": self.runs,
                                          "extra": self.extra}, indent=1) + "\n")


def finish(log: RunLog, out: Path, name: str, *, started: float,
           report: Callable[[RunLog], str],
           chart: Callable[[RunLog, Path], object] | None) -> dict[str, Path]:
    """Record the wall time, write ``<name>.json``, ``<name>.md`` (``report(log)``) and, when
    there are runs, ``<name>.png`` (``chart``); print the report; return the paths."""
    log.meta["wall_seconds"] = round(time.perf_counter() - started, 1)
    with log.locked():  # a shared record: the report and chart show every process's runs
        log.save()
        text = report(log)
        paths = {"json": log.path, "markdown": write_text(out / f"{name}.md", text)}
        if chart is not None and log.runs:
            paths["chart"] = out / f"{name}.png"
            chart(log, paths["chart"])
    print(text)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths


def write_text(path: Path, text: str) -> Path:
    from omniperceiver.files import write_text_atomically

    return write_text_atomically(path, text)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def group_runs(runs: Sequence[dict[str, Any]], keys: Sequence[str],
               value: str = "test_accuracy") -> list[dict[str, Any]]:
    """Runs grouped by ``keys`` (in order of first appearance) with the mean, standard
    deviation and count of ``value`` and the mean training seconds."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run[k] for k in keys), []).append(run)
    rows = []
    for key, members in groups.items():
        mean, std = mean_std([m[value] for m in members])
        rows.append({**dict(zip(keys, key, strict=True)), "mean": mean, "std": std,
                     "n": len(members), "params": members[0].get("params"),
                     "train_seconds": statistics.fmean(m["train_seconds"] for m in members)})
    return rows


def percent(mean: float, std: float, n: int) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}" if n > 1 else f"{100 * mean:.2f}"


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join("-" if c is None else str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_header(title: str, meta: dict[str, Any]) -> str:
    dirty = " (with uncommitted changes)" if meta.get("git_dirty") else ""
    commands = list(meta.get("jobs", {}))
    command = (f"Commands (side by side, writing one record): "
               f"{'; '.join(f'`{c}`' for c in commands)}" if len(commands) > 1
               else f"Command: `{meta['command']}`")
    return (f"## {title}\n\n"
            f"{command}  \n"
            f"Commit: `{meta['git_commit']}`{dirty}; {meta['date']}  \n"
            + (f"Resumed a run started by `{first['command']}` at commit "
               f"`{first['git_commit']}`, {first['date']}  \n"
               if (first := meta.get("resumed_from")) else "")
            + f"Machine: {meta['cpu']} ({meta['cpu_capability']}, {meta['torch_threads']} torch "
            f"threads of {meta['cpu_count']} CPUs); torch {meta['torch']}\n\n")


def bar_chart(path: Path, groups: Sequence[str], series: dict[str, list[tuple[float, float]]],
              *, title: str, ylabel: str = "test accuracy (%)",
              ylim: tuple[float, float] | None = None, overlay: bool = False) -> Path:
    """Grouped bars: one group per name in ``groups``, one bar per series, each
    ``(mean, std)`` (fractions; drawn in percent) with a standard-deviation error bar; NaN
    leaves a gap. ``overlay=True``: every group has a value in one series only, drawn
    centred (the series then only colour the bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars_per_group = 1 if overlay else max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) * bars_per_group + 2), 4.4))
    width = 0.8 if overlay else 0.8 / max(1, len(series))
    for j, (name, values) in enumerate(series.items()):
        xs = [i if overlay else i - 0.4 + width * (j + 0.5) for i in range(len(groups))]
        means = [100 * m for m, _ in values]
        stds = [100 * s for _, s in values]
        bars = ax.bar(xs, means, width, yerr=stds, capsize=3, label=name)
        for bar, mean, std in zip(bars, means, stds, strict=True):
            if not math.isnan(mean):
                ax.annotate(f"{mean:.1f}", (bar.get_x() + bar.get_width() / 2, mean + std),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                            textcoords="offset points")
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    from omniperceiver.training.checkpoint import write_atomically

    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
    return path
