"""``model_args`` from configs and the command line: merged key by key, and read in this
release's keywords when a run resumes from a checkpoint of an earlier release.

jsonargparse lets each ``model_args`` mapping replace the one before it; here every mapping
merges into the ones before it, so overriding one entry keeps a config's others.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..config import merge
from ..renames import upgrade_model_args
from .checkpoint import checkpoint_release, load_checkpoint_file

MODEL_ARGS = "--model.model_args"
CONFIG_OPTIONS = ("--config", "-c")


def merge_model_args(args: list[str]) -> list[str]:
    """``args`` with every ``model_args`` merged into the ``model_args`` set before it.

    jsonargparse lets each ``model_args`` mapping replace the one before it, so a config's
    entries would fall back to the preset's defaults as soon as one of them is overridden.
    Here the ``model_args`` of a config (``--config``), a mapping (``--model.model_args
    '{encoder: {num_latents: 8}}'``) and one entry (``--model.model_args.encoder.num_latents
    8``) are merged key by key, recursively (:func:`omniperceiver.config.merge`), over what the
    configs and options before them set, and the parser gets the merged mapping;
    ``--model.model_args null`` goes back to the preset's defaults. What cannot be read here
    is passed on as given, for the parser to report.
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


def model_args_entries(args: Mapping[str, Any], prefix: str = "model_args") -> dict[str, Any]:
    """Each entry of ``args`` by its full name, for messages and comparisons:
    ``{"encoder": {"num_latents": 8}}`` -> ``{"model_args.encoder.num_latents": 8}``."""
    entries: dict[str, Any] = {}
    for key, value in args.items():
        if isinstance(value, Mapping) and value:
            entries.update(model_args_entries(value, f"{prefix}.{key}"))
        else:
            entries[f"{prefix}.{key}"] = value
    return entries


def resumed_model_args(model_args: Mapping[str, Any] | None, ckpt_path: str | None,
                       folders: list[str]) -> dict[str, Any] | None:
    """``model_args`` of a run that continues from ``ckpt_path`` (a file, or ``"last"``: the
    newest ``last*.ckpt`` in ``folders``), in this release's keywords if that checkpoint was
    written by an earlier release (:func:`~omniperceiver.training.checkpoint.
    checkpoint_model_args`): a run of 0.3.0 resumes with its own ``config.yaml``. Without a
    readable checkpoint they come back as given (the run-folder checks report it)."""
    if model_args is None or ckpt_path is None:
        return model_args
    if ckpt_path == "last":
        found = [path for folder in folders for path in Path(folder).glob("last*.ckpt")]
        path = max(found, key=lambda path: path.stat().st_mtime) if found else None
    else:
        path = Path(ckpt_path)
    if path is None or not path.is_file():
        return model_args
    try:
        checkpoint = load_checkpoint_file(path, mmap=True)
    except Exception:  # noqa: BLE001  (any unreadable file: reported by check_run_folder)
        return model_args
    preset = checkpoint.get("hyper_parameters", {}).get("model") or ""
    return upgrade_model_args(preset, model_args, checkpoint_release(checkpoint))


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


__all__ = ["merge_model_args", "resumed_model_args", "model_args_entries"]
