"""The ``omniperceiver`` command.

::

    omniperceiver fit [--config configs/mnist.yaml] [--trainer.max_epochs 5 ...]
    omniperceiver validate | test --config CONFIG --ckpt_path CHECKPOINT
    omniperceiver predict CHECKPOINT_OR_MODEL_DIR FILE [FILE ...] [--top_k 3]
    omniperceiver predict --config CONFIG --ckpt_path CHECKPOINT
        --data.init_args.predict_files [FILE,...]
    omniperceiver plot-attention CHECKPOINT_OR_MODEL_DIR FILE [--latents 0 5 10] [--output PNG]
    omniperceiver generate MODEL_DIR --prompt TEXT [--max-new-tokens 200] [--temperature 0.8]
    omniperceiver list-models
    omniperceiver convert ...   (omniperceiver.convert.cli)
    omniperceiver export ...    (omniperceiver.export)

``fit``/``validate``/``test``/``predict`` are Lightning's ``LightningCLI`` subcommands
(:mod:`omniperceiver.training.lightning_cli`); ``--help`` after any of them lists every option.
Wherever a model folder is taken, a Hugging Face Hub repository id ``user/name[@revision]``
is taken too (:mod:`omniperceiver.hub_repos`).
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
  generate         continue text with a trained Perceiver AR: generate MODEL_DIR --prompt TEXT

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


def openmp_waits_passive(busy: tuple[float, int] | None, threads: int) -> bool:
    """Whether PyTorch's ``threads`` OpenMP threads should wait passively (sleep) rather than
    spin, given ``busy`` = (CPUs' worth of time other processes are using, CPUs) or None
    (unknown): passive unless every thread has a free CPU (half a CPU's use by others is
    tolerated)."""
    if busy is None:
        return True
    used, cpus = busy
    return cpus - used < threads - 0.5


def _restart_with_passive_openmp_waits() -> None:
    """Re-run this command with ``OMP_WAIT_POLICY=PASSIVE`` when other processes are using
    the CPUs PyTorch's threads would need, unless the variable is set.

    PyTorch's CPU kernels run on OpenMP threads that, by default, spin while they wait for each
    other. On free cores that is the fastest way to wait; when other processes share the cores,
    a spinning thread holds a core that the thread it waits for needs, and a step takes about
    twice as long as with passive waits (``benchmarks/openmp_waits.py`` measures both). So the
    command looks at the CPUs for 0.2 s (:func:`~omniperceiver.machine.busy_cpus`) and waits
    passively if they are busy. The look is taken once: jobs started together each see free
    cores, and a job started later does not make a running one change. OpenMP reads the
    variable when PyTorch is loaded, which has happened by now, hence the re-run (same process
    id, same arguments). Set ``OMP_WAIT_POLICY`` yourself to choose.
    """
    if "OMP_WAIT_POLICY" in os.environ:
        return
    import torch

    from .machine import busy_cpus

    if not openmp_waits_passive(busy_cpus(), torch.get_num_threads()):
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
    if command == "generate":
        return report_user_errors("omniperceiver generate", lambda: generate_command(rest))
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
    ``weights_only=True``), a ``save_pretrained`` folder or a Hugging Face Hub repository
    holding one (``user/name[@revision]``): ``(model, class_names, input_spec)``."""
    from .files import read_file
    from .hub import CONFIG_NAME, WEIGHTS_NAME, from_pretrained, load_config, model_folder
    from .hub_repos import locate

    path = model_folder(locate(path, (CONFIG_NAME, WEIGHTS_NAME)))
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
        from .training.checkpoint import checkpoint_model_args, load_checkpoint_file

        checkpoint = read_file(path, load_checkpoint_file, what="a Lightning checkpoint (.ckpt)",
                               error=ModelFileError)
        h = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
        if "model" not in h or "num_classes" not in h or "state_dict" not in checkpoint:
            raise ModelFileError(f"{path}: not an omniperceiver training checkpoint (no model "
                                 "hyper-parameters or weights)")
        try:
            model = create_model(h["model"], num_classes=h["num_classes"],
                                 **checkpoint_model_args(checkpoint))
            model.load_state_dict({k.removeprefix("model."): v
                                   for k, v in checkpoint["state_dict"].items()
                                   if k.startswith("model.")})
        except (TypeError, ValueError, RuntimeError) as error:
            raise ModelFileError(f"{path}: cannot rebuild the model it holds ({error})"
                                 ) from error
        model.eval()
        spec, classes = h.get("input_spec"), h.get("class_names")
    from .renames import upgrade_input_spec

    spec = upgrade_input_spec(spec)  # folders and checkpoints of 0.3.0 and before
    if spec is None:
        from .training.predict_tasks import task_input_spec

        spec = task_input_spec(model)
    if spec is None:
        preset = (getattr(model, "recipe", None) or {}).get("preset", type(model).__name__)
        raise ModelFileError(f"{path}: the model ({preset}) has no input_spec, so predict "
                             "cannot read files for it; predict runs classifiers trained with "
                             "omniperceiver fit or converted image classifiers, masked byte "
                             "language models and optical-flow models (Perceiver AR: "
                             "omniperceiver generate); call this one from Python "
                             "(omniperceiver.from_pretrained)")
    if classes is None and hasattr(getattr(model, "decoder", None), "output_channels"):
        classes = [str(i) for i in range(model.decoder.output_channels)]
    return model, classes, spec


# --- predict ----------------------------------------------------------------------------------


def predict_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="omniperceiver predict",
        description="Print the top classes for each file (image, WAV, .off mesh, .npy); for a "
                    "masked language model, fill in each [MASK] of text files; for an "
                    "optical-flow model, the flow between each pair of image files. "
                    "For the LightningCLI form use: omniperceiver predict --config CONFIG "
                    "--ckpt_path CKPT --data.init_args.predict_files [FILES]")
    parser.add_argument("model", help="a Lightning checkpoint (.ckpt), an exported model folder "
                                      "or a Hugging Face Hub repository id "
                                      "user/name[@revision] holding one")
    parser.add_argument("files", nargs="+", help="input files (multimodal: IMAGE+AUDIO; "
                                                 "optical flow: FRAME1 FRAME2 [FRAME1 FRAME2 ...])")
    parser.add_argument("--top_k", type=int, default=3,
                        help="how many classes to print per file (>= 1)")
    parser.add_argument("--out", type=Path, default=None,
                        help="optical flow: a folder for the flows, FRAME1_FRAME2.flow.npy "
                             "(H, W, 2) float32, (x, y) in pixels; existing files are kept")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        raise CommandError(f"--top_k must be >= 1 (the number of classes to print), got "
                           f"{args.top_k}")
    model, classes, spec = load_trained(args.model)
    if spec.get("modality") == "text":
        return _predict_masked_text(model, spec, args.files)
    if spec.get("modality") == "frame_pair":
        return _predict_flow(model, spec, args.files, args.out)
    import torch

    from .training.inputs import load_input_file
    from .training.lightning_cli import print_predictions

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


def _predict_masked_text(model, spec: dict, files: list[str]) -> int:
    from .training.inputs import read_text
    from .training.predict_tasks import fill_masks, masked_ids

    ids = [masked_ids(read_text(Path(f)), spec["max_length"], source=f) for f in files]
    for file, x in zip(files, ids, strict=True):
        print(f"{file}: {fill_masks(model, x, source=file)}")
    return 0


def _predict_flow(model, spec: dict, files: list[str], out: Path | None) -> int:
    import numpy as np

    from .files import write_atomically
    from .training.inputs import read_frame_pair
    from .training.predict_tasks import describe_flow, optical_flow

    if len(files) % 2:
        raise CommandError(f"an optical-flow model takes pairs of frames (FRAME1 FRAME2 ...); "
                           f"got {len(files)} files")
    pairs = [(Path(a), Path(b)) for a, b in zip(files[::2], files[1::2], strict=True)]
    targets = [None if out is None else out / f"{a.stem}_{b.stem}.flow.npy" for a, b in pairs]
    for target in targets:
        if target is not None and target.exists():
            raise CommandError(f"{target}: exists; choose another --out folder or remove it")
    frames = [read_frame_pair(a, b) for a, b in pairs]  # every file checked first
    for (a, b), x, target in zip(pairs, frames, targets, strict=True):
        flow = optical_flow(model, x, spec["image_shape"], spec.get("min_overlap", 20),
                            source=f"{a} and {b}")
        line = f"{a} -> {b}: {describe_flow(flow)}"
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, lambda f, flow=flow: np.save(f, flow.numpy()))
            line += f" -> {target}"
        print(line)
    return 0


# --- generate ---------------------------------------------------------------------------------


class _ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are :class:`CommandError` (one line, no usage, exit status 1)."""

    def error(self, message: str):
        raise CommandError(message)


def _number(kind: type, low: float, what: str):
    """An argparse type: ``kind`` (int or float) of at least ``low``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not value >= low:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


def generate_command(argv: list[str]) -> int:
    parser = _ArgumentParser(
        prog="omniperceiver generate",
        description="Continue a prompt with a trained Perceiver AR (an exported model folder, "
                    "e.g. runs/perceiver_ar_bytes/model), writing the new bytes to stdout as "
                    "they are drawn (UTF-8, undecodable bytes replaced).")
    parser.add_argument("model", help="a model folder saved by save_pretrained / fit, or a "
                                      "Hugging Face Hub repository id user/name[@revision]")
    parser.add_argument("--prompt", help="the text to continue")
    parser.add_argument("--prompt-file", help="a file whose bytes are the prompt")
    parser.add_argument("--max-new-tokens", type=_number(int, 0, "an integer >= 0"),
                        default=200, help="bytes to generate (default 200)")
    parser.add_argument("--temperature", type=_number(float, 0, "a number >= 0"), default=0.8,
                        help="divides the logits (0: greedy; default 0.8)")
    parser.add_argument("--top-k", type=_number(int, 1, "an integer >= 1"), default=None,
                        help="draw from the k most likely bytes only")
    parser.add_argument("--top-p", type=_number(float, 0, "a number in (0, 1]"), default=None,
                        help="draw from the most likely bytes whose probabilities add up to p")
    parser.add_argument("--seed", type=int, default=None, help="makes the draws reproducible")
    parser.add_argument("--stride", type=_number(int, 1, "an integer >= 1"), default=1,
                        help="when the context is full, move it this many bytes at once and "
                             "let every byte between moves add a latent: about this many "
                             "times fewer latents to compute per byte (default 1: every byte "
                             "from the full context, as in training; see docs/perceiver-ar.md)")
    args = parser.parse_args(argv)
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise CommandError(f"argument --top-p: expected a number in (0, 1], got {args.top_p}")
    if (args.prompt is None) == (args.prompt_file is None):
        raise CommandError("give the prompt as --prompt TEXT or --prompt-file FILE (one of them)")
    if args.prompt_file is not None:
        try:
            prompt = Path(args.prompt_file).read_bytes()
        except OSError as error:
            raise CommandError(f"--prompt-file {args.prompt_file}: {error.strerror}") from error
    else:
        prompt = args.prompt.encode("utf-8", errors="surrogateescape")
    if not prompt:
        raise CommandError("the prompt is empty: give at least one byte to continue")

    import codecs

    import torch

    from .adapters.text import ByteTokenizer
    from .hub import CONFIG_NAME, WEIGHTS_NAME, from_pretrained, load_config, model_folder
    from .hub_repos import locate
    from .perceiver_ar import PerceiverAR

    folder = model_folder(locate(args.model, (CONFIG_NAME, WEIGHTS_NAME)))
    if not folder.is_dir():
        raise CommandError(f"{folder}: no such model folder (train one with omniperceiver fit "
                           "--config configs/perceiver_ar_bytes.yaml; it is exported to "
                           "<run>/model)")
    try:
        name = load_config(folder).get("model", {}).get("preset", "?")
        model = from_pretrained(folder)
    except (OSError, KeyError, ValueError) as error:
        raise ModelFileError(f"{folder}: not a model saved by save_pretrained "
                             f"({error})") from error
    if not isinstance(model, PerceiverAR):
        raise ModelFileError(f"{folder}: a {type(model).__name__} ({name}), not a Perceiver AR "
                             "model; generate continues text with Perceiver AR models only")
    if args.stride > model.max_context:
        raise CommandError(f"argument --stride: expected at most the model's context "
                           f"({model.max_context}), got {args.stride}")
    ids = torch.tensor([[b + ByteTokenizer.NUM_SPECIAL for b in prompt]])
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = sys.stdout
    for token, _ in model.stream(ids, args.max_new_tokens, args.temperature, args.top_k,
                                 args.top_p, args.seed, stride=args.stride):
        value = int(token[0]) - ByteTokenizer.NUM_SPECIAL
        if value >= 0:  # special tokens are not text
            out.write(decoder.decode(bytes([value])))
            out.flush()
    out.write(decoder.decode(b"", final=True) + "\n")
    out.flush()
    return 0


# --- plot-attention ---------------------------------------------------------------------------


def plot_attention_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="omniperceiver plot-attention",
        description="Draw the first cross-attend's attention of chosen latents over input files "
                    "(the Perceiver paper's attention figure).")
    parser.add_argument("model", help="a Lightning checkpoint (.ckpt), an exported model folder "
                                      "or a Hugging Face Hub repository id user/name[@revision]")
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
