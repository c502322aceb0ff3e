"""Perceiver AR against a decoder-only Transformer of the same size: training-step time and
peak memory against the context, and generation speed with and without the cache.

    python benchmarks/perceiver_ar.py [--quick] [--device cpu] [--memory-limit-gb 16]

* Training step (forward, backward, AdamW step; batch ``--batch``) of
  ``perceiver-ar-bytes-small`` (128 latents) and ``CausalTransformer.like`` it
  (experiments/baselines.py, causal ``scaled_dot_product_attention``) at contexts 1k .. 64k:
  both timed in this process, alternating (benchmarks/common.py); the peak memory of each in
  a fresh subprocess (CPU: ``VmHWM`` as benchmarks/memory.py measures it; CUDA:
  ``max_memory_allocated``). The Transformer stops at the first context whose memory passes
  ``--memory-limit-gb`` or whose step would take more than ``--max-step-seconds`` (from the
  previous one, times 4: attention is quadratic).
* Generation: greedy tokens after a prompt filling the context (1k, 4k, 16k with 128 latents;
  4k with 1024 latents), with
  ``PerceiverAR.stream`` (the cache) at each of ``--strides`` and by recomputing the model on
  the window for every token: the time to the first token (the prompt) and the rate of the
  later ones, each the median of ``--repeats`` round-robin runs, and each stride's rate over
  recomputing's. A stride's run generates at least 2 x stride + 2 tokens, so that its rate
  includes the window's moves.

Writes ``<device>-perceiver_ar.json`` and ``.md`` to ``--out`` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import common  # noqa: E402
from common import Table  # noqa: E402

QUICK_ARGS = {"num_latents": 8, "dim": 16, "heads": 2, "num_self_attends": 1}


def build(kind: str, context: int, *, quick: bool, device: str, num_latents: int | None = None):
    from experiments.baselines import CausalTransformer
    from omniperceiver import create_model

    torch.manual_seed(0)
    options = dict(QUICK_ARGS) if quick else {}
    if num_latents is not None:
        options["num_latents"] = num_latents
    model = create_model("perceiver-ar-bytes-small", max_context=context, dropout=0.0,
                         **options)
    if kind == "transformer":
        model = CausalTransformer.like(model)
    return model.to(device)


def train_step(model, context: int, batch: int, device: str):
    ids = torch.randint(6, 262, (batch, context + 1), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, -logits.shape[1]:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def child(spec: dict) -> dict:
    """Peak memory of one training step (after a warm-up step), in this fresh process."""
    from memory import _reset_peak_rss, _status_kb

    device = spec["device"]
    model = build(spec["kind"], spec["context"], quick=spec["quick"], device=device)
    step = train_step(model, spec["context"], spec["batch"], device)
    step()
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return {"peak_mb": (torch.cuda.max_memory_allocated() - base) / 2 ** 20}
    _reset_peak_rss()
    base = _status_kb("VmRSS")
    step()
    return {"peak_mb": (_status_kb("VmHWM") - base) / 1024}


def peak_memory(spec: dict) -> float | None:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=3600,
                          env={"MALLOC_MMAP_THRESHOLD_": "65536", **os.environ})
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


def run_training(args) -> Table:
    table = Table("train", f"Training step (batch {args.batch}): Perceiver AR vs Transformer",
                  ["context", "Perceiver AR ms", "Transformer ms", "Transformer / Perceiver AR",
                   "Perceiver AR peak MB", "Transformer peak MB"])
    transformer_fits, previous = True, None
    for context in args.contexts:
        fns, memory = {}, {}
        for kind in ("perceiver-ar", "transformer"):
            if kind == "transformer" and not transformer_fits:
                continue
            spec = {"kind": kind, "context": context, "batch": args.batch, "quick": args.quick,
                    "device": args.device}
            memory[kind] = peak_memory(spec)
            if kind == "transformer" and (memory[kind] is None
                                          or memory[kind] > args.memory_limit_gb * 1024):
                transformer_fits = False
                continue
            fns[kind] = train_step(build(kind, context, quick=args.quick, device=args.device),
                                   context, args.batch, args.device)
        times = common.alternate(fns, repeats=args.repeats, warmup=args.warmup,
                                 device=args.device)
        ms = {k: 1000 * common.median(v) for k, v in times.items()}
        ratio = ms["transformer"] / ms["perceiver-ar"] if "transformer" in ms else None
        table.add(context, ms["perceiver-ar"], ms.get("transformer"), ratio,
                  memory.get("perceiver-ar"), memory.get("transformer") if "transformer" in ms
                  else None)
        print(f"  train N={context}: {ms}", flush=True)
        if "transformer" in ms:
            previous = ms["transformer"] / 1000
            if previous * 4 > args.max_step_seconds:
                transformer_fits = False
    table.notes.append(f"the Transformer stops past {args.memory_limit_gb} GB of peak memory "
                       f"or an expected step of {args.max_step_seconds} s")
    return table


def decoding(model, prompt, new_tokens: int, stride: int | None):
    """Greedy generation of ``new_tokens`` after ``prompt``, timed token by token: with the
    cache and ``stride``, or (None) by running the model on the window again for every token.
    Returns a function giving (seconds to the first token, seconds per later token)."""
    context = model.max_context

    def cached() -> tuple[float, float]:
        times = [time.perf_counter()]
        for _ in model.stream(prompt, new_tokens, temperature=0, stride=stride):
            common.synchronize(str(prompt.device))
            times.append(time.perf_counter())
        return times[1] - times[0], (times[-1] - times[1]) / (new_tokens - 1)

    @torch.no_grad()
    def recomputed() -> tuple[float, float]:
        ids, times = prompt, [time.perf_counter()]
        for _ in range(new_tokens):
            step = model(ids[:, -context:])[:, -1]
            ids = torch.cat([ids, step.argmax(-1, keepdim=True)], dim=1)
            common.synchronize(str(prompt.device))
            times.append(time.perf_counter())
        return times[1] - times[0], (times[-1] - times[1]) / (new_tokens - 1)
    return recomputed if stride is None else cached


def run_generation(args) -> Table:
    table = Table("generate", "Perceiver AR generation after a prompt filling the context "
                  "(greedy, batch 1): the first token (the prompt's keys and values and "
                  "latents) and every later one, with the cache at each stride and by "
                  "recomputing the model on the window for every token",
                  ["context", "latents", "stride", "first token ms", "later tokens/s",
                   "speed-up over recomputing"])
    for context, num_latents in args.generation_settings:
        model = build("perceiver-ar", context, quick=args.quick, device=args.device,
                      num_latents=num_latents).eval()
        prompt = torch.randint(6, 262, (1, context), device=args.device)
        runs = {"recomputed": decoding(model, prompt, args.new_tokens, None)}
        strides = [stride for stride in args.strides if stride <= model.num_latents]
        for stride in strides:  # at least two moves of the window
            runs[stride] = decoding(model, prompt, max(args.new_tokens, 2 * stride + 2), stride)
        for _ in range(args.warmup):
            for run in runs.values():
                run()
        measured = {name: [] for name in runs}
        for r in range(args.repeats):  # round-robin, as common.alternate
            names = list(runs)[r % len(runs):] + list(runs)[:r % len(runs)]
            for name in names:
                measured[name].append(runs[name]())
        first = {k: 1000 * common.median([m[0] for m in v]) for k, v in measured.items()}
        rate = {k: 1 / common.median([m[1] for m in v]) for k, v in measured.items()}
        table.add(context, model.num_latents, "recomputed", first["recomputed"],
                  rate["recomputed"], 1.0)
        for stride in strides:
            table.add(context, model.num_latents, stride, first[stride], rate[stride],
                      rate[stride] / rate["recomputed"])
        print(f"  generate N={context} M={num_latents}: tokens/s {rate}", flush=True)
    return table


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--memory-limit-gb", type=float, default=16.0)
    parser.add_argument("--max-step-seconds", type=float, default=120.0)
    parser.add_argument("--new-tokens", type=int, default=16,
                        help="tokens generated per timing (with a stride, at least 2 x stride "
                             "+ 2, so that the window moves twice)")
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 16, 64, 128, 512],
                        help="generation strides measured (PerceiverAR.generate's stride, "
                             "with its default latents; strides above the model's latents "
                             "are left out)")
    parser.add_argument("--sections", nargs="+", choices=["train", "generate"],
                        default=["train", "generate"],
                        help="what to measure (default both); results of one section go to "
                             "<device>-perceiver_ar-<section>.json/.md")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return {}
    args.contexts = [2 ** k * 1024 for k in range(7)]  # 1k .. 64k
    # (context, latents): the small preset's 128 latents, and a quarter of the context as
    # latents (the paper's proportion: 1024 of 4096)
    args.generation_settings = [(1024, 128), (4096, 128), (16384, 128), (4096, 1024)]
    if args.quick:
        args.contexts, args.generation_settings = [16, 32], [(16, 8), (32, 8)]
        args.new_tokens, args.repeats, args.strides = 4, min(args.repeats, 2), [1, 4]
    meta = {**common.machine_info(args.device), "quick": args.quick, "batch": args.batch,
            "command": shlex.join(["python", "benchmarks/perceiver_ar.py", *(argv or [])])}
    sections = {"train": run_training, "generate": run_generation}
    tables = [sections[name](args) for name in sections if name in args.sections]
    stem = f"{args.device.split(':')[0]}-perceiver_ar"
    if len(args.sections) == 1:
        stem += f"-{args.sections[0]}"
    stem += "-quick" if args.quick else ""
    json_path, md_path = common.write_results(tables, meta, args.out, stem)
    print("\n".join(t.markdown() for t in tables))
    return {"json": json_path, "markdown": md_path}


if __name__ == "__main__":
    main(sys.argv[1:])
