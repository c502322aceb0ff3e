"""The main job's accuracy against training time, beside perceiver-pytorch on the same pixels.

    python -m experiments.curve [--quick] [--epochs 70] [--peer-epochs 25]

Trains the main job's Perceiver (``configs/mnist.yaml``: its model, recipe and augmentation)
for ``--epochs`` epochs, testing on the 1,000 held-out digits after every epoch, and
perceiver-pytorch 0.11 (the calibration model: 64 x 128 latents, depth 4 with tied weights,
16 bands, max_freq 28, cross/latent heads of 64 channels) with the same loop, recipe and
augmentation for ``--peer-epochs`` (0 leaves it out; its step time beside ours is measured by
``python benchmarks/run.py --sections raw_pixels``). Both read the same raw pixels. The
learning-rate schedule spans each run's epochs, so a point of the curve is not the result of a
shorter run.

Writes ``curve.json`` (every point: epoch, training seconds, test accuracy; the command,
commit and machine), ``curve.md`` (epoch times and accuracies) and ``curve.png``.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import torch
from torch import nn

from omniperceiver import create_model

from . import common
from .permutation import image_tasks

NAME = "curve"


def peer_model(*, quick: bool) -> nn.Module:
    """perceiver-pytorch's Perceiver on 28x28 greyscale pixels (the calibration model)."""
    from perceiver_pytorch import Perceiver

    size = dict(num_latents=8, latent_dim=32, depth=1) if quick else dict(
        num_latents=64, latent_dim=128, depth=4)
    return Perceiver(input_channels=1, input_axis=2, num_freq_bands=16, max_freq=28.0,
                     cross_heads=1, latent_heads=8, cross_dim_head=64, latent_dim_head=64,
                     num_classes=10, attn_dropout=0.0, ff_dropout=0.0, weight_tie_layers=True,
                     **size)


def run(args) -> common.RunLog:
    (task,) = [t for t in image_tasks(epochs=args.epochs, digits_epochs=1, quick=args.quick,
                                      permutation_seed=0)
               if t.name == "mnist"]
    meta = common.provenance(NAME, args.argv)
    meta.update(quick=args.quick, recipe=asdict(task.recipe),
                perceiver={"preset": task.preset, "model_args": task.perceiver_args},
                augmentation={"shift": task.shift, "rotate": task.rotate, "scale": task.scale})
    log = common.RunLog(common.output_folder(args), NAME, meta)
    seed = args.seeds[0]
    for name, build, epochs in (
            ("omniperceiver (main job)",
             lambda: create_model(task.preset, **task.perceiver_args), args.epochs),
            ("perceiver-pytorch 0.11", lambda: peer_model(quick=args.quick), args.peer_epochs)):
        if epochs < 1:
            continue
        torch.manual_seed(seed)
        model = build()
        recipe = replace(task.recipe, epochs=1 if args.quick else epochs)
        result = common.train_and_test(model, task.train, task.test, recipe, seed=seed,
                                       augment=task.augment, curve=True)
        log.add({"model": name, "params": common.count_parameters(model), "seed": seed,
                 "epochs": recipe.epochs, **result})
        print(f"{name}: {result['test_accuracy']:.2%} after {recipe.epochs} epochs, "
              f"{result['train_seconds']:.0f} s", flush=True)
    return log


def report(log: common.RunLog) -> str:
    text = common.markdown_header("Accuracy against training time (raw-pixel MNIST)", log.meta)
    rows = []
    for r in log.runs:
        per_epoch = r["train_seconds"] / max(1, r["epochs"])
        best = max(point[2] for point in r["curve"])
        rows.append([r["model"], f"{r['params']:,}", r["epochs"], f"{per_epoch:.1f}",
                     f"{r['train_seconds']:.0f}", f"{100 * r['test_accuracy']:.2f}",
                     f"{100 * best:.2f}"])
    text += common.markdown_table(["model", "parameters", "epochs", "s / epoch",
                                   "training s", "final test %", "best epoch's test %"], rows)
    text += "\nTest accuracy (%) after each epoch (training seconds so far):\n\n"
    for r in log.runs:
        points = ", ".join(f"{e}: {100 * a:.1f} ({s:.0f} s)" for e, s, a in r["curve"])
        text += f"- {r['model']}: {points}\n"
    return text


def chart(log: common.RunLog, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in log.runs:
        ax.plot([p[1] for p in r["curve"]], [100 * p[2] for p in r["curve"]], marker=".",
                label=f"{r['model']} ({r['params']:,} parameters)")
    ax.set_xlabel("training seconds")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(80, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(f"Raw-pixel MNIST, 4,000 training digits ({log.meta['cpu']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = common.base_parser(__doc__.split("\n\n")[0], seeds=(0,),
                                epochs=common.main_job_config()["trainer"]["max_epochs"])
    parser.add_argument("--peer-epochs", type=int, default=25,
                        help="perceiver-pytorch's epochs (default 25; 0 leaves it out)")
    args = common.parse(parser, argv)
    if args.peer_epochs > 0 and importlib.util.find_spec("perceiver_pytorch") is None:
        parser.error("--peer-epochs trains perceiver-pytorch's model beside ours, and "
                     "perceiver-pytorch is not installed: pip install -c constraints.txt -e "
                     "'.[bench]', or pass --peer-epochs 0")
    args.argv = argv
    start = time.perf_counter()
    log = run(args)
    return common.finish(log, common.output_folder(args), NAME, started=start, report=report,
                         chart=chart)


if __name__ == "__main__":
    main(sys.argv[1:])
