"""Fine-tuning: a classifier that starts from pretrained weights.

:func:`pretrained_classifier` is what ``ClassificationModule(pretrained=PATH, ...)`` (command
line: ``--model.pretrained PATH``) builds its model with. The architecture comes from the
source (its recipe: a preset and its keywords); when the data has another number of classes
than the source, the classification head (the decoder's last layer) starts fresh and every
other weight is loaded. The data's inputs must have the shape the source's input adapter
declares (``image_shape``, ``video_shape``; audio at most ``max_samples``), which the saved
model keeps for export and predict. The source is one of

* a folder written by :func:`omniperceiver.save_pretrained`, such as a run's ``model/``
  (its ``config.json`` has an ``omniperceiver`` entry);
* a transformers Perceiver checkpoint folder (``config.json`` and ``model.safetensors`` or
  ``pytorch_model.bin``);
* a Hugging Face Hub repository id holding either folder (``user/name``, pinned with
  ``user/name@revision``; see :mod:`omniperceiver.hub_repos`);
* a perceiver-pytorch state dict written by ``torch.save`` (a zip file), with the constructor
  keywords that made it in ``pretrained_kwargs``;
* a DeepMind checkpoint (any other file: a Python pickle), read only with
  ``trust_pickle=True``, since unpickling can run arbitrary code.

The last three are converted as ``omniperceiver convert`` converts them
(:func:`omniperceiver.convert.cli.convert`); ``pretrained_kwargs`` are that converter's
options (transformers: ``semantics``; perceiver-pytorch: the constructor keywords; DeepMind:
``family``, ``encoder``, ``decoder`` and preset overrides).

``freeze`` stops the gradients of a part of the model, following the data flow: ``none``,
``input_adapter``, ``encoder`` (the input adapter and the encoder: the decoder trains) or
``all_but_head`` (only the classification head trains: a linear probe).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..decoders import ClassificationDecoder
from ..errors import ConfigError, ModelFileError, OmniPerceiverError
from ..files import read_file
from ..hub import CONFIG_NAME, from_pretrained, model_folder, model_recipe
from ..registry import create_model
from .model_args import model_args_entries

#: ``freeze`` choices -> the parts of the model they freeze (``all_but_head``: all but the
#: classification head).
FREEZE: dict[str, tuple[str, ...]] = {
    "none": (),
    "input_adapter": ("input_adapter",),
    "encoder": ("input_adapter", "encoder"),
    "all_but_head": ("input_adapter", "encoder", "decoder", "output_adapter"),
}


@dataclass
class PretrainedClassifier:
    """A classifier built by :func:`pretrained_classifier`, and what happened to its weights
    (parameter names of ``model``)."""

    model: nn.Module
    source: str
    loaded: list[str]
    fresh: list[str]
    frozen: list[str] = field(default_factory=list)
    freeze: str = "none"

    @property
    def preset(self) -> str:
        return self.model.recipe["preset"]

    @property
    def model_args(self) -> dict[str, Any]:
        """The preset's keywords, without ``num_classes`` (a module's ``model_args``)."""
        return {k: v for k, v in self.model.recipe["overrides"].items() if k != "num_classes"}

    def describe(self) -> str:
        """One paragraph for the log: what was loaded, initialised fresh and frozen."""
        lines = [f"pretrained: {self.preset} from {self.source}: loaded {len(self.loaded)} of "
                 f"{len(self.loaded) + len(self.fresh)} parameter tensors"]
        if self.fresh:
            lines.append(f"initialised fresh (new classification head, "
                         f"{self.model.decoder.head.out_features} classes): "
                         f"{', '.join(self.fresh)}")
        if self.frozen:
            count = sum(p.numel() for n, p in self.model.named_parameters() if n in self.frozen)
            lines.append(f"frozen (freeze {self.freeze}): {len(self.frozen)} parameter tensors "
                         f"({count:,} parameters)")
        return "\n  ".join(lines)


def read_pretrained(path: str | os.PathLike, *, trust_pickle: bool = False,
                    kwargs: dict[str, Any] | None = None) -> nn.Module:
    """The model saved or converted from ``path`` (see the module docstring for the kinds of
    source); ``kwargs`` are the converter's options."""
    from ..convert.transformers import locate_checkpoint

    path = model_folder(locate_checkpoint(path))
    options = dict(kwargs or {})
    if path.is_dir():
        config = read_file(path / CONFIG_NAME, lambda f: json.loads(f.read_text("utf-8")),
                           what="a model's config.json (omniperceiver or transformers)",
                           error=ModelFileError)
        if isinstance(config, dict) and "omniperceiver" in config:
            if options:
                raise ConfigError(f"pretrained_kwargs {options} are options of the converters; "
                                  f"{path} is an omniperceiver model folder, which needs none")
            return from_pretrained(path)
        source = "transformers"
    elif path.is_file():
        if path.suffix == ".ckpt":
            raise ConfigError(f"pretrained {path}: a Lightning checkpoint; fine-tune from the "
                              f"model its run exported (<run>/model), or continue the run with "
                              f"--ckpt_path")
        source = "lucidrains" if zipfile.is_zipfile(path) else "deepmind"
    else:
        raise ConfigError(f"pretrained {path}: no such file or folder")
    return _convert(source, path, options, trust_pickle)


def _convert(source: str, path: Path, options: dict[str, Any], trust_pickle: bool) -> nn.Module:
    from ..convert.cli import convert

    if source == "deepmind":
        if not trust_pickle:
            raise ConfigError(
                f"pretrained {path}: a Python pickle (a DeepMind checkpoint), and reading a "
                f"pickle can run arbitrary code. Pass --model.trust_pickle true (Python: "
                f"trust_pickle=True) only for a file from a source you trust. (A "
                f"perceiver-pytorch state dict is read when torch.save wrote it: a zip file.)")
        options = {"family": options.pop("family", None), "encoder": options.pop("encoder", None),
                   "decoder": options.pop("decoder", None), "overrides": options}
    elif source == "lucidrains":
        if not options:
            raise ConfigError(f"pretrained {path}: a perceiver-pytorch state dict; pass the "
                              f"constructor keywords that made it as --model.pretrained_kwargs "
                              f"(e.g. '{{depth: 6, num_latents: 256, ...}}')")
        options = {"kwargs": options}
    try:
        model, _ = convert(source, path, trust_pickle=trust_pickle, **options)
    except OmniPerceiverError:
        raise
    except TypeError as error:  # an option the converter does not take
        raise ConfigError(f"pretrained_kwargs for a {source} checkpoint: {error}") from error
    except (KeyError, ValueError, NotImplementedError) as error:
        raise ModelFileError(f"pretrained {path}: cannot convert this {source} checkpoint "
                             f"({type(error).__name__}: {error})") from error
    return model


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples -> lists), to compare and store recipes."""
    return json.loads(json.dumps(value))


def check_same_model(source: nn.Module, model: str | None, model_args: dict | None, *,
                     where: str) -> None:
    """A :class:`ConfigError` if ``model`` or ``model_args`` (those of a config) ask for
    another architecture than the pretrained ``source``'s."""
    recipe = model_recipe(source)
    preset, overrides = recipe["preset"], model_args_entries(_plain(recipe["overrides"]))
    problems = [f"model {model!r}, the source {preset!r}"] if model not in (None, preset) else []
    problems += [f"{key} {value!r}, the source {overrides.get(key, 'not set')!r}"
                 for key, value in model_args_entries(_plain(model_args or {})).items()
                 if overrides.get(key) != value]
    if problems:
        raise ConfigError(
            f"the architecture comes from pretrained {where}, but the options ask for another "
            f"model: {'; '.join(problems)}. Leave model and model_args out (on the command "
            f"line: --model.model null --model.model_args null) or make them agree.")


def check_input_shape(source: nn.Module, input_spec: dict[str, Any] | None, *,
                      where: str) -> None:
    """A :class:`ConfigError` if the data's inputs (its ``input_spec``) have another shape
    than the pretrained ``source``'s input adapter declares: its recipe (saved with the
    fine-tuned model, read by ``export`` and ``predict``) would describe other inputs than
    the model was fine-tuned on. Shorter audio clips than ``max_samples`` are read as they
    are (the positions of a clip's start)."""
    adapter = getattr(source, "input_adapter", None)
    spec = input_spec or {}
    modality = spec.get("modality")
    if modality == "image" and getattr(adapter, "image_shape", None) is not None:
        name, ours, theirs = "image_shape", list(adapter.image_shape), spec.get("image_shape")
        fix = "resize the data to it (e.g. ImageFolderData's --data.init_args.image_shape)"
    elif modality == "video" and getattr(adapter, "video_shape", None) is not None:
        name, ours = "video_shape", list(adapter.video_shape)
        theirs = [spec.get("num_frames"), *spec.get("image_shape", [])]
        fix = "give the data its frames and frame size (--data.init_args.num_frames, image_shape)"
    elif (modality == "audio" and getattr(adapter, "max_samples", None) is not None
          and spec.get("num_samples", 0) > adapter.max_samples):
        name, ours, theirs = "max_samples", adapter.max_samples, spec["num_samples"]
        fix = "shorten the clips to at most that many samples (--data.init_args.duration)"
    else:
        return
    if theirs is not None and _plain(theirs) != _plain(ours):
        raise ConfigError(
            f"pretrained {where} reads inputs of {name} {ours}, but the data's are {theirs}; "
            f"the fine-tuned model would keep {name} {ours} for export and predict: {fix}, "
            f"or fine-tune a model made for {theirs}")


def classification_head(model: nn.Module) -> nn.Linear | None:
    decoder = getattr(model, "decoder", None)
    return decoder.head if isinstance(decoder, ClassificationDecoder) else None


def pretrained_classifier(path: str | os.PathLike, num_classes: int, *,
                          freeze: str = "none", trust_pickle: bool = False,
                          kwargs: dict[str, Any] | None = None, model: str | None = None,
                          model_args: dict | None = None,
                          input_spec: dict[str, Any] | None = None) -> PretrainedClassifier:
    """The classifier of the pretrained source ``path`` for ``num_classes`` classes.

    The model is rebuilt from the source's recipe with ``num_classes``; every weight of the
    source is loaded, except the classification head when the numbers of classes differ
    (that head starts fresh). ``freeze`` (see :data:`FREEZE`) stops the gradients of a part.
    ``model``/``model_args`` (a config's), when given, must agree with the source's recipe,
    and ``input_spec`` (the data's) with the shape of its inputs (:func:`check_input_shape`).
    ``trust_pickle`` and ``kwargs`` are passed on to :func:`read_pretrained`.
    """
    if freeze not in FREEZE:
        raise ConfigError(f"freeze must be one of {', '.join(FREEZE)}, got {freeze!r}")
    source = read_pretrained(path, trust_pickle=trust_pickle, kwargs=kwargs)
    recipe = getattr(source, "recipe", None)
    head = classification_head(source)
    if recipe is None or "preset" not in recipe or head is None:
        raise ConfigError(f"pretrained {path}: a {type(source).__name__} "
                          f"({(recipe or {}).get('preset', 'built by hand')}) without a "
                          f"classification head; fine-tuning starts from a classifier")
    check_same_model(source, model, model_args, where=str(path))
    check_input_shape(source, input_spec, where=str(path))
    ours = create_model(recipe["preset"], **{**_plain(recipe["overrides"]),
                                             "num_classes": num_classes})
    head_ids = {id(p) for p in classification_head(ours).parameters()}
    names = [name for name, _ in ours.named_parameters()]
    fresh = ([name for name, p in ours.named_parameters() if id(p) in head_ids]
             if head.out_features != num_classes else [])
    state = {k: v for k, v in source.state_dict().items() if k not in fresh}
    missing, unexpected = ours.load_state_dict(state, strict=False)
    if set(missing) != set(fresh) or unexpected:  # the same recipe: cannot differ
        raise ModelFileError(f"pretrained {path}: its weights do not fit its own recipe "
                             f"(missing {missing[:4]}, unexpected {unexpected[:4]})")
    frozen = [name for name, p in ours.named_parameters()
              if _frozen(name, FREEZE[freeze]) and id(p) not in head_ids]
    for name, p in ours.named_parameters():
        p.requires_grad_(name not in frozen)
    return PretrainedClassifier(ours, str(path), loaded=[n for n in names if n not in fresh],
                                fresh=fresh, frozen=frozen, freeze=freeze)


def _frozen(name: str, parts: tuple[str, ...]) -> bool:
    return name.split(".", 1)[0] in parts


__all__ = ["FREEZE", "PretrainedClassifier", "pretrained_classifier", "read_pretrained",
           "check_same_model", "check_input_shape", "classification_head"]
