"""``predict`` for the models that do not classify: a masked byte language model fills in
``[MASK]`` bytes of a text file, an optical-flow model computes the flow between two frames.

Which one applies is the model's ``input_spec`` (saved with it; :func:`task_input_spec`
tells it from the model when none was saved):

* ``{"modality": "text", "max_length": 2048}``: a UTF-8 text file in which each ``[MASK]``
  stands for one byte to predict; the model reads ``[CLS] bytes [SEP]`` (as transformers'
  ``PerceiverTokenizer`` writes it) and each masked byte becomes the most likely byte.
* ``{"modality": "frame_pair", "image_shape": [368, 496], "min_overlap": 20}``: two image
  files of the same size, at least ``image_shape`` (the training size). As DeepMind's
  optical-flow example does, the pixels are scaled to [-1, 1], each pixel takes its 3x3
  neighbourhood, and frames larger than the training size are covered by overlapping tiles of
  that size (at least ``min_overlap`` pixels in common, the last tile flush with the border),
  each tile's pixels taking their 3x3 neighbourhoods within the tile, and the tiles' flows are
  averaged with weights that fall linearly towards each tile's edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..adapters import ByteTokenizer, FlowAdapter, TextAdapter, flow_patches
from ..errors import InputFileError, ModelFileError

MASK_TEXT = "[MASK]"


def task_input_spec(model: nn.Module) -> dict[str, Any] | None:
    """The ``input_spec`` of a masked language model or an optical-flow model, read from its
    input adapter; None for other models."""
    adapter = getattr(model, "input_adapter", None)
    if isinstance(adapter, TextAdapter):
        return {"modality": "text", "max_length": adapter.max_length}
    if isinstance(adapter, FlowAdapter):
        return {"modality": "frame_pair", "image_shape": list(adapter.image_shape),
                "min_overlap": 20}
    return None


# --- masked bytes ------------------------------------------------------------------------------


def masked_ids(text: str, max_length: int, *, source: str = "the text") -> Tensor:
    """``[CLS] bytes [SEP]`` ids (L,) of ``text`` with each ``[MASK]`` one MASK id."""
    tokenizer = ByteTokenizer()
    pieces = text.split(MASK_TEXT)
    if len(pieces) == 1:
        raise InputFileError(f"{source}: no {MASK_TEXT} in the text; write {MASK_TEXT} where "
                             "each byte to predict goes")
    ids = [tokenizer.CLS]
    for i, piece in enumerate(pieces):
        if i:
            ids.append(tokenizer.MASK)
        ids.extend(b + tokenizer.NUM_SPECIAL for b in piece.encode("utf-8"))
    ids.append(tokenizer.SEP)
    if len(ids) > max_length:
        raise InputFileError(f"{source}: {len(ids) - 2} bytes (each {MASK_TEXT} one) but the "
                             f"model reads at most {max_length - 2}")
    return torch.tensor(ids)


@torch.no_grad()
def fill_masks(model: nn.Module, ids: Tensor, *, source: str = "the text") -> str:
    """The text of ``ids`` (L,) with every MASK replaced by the model's most likely byte."""
    tokenizer = ByteTokenizer()
    logits = model(ids[None]).float()[0]  # (L, vocab)
    if not torch.isfinite(logits).all():
        raise ModelFileError(f"{source}: the model's output is NaN or infinite; its weights "
                             "may be damaged")
    best = logits[:, tokenizer.NUM_SPECIAL:].argmax(-1) + tokenizer.NUM_SPECIAL
    filled = torch.where(ids == tokenizer.MASK, best, ids)
    return tokenizer.decode(filled)[0]


# --- optical flow ------------------------------------------------------------------------------


def tile_starts(size: int, tile: int, min_overlap: int) -> list[int]:
    """Starts of tiles of ``tile`` covering ``size`` with at least ``min_overlap`` in common,
    the last flush with the end."""
    starts = list(range(0, size - tile, tile - min_overlap)) + [size - tile]
    return sorted(set(starts))


def tile_weights(height: int, width: int) -> Tensor:
    """(H, W) weights rising linearly from 1 at a tile's edge to its middle."""
    rows = torch.arange(height)
    cols = torch.arange(width)
    rows = torch.minimum(rows + 1, height - rows)
    cols = torch.minimum(cols + 1, width - cols)
    return torch.minimum(rows[:, None], cols[None, :]).float()


@torch.no_grad()
def optical_flow(model: nn.Module, frames: Tensor, image_shape: Sequence[int],
                 min_overlap: int = 20, *, source: str = "the frames") -> Tensor:
    """Frames (2, H, W, 3) in [-1, 1] -> flow (H, W, 2) in the model's units (pixels for the
    published weights), tiled as the module says."""
    tile_h, tile_w = (int(s) for s in image_shape)
    _, height, width, _ = frames.shape
    if height < tile_h or width < tile_w:
        raise InputFileError(f"{source}: frames of {height}x{width} pixels; the model takes "
                             f"frames of at least its training size {tile_h}x{tile_w}")
    weights = tile_weights(tile_h, tile_w)[..., None]
    flow = torch.zeros(height, width, 2)
    total = torch.zeros(height, width, 1)
    for y in tile_starts(height, tile_h, min_overlap):
        for x in tile_starts(width, tile_w, min_overlap):
            tile = flow_patches(frames[None, :, y:y + tile_h, x:x + tile_w])
            piece = model(tile).float()[0]
            flow[y:y + tile_h, x:x + tile_w] += piece * weights
            total[y:y + tile_h, x:x + tile_w] += weights
    if not torch.isfinite(flow).all():
        raise ModelFileError(f"{source}: the model's flow is NaN or infinite; its weights may "
                             "be damaged")
    return flow / total


def describe_flow(flow: Tensor) -> str:
    """'flow 368x496, mean length 3.21 px, largest 14.0 px'."""
    length = flow.norm(dim=-1)
    return (f"flow {flow.shape[0]}x{flow.shape[1]}, mean length {length.mean():.2f} px, "
            f"largest {length.max():.2f} px")


__all__ = ["MASK_TEXT", "task_input_spec", "masked_ids", "fill_masks", "tile_starts",
           "tile_weights", "optical_flow", "describe_flow"]
