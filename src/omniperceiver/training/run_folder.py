"""What ``fit`` may do to a run folder: checked before it writes anything.

A run folder that cannot be written (a read-only location, a file in its path) stops the fit
at once, instead of after the first epoch. A fit that would start over in a folder that
already holds a run (its ``metrics.json``, exported ``model/`` or checkpoints) stops unless
``--overwrite true``; a resume (``--ckpt_path``) stops if the checkpoint is missing or holds
another model than the one the options build, naming each setting and parameter that differs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.plugins.environments import SLURMEnvironment

from ..errors import ConfigError
from .checkpoint import checkpoint_model_args, load_checkpoint_file
from .model_args import model_args_entries
from .module import ClassificationModule


def check_run_folder(trainer: Trainer, module: ClassificationModule, ckpt_path: str | None,
                     *, overwrite: bool) -> None:
    """Stop a ``fit`` before it writes anything (``config.yaml``, logs, checkpoints) if it would
    start over in a run folder that holds a run (unless ``overwrite``), or resume from a
    checkpoint that does not exist or holds another model than ``module``."""
    root = Path(trainer.default_root_dir)
    check_writable(root, option="--trainer.default_root_dir")
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


def check_writable(folder: Path, *, option: str) -> None:
    """A :class:`ConfigError` naming ``option`` unless ``folder`` can be created or written:
    its nearest existing ancestor must be a writable folder."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {folder}: cannot write to {existing} (read-only or no "
                          f"permission); choose a writable location")


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
    checkpoint ``path`` holds another model than ``module`` (whose weights it would load);
    warn, naming them, if only training settings differ (lr, label smoothing, ...)."""
    try:
        checkpoint = load_checkpoint_file(path, mmap=True)
    except Exception as error:  # noqa: BLE001  (any unreadable file)
        raise ConfigError(f"--ckpt_path {path}: not a readable Lightning checkpoint "
                          f"({error})") from error
    saved, ours = checkpoint.get("hyper_parameters", {}), module.hparams
    settings = {key: (saved[key], ours[key]) for key in ("model", "num_classes") if key in saved}
    if "model_args" in saved:
        before = model_args_entries(checkpoint_model_args(checkpoint))
        now = model_args_entries(ours.model_args or {})
        settings.update({key: (before.get(key, _UNSET), now.get(key, _UNSET))
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
    others = [f"{key} {saved[key]!r} in the checkpoint, {ours[key]!r} now"
              for key in sorted(saved.keys() & set(ours.keys()))
              if key not in MODEL_SETTINGS and _plain(saved[key]) != _plain(ours[key])]
    if others:
        warnings.warn(
            f"--ckpt_path {path}: resuming with training settings other than the "
            f"checkpoint's: {'; '.join(others)}. The optimizer and its learning-rate schedule "
            f"continue as saved in the checkpoint (a new lr, weight_decay, betas, schedule or "
            f"warmup has no effect); the other settings take the new values.", stacklevel=2)


#: Hyper-parameters that decide the model (checked above) or come from the data.
MODEL_SETTINGS = ("model", "num_classes", "model_args", "class_names", "input_spec")


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists (a checkpoint stores tuples as lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


__all__ = ["check_run_folder", "check_writable", "check_checkpoint_matches"]
