"""``omniperceiver fit | validate | test | predict``: Lightning's ``LightningCLI`` over the
training modules and the data modules.

The module is :class:`ClassificationModule` unless the config names another
:class:`~omniperceiver.training.module.TrainingModule` (``model: class_path:
omniperceiver.training.LanguageModelModule``, as ``configs/perceiver_ar_bytes.yaml`` does);
the data is any ``LightningDataModule`` named by ``data: class_path:``. A classifier takes its
number of classes, class names and input spec from its data module.

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
* ``--model.pretrained PATH`` fine-tunes a pretrained classifier (an exported model, or a
  transformers, perceiver-pytorch or DeepMind checkpoint): the architecture is the source's,
  a head for the data's classes starts fresh (:mod:`~omniperceiver.training.finetune`).
* ``--model.model_args`` merges key by key into the ``model_args`` of the configs and options
  before it (:mod:`~omniperceiver.training.model_args`), so ``--config configs/mnist.yaml
  --model.model_args '{num_latents: 8}'`` changes the number of latents and keeps the config's
  other entries.

The run folder is ``--trainer.default_root_dir``; logs go to its ``csv/`` and
``tensorboard/`` folders unless ``--trainer.logger`` says otherwise. Checkpoints are written
atomically (:class:`~omniperceiver.training.checkpoint.AtomicCheckpointIO`). Before ``fit``
writes anything, :func:`~omniperceiver.training.run_folder.check_run_folder` makes
sure it neither replaces a run by mistake nor
resumes from a checkpoint that is missing or of another model.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import Namespace, lazy_instance
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from ..errors import ConfigError
from ..files import read_file
from .callbacks import RunReport
from .checkpoint import AtomicCheckpointIO
from .data import ClassificationData, MNISTData
from .model_args import merge_model_args, resumed_model_args
from .module import ClassificationModule, TrainingModule
from .parse_errors import OneLineErrors, ParseError, describe_parse_error
from .precision import describe_choice, resolve_precision
from .run_folder import check_run_folder

#: Trainer settings of the default (MNIST) recipe; configs/mnist.yaml spells them out.
TRAINER_DEFAULTS: dict[str, Any] = {
    "default_root_dir": "runs/mnist",
    "max_epochs": 70,
    "precision": "auto",
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


class OmniperceiverArgumentParser(OneLineErrors, LightningArgumentParser):
    """Lightning's parser, whose errors become one line (:mod:`.parse_errors`)."""


class OmniperceiverCLI(LightningCLI):
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Lightning's parsing, with every ``model_args`` merged key by key into the ones
        before it (:func:`~omniperceiver.training.model_args.merge_model_args`). A parse
        error is a ConfigError of one line, naming the option (and its config file), what
        was expected and what was given."""
        given = [] if isinstance(args, (dict, Namespace)) else (
            sys.argv[1:] if args is None else list(args))
        try:
            if isinstance(args, (dict, Namespace)):
                super().parse_arguments(parser, args)
            else:
                check_config_files(given)
                self.config = parser.parse_args(merge_model_args(given))
        except ParseError as error:
            raise ConfigError(describe_parse_error(error.message, error.parser, given)) from None

    def before_instantiate_classes(self) -> None:
        """A run that resumes from a checkpoint of an earlier release (``--ckpt_path``) reads
        its ``model_args`` in this release's keywords
        (:func:`~omniperceiver.training.model_args.resumed_model_args`)."""
        config = self.config.get(str(self.subcommand), self.config)
        init_args = config.get("model", {}).get("init_args")
        if init_args is None or "model_args" not in init_args:
            return
        folders = [config.get(f"{key}.dirpath") or "" for key in ("checkpoint",
                                                                  "best_checkpoint")]
        init_args.model_args = resumed_model_args(init_args.model_args, config.get("ckpt_path"),
                                                  [folder for folder in folders if folder])

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
        parser.set_defaults({"model": lazy_instance(ClassificationModule),
                             "data": lazy_instance(MNISTData)})
        for source, target in (("data.num_classes", "model.init_args.num_classes"),
                               ("data.classes", "model.init_args.class_names"),
                               ("data.input_spec", "model.init_args.input_spec")):
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
        except (ValueError, TypeError, MisconfigurationException) as error:
            # e.g. --trainer.accelerator gpu on a machine without one
            given = ", ".join(f"{key}={config.get(key)!r}" for key in
                              ("accelerator", "devices", "strategy", "precision"))
            raise ConfigError(f"trainer options ({given}): {error}") from error

    # --- checks before anything runs ---
    def _check_model_accepts_data(self) -> None:
        if isinstance(self.model, ClassificationModule):
            check_model_accepts_data(self.model, self.datamodule, self.subcommand)

    def before_fit(self) -> None:
        check_run_folder(self.trainer, self.model, self._get(self.config, "ckpt_path"),
                         overwrite=self._get(self.config, "overwrite"))
        self._check_model_accepts_data()
        if self._get(self.config, "test_after_fit"):  # no test split: say so before training
            self.datamodule.dataset("test")
        if self.datamodule.dataset("val") is None:  # val_size 0: no best model to select
            for callback in self.trainer.checkpoint_callbacks:
                if getattr(callback, "monitor", None):
                    callback.save_top_k = 0

    def before_validate(self) -> None:
        if self.datamodule.dataset("val") is None:
            raise ConfigError(
                f"validate: {type(self.datamodule).__name__} has no validation split "
                f"(val_size={getattr(self.datamodule, 'val_size', None)}); hold some training "
                f"data out with --data.init_args.val_size 0.1, or evaluate with test")
        self._check_model_accepts_data()

    def before_test(self) -> None:
        self._check_model_accepts_data()

    # --- after fit: test, in the same run ---
    def after_fit(self) -> None:
        if self._get(self.config, "test_after_fit") and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule)

    def predict(self, model, datamodule, return_predictions=None, **kwargs) -> None:
        if not isinstance(model, ClassificationModule):
            raise ConfigError(f"predict is for classifiers; continue text with a trained "
                              f"{type(model).__name__}'s exported model: omniperceiver "
                              "generate MODEL_FOLDER --prompt TEXT")
        outputs = self.trainer.predict(model, datamodule=datamodule, return_predictions=True,
                                       **kwargs)
        if self.trainer.is_global_zero:
            files = datamodule.dataset("predict").paths
            probs = torch.cat([o["probs"] for o in outputs])
            print_predictions(files, probs, model.class_names)


def check_config_files(args: list[str]) -> None:
    """Each ``--config FILE`` must be a readable YAML mapping: a ConfigError naming the file
    (and the line of a YAML mistake) instead of the parser's usage text."""
    for option, value in zip(args, args[1:], strict=False):
        if option not in ("--config", "-c") or Path(value).suffix.lower() not in (".yaml", ".yml"):
            continue
        config = read_file(value, lambda path: yaml.safe_load(path.read_text(encoding="utf-8")),
                           what="a YAML config", error=ConfigError)
        if not isinstance(config, dict):
            raise ConfigError(f"{value}: a config must be a YAML mapping (trainer:, model:, "
                              f"data: ...), got {type(config).__name__}")


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
        fix = ("Fine-tune from a model made for inputs like these" if model.hparams.pretrained
               else "Adjust --model.model_args to the data (e.g. image_shape, input_channels, "
                    "num_points)")
        source = f" (pretrained {model.hparams.pretrained})" if model.hparams.pretrained else ""
        raise ConfigError(
            f"the model {model.hparams.model!r}{source} does not accept the inputs of "
            f"{type(datamodule).__name__} ({_describe(batch)}): {error}. {fix}.") from error
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
        TrainingModule,
        LightningDataModule,
        trainer_class=PerceiverTrainer,
        parser_class=OmniperceiverArgumentParser,
        subclass_mode_model=True,
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
           "check_model_accepts_data", "check_config_files"]
