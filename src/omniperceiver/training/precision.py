"""``trainer.precision: auto``: bf16 only where the hardware multiplies bf16 matrices faster.

CPUs differ by two orders of magnitude here. With AMX (Intel Xeon, Sapphire Rapids and
later) a bf16 matrix product runs 3-5x faster than float32; with AVX-512 BF16 about 2x; on a
CPU with neither (PyTorch reports capability ``AVX2``) bf16 products are emulated and run
hundreds of times slower than float32, so bf16 autocast makes training slower, not faster.
Rather than guess from the CPU's name, :func:`cpu_matmul_rates` times one small float32 and
one small bf16 matrix product (a fraction of a second, once per process) and
:func:`resolve_precision` turns ``"auto"`` into:

* ``"bf16-mixed"`` on a CUDA device that supports bf16;
* ``"bf16-mixed"`` on a CPU whose bf16 products run at least :data:`BF16_MIN_SPEEDUP` times
  faster than float32;
* ``"32-true"`` everywhere else.

An explicit bf16 request on a CPU where bf16 is slower than float32 is kept (the user may
want it for its memory) but warns once, with the measured rates.
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import dataclass

import torch

#: How much faster than float32 a CPU's bf16 matrix products must be for ``auto`` to pick
#: bf16: the products are only part of a training step (casts, norms, softmax and the
#: optimizer run at float32 speed or slower), so a small product gain is a loss overall.
BF16_MIN_SPEEDUP = 1.5

AUTO = "auto"
_BF16 = ("bf16-mixed", "bf16-true", "bf16")


@dataclass(frozen=True)
class MatmulRates:
    """Measured CPU matrix-product rates, GFLOP/s."""

    float32: float
    bfloat16: float
    capability: str
    size: int

    @property
    def bf16_speedup(self) -> float:
        return self.bfloat16 / self.float32

    def describe(self) -> str:
        return (f"bf16 {self.bfloat16:.1f} GFLOP/s vs float32 {self.float32:.1f} GFLOP/s "
                f"({self.bf16_speedup:.2f}x) for {self.size}x{self.size} matrix products on "
                f"one thread of this CPU (PyTorch capability {self.capability})")


def _rate(dtype: torch.dtype, size: int, budget_s: float) -> float:
    """GFLOP/s of ``size``-square products in ``dtype``: the fastest of up to 20 calls,
    stopping once ``budget_s`` is spent (an emulated bf16 product can take a tenth of a
    second: one call tells enough)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.mm(a, b)  # warm-up: kernel selection, page faults
    best, spent = float("inf"), 0.0
    for _ in range(20):
        start = time.perf_counter()
        torch.mm(a, b)
        seconds = time.perf_counter() - start
        best, spent = min(best, seconds), spent + seconds
        if spent > budget_s:
            break
    return 2 * size ** 3 / max(best, 1e-9) / 1e9


@functools.cache
def cpu_matmul_rates(size: int = 256) -> MatmulRates:
    """Time float32 and bf16 ``size``-square matrix products on one CPU thread (once per
    process). One thread: the ratio is a property of the instruction set, and a busy machine
    stalls multi-threaded products at their barriers, which would make the ratio noise."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            return MatmulRates(float32=_rate(torch.float32, size, 0.05),
                               bfloat16=_rate(torch.bfloat16, size, 0.05),
                               capability=torch.backends.cpu.get_cpu_capability(), size=size)
    finally:
        torch.set_num_threads(threads)


def _uses_cuda(accelerator: object) -> bool:
    name = str(accelerator or "auto").lower()
    if name in ("gpu", "cuda"):
        return True
    return name == "auto" and torch.cuda.is_available()


def resolve_precision(precision: str | int | None,
                      accelerator: object = "auto") -> str | int | None:
    """The precision Lightning's Trainer should get for ``precision`` (see the module
    docstring); anything but ``"auto"`` is returned as it is."""
    if isinstance(precision, str) and precision.lower() == AUTO:
        if _uses_cuda(accelerator):
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
        rates = cpu_matmul_rates()
        return "bf16-mixed" if rates.bf16_speedup >= BF16_MIN_SPEEDUP else "32-true"
    if str(precision) in _BF16 and not _uses_cuda(accelerator):
        rates = cpu_matmul_rates()
        if rates.bf16_speedup < 1.0:
            _warn_slow_bf16(str(precision), rates)
    return precision


def describe_choice(accelerator: object = "auto") -> str:
    """Why ``auto`` chose what it chose, for the log."""
    if _uses_cuda(accelerator):
        return f"CUDA device, bf16 supported: {torch.cuda.is_bf16_supported()}"
    return f"{cpu_matmul_rates().describe()}; bf16 needs >= {BF16_MIN_SPEEDUP}x"


@functools.cache  # once per process and request
def _warn_slow_bf16(precision: str, rates: MatmulRates) -> None:
    warnings.warn(
        f"trainer.precision={precision} on a CPU without fast bf16: {rates.describe()}. "
        "Training will be slower than in float32; precision 'auto' or '32-true' avoids this.",
        stacklevel=3)


__all__ = ["AUTO", "BF16_MIN_SPEEDUP", "MatmulRates", "cpu_matmul_rates", "describe_choice",
           "resolve_precision"]
