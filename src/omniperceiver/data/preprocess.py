"""Preparing an image the way a converted model's source prepared it for the model.

A converted model folder records its source's preparation in ``extra.input_spec.preprocess``
(JSON), for example transformers' ``PerceiverImageProcessor`` defaults::

    {"channel_order": "RGB",
     "center_crop": {"fraction": [0.875, 0.875]},
     "resize": {"size": [224, 224], "resample": "bicubic"},
     "rescale": 0.00392156862745098,
     "normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}

applied in this order to the 8-bit pixels: crop the centre to ``fraction`` (height, width) of
the shorter side (``int(fraction * shorter_side)`` pixels), resize to ``size`` (height, width)
with Pillow's ``resample`` filter, multiply by ``rescale`` (1/255: values in [0, 1]), then
subtract ``mean`` and divide by ``std`` per channel. :func:`prepare_image` is what ``predict``
runs; the result is float32 (height, width, 3), channels-last as our models take images.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .readers import decode_image

#: transformers' ``PerceiverImageProcessor`` defaults (its class attributes in transformers
#: 5.x): crop 224/256 of the shorter side, bicubic resize to 224x224, 1/255, ImageNet mean/std.
PERCEIVER_IMAGE_PROCESSOR = dict(
    size=(224, 224), crop_size=(256, 256), resample="bicubic", rescale_factor=1 / 255,
    image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225))

#: Pillow's filters by name; transformers' ``resample`` numbers are Pillow's.
RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def image_preprocess(*, size: Sequence[int], crop_fraction: Sequence[float] | None,
                     resample: str, rescale: float, mean: Sequence[float],
                     std: Sequence[float]) -> dict[str, Any]:
    """The ``preprocess`` entry of an RGB image model's ``input_spec`` (see the module)."""
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(RESAMPLE)}, got {resample!r}")
    spec: dict[str, Any] = {"channel_order": "RGB"}
    if crop_fraction is not None:
        spec["center_crop"] = {"fraction": [float(f) for f in crop_fraction]}
    spec["resize"] = {"size": [int(s) for s in size], "resample": resample}
    spec["rescale"] = float(rescale)
    spec["normalize"] = {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}
    return spec


def _crop_and_resize(img: Any, preprocess: Mapping[str, Any]) -> np.ndarray:
    """A Pillow image -> uint8 (height, width, 3), cropped and resized as ``preprocess`` says."""
    img = img.convert("RGB")
    crop = preprocess.get("center_crop")
    if crop is not None:
        width, height = img.size
        shorter = min(height, width)
        crop_h, crop_w = (int(f * shorter) for f in crop["fraction"])
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        img = img.crop((left, top, left + crop_w, top + crop_h))
    resize = preprocess.get("resize")
    if resize is not None:
        height, width = resize["size"]
        img = img.resize((width, height), resample=RESAMPLE[resize.get("resample", "bicubic")])
    return np.asarray(img, dtype=np.uint8)


def normalize_pixels(pixels: Tensor, preprocess: Mapping[str, Any]) -> Tensor:
    """8-bit pixel values (..., 3) -> ``pixels * rescale``, normalised per channel."""
    x = pixels.float() * preprocess.get("rescale", 1.0)
    norm = preprocess.get("normalize")
    if norm is not None:
        x = (x - torch.tensor(norm["mean"])) / torch.tensor(norm["std"])
    return x


def prepare_image(path: str | os.PathLike, preprocess: Mapping[str, Any]) -> Tensor:
    """An image file -> float32 (height, width, 3) prepared as ``preprocess`` says."""
    pixels = decode_image(path, lambda img: _crop_and_resize(img, preprocess))
    return normalize_pixels(torch.from_numpy(pixels.copy()), preprocess)


__all__ = ["PERCEIVER_IMAGE_PROCESSOR", "RESAMPLE", "image_preprocess", "normalize_pixels",
           "prepare_image"]
