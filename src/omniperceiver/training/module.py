"""The LightningModules: :class:`TrainingModule` (what every task shares: the optimizer,
its parameter groups, the warm-up schedule, gradient clipping, ``torch.compile``) and
:class:`ClassificationModule` (classification with any preset model over any input adapter).
Language modelling is :class:`omniperceiver.training.language.LanguageModelModule`."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.strategies import ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from ..errors import ConfigError, NonFiniteLossError, OmniPerceiverError
from ..hub import recipe_version
from ..registry import create_model
from ..validation import check_options
from .augment import SpecAugment, attach_spec_augment
from .checkpoint import VERSION_KEY
from .resumable import repair_epoch_progress, start_next_epoch
from .sharding import shard_model

#: The preset of a ClassificationModule that names none.
DEFAULT_MODEL = "mnist-perceiver"


class WarmupSchedule:
    """Learning-rate factor per optimizer step: linear warm-up from 0 over ``warmup_steps``,
    then ``"cosine"`` decay to ``min_lr_ratio``, ``"step"`` decay by ``gamma`` at each of
    ``milestones`` (steps), or ``"constant"``. A plain object, so its state (numbers only) is
    saved in checkpoints that load with ``weights_only=True``."""

    def __init__(self, kind: str, *, total_steps: int, warmup_steps: int,
                 min_lr_ratio: float = 0.0, milestones: list[int] | None = None,
                 gamma: float = 0.1):
        self.kind = kind
        self.total_steps = max(1, total_steps)
        self.warmup_steps = warmup_steps
        self.min_lr_ratio = min_lr_ratio
        self.milestones = list(milestones or [])
        self.gamma = gamma

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (
                1 + math.cos(math.pi * progress))
        if self.kind == "step":
            return self.gamma ** sum(step >= m for m in self.milestones)
        return 1.0


def adamw(groups: list[dict], *, fused: bool = True, **options) -> torch.optim.AdamW:
    """AdamW over ``groups``, with PyTorch's fused kernel when ``fused`` and every parameter
    is a floating-point tensor on the CPU or a CUDA device (and the installed PyTorch has the
    kernel for it: CPUs since 2.4), else the per-tensor loop. On a CPU the fused step is 4-7x
    faster (``benchmarks/results/cpu-optimizer.md``); the results agree to rounding. Ask for
    ``fused=False`` under a gradient scaler (a fused step unscales the gradients itself) and
    for FSDP-sharded parameters."""
    params = [p for group in groups for p in group["params"]]
    if fused and params and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                for p in params):
        try:
            return torch.optim.AdamW(groups, fused=True, **options)
        except RuntimeError:  # a PyTorch without the fused kernel for these parameters
            pass
    return torch.optim.AdamW(groups, **options)


def weight_decay_groups(model: nn.Module, weight_decay: float,
                        lr_ratios: Mapping[str, float] | None = None) -> list[dict]:
    """Optimizer parameter groups with weight decay on weight matrices only: not on biases,
    norms, latents, embeddings or padding vectors (frozen parameters are left out).

    ``lr_ratios`` gives parameters (by name) a learning rate of that fraction of the
    optimizer's, e.g. 0.1 for the pretrained parts of a fine-tuned model: the groups then
    split by ratio too. Every group says its ratio as ``lr_ratio`` (1 for the others); the
    first two are the ratio-1 groups with and without decay."""
    ratios = lr_ratios or {}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {(1.0, True): [], (1.0, False): []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        decays = not (p.ndim < 2 or leaf in ("latents", "embedding") or ".padding." in name)
        groups.setdefault((float(ratios.get(name, 1.0)), decays), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decays else 0.0,
             "lr_ratio": ratio} for (ratio, decays), params in groups.items()]


class TrainingModule(LightningModule, ABC):
    """What every task's module shares. A subclass saves its hyper-parameters (among them
    ``optimizer``, ``lr``, ``weight_decay``, ``betas``, ``schedule``, ``warmup``,
    ``min_lr_ratio``, ``step_milestones``, ``step_gamma`` and ``compile``, documented in
    :class:`ClassificationModule`), builds ``self.model`` with :meth:`create_model` and
    defines the steps; this class configures the optimizer and schedule, clips gradients and
    compiles the model."""

    @abstractmethod
    def create_model(self) -> nn.Module:
        """A fresh model of the module's preset and overrides (for training and export)."""

    def export_extra(self) -> dict[str, Any]:
        """What ``save_pretrained`` stores beside the model's recipe (``extra``)."""
        return {}

    def lr_ratios(self) -> dict[str, float]:
        """Learning rates of parameters of ``self.model`` (by name) as fractions of ``lr``;
        the others train with ``lr``."""
        return {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[VERSION_KEY] = recipe_version()  # the release whose keywords model_args uses

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        repair_epoch_progress(checkpoint)  # before Lightning restores its loops from it

    def on_train_start(self) -> None:
        start_next_epoch(self.trainer)

    def _build_model(self) -> nn.Module:
        try:
            return self.create_model()
        except OmniPerceiverError:
            raise  # already names the preset and keywords (registry.create_model)
        except (TypeError, ValueError) as error:
            h = self.hparams
            raise ConfigError(f"cannot build model {h.model!r} with model_args "
                              f"{h.model_args}: {error}") from error

    def configure_model(self) -> None:
        """Shard the model with FSDP2 under a ``ModelParallelStrategy``
        (:func:`~omniperceiver.training.sharding.shard_model`), then compile it if asked to.
        Lightning calls this before each of fit, validate and test: a model sharded or
        compiled already stays as it is."""
        if isinstance(self.trainer.strategy, ModelParallelStrategy):
            shard_model(self.model, self.device_mesh)
        if self.hparams.compile and not getattr(self, "_compiled", False):
            self.model.compile()
            self._compiled = True

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _non_finite_message(self, loss: Tensor, x: Any) -> str:
        trainer = self.trainer
        tensors = x.values() if isinstance(x, dict) else [x]
        bad_inputs = any(not torch.isfinite(t).all() for t in tensors if t.is_floating_point())
        causes = [f"the learning rate is too high (lr={self.hparams.lr}; try a lower "
                  "--model.lr or a longer --model.warmup)",
                  "no gradient clipping (set --trainer.gradient_clip_val 1.0)"]
        if str(trainer.precision).startswith("16"):
            causes.append(f"float16 overflow (precision={trainer.precision}; use bf16-mixed or "
                          "32-true)")
        causes.append("the inputs contain NaN or Inf" if bad_inputs
                      else "corrupt data (the inputs of this batch are finite)")
        return (f"training loss is {loss.item()} at step {trainer.global_step} (epoch "
                f"{trainer.current_epoch}, batch {trainer.fit_loop.epoch_loop.batch_idx + 1}); "
                f"training stopped. Likely causes: " + "; ".join(causes) + ".")

    # --- optimisation ---
    def configure_optimizers(self):
        h = self.hparams
        groups = weight_decay_groups(self.model, h.weight_decay, self.lr_ratios())
        for group in groups:
            group["lr"] = h.lr * group["lr_ratio"]
        if h.optimizer == "lamb":
            from pytorch_optimizer import Lamb

            optimizer = Lamb(groups, lr=h.lr, betas=tuple(h.betas), weight_decay=h.weight_decay)
        else:
            scaled = str(self.trainer.precision).startswith("16")  # float16 with a scaler
            sharded = isinstance(self.trainer.strategy, ModelParallelStrategy)  # FSDP2
            optimizer = adamw(groups, fused=not (scaled or sharded), lr=h.lr,
                              betas=tuple(h.betas), weight_decay=h.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(h.warmup * total) if h.warmup < 1 else int(h.warmup)
        milestones = [int(f * total) for f in (h.step_milestones or [0.7, 0.85, 0.95])]
        schedule = WarmupSchedule(h.schedule, total_steps=total, warmup_steps=warmup,
                                  min_lr_ratio=h.min_lr_ratio, milestones=milestones,
                                  gamma=h.step_gamma)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None) -> None:
        """Norm clipping under FSDP too: Lightning's FSDP precision plugin refuses
        ``gradient_clip_algorithm="norm"`` (the norm of sharded gradients needs the root FSDP
        module, which it does not hold), so the root module clips here."""
        root = self.trainer.strategy.model  # under FSDP: the root FullyShardedDataParallel
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm") \
                and callable(getattr(root, "clip_grad_norm_", None)):
            root.clip_grad_norm_(gradient_clip_val)
            return
        if gradient_clip_val and optimizer.defaults.get("fused"):
            # Lightning's mixed-precision plugin refuses to clip before a fused step (with a
            # gradient scaler such a step unscales the gradients itself); :func:`adamw` fuses
            # only without a scaler, so these gradients are the true ones: clip them here
            params = [p for group in optimizer.param_groups for p in group["params"]]
            if gradient_clip_algorithm == "value":
                nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                nn.utils.clip_grad_norm_(params, gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)


class ClassificationModule(TrainingModule):
    """Trains ``create_model(model, num_classes=..., **model_args)`` with cross-entropy, or
    fine-tunes a pretrained classifier (``pretrained``).

    Args:
        model: A preset name (``omniperceiver list-models``; default ``mnist-perceiver``).
        model_args: Overrides of the preset's keywords (e.g. ``{num_latents: 64}``).
        num_classes: Set from the data module.
        class_names: Set from the data module (for reports and predictions).
        input_spec: Set from the data module: the input modality and shape (for predict).
        pretrained: Start from this model (an exported model folder, a transformers
            checkpoint folder, a perceiver-pytorch state dict or a DeepMind pickle; see
            :mod:`omniperceiver.training.finetune`). The architecture is the source's:
            ``model``/``model_args``, if given, must agree with it. A head for another
            number of classes starts fresh.
        pretrained_kwargs: The converter's options for a source of another library
            (perceiver-pytorch: the constructor keywords that made the state dict).
        trust_pickle: Allow reading a DeepMind checkpoint, a pickle (which can run code).
        freeze: What of the pretrained model does not train: ``"none"``,
            ``"input_adapter"``, ``"encoder"`` (the input adapter and the encoder) or
            ``"all_but_head"`` (only the classification head trains).
        pretrained_lr_ratio: The learning rate of the pretrained weights as a fraction of
            ``lr`` (a fresh head trains with ``lr``).
        optimizer: ``"adamw"`` or ``"lamb"`` (pytorch-optimizer's LAMB).
        lr: Peak learning rate.
        weight_decay: Decoupled weight decay (not applied to biases, norms, latents and
            position embeddings).
        betas: Adam/LAMB moment coefficients.
        schedule: ``"cosine"`` (to ``min_lr_ratio * lr``), ``"step"`` or ``"constant"``,
            after the warm-up.
        warmup: Linear warm-up length: a fraction of all steps (< 1) or a number of steps.
        min_lr_ratio: Final learning rate of the cosine schedule, relative to ``lr``.
        step_milestones: ``"step"`` schedule: decay points as fractions of all steps.
        step_gamma: ``"step"`` schedule: the factor applied at each milestone.
        label_smoothing: Cross-entropy label smoothing.
        spec_augment: SpecAugment masking of log-mel inputs during training (audio models):
            ``{freq_masks: 2, freq_width: 8, time_masks: 2, time_width: 10}``.
        compile: Compile the model with ``torch.compile``.
    """

    def __init__(
        self,
        model: str | None = None,
        model_args: dict[str, Any] | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        input_spec: dict[str, Any] | None = None,
        pretrained: str | None = None,
        pretrained_kwargs: dict[str, Any] | None = None,
        trust_pickle: bool = False,
        freeze: Literal["none", "input_adapter", "encoder", "all_but_head"] = "none",
        pretrained_lr_ratio: float = 1.0,
        optimizer: Literal["adamw", "lamb"] = "adamw",
        lr: float = 2e-3,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        schedule: Literal["cosine", "step", "constant"] = "cosine",
        warmup: float = 0.05,
        min_lr_ratio: float = 0.0,
        step_milestones: list[float] | None = None,
        step_gamma: float = 0.1,
        label_smoothing: float = 0.1,
        spec_augment: dict[str, int] | None = None,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        check_options(dict(num_classes=num_classes, lr=lr, weight_decay=weight_decay,
                           warmup=warmup, min_lr_ratio=min_lr_ratio, step_gamma=step_gamma,
                           label_smoothing=label_smoothing,
                           pretrained_lr_ratio=pretrained_lr_ratio), where="model options")
        if num_classes is None:
            raise ConfigError("num_classes is required (the CLI sets it from the data module)")
        model_args = dict(model_args or {})
        if "num_classes" in model_args:
            raise ConfigError("set the number of classes through the data, not model_args")
        self.pretrained_names: frozenset[str] = frozenset()
        if pretrained is None:
            if freeze != "none" or pretrained_lr_ratio != 1:
                raise ConfigError(f"freeze ({freeze!r}) and pretrained_lr_ratio "
                                  f"({pretrained_lr_ratio}) are for fine-tuning: set pretrained")
            self.hparams.model = model or DEFAULT_MODEL
            self.model = self._build_model()
        else:
            self.model = self._load_pretrained()
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.input_spec = input_spec
        if spec_augment is not None and attach_spec_augment(
                self.model, SpecAugment(**spec_augment)) == 0:
            raise ConfigError(f"spec_augment needs a model with log-mel inputs; "
                              f"{self.hparams.model!r} has none")
        self.train_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    # --- model ---
    def create_model(self) -> nn.Module:
        h = self.hparams
        return create_model(h.model, num_classes=h.num_classes, **(h.model_args or {}))

    def _load_pretrained(self) -> nn.Module:
        """The model of ``pretrained`` for the data's classes; ``model`` and ``model_args``
        become the source's, so that checkpoints and exports rebuild it."""
        from .finetune import pretrained_classifier

        h = self.hparams
        loaded = pretrained_classifier(h.pretrained, h.num_classes, freeze=h.freeze,
                                       trust_pickle=h.trust_pickle, kwargs=h.pretrained_kwargs,
                                       model=h.model, model_args=h.model_args,
                                       input_spec=h.get("input_spec"))
        h.model, h.model_args = loaded.preset, loaded.model_args
        self.pretrained_names = frozenset(loaded.loaded)
        rank_zero_info(loaded.describe() + (
            f"\n  learning rate of the pretrained weights: {h.pretrained_lr_ratio} x lr"
            if h.pretrained_lr_ratio != 1 else ""))
        return loaded.model

    def lr_ratios(self) -> dict[str, float]:
        ratio = self.hparams.pretrained_lr_ratio
        return {} if ratio == 1 else dict.fromkeys(self.pretrained_names, ratio)

    def export_extra(self) -> dict[str, Any]:
        return {"classes": list(self.class_names), "input_spec": self.input_spec}

    def forward(self, x: Any) -> Tensor:
        return self.model(x)

    # --- steps ---
    def _loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), target,
                               label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        x, target = batch
        logits = self.model(x)
        loss = self._loss(logits, target)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self._non_finite_message(loss, x))
        labels = target.argmax(-1) if target.ndim == 2 else target  # soft targets (MixUp)
        self.train_accuracy(logits.detach(), labels)
        batch_size = labels.shape[0]
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True,
                 batch_size=batch_size)
        self.log("train_accuracy", self.train_accuracy, on_step=False, on_epoch=True,
                 batch_size=batch_size)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False,
                 batch_size=batch_size)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.val_accuracy(logits, y)
        self.log("val_loss", self._loss(logits, y), prog_bar=True, sync_dist=True,
                 batch_size=y.shape[0])
        self.log("val_accuracy", self.val_accuracy, prog_bar=True, batch_size=y.shape[0])

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.test_accuracy(logits, y)
        self.test_confusion.update(logits, y)
        self.log("test_loss", self._loss(logits, y), sync_dist=True, batch_size=y.shape[0])
        self.log("test_accuracy", self.test_accuracy, batch_size=y.shape[0])

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def predict_step(self, batch, batch_idx: int) -> dict[str, Tensor]:
        x, index = batch
        return {"index": index, "probs": self.model(x).float().softmax(-1)}


__all__ = ["TrainingModule", "ClassificationModule", "NonFiniteLossError",
           "WarmupSchedule", "weight_decay_groups"]
