"""Linear scaling: forward time and peak memory against the number of inputs, from a 32x32
image (1,024 inputs) to 1024x1024 (1,048,576), for the seed Perceiver and for a plain
Transformer encoder over the same inputs (quadratic; stopped once a call would take longer
than the cap). Plots both to ``docs/scaling.png``.

The Perceiver's cross-attends cost O(num_inputs x num_latents) and its latent stack a
constant, so time(4M) / time(M) tends to 4 from below at the large end (the constant
part is amortised); the printed ratio checks it is <= 4.4.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import common
import models
import torch
from common import Table

SIDES = [32, 64, 128, 256, 512, 1024]
QUICK_SIDES = [8, 16, 32]
CAP_SECONDS = 30.0  # the Transformer baseline stops when its next call would exceed this


def run_scaling(run) -> list[Table]:
    sides = QUICK_SIDES if run.quick else SIDES
    device, repeats = run.device, run.repeats
    table = Table("scaling", "Forward time and peak memory vs number of inputs (batch 1, "
                  "fp32, inference)",
                  ["image", "inputs", "perceiver ms", "perceiver MB", "transformer ms",
                   "transformer MB"])
    perceiver = models.build("omniperceiver-seed", quick=run.quick).to(device)
    fns = {}
    for side in sides:  # one alternating measurement over all sizes
        x = models.image(1, side).to(device)
        fns[side] = models.forward_fn(perceiver, x, device=device, precision="fp32")
    perceiver_s = run.timed(fns, repeats=repeats)

    baseline = models.build("transformer-encoder", quick=run.quick).to(device)
    transformer_s: dict[int, float] = {}
    last = None
    for side in sides:
        projected = 0.0 if last is None else transformer_s[last] * (side / last) ** 4
        if projected > CAP_SECONDS:  # quadratic: 4x the inputs, about 16x the time
            table.notes.append(f"transformer stopped after {last}x{last}: {side}x{side} "
                               f"projected {projected:.0f} s > cap {CAP_SECONDS:.0f} s")
            break
        x = models.image(1, side).to(device)
        fn = models.forward_fn(baseline, x, device=device, precision="fp32")
        slow = projected > 2.0  # time slow points once, after one warm-up
        transformer_s[side] = run.timed({"t": fn}, repeats=1 if slow else repeats,
                                        warmup=1 if slow else None)["t"]
        last = side

    rows = []
    for side in sides:
        spec = dict(quick=run.quick, device=device, size=side, batch=1)
        mem_p = common.measure_memory(dict(spec, case="omniperceiver-seed"))
        mem_t = (common.measure_memory(dict(spec, case="transformer-encoder"))
                 if side in transformer_s else {})
        row = [f"{side}x{side}", side * side, round(perceiver_s[side] * 1e3, 1),
               _mb(mem_p), _ms(transformer_s.get(side)), _mb(mem_t)]
        table.add(*row)
        rows.append(row)
        print(f"  scaling {side}x{side}: perceiver {perceiver_s[side] * 1e3:.1f} ms "
              f"{_mb(mem_p)} MB, transformer {_ms(transformer_s.get(side))} ms "
              f"{_mb(mem_t)} MB", flush=True)

    big, bigger = sides[-2], sides[-1]
    ratio = perceiver_s[bigger] / perceiver_s[big]
    note = (f"linearity: perceiver time({bigger}x{bigger}) / time({big}x{big}) = {ratio:.2f} "
            f"for 4x the inputs (target <= 4.4: {'met' if ratio <= 4.4 else 'NOT met'})")
    if rows[-1][3] and rows[-2][3]:
        note += f"; memory ratio {rows[-1][3] / rows[-2][3]:.2f}"
    table.notes.append(note)
    table.notes.append(f"perceiver: the seed model, medians of {repeats}, all sizes "
                       "alternating; transformer: torch.nn.TransformerEncoder (1 pre-norm "
                       "layer, width 512, 8 heads, FF 2048, attention by "
                       "scaled_dot_product_attention) over the same 29-channel inputs, medians "
                       f"of {repeats} (slow points: 1); memory: fresh subprocess per point "
                       "(benchmarks/memory.py)")
    print(f"  linearity ratio time({bigger}^2)/time({big}^2) = {ratio:.2f}", flush=True)
    where = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    _plot(rows, run.plot, quick=run.quick, where=where)
    table.notes.append(f"plot: {run.plot.name}")
    return [table]


def _mb(report: dict) -> float | None:
    return round(report["delta_mb"], 1) if report and "delta_mb" in report else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 1)


def _plot(rows: list, path, *, quick: bool, where: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inputs = [r[1] for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, p_col, t_col, ylabel in ((ax_t, 2, 4, "forward time (ms)"),
                                     (ax_m, 3, 5, "peak memory above baseline (MB)")):
        for col, label, style in ((p_col, "omniperceiver (seed Perceiver)", "o-"),
                                  (t_col, "Transformer encoder (1 layer, width 512)", "s--")):
            pts = [(n, r[col]) for n, r in zip(inputs, rows, strict=True) if r[col]]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=label)
        pts = [(n, r[p_col]) for n, r in zip(inputs, rows, strict=True) if r[p_col]]
        if pts:  # a line of slope 1 through the perceiver's largest point
            n_last, y_last = pts[-1]
            ax.plot(inputs, [y_last * n / n_last for n in inputs], ":", color="gray",
                    label="linear (slope 1)")
        pts = [(n, r[t_col]) for n, r in zip(inputs, rows, strict=True) if r[t_col]]
        if ax is ax_t and pts:  # slope 2 through the transformer's largest point
            n_last, y_last = pts[-1]
            ax.plot(inputs[:len(pts) + 1], [y_last * (n / n_last) ** 2
                                            for n in inputs[:len(pts) + 1]],
                    "-.", color="gray", alpha=0.6, label="quadratic (slope 2)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of inputs (pixels)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"Forward time and memory vs input size ({where}, fp32, batch 1)"
                 + (" [quick: tiny models]" if quick else ""))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replot(results: Path, path: Path) -> None:
    """Redraw the plot from a results file that ``run.py --sections scaling`` wrote."""
    data = json.loads(results.read_text())
    meta = data["meta"]
    table = next(t for t in data["tables"] if t["name"] == "scaling")
    _plot(table["rows"], path, quick=meta.get("quick", False),
          where=meta.get("gpu") or "CPU")


if __name__ == "__main__":  # python benchmarks/scaling.py RESULTS.json PLOT.png
    replot(Path(sys.argv[1]), Path(sys.argv[2]))
