"""Preset keywords of earlier releases in today's names.

Release 0.4.0 gave every concept one name across presets, configs and data modules (the table
in ``docs/architecture.md``, "Names"): the task classifiers' flat encoder keywords moved under
``encoder={...}``/``decoder={...}``, the multimodal presets take one dict of adapter keywords
per modality, and ``image_size``/``train_size``/``frames_shape``, ``channels``,
``image_bands``/``audio_bands`` and ``max_frequency`` became ``image_shape``/``video_shape``,
``input_channels``, ``num_bands`` and ``max_resolution``. A model folder, a checkpoint or a
run config written before then names a preset's keywords the old way;
:func:`upgrade_model_args` rewrites them into the keywords that build the same model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .config import merge
from .errors import ModelFileError

#: The release that renamed the keywords.
RENAMED_IN = "0.4.0"

#: Presets whose default keywords changed, ``{preset: [(release, the defaults before it), ...]}``
#: oldest first: a file written before a release that left those keywords at their defaults
#: built the older model.
#: 0.5.0: the main job's ``mnist-perceiver`` went back to the pixels before every block (4
#: cross-attends and 4 blocks of one self-attend instead of 2 and 2 blocks of 2).
#: 0.6.0: 16 latents instead of 32 (half the training step, so more epochs in the main job's
#: time).
_DEFAULTS_CHANGED: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "mnist-perceiver": [
        ("0.5.0", {"encoder": {"num_blocks": 2, "self_attends_per_block": 2,
                               "num_cross_attends": 2}}),
        ("0.6.0", {"encoder": {"num_latents": 32}}),
    ],
}

_CLASSIFIERS = ("image-perceiver", "mnist-perceiver", "pointcloud-perceiver", "audio-perceiver",
                "video-perceiver", "av-perceiver")

#: Keywords that kept their meaning under another name: ``{preset: {old: new}}``.
_RENAMED: dict[str, dict[str, str]] = {
    "image-perceiver": {"image_size": "image_shape", "channels": "input_channels"},
    "mnist-perceiver": {"image_size": "image_shape", "channels": "input_channels"},
    "video-perceiver": {"channels": "input_channels"},
    "perceiver-imagenet": {"image_size": "image_shape"},
    "vision-perceiver-fourier": {"image_size": "image_shape"},
    "vision-perceiver-learned": {"image_size": "image_shape"},
    "vision-perceiver-conv": {"image_size": "image_shape"},
    "optical-flow-perceiver": {"train_size": "image_shape"},
}

#: Keywords that moved into one modality's dict: ``{preset: {modality: {old: new}}}``.
_MODALITIES: dict[str, dict[str, dict[str, str]]] = {
    "av-perceiver": {
        "image": {"image_size": "image_shape", "channels": "input_channels",
                  "patch_size": "patch_size", "image_bands": "num_bands"},
        "audio": {"max_samples": "max_samples", "sample_rate": "sample_rate",
                  "n_mels": "n_mels", "hop_length": "hop_length", "audio_bands": "num_bands"},
    },
    "multimodal-perceiver": {
        "image": {"frames_shape": "video_shape", "max_resolution": "max_resolution",
                  "image_bands": "num_bands"},
        "audio": {"audio_samples": "max_samples", "samples_per_patch": "samples_per_patch",
                  "audio_bands": "num_bands"},
    },
}

#: The task classifiers' flat encoder keywords that kept their EncoderConfig names.
_ENCODER_FIELDS = ("num_latents", "latent_dim", "num_blocks", "self_attends_per_block",
                   "num_cross_attends", "latent_init_std")


def release(version: str) -> tuple[int, ...]:
    """``"0.3.0"`` -> ``(0, 3, 0)``; a :class:`ModelFileError` for anything else."""
    try:
        return tuple(int(part) for part in version.split(".")[:3])
    except (AttributeError, ValueError) as error:
        raise ModelFileError(f"'omniperceiver' (the release that wrote the file) must be a "
                             f"release such as '0.2.0', got {version!r}") from error


def upgrade_model_args(preset: str, model_args: Mapping[str, Any],
                       version: str | None) -> dict[str, Any]:
    """The keywords of ``preset`` that a release ``version`` wrote (None: this release), in
    this release's names: they build the same model with the same weights. Keywords of
    another preset, or written by 0.4.0 or later, keep their names; so do keywords that
    already have today's names (a run config resumed from an old checkpoint may mix both).
    Where the preset's defaults changed after ``version``, the old defaults are added."""
    args = copy.deepcopy(dict(model_args))
    if version is None:
        return args
    args = _renamed(preset, args, version)
    defaults: dict[str, Any] = {}
    for changed_in, before in reversed(_DEFAULTS_CHANGED.get(preset, [])):
        if release(version) < release(changed_in):
            defaults = merge(defaults, before)  # the older release's defaults win
    return merge(defaults, args)  # the keywords the file gives win over the old defaults


def _renamed(preset: str, args: dict[str, Any], version: str) -> dict[str, Any]:
    if release(version) >= release(RENAMED_IN):
        return args
    for old, new in _RENAMED.get(preset, {}).items():
        if old in args:
            args[new] = args.pop(old)
    for modality, names in _MODALITIES.get(preset, {}).items():
        moved = {new: args.pop(old) for old, new in names.items() if old in args}
        if preset == "multimodal-perceiver":
            if modality == "image" and "patch_size" in args:
                size = args.pop("patch_size")
                moved["patch_shape"] = [1, size, size]
            if modality == "audio" and "max_samples" in moved:
                moved["max_resolution"] = [moved["max_samples"]]  # Fourier over the samples
        if moved:
            args[modality] = {**(args.get(modality) or {}), **moved}
    if preset == "pointcloud-perceiver" and "max_frequency" in args:
        args["max_resolution"] = 2 * args.pop("max_frequency")  # frequencies up to half of it
    if preset in _CLASSIFIERS:
        _nest_encoder(args)
    return args


def _nest_encoder(args: dict[str, Any]) -> None:
    """A task classifier's flat encoder keywords of 0.3.0 -> ``encoder``/``decoder``."""
    encoder = {key: args.pop(key) for key in _ENCODER_FIELDS if key in args}
    cross, latent = {}, {}
    if "cross_heads" in args:
        cross["heads"] = args.pop("cross_heads")
    if "cross_qk_channels" in args:
        cross["qk_channels"] = args.pop("cross_qk_channels")
    if "self_heads" in args:
        latent["heads"] = args.pop("self_heads")
    if "widening_factor" in args:
        cross["widening_factor"] = latent["widening_factor"] = args.pop("widening_factor")
    if "dropout" in args:
        dropout = args.pop("dropout")
        for spec in (cross, latent):
            spec["attn_dropout"] = spec["ff_dropout"] = dropout
    encoder.update({key: spec for key, spec in (("cross_attend", cross),
                                                ("self_attend", latent)) if spec})
    if encoder:
        args["encoder"] = merge(args.get("encoder") or {}, encoder)
    if "pooling" in args:
        args["decoder"] = {**(args.get("decoder") or {}), "pooling": args.pop("pooling")}


#: An ``input_spec``'s keys before 0.4.0 (none of them is a key today).
_INPUT_SPEC_RENAMED = {"image_size": "image_shape", "channels": "input_channels"}


def upgrade_input_spec(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A model's ``input_spec`` (how ``predict`` reads files for it) in this release's keys:
    ``image_size`` -> ``image_shape``, ``channels`` -> ``input_channels``, also inside a
    multimodal spec's per-modality specs. The old keys mean nothing today, so no release
    number is needed."""
    if spec is None:
        return None
    upgraded = {}
    for key, value in spec.items():
        if isinstance(value, Mapping) and "modality" in value:
            value = upgrade_input_spec(value)
        upgraded[_INPUT_SPEC_RENAMED.get(key, key)] = value
    return upgraded


__all__ = ["RENAMED_IN", "release", "upgrade_model_args", "upgrade_input_spec"]
