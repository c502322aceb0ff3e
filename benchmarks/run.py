"""omniperceiver's benchmark suite: speed, memory and efficiency against perceiver-pytorch 0.11
and transformers' Perceiver, in one process, alternating, medians of >= 7 runs after warm-up.

    python benchmarks/run.py                     # ratio tables: peak forward train vpf memory
    python benchmarks/run.py --sections compile  # torch.compile speed-ups
    python benchmarks/run.py --sections scaling  # time, memory vs inputs; docs/scaling.png
    python benchmarks/run.py --sections chunked  # huge inputs, chunked encoding
    python benchmarks/run.py --quick             # tiny shapes, seconds (CI smoke run)
    python benchmarks/run.py --device cuda       # the same on a GPU

Each command prints its tables and writes them to ``--out`` (default ``benchmarks/results``)
as ``<device>-<sections>.json`` and ``.md``. Sections:

* ``peak``: the matrix-product ceiling (large torch.matmul), fp32 and bf16.
* ``forward``: the seed model (perceiver-pytorch's README configuration), batch 1 and 8,
  fp32 and bf16 autocast, against perceiver-pytorch.
* ``train``: one training step (forward, backward, AdamW step) of the seed model.
* ``vpf``: vision-perceiver-fourier against transformers' PerceiverForImageClassificationFourier.
* ``memory``: peak memory of each, a fresh subprocess per measurement (see memory.py).
* ``compile``: torch.compile against eager (compile time reported separately).
* ``scaling``: forward time and memory from 32x32 to 1024x1024 images, against a plain
  Transformer encoder over the same inputs.
* ``chunked``: a 4096x4096 image and a 10M-point cloud encoded chunk by chunk.
* ``raw_pixels``: training on raw pixels on a CPU: the cross-attend kernel, and the main job's
  step beside perceiver-pytorch's.

FLOPs come from torch's FlopCounterMode (plus the CPU flash-attention kernels, which it does not
know), counted at batch 1 and scaled by the batch (every operation is per example).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# On a shared machine, OpenMP threads that spin while they wait take the cores from the
# threads doing the work: with the load of a few other processes on 2 cores, a training step
# of either library takes 5-10x longer and the timings measure the scheduler. Passive waiting
# makes them measure the computation. It must be set before torch is imported; export
# OMP_WAIT_POLICY to choose otherwise (it is recorded with the results).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import models  # noqa: E402
from common import Table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SECTIONS = ["peak", "forward", "train", "vpf", "memory"]
ALL_SECTIONS = DEFAULT_SECTIONS + ["compile", "scaling", "chunked", "raw_pixels"]

BASELINE_NAMES = {"perceiver-pytorch-seed": "perceiver-pytorch", "transformers-vpf": "transformers"}
# The targets: speed-up = baseline time / omniperceiver time; memory = omni / baseline.
TARGETS = {
    ("forward", "fp32"): 1.3,
    ("forward", "bf16"): 1.8,
    ("forward", "bf16-vs-fp32"): 4.0,
    ("train", "fp32"): 1.5,
    ("vpf", "fp32"): 3.0,
    ("vpf", "bf16"): 3.0,
}


@dataclass
class Run:
    """What every section needs: options, the matrix-product ceilings, the tables so far."""

    device: str
    quick: bool
    repeats: int
    warmup: int
    out: Path
    plot: Path
    peaks: dict = field(default_factory=dict)
    tables: list = field(default_factory=list)
    summary: Table | None = None
    flops: dict = field(default_factory=dict)

    def timed(self, fns: dict, repeats: int | None = None,
              warmup: int | None = None) -> dict[str, float]:
        """Median seconds per call of each function (alternating runs)."""
        return {name: common.median(t) for name, t in self.rounds(fns, repeats, warmup).items()}

    def rounds(self, fns: dict, repeats: int | None = None,
               warmup: int | None = None) -> dict[str, list[float]]:
        """Seconds per call of each function, one entry per round (see common.alternate)."""
        return common.alternate(fns, repeats=repeats or self.repeats,
                                warmup=self.warmup if warmup is None else warmup,
                                device=self.device)

    def peak(self, precision: str) -> float:
        return self.peaks.get(precision) or math.nan

    def bf16_native(self) -> bool:
        """Whether ``precision: auto`` would train in bf16 here (always on a GPU; on a CPU
        where bf16 matrix products are measured fast enough)."""
        if self.device != "cpu":
            return True
        from omniperceiver.training.precision import BF16_MIN_SPEEDUP, cpu_matmul_rates

        return cpu_matmul_rates().bf16_speedup >= BF16_MIN_SPEEDUP


def _target_cell(key, value: float) -> tuple:
    target = TARGETS.get(key)
    if target is None:
        return None, None
    return f">= {target}", "yes" if value >= target else "NO"


def _pct(flops: float, seconds: float, peak: float) -> float:
    return 100 * flops / seconds / 1e9 / peak


def add_speedup(run: Run, key, comparison: str, omni: list[float], base_name: str,
                base: list[float], omni_flops: float, peak: float) -> None:
    """A row of the summary from per-round times of omniperceiver and the baseline measured
    in the same rounds: the speed-up is the median of the per-round ratios (robust to a
    machine whose load drifts during the measurement); also the target, and the best
    speed-up possible if omniperceiver ran its FLOPs at the full matrix-product rate."""
    speedup = common.median([b / o for o, b in zip(omni, base, strict=True)])
    base_s = common.median(base)
    best = base_s / (omni_flops / (peak * 1e9)) if omni_flops and peak == peak else None
    run.summary.add(comparison, round(common.median(omni) * 1e3, 1), base_name,
                    round(base_s * 1e3, 1), round(speedup, 2), *_target_cell(key, speedup),
                    round(best, 1) if best else None)


# --- sections ---------------------------------------------------------------------------------


def section_peak(run: Run) -> list[Table]:
    n = 256 if run.quick else (8192 if run.device.startswith("cuda") else 2048)
    table = Table("peak", "Matrix-product ceiling (torch.matmul, n x n @ n x n)",
                  ["dtype", "n", "median GFLOP/s", "best GFLOP/s (the ceiling used)"])
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        median, best = common.matmul_rate(dtype, n=n, repeats=run.repeats, device=run.device)
        run.peaks[precision] = best
        table.add(precision, n, round(median, 1), round(best, 1))
    table.notes.append("the ceiling is the fastest of the runs: the rate the machine "
                       "sustains when nothing else competes for it")
    if run.device.startswith("cuda"):
        table.notes.append(f"TF32 matmul allowed: {torch.backends.cuda.matmul.allow_tf32}")
    return [table, _model_shapes_table(run)]


#: The matrix products of the benchmarked models' latent Transformers, as (rows, inner, out)
#: of ``F.linear``: what "% of peak" can reach when a model is nothing but these products.
MODEL_SHAPES = [
    ("seed latents, batch 1: q, k, v, out", 256, 512, 512),
    ("seed latents, batch 1: feed-forward in (GEGLU)", 256, 512, 4096),
    ("seed latents, batch 1: feed-forward out", 256, 2048, 512),
    ("seed latents, batch 8: q, k, v, out", 2048, 512, 512),
    ("vision-perceiver-fourier latents: q, out, feed-forward", 512, 1024, 1024),
    ("vision-perceiver-fourier latents: k and v", 512, 1024, 2048),
]


def _model_shapes_table(run: Run) -> Table:
    table = Table("model_shapes", "Matrix products at the models' own shapes (F.linear with "
                  "bias, best of the runs)",
                  ["product", "rows x inner x out", "precision", "GFLOP/s", "% of peak"])
    for name, rows, inner, out in MODEL_SHAPES:
        if run.quick:
            rows, inner, out = max(rows // 8, 1), max(inner // 8, 1), max(out // 8, 1)
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            _, best = common.linear_rate(dtype, rows=rows, inner=inner, out=out,
                                         repeats=run.repeats, device=run.device)
            table.add(name, f"{rows} x {inner} x {out}", precision, round(best, 1),
                      round(100 * best / run.peaks[precision], 1))
    table.notes.append("a model whose FLOPs are all in products of these shapes runs at most "
                       "at these rates, before any softmax, norm or activation")
    return table


def _flops(run: Run, name: str, case: models.Case, x, *, train: bool = False) -> float:
    """FLOPs of one call at batch 1, times the batch; cached per (name, train)."""
    key = (name, train)
    if key not in run.flops:
        one = x[:1]
        if train:
            fn = models.train_step_fn(case, one, device=run.device, precision="fp32")
        else:  # with autograd on: FlopCounterMode's module tracker relies on it
            case.model.eval()

            def fn():
                case.forward(case.model, one)
        run.flops[key] = common.count_flops(fn)
    return run.flops[key] * x.shape[0]


def _detail_table(name: str, title: str) -> Table:
    return Table(name, title, ["implementation", "batch", "precision", "median ms", "GFLOP",
                               "GFLOP/s", "% of peak"])


def _detail(table: Table, run: Run, impl: str, batch: int, precision: str,
            times: list[float], flops: float) -> None:
    seconds = common.median(times)
    table.add(impl, batch, precision, round(seconds * 1e3, 1), round(flops / 1e9, 2),
              round(flops / seconds / 1e9, 1), round(_pct(flops, seconds, run.peak(precision)), 1))


def _pair_section(run: Run, *, section: str, model: str, omni: str, base: str,
                  batches: list[int], title: str, train: bool = False,
                  latent_bound: bool = False) -> list[Table]:
    """omniperceiver against a baseline, fp32 and bf16 autocast: the four calls of a batch
    size alternate in the same rounds, so every ratio is paired round by round.

    ``latent_bound``: also time omniperceiver's latent Transformer alone (the encoder's
    self-attends on the latents), whose matrix products are the same in both libraries: the
    baseline's time over it bounds the speed-up any change to the rest could give."""
    o, b = models.build(omni, quick=run.quick), models.build(base, quick=run.quick)
    o.to(run.device), b.to(run.device)
    detail = _detail_table(section, title + (" [quick: tiny models]" if run.quick else ""))
    make = models.train_step_fn if train else models.forward_fn
    label = f"{model} {'train step' if train else 'forward'}"
    for batch in batches:
        xo, xb = o.make_input(batch), b.make_input(batch)
        fo, fb = _flops(run, omni, o, xo, train=train), _flops(run, base, b, xb, train=train)
        fns = {(impl, precision): make(case, x, device=run.device, precision=precision)
               for precision in ("fp32", "bf16")
               for impl, case, x in ((o.name, o, xo), (b.name, b, xb))}
        latents = "omniperceiver latent Transformer alone"
        if latent_bound:
            fl = common.count_flops(models.latent_fn(o, 1, device=run.device,
                                                     precision="fp32", grad=True)) * batch
            for precision in ("fp32", "bf16"):
                fns[latents, precision] = models.latent_fn(o, batch, device=run.device,
                                                           precision=precision)
        t = run.rounds(fns)
        for precision in ("fp32", "bf16"):
            _detail(detail, run, o.name, batch, precision, t[o.name, precision], fo)
            _detail(detail, run, b.name, batch, precision, t[b.name, precision], fb)
            add_speedup(run, (section, precision),
                        f"{label}, batch {batch}, {precision}",
                        t[o.name, precision], b.name, t[b.name, precision], fo,
                        run.peak(precision))
            if latent_bound:
                _detail(detail, run, latents, batch, precision, t[latents, precision], fl)
                bound = common.median([tb / tl for tb, tl in zip(
                    t[b.name, precision], t[latents, precision], strict=True)])
                detail.notes.append(
                    f"{precision}: {b.name} time / the latent Transformer's alone = "
                    f"{bound:.2f}: the largest speed-up possible with the latent "
                    f"self-attends ({fl / 1e9:.3g} of {fo / 1e9:.3g} GFLOP, the same "
                    "matrix products in both libraries) as they are, even if everything else "
                    "took no time")
        if not train:
            add_speedup(run, (section, "bf16-vs-fp32"),
                        f"{label}, batch {batch}, omniperceiver bf16 vs {b.name} "
                        "fp32", t[o.name, "bf16"], b.name, t[b.name, "fp32"], fo,
                        run.peak("bf16"))
        print(f"  {section} batch {batch}: " + ", ".join(
            f"{name} {precision} {common.median(v) * 1e3:.1f} ms"
            for (name, precision), v in t.items()), flush=True)
    return [detail]


def section_forward(run: Run) -> list[Table]:
    return _pair_section(run, section="forward", model="seed", omni="omniperceiver-seed",
                         base="perceiver-pytorch-seed", batches=[1, 8],
                         title="Seed model forward (inference), 224x224x3")


def section_train(run: Run) -> list[Table]:
    return _pair_section(run, section="train", model="seed", omni="omniperceiver-seed",
                         base="perceiver-pytorch-seed", batches=[1], train=True,
                         title="Seed model training step (forward, backward, AdamW)")


def section_vpf(run: Run) -> list[Table]:
    return _pair_section(run, section="vpf", model="vision-perceiver-fourier",
                         omni="omniperceiver-vpf", base="transformers-vpf", batches=[1],
                         title="vision-perceiver-fourier forward (inference), 224x224x3",
                         latent_bound=True)


def section_memory(run: Run) -> list[Table]:
    table = Table("memory", "Peak memory of one call (fresh subprocess each; MB above the "
                  "baseline after model build and warm-up)",
                  ["call", "omniperceiver MB", "baseline", "baseline MB", "omni / baseline",
                   "target", "met"])
    cases = [("seed forward, batch 1, fp32", "omniperceiver-seed", "perceiver-pytorch-seed",
              dict(batch=1)),
             ("seed forward, batch 8, fp32", "omniperceiver-seed", "perceiver-pytorch-seed",
              dict(batch=8)),
             ("seed forward, batch 8, bf16", "omniperceiver-seed", "perceiver-pytorch-seed",
              dict(batch=8, precision="bf16")),
             ("seed train step, batch 1, fp32", "omniperceiver-seed", "perceiver-pytorch-seed",
              dict(batch=1, mode="train")),
             ("vpf forward, batch 1, fp32", "omniperceiver-vpf", "transformers-vpf",
              dict(batch=1))]
    if run.quick:
        cases = cases[1:2]
    for label, omni, base, spec in cases:
        spec = dict(spec, quick=run.quick, device=run.device)
        mo = common.measure_memory(dict(spec, case=omni))
        mb = common.measure_memory(dict(spec, case=base))
        if "error" in mo or "error" in mb:
            table.add(label, None, BASELINE_NAMES[base], None, None, None,
                      f"error: {mo.get('error')}"
                      f" {mb.get('error')}")
            continue
        ratio = mo["delta_mb"] / mb["delta_mb"] if mb["delta_mb"] > 0 else math.nan
        target = ("<= 0.5", "yes" if ratio <= 0.5 else "NO") if "batch 8, fp32" in label \
            else (None, None)
        table.add(label, round(mo["delta_mb"], 1), BASELINE_NAMES[base],
                  round(mb["delta_mb"], 1), round(ratio, 3), *target)
        print(f"  memory {label}: {mo['delta_mb']:.0f} MB vs {mb['delta_mb']:.0f} MB",
              flush=True)
    table.notes.append(f"method: {mo.get('method', '?')}; see benchmarks/memory.py")
    return [table]


#: The models torch.compile is measured on: (label, case, batch).
COMPILE_CASES = (("seed model, batch 1", "omniperceiver-seed", 1),
                 ("main job's model, batch 64", "omniperceiver-main-job", 64))


def section_compile(run: Run) -> list[Table]:
    table = Table("compile", "torch.compile (inductor) against eager",
                  ["model", "call", "precision", "eager ms", "compiled ms", "speed-up",
                   "first compiled call s (compile)"])
    precisions = ["fp32"] + (["bf16"] if run.bf16_native() else [])
    for model_label, name, batch in COMPILE_CASES:
        case = models.build(name, quick=run.quick).to(run.device)
        x = case.make_input(batch)
        for label in ("forward", "train step"):
            for precision in precisions:
                torch._dynamo.reset()
                compiled = torch.compile(case.model)
                if label == "forward":
                    eager = models.forward_fn(case, x, device=run.device, precision=precision)
                    comp = models.forward_fn(models.Case(case.name, compiled, case.make_input,
                                                         case.forward, case.num_classes), x,
                                             device=run.device, precision=precision)
                else:
                    eager = models.train_step_fn(case, x, device=run.device,
                                                 precision=precision)
                    comp = models.train_step_fn(case, x, device=run.device,
                                                precision=precision, model=compiled)
                start = time.perf_counter()
                comp()
                common.synchronize(run.device)
                compile_s = time.perf_counter() - start
                rounds = run.rounds({"eager": eager, "compiled": comp})
                t = {key: common.median(v) for key, v in rounds.items()}
                speedup = common.median([e / c for e, c in zip(
                    rounds["eager"], rounds["compiled"], strict=True)])
                table.add(model_label, label, precision, round(t["eager"] * 1e3, 1),
                          round(t["compiled"] * 1e3, 1), round(speedup, 2),
                          round(compile_s, 1))
                print(f"  compile {model_label} {label} {precision}: eager "
                      f"{t['eager'] * 1e3:.1f} ms, compiled {t['compiled'] * 1e3:.1f} ms, "
                      f"first call {compile_s:.1f} s", flush=True)
    table.notes.append("compile time = wall time of the first compiled call (tracing, "
                       "inductor code generation and C++/Triton compilation), not in the medians")
    if "bf16" not in precisions:
        table.notes.append("bf16 left out: precision auto trains in float32 on this CPU (its "
                           "bf16 matrix products are not fast enough: "
                           "omniperceiver.training.precision.cpu_matmul_rates)")
    return [table]


def section_scaling(run: Run) -> list[Table]:
    import scaling

    return scaling.run_scaling(run)


def section_chunked(run: Run) -> list[Table]:
    import chunked

    return chunked.run_chunked(run)


def section_raw_pixels(run: Run) -> list[Table]:
    import raw_pixels

    return raw_pixels.run_raw_pixels(run)


SECTIONS = {"peak": section_peak, "forward": section_forward, "train": section_train,
            "vpf": section_vpf, "memory": section_memory, "compile": section_compile,
            "scaling": section_scaling, "chunked": section_chunked,
            "raw_pixels": section_raw_pixels}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny shapes, 3 runs (CI smoke test)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                   help=f"comma-separated, from {','.join(ALL_SECTIONS)}, or 'all'")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default 7, quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up rounds (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "scaling.png",
                   help="where the scaling section saves its plot")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    sections = ALL_SECTIONS if args.sections == "all" else args.sections.split(",")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown sections {unknown}; choose from {ALL_SECTIONS}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device (benchmarks/gpu.sh falls back to CPU)")
    if args.threads:
        torch.set_num_threads(args.threads)
    run = Run(device=args.device, quick=args.quick,
              repeats=args.repeats or (3 if args.quick else 7),
              warmup=args.warmup if args.warmup is not None else 1,
              out=args.out, plot=args.plot)
    run.summary = Table("summary", "Speed-ups (baseline median time / omniperceiver median "
                        "time)", ["comparison", "omniperceiver ms", "baseline",
                                  "baseline ms", "speed-up", "target", "met",
                                  "speed-up at 100% of peak"])
    run.summary.notes.append("speed-up: the median over rounds of baseline time / "
                             "omniperceiver time, both measured in the same round (the calls "
                             "alternate); ms: medians")
    run.summary.notes.append("speed-up at 100% of peak: the speed-up omniperceiver would "
                             "reach running its FLOPs at the machine's matrix-product rate "
                             "(an upper bound for any implementation of the same FLOPs)")
    meta = common.machine_info(args.device)
    meta["command"] = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None
                                                             else argv)
    meta.update(repeats=run.repeats, warmup=run.warmup, quick=run.quick, sections=sections,
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"))
    if "peak" not in sections and any(s in sections for s in ("forward", "train", "vpf")):
        sections = ["peak"] + sections
    stem = f"{args.device.split(':')[0]}-{'-'.join(sections)}" + ("-quick" if args.quick else "")
    started = time.perf_counter()
    for name in sections:
        print(f"[{name}]", flush=True)
        section_start = time.perf_counter()
        run.tables.extend(SECTIONS[name](run))
        print(f"[{name}] {time.perf_counter() - section_start:.0f} s", flush=True)
        tables = ([run.summary] if run.summary.rows else []) + run.tables
        meta["seconds"] = round(time.perf_counter() - started, 1)
        json_path, md_path = common.write_results(tables, meta, args.out, stem)
    print()
    for table in tables:
        print(table.markdown())
    print(f"wrote {json_path} and {md_path} ({meta['seconds']:.0f} s)")
    return {"json": json_path, "markdown": md_path, "tables": tables}


if __name__ == "__main__":
    main()
