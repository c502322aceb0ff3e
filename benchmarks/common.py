"""Shared benchmark machinery: alternating timers, the matrix-product ceiling, FLOP counting,
peak memory of a fresh subprocess, and tables written as JSON and markdown.

Timing rule: implementations being compared run in the same process, alternating (the order
rotates every round), after warm-up; we report medians and ratios of medians, which are
robust to the noise of a shared machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def alternate(fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int,
              device: str = "cpu") -> dict[str, list[float]]:
    """Seconds per call of each function, measured round-robin: round r runs the functions
    in an order rotated by r, so slow phases of a noisy machine hit all of them alike."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            synchronize(device)
            start = time.perf_counter()
            fns[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def matmul_rate(dtype: torch.dtype, *, n: int, repeats: int,
                device: str = "cpu") -> tuple[float, float]:
    """The machine's matrix-product rate: GFLOP/s of an (n x n) @ (n x n) torch.matmul
    (2 n^3 FLOPs) over ``repeats`` runs after warm-up: (median, best)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    times = alternate({"mm": lambda: torch.matmul(a, b)}, repeats=max(repeats, 5), warmup=2,
                      device=device)["mm"]
    return 2 * n ** 3 / median(times) / 1e9, 2 * n ** 3 / min(times) / 1e9


def linear_rate(dtype: torch.dtype, *, rows: int, inner: int, out: int, repeats: int,
                device: str = "cpu") -> tuple[float, float]:
    """GFLOP/s of ``F.linear`` (bias included) of a (rows x inner) activation with an
    (out x inner) weight, as a model's layers call it (2 rows inner out FLOPs): (median,
    best)."""
    x = torch.randn(rows, inner, device=device).to(dtype)
    w = torch.randn(out, inner, device=device).to(dtype)
    b = torch.randn(out, device=device).to(dtype)
    with torch.inference_mode():
        times = alternate({"linear": lambda: torch.nn.functional.linear(x, w, b)},
                          repeats=max(repeats, 5), warmup=2, device=device)["linear"]
    flops = 2 * rows * inner * out
    return flops / median(times) / 1e9, flops / min(times) / 1e9


# --- FLOP counting ----------------------------------------------------------------------------
# torch's FlopCounterMode has no formula for the CPU flash-attention kernels, so we add them:
# QK^T and PV are 2*b*h*n*m*(d_qk + d_v) FLOPs forward; backward recomputes QK^T and forms dV,
# dP, dQ and dK: 2*b*h*n*m*(3*d_qk + 2*d_v).


def _batch_heads(shape) -> int:
    count = 1
    for s in shape[:-2]:
        count *= s
    return count


def _cpu_flash(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _batch_heads(q_shape) * q_shape[-2] * k_shape[-2] * (q_shape[-1] + v_shape[-1])


def _cpu_flash_backward(grad_shape, q_shape, k_shape, v_shape, *args, out_shape=None,
                        **kwargs) -> int:
    return (2 * _batch_heads(q_shape) * q_shape[-2] * k_shape[-2]
            * (3 * q_shape[-1] + 2 * v_shape[-1]))


def _custom_flop_formulas() -> dict:
    aten = torch.ops.aten
    formulas = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        formulas[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_flash
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        formulas[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_flash_backward
    return formulas


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (a multiply-add counts 2) of one call of ``fn``, by torch's FlopCounterMode."""
    with FlopCounterMode(display=False, custom_mapping=_custom_flop_formulas()) as counter:
        fn()
    return counter.get_total_flops()


# --- peak memory in a fresh subprocess --------------------------------------------------------


def measure_memory(spec: dict, *, timeout: float = 900) -> dict:
    """Runs ``benchmarks/memory.py`` on ``spec`` in a fresh Python process and returns its
    JSON report ({"peak_mb", "baseline_mb", "delta_mb", "method", ...})."""
    cmd = [sys.executable, str(HERE / "memory.py"), json.dumps(spec)]
    # Every allocation above 64 kB gets its own mapping, returned to the system when freed,
    # so the resident size follows the live tensors (glibc otherwise raises this threshold
    # as buffers are freed and keeps them, hiding later peaks).
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- tables -----------------------------------------------------------------------------------


@dataclass
class Table:
    """A result table: ``rows`` are lists of cells (str, int, float or None) under
    ``columns``; ``notes`` are printed under it."""

    name: str
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.name}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))

    def markdown(self) -> str:
        def fmt(cell) -> str:
            if cell is None:
                return "-"
            if isinstance(cell, float):
                return f"{cell:.3g}" if abs(cell) < 100 else f"{cell:.0f}"
            return str(cell)

        lines = [f"### {self.title}", "",
                 "| " + " | ".join(self.columns) + " |",
                 "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def machine_info(device: str) -> dict:
    """The machine (:func:`omniperceiver.machine.machine_info`), the device, the date and the
    source commit."""
    from omniperceiver.machine import machine_info as describe
    from omniperceiver.machine import source_commit

    return {**describe(), "device": device, "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": source_commit()}


def write_results(tables: list[Table], meta: dict, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Writes ``<stem>.json`` (meta + tables) and ``<stem>.md`` (the same tables)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps({"meta": meta, "tables": [asdict(t) for t in tables]},
                                    indent=1) + "\n")
    header = [f"<!-- generated by: {meta.get('command', 'benchmarks/run.py')} -->", "",
              f"Machine: {meta.get('cpu')} (PyTorch CPU capability "
              f"{meta.get('cpu_capability', '?')}, {meta.get('threads')} threads), "
              f"{meta.get('gpu', meta.get('device'))}; torch {meta.get('torch')}; "
              f"{meta.get('date')}; commit {meta.get('commit') or 'unknown'}; load average at "
              f"start {meta.get('load_average', '?')}.", ""]
    md_path.write_text("\n".join(header) + "\n".join(t.markdown() for t in tables))
    return json_path, md_path
