"""Ablations of the main job's Perceiver, one axis at a time (the paper's, at MNIST scale).

    python -m experiments.ablations [--quick] [--axes num_latents num_bands ...] [--epochs N]
                                    [--no-reference] [--shared]

The reference model is the main job's (``configs/mnist.yaml``: ``create_model(model.model,
**model.model_args)``: 16 latents, a cross-attend before each of 4 blocks of 1 self-attend,
precision auto), trained for 15 epochs (the main job: 70) with the main job's augmentation on
the 4,000 MNIST training digits and tested on the 1,000 held-out ones.
Each axis changes one thing:

======================  =======================================================================
axis (the keyword)      values
======================  =======================================================================
num_latents             number of latents: 8, 16, 32, 64, 128, 256
num_cross_attends       one cross-attend at the start vs one before every block (interleaved)
sharing                 weights shared (the paper: all cross-attends after the first share one
                        set, the blocks share one) vs untied (every cross-attend and block its
                        own weights)
num_bands               Fourier bands: 4, 8, 16, 32, 64
max_resolution          the Fourier features' max_resolution (band frequencies run up to half
                        of it): a quarter, half, one, two and four times the input grid
position                Fourier features vs learned position embeddings (as many channels) vs
                        none (each input is then one pixel value, which the cross-attend's
                        LayerNorm over its one channel maps to the same constant: the model
                        sees nothing and must sit at chance)
self_attends_per_block  latent self-attends per block (depth): 1, 2, 4, 6
======================  =======================================================================

The reference value of every axis is the same run (trained once). Writes ``ablations.json``,
``ablations.md`` (accuracy and parameters per axis value) and ``ablations.png``.

Two processes can share the work: ``--shared`` merges each one's runs into the one record (see
:class:`experiments.common.RunLog`), ``--no-reference`` leaves the reference model to the other.
``python -m experiments.suite`` runs the number of latents (``--axes num_latents
--no-reference --shared``) beside the other axes (``--axes num_cross_attends ... --shared``).
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from omniperceiver import PerceiverIO, create_model
from omniperceiver.adapters import ImageAdapter
from omniperceiver.config import merge
from omniperceiver.data import MNIST
from omniperceiver.training import augment as aug

from . import common

NAME = "ablations"
TINY_PERCEIVER = {"encoder": dict(num_latents=8, latent_dim=32, num_blocks=2,
                                  self_attends_per_block=1, num_cross_attends=2)}


LATENTS = (8, 16, 32, 64, 128, 256)
#: The axes, in the order of the tables.
AXES = ("num_latents", "num_cross_attends", "sharing", "num_bands", "max_resolution", "position",
        "self_attends_per_block")


def axes(base: nn.Module, latents: Sequence[int] = LATENTS,
         ) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Every axis as ``[(label, change)]``. A change holds preset keywords (``encoder``:
    fields of the encoder config) and ``adapter`` (position options of the image adapter);
    an empty change is the reference model."""
    encoder = base.config.encoder
    grid = base.input_adapter.position
    num_bands = grid.options["num_bands"] if grid is not None else 8
    resolution = grid.options["max_resolution"][0] if grid is not None else 28
    sharing = (encoder.cross_attend_sharing, encoder.block_sharing)

    def ref(label: str, value: Any, current: Any, change: dict[str, Any]):
        return (f"{label} (reference)" if value == current else label,
                {} if value == current else change)

    return {
        "num_latents": [ref(str(n), n, encoder.num_latents, {"encoder": {"num_latents": n}})
                    for n in latents],
        "num_cross_attends": [
            ref("1, at the start", 1, encoder.num_cross_attends,
                {"encoder": {"num_cross_attends": 1}}),
            ref(f"{encoder.num_blocks}, interleaved", encoder.num_blocks,
                encoder.num_cross_attends, {"encoder": {"num_cross_attends": encoder.num_blocks}})],
        "sharing": [
            ref("shared", ("after_first", "all"), sharing, {"encoder": dict(
                cross_attend_sharing="after_first", block_sharing="all")}),
            ref("untied", ("none", "none"), sharing, {"encoder": dict(
                cross_attend_sharing="none", block_sharing="none")})],
        "num_bands": [ref(str(b), b, num_bands, {"num_bands": b}) for b in (4, 8, 16, 32, 64)],
        "max_resolution": [
            ref(f"{r * f:g} (frequencies up to {r * f / 2:g})", r * f, resolution,
                {"adapter": {"max_resolution": r * f}})
            for r in (resolution,) for f in (0.25, 0.5, 1, 2, 4)],
        "position": [ref("Fourier", "fourier", "fourier", {}),
                     ("learned", {"adapter": {"position": "learned"}}),
                     ("none", {"adapter": {"position": None}})],
        "self_attends_per_block": [ref(str(d), d, encoder.self_attends_per_block,
                      {"encoder": {"self_attends_per_block": d}}) for d in (1, 2, 4, 6)],
    }


def build(preset: str, args: dict[str, Any], change: dict[str, Any]) -> nn.Module:
    """The reference model with ``change`` applied: preset keywords (merged key by key into
    the reference's) through ``create_model``; image-adapter position options by rebuilding
    the :class:`PerceiverIO` around a new adapter."""
    change = dict(change)
    adapter_options = change.pop("adapter", {})
    model = create_model(preset, **merge(args, change))
    if not adapter_options:
        return model
    adapter = model.input_adapter
    fourier = adapter.position
    if not isinstance(adapter, ImageAdapter):
        raise TypeError(f"position ablations need an image adapter, got "
                        f"{type(adapter).__name__}")
    options = dict(position="fourier", num_bands=fourier.options["num_bands"],
                   max_resolution=None, position_channels=fourier.num_channels)
    options.update(adapter_options)
    if options["max_resolution"] is not None:
        options["max_resolution"] = (options["max_resolution"],) * 2
    adapter = ImageAdapter(image_shape=adapter.image_shape,
                           input_channels=adapter.input_channels, mode=adapter.mode,
                           patch_size=args.get("patch_size"),
                           project_channels=args.get("project_channels"), **options)
    return PerceiverIO(model.config, input_adapter=adapter)


def measured_axes(meta_axes: dict[str, list], runs: Sequence[dict[str, Any]],
                  ) -> dict[str, list]:
    """The record's axes (``meta["axes"]``: every axis and value) cut to the values that have
    runs, without the axes where only the reference ran (a process that ran some axes, or
    two that share the record, list every axis)."""
    done = {run["variant"] for run in runs}
    kept = {axis: [v for v in variants if v[1] in done] for axis, variants in meta_axes.items()}
    return {axis: variants for axis, variants in kept.items()
            if any(variant != "{}" for _, variant in variants)}


def report(log: common.RunLog) -> str:
    meta = log.meta
    text = common.markdown_header("Ablations of the main job's Perceiver", meta)
    text += (f"MNIST, {meta['train_examples']} training / {meta['test_examples']} test digits; "
             f"`{meta['preset']}` {meta['model_args']}; "
             f"{common.describe_recipe(common.Recipe(**meta['recipe']))}; augmentation "
             f"{meta['augmentation']}. Test accuracy (%), mean ± std over seeds; the "
             "reference model is one run shared by every axis.\n\n")
    groups = {g["variant"]: g for g in common.group_runs(log.runs, ["variant"])}
    rows = []
    for axis, variants in measured_axes(meta["axes"], log.runs).items():
        for label, variant in variants:
            g = groups[variant]
            rows.append([axis, label, f"{g['params']:,}",
                         common.percent(g["mean"], g["std"], g["n"]), g["n"],
                         f"{g['train_seconds']:.0f}"])
    return text + common.markdown_table(
        ["axis", "value", "parameters", "test accuracy", "seeds", "train s"], rows)


def chart(log: common.RunLog, path) -> None:
    groups = {g["variant"]: g for g in common.group_runs(log.runs, ["variant"])}
    labels, values, kinds = [], [], []
    for axis, variants in measured_axes(log.meta["axes"], log.runs).items():
        for label, variant in variants:
            labels.append(f"{axis}\n" + textwrap.fill(label, 12))
            values.append((groups[variant]["mean"], groups[variant]["std"]))
            kinds.append("reference" if variant == "{}" else "ablation")
    series = {kind: [v if k == kind else (float("nan"), 0.0) for v, k in
                     zip(values, kinds, strict=True)] for kind in ("reference", "ablation")}
    common.bar_chart(path, labels, series, overlay=True,
                     title="Ablations of the main job's Perceiver on MNIST (test accuracy)")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = common.base_parser(__doc__.split("\n\n")[0], epochs=15, seeds=(0,))
    parser.add_argument("--axes", nargs="+", default=None, choices=AXES, metavar="AXIS",
                        help=f"axes to run (default all: {' '.join(AXES)})")
    parser.add_argument("--no-reference", action="store_true",
                        help="do not train the reference model (another process sharing the "
                             "record trains it)")
    parser.add_argument("--shared", action="store_true",
                        help="another process writes the same record at the same time: each "
                             "save merges the runs in the file (remove an old record first)")
    parser.add_argument("--num_latents", nargs="+", type=int, default=list(LATENTS),
                        help="the values of the num_latents axis (default: %(default)s; 256 "
                             "latents train several times longer than the main job's 16)")
    args = common.parse(parser, argv)
    config = common.main_job_config()
    preset, model_args = config["model"]["model"], dict(config["model"]["model_args"])
    if args.quick:
        model_args = merge(model_args, TINY_PERCEIVER)
    recipe = common.recipe_from_config(
        config, epochs=1 if args.quick else args.epochs,
        **(dict(max_steps=2) if args.quick else {}))
    limit_train, limit_test = (128, 64) if args.quick else (None, None)
    train, test = MNIST("train"), MNIST("test")
    train_set = (train.images[:limit_train], train.targets[:limit_train])
    test_set = (test.images[:limit_test], test.targets[:limit_test])
    shift, rotate, scale = common.augmentation(config).values()

    def augment(x):
        if rotate or scale:
            x = aug.random_affine(x, degrees=rotate, scale=scale)
        return aug.random_shift(x, shift)

    all_axes = axes(create_model(preset, **model_args), args.num_latents)
    selected = all_axes
    if args.quick and args.axes is None:  # the machinery, cheaply: a few values per axis
        selected = {a: v[:2] if a != "position" else v for a, v in all_axes.items()}
    if args.axes is not None:
        selected = {a: all_axes[a] for a in AXES if a in args.axes}
    out = common.output_folder(args)
    meta = common.provenance(NAME, argv)
    meta.update(quick=args.quick, seeds=args.seeds, preset=preset, model_args=model_args,
                recipe=asdict(recipe), augmentation={"shift": shift, "rotate": rotate,
                                                     "scale": scale},
                train_examples=len(train_set[1]), test_examples=len(test_set[1]),
                axes={a: [[label, json.dumps(change, sort_keys=True)] for label, change in v]
                      for a, v in all_axes.items()})
    log = common.RunLog(out, NAME, meta, resume=args.resume, shared=args.shared,
                        key=("variant", "seed", "epochs"))
    start = time.perf_counter()
    variants = dict.fromkeys(json.dumps(change, sort_keys=True)
                             for v in selected.values() for _, change in v)
    if args.no_reference:
        variants.pop("{}", None)
    print(f"{len(variants)} models x {len(args.seeds)} seeds, {recipe.epochs} epochs each")
    for seed in args.seeds:
        for variant in variants:
            key = dict(variant=variant, seed=seed, epochs=recipe.epochs)
            if log.find(**key) is not None:
                continue
            torch.manual_seed(seed)
            model = build(preset, model_args, json.loads(variant))
            result = common.train_and_test(model, train_set, test_set, recipe, seed=seed,
                                           augment=augment)
            log.add({**key, "params": common.count_parameters(model), **result})
            print(f"  {variant:60s} seed={seed}: {100 * result['test_accuracy']:.2f}% "
                  f"({common.count_parameters(model):,} parameters, "
                  f"{result['train_seconds']:.0f} s)", flush=True)
    return common.finish(log, out, NAME, started=start, report=report, chart=chart)

if __name__ == "__main__":
    main(sys.argv[1:])
