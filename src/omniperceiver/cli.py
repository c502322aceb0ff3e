"""The ``omniperceiver`` command.

::

    omniperceiver fit [--config configs/mnist.yaml] [--trainer.max_epochs 5 ...]
    omniperceiver validate | test --config CONFIG --ckpt_path CHECKPOINT
    omniperceiver predict CHECKPOINT_OR_MODEL_DIR FILE [FILE ...] [--top_k 3]
    omniperceiver predict --config CONFIG --ckpt_path CHECKPOINT
        --data.init_args.predict_files [FILE,...]
    omniperceiver plot-attention CHECKPOINT_OR_MODEL_DIR FILE [--latents 0 8 16] [--output PNG]
    omniperceiver list-models
    omniperceiver convert ...   (omniperceiver.convert.cli)
    omniperceiver export ...    (omniperceiver.export)

``fit``/``validate``/``test``/``predict`` are Lightning's ``LightningCLI`` subcommands
(:mod:`omniperceiver.training.lightning_cli`); ``--help`` after any of them lists every option.
Everything is imported lazily: ``omniperceiver list-models`` does not load Lightning.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import CommandError, ModelFileError, OmniPerceiverError

TRAINING = ("fit", "validate", "test", "predict")
DISPATCH = {"convert": "omniperceiver.convert.cli", "export": "omniperceiver.export"}

USAGE = """usage: omniperceiver <command> [options]

Train, evaluate and use Perceiver models.

training (Lightning's LightningCLI; `omniperceiver fit --help` lists every option):
  fit              train (default config: MNIST), then test and write metrics.json, plots, model
  validate         evaluate a checkpoint on the validation split
  test             evaluate a checkpoint on the test split
  predict          top classes for files: omniperceiver predict CHECKPOINT FILE [FILE ...]

tools:
  plot-attention   cross-attention maps of chosen latents over an input file
  list-models      the registered model presets
  convert          import checkpoints from other libraries (omniperceiver convert --help)
  export           export a model, e.g. to ONNX (omniperceiver export --help)

example:
  omniperceiver fit --config configs/mnist.yaml
"""


def user_error(error: BaseException | None) -> OmniPerceiverError | None:
    """The :class:`~omniperceiver.errors.OmniPerceiverError` in ``error``'s chain of causes
    (jsonargparse wraps the errors raised while it builds the model and data), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OmniPerceiverError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


#: What the file system answers for a location the user chose and cannot use: no permission,
#: read-only, full, a file where a folder should be or the other way round.
USER_OS_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                  errno.ENOTDIR, errno.EISDIR, errno.EEXIST}


def _os_error(error: BaseException) -> OSError | None:
    """``error`` if it is an OSError about a file the user named (see USER_OS_ERRORS)."""
    if isinstance(error, OSError) and error.errno in USER_OS_ERRORS and error.filename:
        return error
    return None


def report_user_errors(prog: str, run: Callable[[], int | None], *,
                       boundary: tuple[type[BaseException], ...] = ()) -> int:
    """``run()``'s exit status; a user error (an :class:`OmniPerceiverError` anywhere in the
    chain of causes, one of the ``boundary`` types raised by ``run`` itself, such as the
    ValueError of a foreign checkpoint reader, or a file system error about a location the
    user chose, such as a read-only output folder) is printed as ``prog: error: message``
    without a traceback, exit status 1. Every other exception propagates with its traceback."""
    try:
        return int(run() or 0)
    except Exception as error:  # noqa: BLE001  (user errors are printed, the rest re-raised)
        cause = (user_error(error) or (error if isinstance(error, boundary) else None)
                 or _os_error(error))
        if cause is None:
            raise
        if isinstance(cause, OSError):
            cause = f"{cause.filename}: {cause.strerror}"
        print(f"{prog}: error: {cause}", file=sys.stderr)
        return 1


def _restart_with_passive_openmp_waits() -> None:
    """Re-run this command with ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is set.

    PyTorch's CPU kernels run on OpenMP threads that, by default, spin while they wait for each
    other. When other processes share the cores, a spinning thread holds a core that the
    thread it waits for needs, and a training step can take many times longer
    (``scripts/step_time.py`` compares the two policies). OpenMP reads the variable when
    PyTorch is loaded, which has happened by now, hence the re-run (same process id, same
    arguments). Set ``OMP_WAIT_POLICY`` yourself to opt out.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command in DISPATCH:
        return report_user_errors(f"omniperceiver {command}", lambda: _dispatch(command, rest))
    if command == "list-models":
        return list_models_command(rest)
    if command == "plot-attention":
        return report_user_errors("omniperceiver plot-attention",
                                  lambda: plot_attention_command(rest))
    if command == "predict" and rest and not rest[0].startswith("-"):
        return report_user_errors("omniperceiver predict", lambda: predict_command(rest))
    if command in TRAINING:
        if from_command_line:
            _restart_with_passive_openmp_waits()

        def train() -> int:
            from .training.lightning_cli import run

            # LightningCLI reads sys.argv itself when run from the command line.
            run(None if from_command_line else [command, *rest])
            return 0

        return report_user_errors(f"omniperceiver {command}", train)
    print(f"omniperceiver: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def _dispatch(command: str, rest: list[str]) -> int:
    module_name = DISPATCH[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise CommandError(f"'omniperceiver {command}' needs the module {module_name}, "
                               "which this installation does not have") from error
        raise CommandError(f"'omniperceiver {command}' needs the package {error.name!r}: "
                           f"pip install \"omniperceiver[{command}]\"") from error
    return int(module.main(rest) or 0)


# --- list-models ------------------------------------------------------------------------------


def list_models_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="omniperceiver list-models",
                                     description="List the registered model presets.")
    parser.parse_args(argv)
    from . import describe_model, list_models

    names = list_models()
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {describe_model(name)}")
    return 0


# --- loading a trained model ------------------------------------------------------------------


def load_trained(path: str | Path):
    """A trained model from a Lightning checkpoint (``.ckpt``, loaded with
    ``weights_only=True``) or a ``save_pretrained`` folder: ``(model, class_names,
    input_spec)``."""
    from .files import read_file
    from .hub import CONFIG_NAME, WEIGHTS_NAME, from_pretrained, load_config, model_folder

    path = model_folder(path)
    if not path.exists():
        raise CommandError(f"{path}: no such checkpoint file or model folder")
    if path.name in (CONFIG_NAME, WEIGHTS_NAME):
        raise CommandError(f"{path}: is one file of a saved model; pass its folder "
                           f"{path.parent} (a checkpoint file is a Lightning .ckpt)")

    if path.is_dir():
        extra = load_config(path).get("extra", {})
        model = from_pretrained(path)
        spec = extra.get("input_spec")
        classes = extra.get("classes")
    else:
        from .registry import create_model
        from .training.checkpoint import load_checkpoint_file

        checkpoint = read_file(path, load_checkpoint_file, what="a Lightning checkpoint (.ckpt)",
                               error=ModelFileError)
        h = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
        if "model" not in h or "num_classes" not in h or "state_dict" not in checkpoint:
            raise ModelFileError(f"{path}: not an omniperceiver training checkpoint (no model "
                                 "hyper-parameters or weights)")
        try:
            model = create_model(h["model"], num_classes=h["num_classes"],
                                 **(h.get("model_args") or {}))
            model.load_state_dict({k.removeprefix("model."): v
                                   for k, v in checkpoint["state_dict"].items()
                                   if k.startswith("model.")})
        except (TypeError, ValueError, RuntimeError) as error:
            raise ModelFileError(f"{path}: cannot rebuild the model it holds ({error})"
                                 ) from error
        model.eval()
        spec, classes = h.get("input_spec"), h.get("class_names")
    if spec is None:
        raise ModelFileError(f"{path}: the model has no input_spec, so files cannot be read for "
                           "it (train it with omniperceiver fit)")
    if classes is None:
        classes = [str(i) for i in range(model.decoder.output_channels)]
    return model, classes, spec


# --- predict ----------------------------------------------------------------------------------


def predict_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="omniperceiver predict",
        description="Print the top classes for each file (image, WAV, .off mesh, .npy). "
                    "For the LightningCLI form use: omniperceiver predict --config CONFIG "
                    "--ckpt_path CKPT --data.init_args.predict_files [FILES]")
    parser.add_argument("model", help="a Lightning checkpoint (.ckpt) or an exported model folder")
    parser.add_argument("files", nargs="+", help="input files (multimodal: IMAGE+AUDIO)")
    parser.add_argument("--top_k", type=int, default=3,
                        help="how many classes to print per file (>= 1)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        raise CommandError(f"--top_k must be >= 1 (the number of classes to print), got "
                           f"{args.top_k}")
    import torch

    from .training.inputs import load_input_file
    from .training.lightning_cli import print_predictions

    model, classes, spec = load_trained(args.model)
    inputs = [load_input_file(f, spec) for f in args.files]  # every file checked first
    probs = []
    with torch.no_grad():
        for x in inputs:
            batch = {k: v[None] for k, v in x.items()} if isinstance(x, dict) else x[None]
            probs.append(model(batch).float().softmax(-1))
    for file, p in zip(args.files, probs, strict=True):
        if not torch.isfinite(p).all():
            raise ModelFileError(f"{args.model}: the model's output for {file} is NaN or "
                                 "infinite; its weights may be damaged")
    print_predictions(args.files, torch.cat(probs), classes, top_k=args.top_k)
    return 0


# --- plot-attention ---------------------------------------------------------------------------


def plot_attention_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="omniperceiver plot-attention",
        description="Draw the first cross-attend's attention of chosen latents over input files "
                    "(the Perceiver paper's attention figure).")
    parser.add_argument("model", help="a Lightning checkpoint (.ckpt) or an exported model folder")
    parser.add_argument("files", nargs="+", help="input files (images, WAV, .off, .npy)")
    parser.add_argument("--latents", type=int, nargs="+", default=None,
                        help="latent indices (default: 4 spread over the latent array)")
    parser.add_argument("--output", default="attention.png", help="PNG file to write")
    args = parser.parse_args(argv)
    from .training.callbacks import default_latents
    from .training.inputs import load_input_file
    from .training.plots import plot_attention

    model, classes, spec = load_trained(args.model)
    inputs = [load_input_file(f, spec) for f in args.files]
    latents = args.latents or default_latents(model.encoder.latents.shape[0])
    try:
        out = plot_attention(model, inputs, args.output, latents=latents, spec=spec,
                             titles=[Path(f).name for f in args.files])
    except ValueError as error:  # e.g. --latents out of range
        raise CommandError(str(error)) from error
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
