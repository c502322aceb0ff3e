"""The base of every training data module: loaders whose order survives interruptions.

Data order is a pure function of ``(seed, epoch)``: :class:`ResumableSampler` shuffles with
its own generator and shards the permutation over distributed ranks. The module counts the
training batches it hands out; its ``state_dict`` (saved in every checkpoint by Lightning)
stores how far into the epoch training got, and Lightning restores it before it asks for the
training loader, which then starts where the interrupted run stopped. Subclasses that change a
training batch on its device (augmentation) get the batch's index over the whole run, so that
what they draw does not depend on whether the run was interrupted.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from ..errors import ConfigError
from .sampling import ResumableSampler


class ResumableData(LightningDataModule, ABC):
    """Training and evaluation loaders over ``self.dataset(split)``, resumable mid-epoch.

    Args:
        batch_size: Examples per training batch (per process under DDP/FSDP).
        eval_batch_size: Examples per evaluation batch (default: ``batch_size``).
        num_workers: Loader worker processes (0 loads in the main process).
        seed: Seeds the shuffling (and what subclasses draw; default: the run's
            ``seed_everything`` value).
        shuffle: Shuffle the training data each epoch.
    """

    def __init__(self, *, batch_size: int, eval_batch_size: int | None = None,
                 num_workers: int = 0, seed: int | None = None, shuffle: bool = True):
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.shuffle = shuffle
        self._seed = seed
        self._epoch = 0  # epoch of the batches counted below
        self._batches_in_epoch = 0
        self._batches_total = 0
        self._resume: tuple[int, int] | None = None
        self._train_sampler: ResumableSampler | None = None  # of the latest training loader

    @abstractmethod
    def dataset(self, split: str) -> Dataset | None:
        """The dataset of ``split`` (``"train"``, ``"val"`` (None: no validation),
        ``"test"``, ...)."""

    def training_batch(self, batch: Any, index: int) -> Any:
        """A training batch on its device, ``index`` counting the batches of the whole run;
        the batch as it is unless a subclass augments it."""
        return batch

    @property
    def seed(self) -> int:
        if self._seed is not None:
            return self._seed
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    # --- loaders ---
    def train_loader(self, dataset: Dataset) -> DataLoader:
        """Batches of ``dataset`` in the order of ``(seed, epoch)``, from where a restored
        checkpoint stopped."""
        if len(dataset) < self.batch_size:
            raise ConfigError(f"batch_size={self.batch_size} is larger than the "
                              f"{len(dataset)} training examples")
        sampler = ResumableSampler(len(dataset), shuffle=self.shuffle, seed=self.seed, pad=True)
        if self._resume is not None:  # restored from a checkpoint (see load_state_dict)
            epoch, batches = self._resume
            sampler.resume_at(epoch, batches * self.batch_size)
            self._resume = None
        self._train_sampler = sampler
        return DataLoader(dataset, sampler=sampler, batch_size=self.batch_size, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        """``dataset`` in order, each example once, sharded over distributed ranks."""
        sampler = ResumableSampler(len(dataset), shuffle=False, pad=False)
        return DataLoader(dataset, sampler=sampler, batch_size=self.eval_batch_size,
                          num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self.train_loader(self.dataset("train"))

    def val_dataloader(self):
        val = self.dataset("val")
        return [] if val is None else self.eval_loader(val)

    def test_dataloader(self) -> DataLoader:
        return self.eval_loader(self.dataset("test"))

    # --- counting the training batches ---
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return batch
        if trainer.current_epoch != self._epoch:
            self._epoch, self._batches_in_epoch = trainer.current_epoch, 0
        index = self._batches_total
        self._batches_in_epoch += 1
        self._batches_total += 1
        return self.training_batch(batch, index)

    def position(self) -> tuple[int, int]:
        """(epoch, training batches done in it) -- where a resumed run picks up."""
        trainer = self.trainer
        if trainer is not None and self._batches_in_epoch >= trainer.num_training_batches:
            return self._epoch + 1, 0
        return self._epoch, self._batches_in_epoch

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.position()
        return {"epoch": epoch, "batches_in_epoch": batches, "batches_total": self._batches_total}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._epoch = int(state["epoch"])
        self._batches_in_epoch = int(state["batches_in_epoch"])
        self._batches_total = int(state.get("batches_total", 0))
        self._resume = (self._epoch, self._batches_in_epoch)
        if self._train_sampler is not None:
            # Strategies that restore a checkpoint after their setup (FSDP, DeepSpeed) have
            # built the training loader by then (to count the steps of the schedule).
            self._train_sampler.resume_at(self._epoch, self._batches_in_epoch * self.batch_size)


def repair_epoch_progress(checkpoint: dict[str, Any]) -> None:
    """Give back the epoch that a checkpoint saved after a training batch lost.

    A checkpoint saved after a batch (``every_n_train_steps``) records a started, unfinished
    epoch. A run resumed from one saved after the last batch of an epoch, without
    :func:`start_next_epoch`, did not count the next epoch as started, so that the
    resumed run's own step checkpoints claim no epoch is under way and a further resume
    trained that epoch again. Such a checkpoint -- saved after a batch, every epoch finished --
    gets its started epoch back, which makes it the checkpoint an uninterrupted run saves.
    """
    loops = checkpoint.get("loops", {}).get("fit_loop", {})
    epochs, batches = loops.get("epoch_progress"), loops.get("epoch_loop.batch_progress")
    if not epochs or not batches:
        return
    e, b = epochs["total"], batches["total"]
    saved_after_batch = (b["ready"] == b["started"] == b["processed"] == b["completed"] + 1)
    no_epoch_under_way = e["ready"] == e["started"] == e["processed"] == e["completed"]
    if saved_after_batch and no_epoch_under_way:
        for counts in (epochs["total"], epochs["current"]):
            counts["ready"] += 1
            counts["started"] += 1


def start_next_epoch(trainer) -> None:
    """Start the epoch after a restored one like any other (call at ``on_train_start``).

    Resuming from a checkpoint saved after the last batch of an epoch, Lightning (2.6) finishes
    that epoch when it restores its loops but still treats the next epoch as the restarted
    one: it neither counts it as started nor calls ``on_train_epoch_start``. The checkpoints
    saved during that epoch then claim no epoch is under way, and resuming from the last of
    them trains the final epoch again. Here the restart ends with the restored epoch.
    """
    fit_loop = trainer.fit_loop
    epochs = fit_loop.epoch_progress.current
    if fit_loop.restarted_mid_epoch and epochs.started == epochs.processed:
        fit_loop.reset_restart_stage()


__all__ = ["ResumableData", "repair_epoch_progress", "start_next_epoch"]
