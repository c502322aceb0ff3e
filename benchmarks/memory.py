"""Peak memory of one call, measured in this fresh process (run by ``common.measure_memory``).

    python benchmarks/memory.py '{"case": "omniperceiver-seed", "batch": 8, ...}'

Spec keys: ``case`` (a name in ``models.BUILDERS``), ``quick``, ``size`` (image side or number
of points), ``batch``, ``precision`` ("fp32" or "bf16" autocast), ``mode`` ("forward" in
inference mode, or "train": forward, backward, AdamW step), ``device``, ``chunk_size``
(sets ``encoder.config.input_chunk_size``), ``warmup`` (default true).

Method on the CPU (Linux): build the model and the input, run one warm-up call (inference at
batch 1, training the same step; one-time caches: position features, kernels, optimizer
state), then reset the process's peak resident set size (``echo 5 > /proc/self/clear_refs``
resets ``VmHWM``), read ``VmRSS`` as the baseline, run the measured call and read ``VmHWM``:
``delta_mb = peak - baseline`` is the memory the call itself needed, whatever allocator
torch used (tracemalloc does not see torch's allocations, and ``ru_maxrss`` cannot be reset);
``common.measure_memory`` sets ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed buffers leave
the resident set instead of being kept by glibc for reuse (which would hide the peak).
``process_peak_mb`` is the whole process's peak (imports, model, input and the call).
On CUDA: ``torch.cuda`` peak allocated bytes, reset before the call. Prints one JSON line.
"""

from __future__ import annotations

import gc
import json
import re
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402

MB = 2 ** 20


def _status_kb(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _call(spec: dict, case: models.Case, batch: int):
    device, precision = spec.get("device", "cpu"), spec.get("precision", "fp32")
    x = case.make_input(batch)
    if spec.get("mode", "forward") == "train":
        return models.train_step_fn(case, x, device=device, precision=precision)
    return models.forward_fn(case, x, device=device, precision=precision)


def main(spec: dict) -> dict:
    device = spec.get("device", "cpu")
    case = models.build(spec["case"], quick=spec.get("quick", False), size=spec.get("size"))
    case.to(device)
    if spec.get("chunk_size"):
        case.model.encoder.config.input_chunk_size = spec["chunk_size"]
    run = _call(spec, case, spec.get("batch", 1))
    if spec.get("warmup", True):  # training warms up its own optimizer; inference at batch 1
        (run if spec.get("mode") == "train" else _call(spec, case, 1))()
    gc.collect()
    report = {"spec": spec}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        start = time.perf_counter()
        run()
        torch.cuda.synchronize()
        report["seconds"] = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated()
        report.update(method="torch.cuda.max_memory_allocated", baseline_mb=baseline / MB,
                      peak_mb=peak / MB, delta_mb=(peak - baseline) / MB)
        return report
    before_reset = _status_kb("VmHWM")
    reset = _reset_peak_rss()
    baseline_kb = _status_kb("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    run()
    report["seconds"] = time.perf_counter() - start
    if reset and baseline_kb is not None:
        peak_kb = _status_kb("VmHWM")
        report.update(method="VmHWM after clear_refs - VmRSS before")
    else:  # ru_maxrss is the lifetime peak: only a lower bound of the call's needs
        peak_kb, baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, maxrss_before
        report.update(method="ru_maxrss after - before (lower bound)")
    report.update(baseline_mb=baseline_kb / 1024, peak_mb=peak_kb / 1024,
                  delta_mb=(peak_kb - baseline_kb) / 1024,
                  process_peak_mb=max(peak_kb, before_reset or 0) / 1024)
    return report


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
