"""Figures of a run: learning curves, confusion matrix and cross-attention maps.

The attention maps reproduce the Perceiver paper's figure: where chosen latents look in the
input during the first cross-attend. The model's attention runs through
``scaled_dot_product_attention``, which does not return its weights, so
:func:`cross_attention_weights` recomputes them for the first cross-attend from that layer's own
LayerNorms and query/key projections: ``softmax(q k^T / sqrt(d))``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..validation import check_indices

# --- attention weights ------------------------------------------------------------------------


@torch.no_grad()
def cross_attention_weights(model: nn.Module, inputs: Any, *,
                            latents: Sequence[int] | None = None) -> tuple[Tensor, Any]:
    """Attention weights of the first encoder cross-attend.

    ``model`` is a :class:`~omniperceiver.PerceiverModel` (Perceiver or Perceiver IO),
    ``inputs`` a batch as the model takes it. Returns ``(weights, adapted)``: weights
    (batch, heads, len(latents), num_inputs), each row summing to one over the inputs (masked
    inputs get 0), and the input adapter's output (its ``grid_shape`` / ``modality_sizes``
    say how to lay the inputs out).
    """
    adapted = model.input_adapter(inputs)
    encoder = model.encoder
    layer = encoder.cross_attends[encoder.cross_schedule[0]]
    attention = layer.attention
    chosen = torch.arange(encoder.latents.shape[0]) if latents is None \
        else check_indices(torch.as_tensor(list(latents), dtype=torch.long),
                           size=encoder.latents.shape[0], name="latent indices")
    x = adapted.inputs
    batch = x.shape[0]
    # The first cross-attend sees the initial (learned) latents.
    queries = layer.norm_q(encoder.latents[chosen].to(x.dtype))  # (L, latent_dim)
    keys_in = layer.norm_kv(x)  # (batch, M, kv_dim)
    qk = attention.qk_channels
    heads = attention.heads
    w_k = attention.to_kv.weight[:qk]
    b_k = attention.to_kv.bias[:qk] if attention.to_kv.bias is not None else None
    q = attention.to_q(queries).view(len(chosen), heads, qk // heads).transpose(0, 1)
    k = nn.functional.linear(keys_in, w_k, b_k)
    k = k.view(batch, -1, heads, qk // heads).transpose(1, 2)  # (batch, heads, M, d)
    scores = (q[None] @ k.transpose(-1, -2)) * (qk // heads) ** -0.5  # (batch, heads, L, M)
    if adapted.mask is not None:
        scores = scores.masked_fill(~adapted.mask[:, None, None, :], float("-inf"))
    weights = scores.float().softmax(dim=-1).nan_to_num(0.0)
    return weights, adapted


def _unpermute(values: Tensor, spec: dict | None, axis: int) -> Tensor:
    """Permuted MNIST: put values along ``axis`` back into the original pixel order."""
    if not spec or spec.get("permutation_seed") is None:
        return values
    from ..position import pixel_permutation

    perm = pixel_permutation(spec["permutation_seed"], values.shape[axis])
    return torch.zeros_like(values).index_copy_(axis, perm, values)


def _attention_maps(weights: Tensor, adapted: Any, spec: dict | None) -> tuple[Tensor, str]:
    """Head-averaged weights (batch, L, M) laid out for display: ``"image"`` maps (batch, L,
    h, w) for 2D grids (and video, averaged over time; and the image of a multimodal input),
    else ``"sequence"`` (batch, L, M) in input order (points, audio frames)."""
    w = weights.mean(dim=1)
    grid = adapted.grid_shape
    if adapted.modality_sizes:  # multimodal: the image part
        start = 0
        for name, size in adapted.modality_sizes.items():
            if name == "image":
                w = w[..., start:start + size]
                side = math.isqrt(size)
                grid = (side, size // side)
            start += size
    if grid is not None and len(grid) == 3:  # video: attention summed over time
        return w.reshape(*w.shape[:-1], *grid).sum(dim=-3), "image"
    if grid is not None and len(grid) == 2:
        return _unpermute(w, spec, -1).reshape(*w.shape[:-1], *grid), "image"
    return w, "sequence"


def _display_image(x: Any, spec: dict | None) -> Tensor | None:
    """An input example as an (H, W, C) image for display (video: the middle frame), or
    None."""
    if isinstance(x, dict):
        x = x.get("image")
    if not isinstance(x, Tensor):
        return None
    if x.ndim == 4:
        x = x[x.shape[0] // 2]
    if x.ndim != 3:
        return None
    return _unpermute(x.reshape(-1, x.shape[-1]), spec, 0).reshape(x.shape)


def _show_input(ax, x: Any, image: Tensor | None, spec: dict | None) -> None:
    modality = (spec or {}).get("modality")
    if image is not None:
        ax.imshow(image.squeeze(-1).numpy() if image.shape[-1] == 1 else image.numpy(),
                  cmap="gray")
    elif modality == "points":
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, c=x[:, 2].numpy(), cmap="viridis")
        ax.set_aspect("equal")
    elif modality == "audio":
        ax.plot(x.numpy(), lw=0.3)
    else:
        ax.text(0.5, 0.5, "input", ha="center", va="center")


def plot_attention(model: nn.Module, examples: Sequence[Any], path: str | Path, *,
                   latents: Sequence[int] = (0, 1, 2, 3), spec: dict | None = None,
                   titles: Sequence[str] | None = None) -> Path:
    """Cross-attention of ``latents`` over each example (one row per example): the input, then
    one map per latent. Images (and the image of an image+audio input): a heat map over the
    pixels / patches; video: summed over time, over the middle frame; point clouds: the points
    (x, y) coloured by attention; audio: attention over the frames, in time.
    ``examples`` are single inputs without a batch axis."""
    plt = _pyplot()
    model = model.eval()
    device = next(model.parameters()).device
    latents = list(latents)
    rows, cols = len(examples), len(latents) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for r, x in enumerate(examples):
        batch = ({k: v[None].to(device) for k, v in x.items()} if isinstance(x, dict)
                 else x[None].to(device))
        weights, adapted = cross_attention_weights(model, batch, latents=latents)
        maps, kind = _attention_maps(weights.cpu(), adapted, spec)
        image = _display_image(x, spec)
        _show_input(axes[r][0], x, image, spec)
        axes[r][0].set_title(titles[r] if titles else "input", fontsize=8)
        for c, latent in enumerate(latents):
            ax = axes[r][c + 1]
            m = maps[0, c].numpy()
            if kind == "image" and image is not None:
                h, w = image.shape[:2]
                ax.imshow(image.mean(-1).numpy(), cmap="gray")
                ax.imshow(m, cmap="inferno", alpha=0.6, interpolation="nearest",
                          extent=(-0.5, w - 0.5, h - 0.5, -0.5))
            elif kind == "image":
                ax.imshow(m, cmap="inferno")
            elif (spec or {}).get("modality") == "points":
                ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=3, c=m, cmap="inferno")
                ax.set_aspect("equal")
            else:
                ax.plot(m, lw=0.8)
            ax.set_title(f"latent {latent}", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("first cross-attend: attention of chosen latents over the input", fontsize=9)
    return _save(fig, path)


# --- learning curves and confusion matrix -----------------------------------------------------


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """Rows of a Lightning CSVLogger ``metrics.csv`` with the empty cells left out."""
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def plot_learning_curves(rows: list[dict[str, float]], path: str | Path) -> Path:
    """Loss and accuracy against the optimizer step: training (per step, smoothed, and per
    epoch) and validation."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))

    def series(key: str) -> tuple[list[float], list[float]]:
        pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
        return [p[0] for p in pts], [p[1] for p in pts]

    steps, loss = series("train_loss_step")
    if loss:
        k = max(1, len(loss) // 50)
        smooth = [sum(loss[max(0, i - k + 1):i + 1]) / len(loss[max(0, i - k + 1):i + 1])
                  for i in range(len(loss))]
        ax_loss.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8)
        ax_loss.plot(steps, smooth, color="tab:blue", label="train (per step)")
    for key, label, color in (("train_loss_epoch", "train (epoch)", "tab:cyan"),
                              ("val_loss", "validation", "tab:orange")):
        s, v = series(key)
        if v:
            ax_loss.plot(s, v, "o-", ms=3, color=color, label=label)
    for key, label, color in (("train_accuracy", "train", "tab:blue"),
                              ("val_accuracy", "validation", "tab:orange")):
        s, v = series(key)
        if v:
            ax_acc.plot(s, v, "o-", ms=3, color=color, label=label)
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, path)


def plot_confusion_matrix(matrix: Tensor, classes: Sequence[str], path: str | Path, *,
                          title: str = "test confusion matrix") -> Path:
    """Counts (true class rows x predicted class columns), with the count in each cell."""
    plt = _pyplot()
    m = matrix.cpu().numpy()
    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > m.max() / 2 else "black")
        ax.set_xticks(range(n), classes, rotation=90 if n > 10 else 0, fontsize=7)
        ax.set_yticks(range(n), classes, fontsize=7)
    accuracy = m.trace() / max(1, m.sum())
    ax.set(xlabel="predicted", ylabel="true", title=f"{title} (accuracy {accuracy:.2%})")
    return _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    from ..files import write_atomically

    plt = _pyplot()
    path = Path(path)
    fig.tight_layout()
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path


__all__ = ["cross_attention_weights", "plot_attention", "plot_learning_curves",
           "plot_confusion_matrix", "read_metrics_csv"]
