"""What a run leaves behind: ``metrics.json``, plots, the exported model and a summary table.

Everything goes into the run folder (``trainer.default_root_dir``), next to ``checkpoints/``::

    runs/mnist/
      checkpoints/last.ckpt, best-*.ckpt   Lightning checkpoints (resume with --ckpt_path last)
      model/config.json, model.safetensors the trained model (omniperceiver.from_pretrained)
      metrics.json                         final metrics (test_accuracy or test_bits_per_byte,
                                           ...), times, sizes, the data's description
      plots/learning_curves.png, confusion_matrix.png, attention.png (the last two: classifiers)
      csv/version_N/metrics.csv, tensorboard/version_N/   the logs
      config.yaml                          the full configuration of the run
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info

from ..errors import ConfigError
from ..files import write_atomically
from .module import ClassificationModule, TrainingModule
from .sharding import full_state_dict


class RunReport(Callback):
    """Writes ``metrics.json``, the plots and the exported model of a run (on rank 0).

    Args:
        plots: Draw learning curves (after fit); for classifiers also the confusion matrix
            (after test) and the cross-attention maps.
        attention_latents: The latents whose first cross-attend is drawn.
        attention_examples: How many test examples to draw them over.
        export: Save the trained model with ``save_pretrained`` to ``<run>/model`` after fit.
    """

    def __init__(self, plots: bool = True, attention_latents: list[int] | None = None,
                 attention_examples: int = 3, export: bool = True):
        self.plots = plots
        self.attention_latents = attention_latents
        self.attention_examples = attention_examples
        self.export = export
        self._start: dict[str, float] = {}
        self._first_step: int | None = None  # the global step the fit started training from

    # --- paths ---
    @staticmethod
    def run_dir(trainer: Trainer) -> Path:
        return Path(trainer.default_root_dir)

    def update_metrics(self, trainer: Trainer, values: dict[str, Any], *,
                       replace: bool = False) -> Path:
        """Merge ``values`` into ``<run>/metrics.json`` (atomically; ``replace``: start the
        file anew with them)."""
        path = self.run_dir(trainer) / "metrics.json"
        metrics = json.loads(path.read_text()) if path.exists() and not replace else {}
        metrics.update(values)
        write_atomically(path, lambda f: f.write((json.dumps(metrics, indent=2) + "\n").encode()))
        return path

    # --- fit ---
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start["fit"] = time.perf_counter()
        self._first_step = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._first_step = trainer.global_step  # restored by now when resuming

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._nothing_trained(trainer):
            # A resumed run that had nothing left to train: its report and model stay.
            rank_zero_info(f"Nothing left to train: {self.run_dir(trainer)} keeps its report "
                           f"and model (step {trainer.global_step}).")
            return
        # The full weights, gathered by every rank (a collective under FSDP), as a plain
        # model on the CPU for the export and the attention plot.
        model = None
        if self.export or self.plots:
            state = full_state_dict(trainer)
            if trainer.is_global_zero:
                model = standalone_model(pl_module, state)
        if trainer.is_global_zero:
            self._report_fit(trainer, pl_module, model)

    def _nothing_trained(self, trainer: Trainer) -> bool:
        """Whether this fit resumed a run, trained no step and finds its report (and model)."""
        if trainer.ckpt_path is None or self._first_step not in (None, trainer.global_step):
            return False
        run = self.run_dir(trainer)
        reported = (run / "metrics.json").exists() and (
            not self.export or (run / "model").is_dir())
        return bool(trainer.strategy.broadcast(reported, src=0))  # rank 0 wrote them

    def _report_fit(self, trainer: Trainer, pl_module: LightningModule, model) -> None:
        seconds = time.perf_counter() - self._start.get("fit", time.perf_counter())
        logged = {k: _number(v) for k, v in trainer.callback_metrics.items()}
        values = {
            "model": pl_module.hparams.model,
            "num_parameters": pl_module.num_parameters,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "fit_seconds": round(seconds, 1),
            "precision": str(trainer.precision),
            **{k: v for k, v in logged.items() if k.startswith(("val_", "train_"))},
        }
        description = getattr(trainer.datamodule, "description", None)
        if description is not None:  # what the data was (e.g. a text corpus's files and bytes)
            values["data"] = description
        for ckpt in trainer.checkpoint_callbacks:
            if getattr(ckpt, "last_model_path", ""):
                values["last_checkpoint"] = ckpt.last_model_path
            if getattr(ckpt, "monitor", None) and getattr(ckpt, "best_model_path", ""):
                values["best_checkpoint"] = ckpt.best_model_path
        if self.export:
            values["exported_model"] = str(export_model(model, pl_module,
                                                        self.run_dir(trainer) / "model"))
        # A finished fit starts a new report; until then the previous one stays.
        self.update_metrics(trainer, values, replace=True)
        if self.plots:
            self._plot_learning_curves(trainer)
            if isinstance(pl_module, ClassificationModule):
                self._plot_attention(trainer, pl_module, model)
        _print_table("fit summary", values)

    def _plot_learning_curves(self, trainer: Trainer) -> None:
        from .plots import plot_learning_curves, read_metrics_csv

        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                logger.save()
                csv_path = Path(logger.log_dir) / "metrics.csv"
                if csv_path.exists():
                    plot_learning_curves(read_metrics_csv(csv_path),
                                         self.run_dir(trainer) / "plots" / "learning_curves.png")
                return

    def _plot_attention(self, trainer: Trainer, pl_module: LightningModule, model) -> None:
        from .plots import plot_attention

        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "dataset"):
            return
        try:
            dataset = datamodule.dataset("test")
        except ConfigError:  # a data module without a test split: training examples
            dataset = datamodule.dataset("train")
        count = min(self.attention_examples, len(dataset))
        examples = [dataset[i] for i in range(count)]
        num_latents = model.encoder.latents.shape[0]
        latents = self.attention_latents or default_latents(num_latents)
        names = pl_module.class_names
        plot_attention(model, [x for x, _ in examples],
                       self.run_dir(trainer) / "plots" / "attention.png", latents=latents,
                       spec=pl_module.input_spec, titles=[f"label {names[y]}"
                                                          for _, y in examples])

    # --- test ---
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start["test"] = time.perf_counter()

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # The confusion matrix over every rank's shard of the test set: computing it gathers
        # the ranks' counts (a collective under DDP), so every rank computes it.
        matrix = None
        if isinstance(pl_module, ClassificationModule):
            matrix = pl_module.test_confusion.compute().cpu()
        if trainer.is_global_zero:
            self._report_test(trainer, pl_module, matrix)

    def _report_test(self, trainer: Trainer, pl_module: LightningModule,
                     matrix: torch.Tensor | None) -> None:
        seconds = time.perf_counter() - self._start.get("test", time.perf_counter())
        logged = {k: _number(v) for k, v in trainer.callback_metrics.items()
                  if k.startswith("test_")}
        values = {**logged, "test_seconds": round(seconds, 1),
                  "tested_checkpoint": trainer.ckpt_path or "the final weights of the fit"}
        if matrix is not None:
            per_class = (matrix.diag() / matrix.sum(1).clamp_min(1)).tolist()
            values["test_examples"] = int(matrix.sum())
            values["test_per_class_accuracy"] = dict(zip(
                pl_module.class_names, [round(a, 4) for a in per_class], strict=True))
        self.update_metrics(trainer, values)
        if self.plots and matrix is not None:
            from .plots import plot_confusion_matrix

            plot_confusion_matrix(matrix, pl_module.class_names,
                                  self.run_dir(trainer) / "plots" / "confusion_matrix.png")


def default_latents(num_latents: int, count: int = 4) -> list[int]:
    """``count`` latents spread over the latent array."""
    step = max(1, num_latents // count)
    return list(range(0, num_latents, step))[:count]


def standalone_model(pl_module: TrainingModule, state: dict[str, torch.Tensor]):
    """A fresh copy of the module's model (same preset and overrides) on the CPU, in eval
    mode, with the weights of ``state`` (the module's state dict)."""
    model = pl_module.create_model()
    model.load_state_dict({k.removeprefix("model."): v.detach().cpu()
                           for k, v in state.items() if k.startswith("model.")})
    return model.eval()


def export_model(model, pl_module: TrainingModule, folder: Path) -> Path:
    """``save_pretrained`` the model with the module's ``export_extra()`` (a classifier's
    class names and input spec)."""
    from ..hub import save_pretrained

    return save_pretrained(model, folder, extra=pl_module.export_extra())


def _number(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        v = v.item()
    return round(v, 6) if isinstance(v, float) else v


def _print_table(title: str, values: dict[str, Any]) -> None:
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in values.items()
            if not isinstance(v, dict)]  # nested records (the data's description): in the JSON
    width = max(len(k) for k, _ in rows)
    vwidth = max(len(v) for _, v in rows)
    line = "-" * (width + vwidth + 7)
    print(f"\n{line}\n| {title:<{width + vwidth + 3}} |\n{line}")
    for k, v in rows:
        print(f"| {k:<{width}} | {v:<{vwidth}} |")
    print(line)


__all__ = ["RunReport", "export_model", "default_latents"]
