"""What a generation stride costs a trained Perceiver AR: held-out bits per byte when every
byte is predicted as ``PerceiverAR.generate(..., stride=S)`` predicts it.

    omniperceiver fit --config configs/perceiver_ar_bytes.yaml
    python -m experiments.generation_stride --model runs/perceiver_ar_bytes/model

With stride S the window of N bytes moves S bytes at once and every byte between moves is
one more latent (perceiver_ar.WindowSchedule): from m latents after a move to m + S - 1. Each
stride is scored twice: with m = M - S + 1 (``generate``'s default: the latents stay within
the model's M, as in training) and with m = M (the latents grow past M).

The S bytes after a move are predicted from the window that ends at the last of them, with
m + S - 1 latents: one forward gives all S of them (the window starts where it started
after the move, and so do the latents: causal masking makes each prediction that of its own
shorter window), so the held-out text is scored with one forward per S bytes, batched.
S = 1 with m = M is :meth:`PerceiverAR.forward`'s own prediction of the last byte of every
window of N bytes.

Writes ``generation_stride.json`` and ``.md`` to ``--out`` (default experiments/results).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from experiments import common

NAME = "generation_stride"


def stride_windows(tokens: torch.Tensor, context: int, stride: int, num_bytes: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows (count, context) that score ``num_bytes`` bytes after the first ``context``
    with stride ``stride``, and the bytes each window's last ``stride`` positions predict
    (count, stride)."""
    ends = torch.arange(context, context + num_bytes, stride)  # exclusive window ends
    ends = ends[ends + stride <= tokens.numel()]  # every predicted byte exists
    offsets = torch.arange(-context, 0)
    windows = tokens[ends[:, None] + offsets]
    targets = tokens[ends[:, None] + torch.arange(-stride + 1, 1)]
    return windows, targets


@torch.no_grad()
def stride_logits(model, windows: torch.Tensor, stride: int, num_latents: int,
                  batch_size: int) -> torch.Tensor:
    """Logits (count, stride, vocab_size) of the last ``stride`` positions of each window,
    computed with ``num_latents + stride - 1`` latents (at most the window)."""
    latents = min(num_latents + stride - 1, windows.shape[1])
    out = [model(chunk, num_latents=latents)[:, -stride:]
           for chunk in windows.split(batch_size)]
    return torch.cat(out)


def bits_per_byte(model, tokens: torch.Tensor, stride: int, num_latents: int, num_bytes: int,
                  batch_size: int) -> tuple[float, int]:
    windows, targets = stride_windows(tokens, model.max_context, stride, num_bytes)
    logits = stride_logits(model, windows, stride, num_latents, batch_size)
    loss = F.cross_entropy(logits.flatten(0, 1).double(), targets.flatten())
    return float(loss) / math.log(2), targets.numel()


def report(log: common.RunLog) -> str:
    meta = log.meta
    model = meta["model"]
    text = common.markdown_header("What a generation stride costs: held-out bits per byte",
                                  meta)
    text += (f"Model: `{model['folder']}` ({model['parameters']:,} parameters, context N = "
             f"{model['max_context']}, M = {model['num_latents']} latents). Held-out text: "
             f"the first {meta['num_bytes']:,} bytes after the first window of the test "
             f"split ({meta['corpus']}).\n\n")
    base = log.runs[0]["bits_per_byte"] if log.runs else None
    rows = [(r["stride"], r["latents"], f"{r['fewest_latents']} .. {r['most_latents']}",
             f"{max(1, model['max_context'] - r['stride'] + 1)} .. {model['max_context']}",
             r["bytes"], f"{r['bits_per_byte']:.4f}",
             f"{100 * (r['bits_per_byte'] / base - 1):+.2f}%")
            for r in log.runs]
    text += common.markdown_table(
        ["stride S", "latents", "latents per byte", "window (bytes)", "bytes scored",
         "bits per byte", "vs S = 1"], rows)
    text += ("\nS = 1: every byte from the last N bytes with M latents (what `forward` "
             "computes). \"within M\": `generate(..., stride=S)`'s default, M - S + 1 to M "
             "latents, as many as the model saw in training; \"past M\": "
             "`generate(..., stride=S, num_latents=M)`, M to M + S - 1. Speed of each: "
             "benchmarks/results/cpu-perceiver_ar-generate.md.\n")
    return text


def tiny_model():
    from omniperceiver import PerceiverAR

    torch.manual_seed(0)
    return PerceiverAR(max_context=32, num_latents=8, dim=16, heads=2, num_self_attends=1).eval()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = common.base_parser(__doc__.split("\n\n")[0], epochs=None, seeds=(0,),
                                epochs_help="not used (nothing is trained)")
    parser.add_argument("--model", help="a trained Perceiver AR folder (save_pretrained / fit)")
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 8, 32, 128, 512])
    parser.add_argument("--bytes", type=int, default=16384, dest="num_bytes",
                        help="held-out bytes scored per stride")
    parser.add_argument("--batch-size", type=int, default=32)
    args = common.parse(parser, argv)
    args.argv = argv
    started = time.perf_counter()
    from omniperceiver.perceiver_ar import PerceiverAR
    from omniperceiver.training.language import ByteCorpus

    if args.quick:
        model, folder = tiny_model(), "(untrained, --quick)"
        args.strides, args.num_bytes = [1, 4, 32], 256
    elif args.model is None:
        parser.error("--model: give a trained Perceiver AR folder (or --quick)")
    else:
        from omniperceiver import from_pretrained

        model, folder = from_pretrained(args.model).eval(), args.model
        if not isinstance(model, PerceiverAR):
            parser.error(f"--model {args.model}: a {type(model).__name__}, not a Perceiver AR")
    strides = [s for s in args.strides if 1 <= s <= model.max_context]
    corpus = ByteCorpus(max_bytes=model.max_context + args.num_bytes + max(strides))
    tokens = corpus.tokens("test")
    meta = common.provenance(NAME, args.argv)
    meta.update(num_bytes=args.num_bytes, corpus=corpus.description["corpus"],
                model={"folder": folder, "parameters": sum(p.numel() for p in model.parameters()),
                       "max_context": model.max_context, "num_latents": model.num_latents})
    out = common.output_folder(args)
    log = common.RunLog(out, NAME, meta)
    settings = [(1, "M")] + [(stride, family) for stride in strides if stride > 1
                             for family in ("within M", "past M")]
    for stride, family in settings:
        fewest = model.num_latents if family != "within M" else max(
            1, model.num_latents - stride + 1)
        bpb, count = bits_per_byte(model, tokens, stride, fewest, args.num_bytes,
                                   args.batch_size)
        log.add({"stride": stride, "latents": family, "bits_per_byte": bpb, "bytes": count,
                 "fewest_latents": fewest,
                 "most_latents": min(fewest + stride - 1, model.max_context)})
        print(f"stride {stride}, latents {family}: {bpb:.4f} bits per byte over {count} "
              "bytes", flush=True)
    return common.finish(log, out, NAME, started=started, report=report, chart=None)


if __name__ == "__main__":
    main()
