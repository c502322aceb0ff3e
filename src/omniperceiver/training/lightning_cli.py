"""``omniperceiver fit | validate | test | predict``: Lightning's ``LightningCLI`` over
:class:`ClassificationModule` and the data modules.

Every option lives in a YAML config (``--config configs/mnist.yaml``) and can be overridden on
the command line (``--trainer.max_epochs 5``, ``--model.lr 1e-3``,
``--data.init_args.batch_size 32``). Without a config the defaults are the MNIST recipe.

Beyond Lightning's own options:

* ``--test_after_fit`` (default true): ``fit`` tests the final model on the test split at the
  end, so one command trains, tests and writes ``metrics.json``.
* ``--overwrite`` (default false): ``fit`` into a run folder that already holds a run
  (checkpoints, ``metrics.json`` or ``model/``) replaces that run; without it such a fit stops
  before writing anything, unless it resumes (``--ckpt_path last``).
* ``--checkpoint.*``: the :class:`ModelCheckpoint` that keeps ``last.ckpt`` for resuming
  (``--checkpoint.every_n_train_steps 100``: also every 100 steps, not only per epoch);
  ``--best_checkpoint.*``: the one that keeps the best model by validation accuracy
  (``--ckpt_path best``). Both write to ``<trainer.default_root_dir>/checkpoints``.
* ``--report.*``: :class:`~omniperceiver.training.callbacks.RunReport` (plots, export).
* ``--model.model_args`` merges key by key into the ``model_args`` of the configs and options
  before it (:func:`merge_model_args`), so ``--config configs/mnist.yaml --model.model_args
  '{num_latents: 8}'`` changes the number of latents and keeps the config's other entries.

The run folder is ``--trainer.default_root_dir``; logs go to its ``csv/`` and
``tensorboard/`` folders unless ``--trainer.logger`` says otherwise. Checkpoints are written
atomically (:class:`~omniperceiver.training.checkpoint.AtomicCheckpointIO`). Before ``fit``
writes anything, :func:`check_run_folder` makes sure it neither replaces a run by mistake nor
resumes from a checkpoint that is missing or of another model.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import Namespace, lazy_instance
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_info

from ..config import merge
from ..errors import ConfigError
from .callbacks import RunReport
from .checkpoint import AtomicCheckpointIO, load_checkpoint_file
from .data import ClassificationData, MNISTData
from .module import ClassificationModule
from .precision import describe_choice, resolve_precision

#: Trainer settings of the default (MNIST) recipe; configs/mnist.yaml spells them out.
TRAINER_DEFAULTS: dict[str, Any] = {
    "default_root_dir": "runs/mnist",
    "max_epochs": 40,
    "precision": "32-true",
    "gradient_clip_val": 1.0,
    "log_every_n_steps": 10,
    "use_distributed_sampler": False,  # the data modules shard their own samplers
}


def _checkpoint_dir(root: str) -> str:
    return str(Path(root) / "checkpoints")


class PerceiverTrainer(Trainer):
    """Lightning's Trainer, with one more ``precision``: ``"auto"`` (bf16 autocast where the
    hardware multiplies bf16 matrices faster than float32, float32 elsewhere; see
    :mod:`omniperceiver.training.precision`)."""

    def __init__(self, *args: Any, precision: str | int | None = None,
                 accelerator: str = "auto", **kwargs: Any):
        resolved = resolve_precision(precision, accelerator)
        if resolved != precision:
            rank_zero_info(f"trainer.precision auto: {resolved} ({describe_choice(accelerator)})")
        try:
            super().__init__(*args, accelerator=accelerator, precision=resolved, **kwargs)
        except ValueError as error:
            if "recision" in str(error):
                raise ValueError(f"{error}, or 'auto'") from error
            raise


class SaveRunConfig(SaveConfigCallback):
    """Also writes the configuration of a ``fit`` to ``<run folder>/config.yaml``."""

    def save_config(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            path = Path(trainer.default_root_dir) / "config.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(path), skip_none=False, overwrite=True)


class OmniperceiverCLI(LightningCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Lightning's parsing, with every ``model_args`` merged key by key into the ones
        before it (:func:`merge_model_args`)."""
        if isinstance(args, (dict, Namespace)):
            super().parse_arguments(parser, args)
            return
        self.config = parser.parse_args(merge_model_args(sys.argv[1:] if args is None
                                                         else list(args)))

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="After fit, test the final model on the test split.")
        parser.add_argument("--overwrite", type=bool, default=False,
                            help="Let fit start a new run in a --trainer.default_root_dir that "
                                 "holds one (checkpoints, metrics.json, model/), replacing it.")
        # The best model by validation accuracy (`--ckpt_path best`), then the checkpoint to
        # resume from (`last.ckpt`, at each epoch end or every `every_n_train_steps`).
        parser.add_lightning_class_args(ModelCheckpoint, "best_checkpoint")
        parser.set_defaults({
            "best_checkpoint.monitor": "val_accuracy",
            "best_checkpoint.mode": "max",
            "best_checkpoint.save_top_k": 1,
            "best_checkpoint.save_last": False,
            "best_checkpoint.filename": "best-{epoch}-{val_accuracy:.4f}",
            "best_checkpoint.auto_insert_metric_name": False,
        })
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": None,
            "checkpoint.save_top_k": 0,
            "checkpoint.save_last": True,
        })
        for key in ("best_checkpoint", "checkpoint"):
            parser.link_arguments("trainer.default_root_dir", f"{key}.dirpath",
                                  compute_fn=_checkpoint_dir)
        parser.add_lightning_class_args(RunReport, "report")
        parser.set_defaults({"data": lazy_instance(MNISTData)})
        for source, target in (("data.num_classes", "model.num_classes"),
                               ("data.classes", "model.class_names"),
                               ("data.input_spec", "model.input_spec")):
            parser.link_arguments(source, target, apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any):
        config = self._get(self.config_init, "trainer", default={})
        root = config.get("default_root_dir") or "."
        if config.get("logger") in (None, True):
            kwargs["logger"] = (False if self.subcommand == "predict" else
                                [CSVLogger(root, name="csv"),
                                 TensorBoardLogger(root, name="tensorboard")])
        if not config.get("plugins"):
            kwargs["plugins"] = [AtomicCheckpointIO()]
        try:
            return super().instantiate_trainer(**kwargs)
        except (ValueError, TypeError) as error:  # e.g. a strategy the accelerator lacks
            raise ConfigError(f"trainer options: {error}") from error

    # --- checks before anything runs ---
    def _check_model_accepts_data(self) -> None:
        check_model_accepts_data(self.model, self.datamodule, self.subcommand)

    def before_fit(self) -> None:
        check_run_folder(self.trainer, self.model, self._get(self.config, "ckpt_path"),
                         overwrite=self._get(self.config, "overwrite"))
        self._check_model_accepts_data()
        if self.datamodule.dataset("val") is None:  # val_size 0: no best model to select
            for callback in self.trainer.checkpoint_callbacks:
                if getattr(callback, "monitor", None):
                    callback.save_top_k = 0

    def before_validate(self) -> None:
        self._check_model_accepts_data()

    def before_test(self) -> None:
        self._check_model_accepts_data()

    # --- after fit: test, in the same run ---
    def after_fit(self) -> None:
        if self._get(self.config, "test_after_fit") and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule)

    def predict(self, model, datamodule, return_predictions=None, **kwargs) -> None:
        outputs = self.trainer.predict(model, datamodule=datamodule, return_predictions=True,
                                       **kwargs)
        if self.trainer.is_global_zero:
            files = datamodule.dataset("predict").paths
            probs = torch.cat([o["probs"] for o in outputs])
            print_predictions(files, probs, model.class_names)


def check_run_folder(trainer: Trainer, module: ClassificationModule, ckpt_path: str | None,
                     *, overwrite: bool) -> None:
    """Stop a ``fit`` before it writes anything (``config.yaml``, logs, checkpoints) if it would
    start over in a run folder that holds a run (unless ``overwrite``), or resume from a
    checkpoint that does not exist or holds another model than ``module``."""
    root = Path(trainer.default_root_dir)
    if ckpt_path is None and SLURMEnvironment.detect():  # Lightning resumes a requeued job
        ckpt_path = trainer._checkpoint_connector._hpc_resume_path
    if ckpt_path is None:
        found = [name for name in ("metrics.json", "model") if (root / name).exists()]
        found += [str(path.relative_to(root) if path.is_relative_to(root) else path)
                  for path in _checkpoints(trainer, "*.ckpt")]
        if found and not overwrite:
            raise ConfigError(
                f"--trainer.default_root_dir {root} already holds a run ({', '.join(found)}); "
                f"this fit would replace it. Pass a new --trainer.default_root_dir, "
                f"--ckpt_path last to continue that run, or --overwrite true to replace it.")
        return
    if ckpt_path == "last":
        found = _checkpoints(trainer, "last*.ckpt")  # the files Lightning resumes from
        if not found:
            folders = sorted({str(c.dirpath) for c in trainer.checkpoint_callbacks})
            raise ConfigError(
                f"--ckpt_path last: no last checkpoint in {', '.join(folders)} to resume from. "
                f"Leave out --ckpt_path to start the run in {root}, or pass a checkpoint file.")
        path = max(found, key=lambda path: path.stat().st_mtime)
    else:
        path = Path(ckpt_path)
        if not path.is_file():
            raise ConfigError(f"--ckpt_path {ckpt_path}: no such checkpoint file (pass a file, "
                              f"or 'last' to resume the run in {root})")
    check_checkpoint_matches(module, path)


def _checkpoints(trainer: Trainer, pattern: str) -> list[Path]:
    """The files matching ``pattern`` in the folders of the trainer's ModelCheckpoints."""
    folders = {Path(c.dirpath) for c in trainer.checkpoint_callbacks
               if getattr(c, "dirpath", None)}
    return sorted(path for folder in folders for path in folder.glob(pattern))


_UNSET = object()  # a model_args key the run does not set (the preset's default)


def _show(value: Any) -> str:
    return "not set" if value is _UNSET else repr(value)


def check_checkpoint_matches(module: ClassificationModule, path: Path) -> None:
    """Raise a :class:`ConfigError` naming the settings and parameters that differ if the
    checkpoint ``path`` holds another model than ``module`` (whose weights it would load)."""
    try:
        checkpoint = load_checkpoint_file(path, mmap=True)
    except Exception as error:  # noqa: BLE001  (any unreadable file)
        raise ConfigError(f"--ckpt_path {path}: not a readable Lightning checkpoint "
                          f"({error})") from error
    saved, ours = checkpoint.get("hyper_parameters", {}), module.hparams
    settings = {key: (saved[key], ours[key]) for key in ("model", "num_classes") if key in saved}
    if "model_args" in saved:
        before, now = saved["model_args"] or {}, ours.model_args or {}
        settings.update({f"model_args.{key}": (before.get(key, _UNSET), now.get(key, _UNSET))
                         for key in before.keys() | now.keys()})
    differences = [f"{name} {_show(before)} in the checkpoint, {_show(now)} now"
                   for name, (before, now) in sorted(settings.items()) if before != now]
    state, expected = checkpoint.get("state_dict", {}), module.state_dict()
    parameters = {
        "parameters of other shapes": [
            f"{name} {tuple(state[name].shape)} in the checkpoint, "
            f"{tuple(expected[name].shape)} now" for name in expected
            if name in state and state[name].shape != expected[name].shape],
        "not in the checkpoint": [name for name in expected if name not in state],
        "not in this model": [name for name in state if name not in expected],
    }
    problems = differences + [f"{kind}: {', '.join(names[:3])}"
                              + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                              for kind, names in parameters.items() if names]
    if problems:
        raise ConfigError(
            f"--ckpt_path {path} holds another model than this run builds: "
            f"{'; '.join(problems)}. Resume with the run's own settings (its config.yaml), or "
            f"start a new run with a new --trainer.default_root_dir.")


MODEL_ARGS = "--model.model_args"
CONFIG_OPTIONS = ("--config", "-c")


def merge_model_args(args: list[str]) -> list[str]:
    """``args`` with every ``model_args`` merged into the ``model_args`` set before it.

    jsonargparse lets each ``model_args`` mapping replace the one before it, so a config's
    entries would fall back to the preset's defaults as soon as one of them is overridden.
    Here the ``model_args`` of a config (``--config``), a mapping (``--model.model_args
    '{num_latents: 8}'``) and one entry (``--model.model_args.num_latents 8``) are merged key
    by key, recursively (:func:`omniperceiver.config.merge`), over what the configs and options
    before them set, and the parser gets the merged mapping; ``--model.model_args null`` goes
    back to the preset's defaults. What cannot be read here is passed on as given, for the
    parser to report.
    """
    merged: dict[str, Any] | None = None
    out: list[str] = []
    i = 0
    while i < len(args):
        option, equals, value = args[i].partition("=")
        takes_value = option in CONFIG_OPTIONS or option == MODEL_ARGS \
            or option.startswith(MODEL_ARGS + ".")
        if not takes_value or (not equals and i + 1 == len(args)):
            out.append(args[i])
            i += 1
            continue
        tokens = args[i:i + 1] if equals else args[i:i + 2]
        i += len(tokens)
        sets, given = _model_args_set_by(option, value if equals else tokens[1])
        if not sets:
            out += tokens
            continue
        merged = None if given is None else merge(merged or {}, given)
        if option in CONFIG_OPTIONS:
            out += tokens
        out += [MODEL_ARGS, json.dumps(merged)]
    return out


def _model_args_set_by(option: str, value: str) -> tuple[bool, dict[str, Any] | None]:
    """Whether ``option value`` sets ``model_args``, and the mapping (or None) that it sets."""
    try:
        if option in CONFIG_OPTIONS:
            path = Path(value)
            config = yaml.safe_load(path.read_text() if path.is_file() else value)
            model = config.get("model") if isinstance(config, Mapping) else None
            if not isinstance(model, Mapping) or "model_args" not in model:
                return False, None
            given = model["model_args"]
        else:
            given = yaml.safe_load(value)
            if option != MODEL_ARGS:  # --model.model_args.KEY[.SUBKEY] VALUE
                for key in reversed(option[len(MODEL_ARGS) + 1:].split(".")):
                    given = {key: given}
    except (OSError, yaml.YAMLError):
        return False, None
    return given is None or isinstance(given, Mapping), given


def check_model_accepts_data(model: ClassificationModule, datamodule: ClassificationData,
                             subcommand: str | None) -> None:
    """Run two examples of the data through the model on the CPU, so that a model and data
    that do not fit together fail with a clear message before training starts."""
    split = "test" if subcommand == "test" else "train"
    dataset = datamodule.dataset(split)
    if dataset is None or len(dataset) == 0:
        return
    items = [dataset[i] for i in range(min(2, len(dataset)))]
    xs = [x for x, _ in items]
    batch = ({k: torch.stack([x[k] for x in xs]) for k in xs[0]} if isinstance(xs[0], dict)
             else torch.stack(xs))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model.model(batch)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"the model {model.hparams.model!r} does not accept the inputs of "
            f"{type(datamodule).__name__} ({_describe(batch)}): {error}. Adjust "
            f"--model.model_args to the data (e.g. image_size, channels, num_points).") from error
    finally:
        model.train(was_training)
    if logits.shape[-1] != datamodule.num_classes:
        raise ConfigError(f"the model has {logits.shape[-1]} outputs, the data "
                          f"{datamodule.num_classes} classes")


def _describe(batch: Any) -> str:
    if isinstance(batch, dict):
        return ", ".join(f"{k}: {tuple(v.shape[1:])}" for k, v in batch.items())
    return f"inputs of shape {tuple(batch.shape[1:])}"


def print_predictions(files: list[str], probs: torch.Tensor, classes: list[str],
                      top_k: int = 3) -> None:
    """One line per file: the ``top_k`` classes with their probabilities."""
    k = min(top_k, probs.shape[-1])
    values, indices = probs.topk(k, dim=-1)
    width = max(len(f) for f in files)
    for f, v, i in zip(files, values.tolist(), indices.tolist(), strict=True):
        top = "  ".join(f"{classes[c]} ({p:.1%})" for c, p in zip(i, v, strict=True))
        print(f"{f:<{width}}  {top}")


def run(args: list[str] | None, *, run_subcommand: bool = True) -> OmniperceiverCLI:
    """Parse ``args`` (starting with the subcommand; None: ``sys.argv[1:]``) and run it.
    ``run_subcommand=False`` parses ``args`` without a subcommand and only builds the model,
    data and trainer."""
    # Noise for our users: no validation split is intended, and Lightning's own deprecation.
    warnings.filterwarnings("ignore", message="Total length of .* across ranks is zero")
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`")
    return OmniperceiverCLI(
        ClassificationModule,
        ClassificationData,
        trainer_class=PerceiverTrainer,
        subclass_mode_data=True,
        save_config_callback=SaveRunConfig,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        # No abbreviated options: a misspelt --trainer.max_epoch must be an error.
        parser_kwargs={"allow_abbrev": False,
                       **{name: {"allow_abbrev": False} for name in LightningCLI.subcommands()}},
        args=args,
        run=run_subcommand,
    )


def parse(args: list[str]) -> OmniperceiverCLI:
    """The model, data and trainer that ``omniperceiver fit <args>`` would train."""
    return run(args, run_subcommand=False)


__all__ = ["OmniperceiverCLI", "PerceiverTrainer", "run", "parse", "print_predictions",
           "check_model_accepts_data", "check_run_folder", "check_checkpoint_matches",
           "merge_model_args"]
