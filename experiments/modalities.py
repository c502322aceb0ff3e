"""One architecture, every modality: the same Perceiver code beside a modality-specific baseline.

    python -m experiments.modalities [--quick] [--tasks points spoken moving av] [--epochs N]
                                     [--seeds 0 1 2]

Each task trains the package's Perceiver preset for that modality (sized and configured as in
its ``configs/*.yaml``) and a conventional baseline of similar parameter count, with the same
recipe (the config's batch size, AdamW, warm-up + cosine, label smoothing, clipping), epochs
(default: half the config's ``max_epochs``) and augmentation:

=======  ==========================================  ==================================
task     Perceivers                                  baseline
=======  ==========================================  ==================================
points   ``pointcloud-perceiver`` (3D Fourier)        PointNet (per-point MLP + max)
spoken   ``audio-perceiver`` on log-mel frames and    a CNN on the same log-mel frames
         on raw-waveform patches
moving   ``video-perceiver`` (space-time patches)     a 3D CNN
av       image alone, audio alone, both (``av-        a two-branch CNN (late fusion)
         perceiver``), both with modality dropout
=======  ==========================================  ==================================

Data: procedural point clouds (12 shapes), spoken digits synthesised by espeak-ng (the spoken
and audio-visual tasks are skipped, with the reason recorded, when it is missing), moving MNIST
digits, and MNIST digits paired with spoken digits of the same class. The images of every
task come from the package's own datasets (the image task itself is the unpermuted MNIST of
``python -m experiments.permutation``).

The audio-visual models that read both modalities are also tested with each one missing
(masked out for the Perceivers, zeros for the CNN): what modality dropout is for.

Writes ``modalities.json``, ``modalities.md`` and ``modalities.png`` under ``--out``.
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from omniperceiver import create_model
from omniperceiver.config import merge
from omniperceiver.data import (
    SHAPE_CLASSES,
    AudioVisualDigits,
    MovingDigits,
    ProceduralPointClouds,
    SpokenDigits,
    espeak_available,
)
from omniperceiver.models.classifiers import AV_AUDIO, AV_IMAGE
from omniperceiver.training import augment as aug
from omniperceiver.training.augment import random_time_shift

from . import common
from .baselines import LateFusion, PointNet, SpectrogramCNN, VideoCNN

NAME = "modalities"
TASKS = ("points", "spoken", "moving", "av")
TINY_PERCEIVER = {"encoder": dict(num_latents=8, latent_dim=32, num_blocks=1,
                                  self_attends_per_block=1, num_cross_attends=1)}
WIDTHS = (4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512,
          640, 768)
#: The Perceiver's AudioSet setting: each example drops a modality with this probability.
MODALITY_DROPOUT = {"image": 0.3, "audio": 0.3}


class Select(nn.Module):
    """Feeds one entry of a dict input to ``model`` (a single-modality model on AV data)."""

    def __init__(self, key: str, model: nn.Module):
        super().__init__()
        self.key = key
        self.model = model

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        return self.model(x[self.key])


class WithoutModality(nn.Module):
    """A two-modality model evaluated with ``missing`` absent: masked out for a Perceiver
    (``masked=True``: none of its inputs is attended to), zeros for a CNN (a blank image,
    silence)."""

    def __init__(self, model: nn.Module, missing: str, *, masked: bool):
        super().__init__()
        self.model = model
        self.missing = missing
        self.masked = masked

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        absent = x[self.missing]
        if self.masked:
            # image (batch, H, W, C) -> mask (batch, H, W); audio (batch, T) -> (batch, T)
            shape = absent.shape[:-1] if absent.ndim > 2 else absent.shape
            return self.model(x, {self.missing: torch.zeros(shape, dtype=torch.bool)})
        return self.model({**x, self.missing: torch.zeros_like(absent)})


@dataclass
class Task:
    """One modality: its data, recipe, augmentation and models (``models[name]()`` builds
    one; ``kinds[name]`` is "perceiver" or "baseline")."""

    name: str
    config: str
    description: str
    train: tuple[Any, Tensor]
    test: tuple[Any, Tensor]
    recipe: common.Recipe
    augment: Callable[[Any], Any]
    models: dict[str, Callable[[], nn.Module]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    #: models of several modalities also tested with each one missing
    multimodal: set[str] = field(default_factory=set)

    def add(self, name: str, kind: str, build: Callable[[], nn.Module], *,
            multimodal: bool = False) -> None:
        self.models[name] = build
        self.kinds[name] = kind
        if multimodal:
            self.multimodal.add(name)


def _model_args(config: dict[str, Any], quick: bool) -> tuple[str, dict[str, Any]]:
    args = dict(config["model"].get("model_args") or {})
    if quick:
        args = merge(args, TINY_PERCEIVER)
    return config["model"]["model"], args


def _sized(build: Callable[[int], nn.Module], like: Callable[[], nn.Module]) -> nn.Module:
    return common.closest_in_size(build, WIDTHS, common.count_parameters(like()))


def _limits(quick: bool, train: int | None, test: int | None) -> tuple[int | None, int | None]:
    return (64, 32) if quick else (train, test)


def points_task(*, epochs: int | None, quick: bool) -> Task:
    config = common.load_config("pointclouds")
    data = config["data"]["init_args"]
    preset, args = _model_args(config, quick)
    num_train, num_test = _limits(quick, data.get("num_train", 2400), data.get("num_test", 600))
    num_points = 64 if quick else int(data.get("num_points", 1024))
    sets = [common.stack_dataset(ProceduralPointClouds(
        n, num_points=num_points, seed=0, noise=float(data.get("noise", 0.01)), split=split))
        for n, split in ((num_train, "train"), (num_test, "test"))]
    scale = data.get("scale")
    task = Task(
        "points", "pointclouds", f"{len(SHAPE_CLASSES)} procedural 3-D shapes, {num_points} "
        "points, random rotations", *sets,
        _recipe(config, epochs, quick),
        augment=lambda x: aug.augment_points(x, jitter=float(data.get("jitter", 0.0)),
                                             scale=tuple(scale) if scale else None))
    classes = len(SHAPE_CLASSES)

    def perceiver() -> nn.Module:
        return create_model(preset, num_classes=classes, **args)

    task.add("Perceiver", "perceiver", perceiver)
    task.add("PointNet", "baseline",
             lambda: _sized(lambda w: PointNet(num_classes=classes, width=w), perceiver))
    return task


def spoken_task(*, epochs: int | None, quick: bool) -> Task:
    config = common.load_config("spoken_digits")
    data = config["data"]["init_args"]
    preset, args = _model_args(config, quick)
    num_train, num_test = _limits(quick, None, None)
    rate, duration = int(data.get("sample_rate", 16000)), float(data.get("duration", 1.0))
    sets = [common.stack_dataset(SpokenDigits(split, num_samples=n, sample_rate=rate,
                                              duration=duration))
            for n, split in ((num_train, "train"), (num_test, "test"))]
    shift = int(float(data.get("time_shift", 0.0)) * rate)
    task = Task(
        "spoken", "spoken_digits", "spoken digits (espeak-ng voices), 1 s waveforms", *sets,
        _recipe(config, epochs, quick),
        augment=lambda x: random_time_shift(x, shift))
    spectrogram_args = {**args, "frontend": "spectrogram"}
    waveform_args = {k: v for k, v in args.items() if k not in ("n_mels", "hop_length")}
    waveform_args["frontend"] = "waveform"

    def perceiver() -> nn.Module:
        return create_model(preset, num_classes=10, **spectrogram_args)

    task.add("Perceiver (log-mel)", "perceiver", perceiver)
    task.add("Perceiver (raw waveform)", "perceiver",
             lambda: create_model(preset, num_classes=10, **waveform_args))
    task.add("spectrogram CNN", "baseline", lambda: _sized(
        lambda w: SpectrogramCNN(sample_rate=rate, n_mels=int(args.get("n_mels", 64)),
                                 hop_length=int(args.get("hop_length", 160)), width=w),
        perceiver))
    return task


def moving_task(*, epochs: int | None, quick: bool) -> Task:
    config = common.load_config("moving_digits")
    data = config["data"]["init_args"]
    preset, args = _model_args(config, quick)
    num_train, num_test = _limits(quick, data.get("num_train"), data.get("num_test"))
    frames, size = int(data.get("num_frames", 8)), int(data.get("image_shape", 32))
    sets = [common.stack_dataset(MovingDigits(split, num_samples=n, num_frames=frames,
                                              size=size, seed=0))
            for n, split in ((num_train, "train"), (num_test, "test"))]
    shift = int(data.get("shift", 0))
    task = Task(
        "moving", "moving_digits", f"one MNIST digit bouncing on a {size}x{size} canvas, "
        f"{frames} frames", *sets,
        _recipe(config, epochs, quick),
        augment=lambda x: aug.random_shift(x, shift))

    def perceiver() -> nn.Module:
        return create_model(preset, num_classes=10, **args)

    task.add("Perceiver", "perceiver", perceiver)
    task.add("3D CNN", "baseline", lambda: _sized(lambda w: VideoCNN(width=w), perceiver))
    return task


def av_task(*, epochs: int | None, quick: bool) -> Task:
    config = common.load_config("av_digits")
    data = config["data"]["init_args"]
    preset, args = _model_args(config, quick)
    num_train, num_test = _limits(quick, data.get("num_train"), data.get("num_test"))
    rate, duration = int(data.get("sample_rate", 16000)), float(data.get("duration", 1.0))
    clips = 20 if quick else data.get("num_clips")
    sets = [common.stack_dataset(AudioVisualDigits(split, num_samples=n, num_clips=clips,
                                                   sample_rate=rate, duration=duration))
            for n, split in ((num_train, "train"), (num_test, "test"))]
    shift, time_shift = int(data.get("shift", 0)), int(float(data.get("time_shift", 0)) * rate)
    task = Task(
        "av", "av_digits", "an MNIST digit and a spoken digit of the same class", *sets,
        _recipe(config, epochs, quick),
        augment=lambda x: {"image": aug.random_shift(x["image"], shift),
                           "audio": random_time_shift(x["audio"], time_shift)})
    # One modality alone: its adapter's keywords (the same dict) and the same encoder.
    shared = {k: args[k] for k in ("encoder", "decoder", "activation") if k in args}
    image_args = merge(AV_IMAGE, args.get("image"))
    audio_args = merge(merge(AV_AUDIO, args.get("audio")), {"sample_rate": rate})

    def both() -> nn.Module:
        return create_model(preset, num_classes=10, **args)

    task.add("Perceiver (image only)", "perceiver", lambda: Select(
        "image", create_model("image-perceiver", num_classes=10, **image_args, **shared)))
    task.add("Perceiver (audio only)", "perceiver", lambda: Select(
        "audio", create_model("audio-perceiver", num_classes=10, **audio_args, **shared)))
    task.add("Perceiver (image + audio)", "perceiver", both, multimodal=True)
    task.add("Perceiver (image + audio, modality dropout)", "perceiver", lambda: create_model(
        preset, num_classes=10, **{**args, "modality_dropout": MODALITY_DROPOUT}),
        multimodal=True)
    task.add("late-fusion CNN", "baseline", lambda: _sized(
        lambda w: LateFusion(sample_rate=rate, n_mels=int(audio_args["n_mels"]),
                             hop_length=int(audio_args["hop_length"]), width=w), both),
        multimodal=True)
    return task


def _recipe(config: dict[str, Any], epochs: int | None, quick: bool) -> common.Recipe:
    """The config's recipe for ``epochs`` (None: half the config's ``max_epochs``)."""
    if quick:
        return common.recipe_from_config(config, epochs=1, max_steps=3)
    if epochs is None:
        epochs = max(1, int(config.get("trainer", {}).get("max_epochs", 20)) // 2)
    return common.recipe_from_config(config, epochs=epochs)


BUILDERS = {"points": points_task, "spoken": spoken_task, "moving": moving_task, "av": av_task}
NEEDS_ESPEAK = ("spoken", "av")


def report(log: common.RunLog) -> str:
    meta = log.meta
    text = common.markdown_header("One architecture, every modality", meta)
    text += ("Test accuracy (%), mean ± standard deviation over seeds (one value: one seed). "
             "Within a task every model gets the same recipe, epochs and augmentation.\n\n")
    for name, info in meta["tasks"].items():
        text += (f"- {name}: {info['description']}; {info['train_examples']} training / "
                 f"{info['test_examples']} test examples; "
                 f"{common.describe_recipe(common.Recipe(**info['recipe']))} "
                 f"(`configs/{info['config']}.yaml`)\n")
    for name, reason in meta.get("skipped", {}).items():
        text += f"- {name}: skipped ({reason})\n"
    text += "\n"
    rows = [[g["task"], g["model"], g["kind"], f"{g['params']:,}",
             common.percent(g["mean"], g["std"], g["n"]), g["n"], f"{g['train_seconds']:.0f}"]
            for g in common.group_runs(log.runs, ["task", "model", "kind"])]
    text += common.markdown_table(
        ["task", "model", "kind", "parameters", "test accuracy", "seeds", "train s"], rows)
    multimodal = [r for r in log.runs if any(k.startswith("test_accuracy_without_") for k in r)]
    if multimodal:
        missing = sorted({k.removeprefix("test_accuracy_without_") for r in multimodal
                          for k in r if k.startswith("test_accuracy_without_")})
        rows = []
        for g in common.group_runs(multimodal, ["task", "model"]):
            runs = [r for r in multimodal if (r["task"], r["model"]) == (g["task"], g["model"])]
            cells = [common.percent(*common.mean_std([r[f"test_accuracy_without_{m}"]
                                                      for r in runs]), len(runs))
                     for m in missing]
            rows.append([g["task"], g["model"], common.percent(g["mean"], g["std"], g["n"]),
                         *cells])
        text += ("\nThe same trained models tested with one modality missing (a Perceiver: "
                 "its inputs masked out; the CNN: zeros, i.e. a blank image or silence):\n\n")
        text += common.markdown_table(["task", "model", "both", *(f"without {m}"
                                                                   for m in missing)], rows)
    return text


def chart(log: common.RunLog, path) -> None:
    groups = common.group_runs(log.runs, ["task", "model", "kind"])
    labels = [g["task"] + "\n" + textwrap.fill(g["model"], 13) for g in groups]
    series = {kind: [(g["mean"], g["std"]) if g["kind"] == kind else (float("nan"), 0.0)
                     for g in groups] for kind in ("perceiver", "baseline")}
    common.bar_chart(path, labels, series, overlay=True,
                     title="The same Perceiver code on every modality vs a modality-specific "
                           "baseline (test accuracy)")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = common.base_parser(
        __doc__.split("\n\n")[0], epochs=None, seeds=(0,),
        epochs_help="training epochs of every task (default: half its config's max_epochs: "
                    "points 20, spoken 20, moving 20, av 7)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    args = common.parse(parser, argv)
    out = common.output_folder(args)
    meta = common.provenance(NAME, argv)
    meta.update(quick=args.quick, seeds=args.seeds, tasks={}, skipped={})
    log = common.RunLog(out, NAME, meta, resume=args.resume)
    start = time.perf_counter()
    for name in args.tasks:
        if name in NEEDS_ESPEAK and not espeak_available():
            reason = "espeak-ng is not installed (apt-get install espeak-ng)"
            print(f"[{name}] skipped: {reason}")
            meta["skipped"][name] = reason
            continue
        task = BUILDERS[name](epochs=args.epochs, quick=args.quick)
        models = {m: build() for m, build in task.models.items()}
        meta["tasks"][name] = {
            "config": task.config, "description": task.description,
            "recipe": asdict(task.recipe), "train_examples": len(task.train[1]),
            "test_examples": len(task.test[1]),
            "models": {m: {"kind": task.kinds[m], "class": type(model).__name__,
                           "params": common.count_parameters(model)}
                       for m, model in models.items()}}
        del models
        print(f"[{name}] parameters: " + ", ".join(
            f"{m} {info['params']:,}" for m, info in meta["tasks"][name]["models"].items()))
        for seed in args.seeds:
            for model_name, build in task.models.items():
                key = dict(task=name, model=model_name, seed=seed, epochs=task.recipe.epochs)
                if log.find(**key) is not None:
                    continue
                torch.manual_seed(seed)
                model = build()
                result = common.train_and_test(model, task.train, task.test, task.recipe,
                                               seed=seed, augment=task.augment)
                if model_name in task.multimodal:
                    for missing in task.test[0]:
                        absent = WithoutModality(model, missing,
                                                 masked=task.kinds[model_name] == "perceiver")
                        logits = common.predict(absent, task.test[0],
                                                precision=task.recipe.precision)
                        result[f"test_accuracy_without_{missing}"] = (
                            logits.argmax(-1) == task.test[1]).float().mean().item()
                log.add({**key, "kind": task.kinds[model_name],
                         "params": common.count_parameters(model), **result})
                print(f"  {model_name:45s} seed={seed}: {100 * result['test_accuracy']:.2f}% "
                      f"({result['train_seconds']:.0f} s, {result['steps']} steps)", flush=True)
    return common.finish(log, out, NAME, started=start, report=report, chart=chart)

if __name__ == "__main__":
    main(sys.argv[1:])
