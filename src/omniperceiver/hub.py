"""Saving and loading models without pickle: ``model.safetensors`` + ``config.json``.

A model is saved with the recipe that rebuilds it: a preset name and its overrides (models
made by :func:`create_model`), or a :class:`PerceiverIO` config. Loading rebuilds the model
from that recipe and loads the weights from safetensors (no code is unpickled).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .adapters import GridAdapter
from .errors import ModelFileError
from .files import read_file, set_aside, write_folder_atomically
from .hub_repos import locate
from .model import PerceiverIO, PerceiverIOConfig
from .registry import create_model
from .renames import release, upgrade_model_args

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def model_recipe(model: nn.Module) -> dict:
    """The JSON-serialisable recipe that rebuilds ``model`` (without its weights)."""
    recipe = getattr(model, "recipe", None)
    if recipe is not None:
        return recipe
    if isinstance(model, PerceiverIO) and type(model.input_adapter) is GridAdapter:
        return {"config": model.config.to_dict()}
    raise ModelFileError(
        f"cannot save a {type(model).__name__} built by hand: build it with "
        f"omniperceiver.create_model(name, **overrides) or PerceiverIO(config), or register "
        f"a preset for it with omniperceiver.register_model")


#: Preset defaults that changed in a release: ``{preset: (release, defaults before it)}``.
#: Folders written by 0.1.0 store only the keywords a preset was given (later releases store
#: the factory's defaults too, see :func:`omniperceiver.create_model`), so such a folder is
#: rebuilt with the defaults it was built with.
CHANGED_DEFAULTS: dict[str, tuple[str, dict]] = {
    # 0.2.0: the main job reads raw pixels (it read a conv stem's 7x7 grid)
    "mnist-perceiver": ("0.2.0", {"mode": "conv", "num_bands": 8, "widening_factor": 1,
                                  "latent_init_std": 0.02}),
    # 0.3.0: flow in pixels (x20, as DeepMind's examples); before, transformers' raw output
    "optical-flow-perceiver": ("0.3.0", {"flow_scale": 1.0}),
}


def build_from_recipe(recipe: dict, version: str | None = None) -> nn.Module:
    """The model a recipe describes; ``version``: the release that wrote it (default: this
    one)."""
    if "preset" in recipe:
        overrides = recipe.get("overrides", {})
        changed = CHANGED_DEFAULTS.get(recipe["preset"])
        if changed and version is not None and release(version) < release(changed[0]):
            overrides = {**changed[1], **overrides}
        overrides = upgrade_model_args(recipe["preset"], overrides, version)
        return create_model(recipe["preset"], **overrides)
    if "config" in recipe:
        return PerceiverIO(PerceiverIOConfig.from_dict(recipe["config"]))
    raise ModelFileError(f"config.json has no 'preset' or 'config' entry: keys {sorted(recipe)}")


def save_pretrained(model: nn.Module, path: str | os.PathLike, *,
                    extra: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into the folder ``path`` (created if
    needed), both at once: a failed or interrupted save leaves the previous model in ``path``
    complete (see :func:`~omniperceiver.files.write_folder_atomically`); other files in the
    folder are kept. ``extra`` (JSON-serialisable, e.g. class names) is stored in the config
    under ``"extra"``."""
    from safetensors.torch import save

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModelFileError(f"cannot save a model to {path}: it is a file, not a folder")
    config = {"omniperceiver": recipe_version(), "model": model_recipe(model),
              "extra": extra or {}}
    try:
        config_text = json.dumps(config, indent=2) + "\n"
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"cannot save a model to {path}: extra must be JSON-serialisable "
                             f"(lists, dicts, strings, numbers), got {extra!r}: {error}"
                             ) from error
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return write_folder_atomically(path, {WEIGHTS_NAME: save(state),
                                          CONFIG_NAME: config_text.encode("utf-8")})


def model_folder(path: str | os.PathLike) -> Path:
    """The folder a model saved at ``path`` is read from: ``path``, or, if a save was killed
    between its two renames, the previous model it set aside (complete)."""
    path = Path(path)
    aside = set_aside(path)
    return aside if not path.exists() and aside.is_dir() else path


def load_config(path: str | os.PathLike) -> dict:
    """The ``config.json`` of the model folder ``path`` (or the file ``path``); a
    :class:`ModelFileError` naming the file if it is missing, damaged or not one of ours."""
    path = model_folder(path)
    file = path / CONFIG_NAME if path.is_dir() else path
    config = read_file(file, lambda f: json.loads(f.read_text(encoding="utf-8")),
                       what=f"a model's {CONFIG_NAME} (JSON written by save_pretrained)",
                       error=ModelFileError)
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ModelFileError(f"{file}: not a {CONFIG_NAME} written by save_pretrained (expected "
                             f"an object with a 'model' entry)")
    return config


def from_pretrained(path: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                    strict: bool = True, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
                    local_files_only: bool = False) -> nn.Module:
    """Rebuild a model saved by :func:`save_pretrained` and load its weights (no pickle).

    ``path`` is the folder, or a Hugging Face Hub repository id ``"user/name"`` (pinned with
    ``"user/name@revision"`` or ``revision``) whose two files are read through
    huggingface_hub's cache; ``cache_dir``, ``token`` and ``local_files_only`` go to
    huggingface_hub (see :mod:`omniperceiver.hub_repos`). A local path that exists wins.

    A missing, truncated or damaged ``config.json`` or ``model.safetensors``, or weights that
    do not fit the model the config describes, raise :class:`ModelFileError` naming the file;
    a repository that cannot be read raises :class:`~omniperceiver.errors.HubError`.
    """
    from safetensors.torch import load_file

    path = model_folder(locate(path, (CONFIG_NAME, WEIGHTS_NAME), revision=revision,
                               cache_dir=cache_dir, token=token,
                               local_files_only=local_files_only))
    if not path.is_dir():
        raise ModelFileError(
            f"{path}: {'is a file' if path.exists() else 'no such folder'}; from_pretrained "
            f"takes the folder save_pretrained wrote ({CONFIG_NAME} + {WEIGHTS_NAME})")
    config = load_config(path)
    try:
        model = build_from_recipe(config["model"], str(config.get("omniperceiver", "0.1.0")))
    except Exception as error:  # noqa: BLE001  (a damaged recipe fails in any of its builders)
        detail = error if isinstance(error, ModelFileError) else f"{type(error).__name__}: {error}"
        raise ModelFileError(f"{path / CONFIG_NAME}: cannot rebuild the model it describes "
                             f"({detail})") from error
    weights = path / WEIGHTS_NAME
    state = read_file(weights, lambda f: load_file(str(f), device=str(map_location)),
                      what="safetensors weights written by save_pretrained",
                      error=ModelFileError)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as error:
        detail = " ".join(str(error).split())
        raise ModelFileError(
            f"{weights}: the weights do not fit the model that {path / CONFIG_NAME} describes "
            f"(one of the two is damaged, or they belong to different models): "
            f"{detail[:300]}{' ...' if len(detail) > 300 else ''}") from error
    return model.eval()


def recipe_version() -> str:
    from . import __version__

    return __version__


__all__ = ["save_pretrained", "from_pretrained", "load_config", "model_recipe",
           "build_from_recipe", "model_folder", "CONFIG_NAME", "WEIGHTS_NAME"]
