"""Huge inputs with bounded memory: chunked encoding (``EncoderConfig.input_chunk_size``).

* Agreement: vision-perceiver-fourier on a 512x512 image, chunked against unchunked
  (max |difference| of the logits, fp32), and the memory each needs.
* A 4096x4096x3 image (16.8M inputs): its input array with 2D Fourier features would take
  16.8M x 261 x 4 bytes = 17.5 GB; chunked, the grid adapter builds position features chunk
  by chunk and the whole model (encode + decode) runs in a bounded peak.
* A 10M-point cloud through the point-cloud adapter (387 channels per point: 15.5 GB whole).

Peak memory: the process's peak resident set size (``VmHWM``) of a fresh subprocess, which
includes Python, torch, the model's weights and the input itself (benchmarks/memory.py).
"""

from __future__ import annotations

import common
import models
from common import Table


def run_chunked(run) -> list[Table]:
    quick, device = run.quick, run.device
    table = Table("chunked", "Chunked encoding: huge inputs in bounded memory (batch 1, "
                  "inference)",
                  ["input", "model", "inputs", "chunk", "precision", "seconds",
                   "call peak MB", "process peak MB", "whole input array would take"])

    # 1. Agreement and memory at a size where the unchunked path still fits.
    side, chunk = (48, 256) if quick else (512, 8192)
    case = models.build("omniperceiver-vpf", quick=quick, size=side).to(device)
    x = case.make_input(1)
    whole = models.forward_fn(case, x, device=device, precision="fp32")()
    case.model.encoder.config.input_chunk_size = chunk
    parts = models.forward_fn(case, x, device=device, precision="fp32")()
    diff = (whole - parts).abs().max().item()
    scale = whole.abs().max().item()
    table.notes.append(f"{side}x{side} image, vision-perceiver-fourier, fp32: chunked vs "
                       f"unchunked logits max |diff| = {diff:.2e} (max |logit| {scale:.2f})")
    print(f"  chunked agreement {side}x{side}: max |diff| {diff:.2e}", flush=True)
    channels = case.model.input_adapter.num_channels
    for chunk_size in (None, chunk):
        _row(table, f"{side}x{side} image", "vision-perceiver-fourier", "omniperceiver-vpf",
             side, side * side, channels, chunk_size, "fp32", quick, device)

    # 2. A 4096x4096 image and a 10M-point cloud (quick: small stand-ins).
    side, chunk = (64, 512) if quick else (4096, 8192)
    _row(table, f"{side}x{side} image", "vision-perceiver-fourier", "omniperceiver-vpf", side,
         side * side, channels, chunk, "bf16", quick, device, warmup=False)
    points = 5000 if quick else 10_000_000
    point_channels = models.build("omniperceiver-points", quick=quick,
                                  size=8).model.adapter.num_channels
    _row(table, f"{points:,}-point cloud", "point-cloud encoder", "omniperceiver-points",
         points, points, point_channels, chunk, "bf16", quick, device, warmup=False)
    table.notes.append("huge inputs run once without warm-up; 'call peak' is the peak above "
                       "the process's resident size just before the call (model and input "
                       "already built), 'process peak' the whole process's")
    return [table]


def _row(table: Table, label: str, model: str, case: str, size: int, num_inputs: int,
         channels: int, chunk: int | None, precision: str, quick: bool, device: str,
         warmup: bool = True) -> None:
    report = common.measure_memory(dict(case=case, quick=quick, size=size, batch=1,
                                        precision=precision, device=device, chunk_size=chunk,
                                        warmup=warmup), timeout=1800)
    whole_gb = num_inputs * channels * 4 / 1e9
    if "error" in report:
        table.add(label, model, num_inputs, chunk or "none", precision, None, None, None,
                  f"{whole_gb:.2f} GB; error: {report['error']}")
        return
    peak = report.get("process_peak_mb", report["peak_mb"])
    table.add(label, model, num_inputs, chunk or "none", precision,
              round(report["seconds"], 1), round(report["delta_mb"]),
              round(peak), f"{whole_gb:.2f} GB ({channels} channels, fp32)")
    print(f"  chunked {label} chunk={chunk}: {report['seconds']:.1f} s, call peak "
          f"{report['delta_mb']:.0f} MB, process peak {peak:.0f} MB", flush=True)

