"""Perceiver AR against a decoder-only Transformer on the Python standard library's bytes.

    python -m experiments.perceiver_ar [--quick] [--context 1024] [--budget-seconds 900]

The Transformer (:class:`experiments.baselines.CausalTransformer`, sized like the Perceiver
AR) trains at ``--context`` N; Perceiver AR (``perceiver-ar-bytes-small``: 128 latents) at N,
4N and 16N. Every model has the same parameter count (the context changes no weight) and
the same budget, ``--budget-seconds`` of training steps counted in CPU seconds of this process
(``time.process_time``: other work on a shared machine does not shorten one model's budget;
with ``--threads 1`` a CPU second is a wall second on an idle core) (batch ``--batch-size``,
AdamW, linear warm-up then cosine decay over the budget, gradient clipping). All are scored
on the same held-out bytes: the last ``--scored`` bytes of ``--eval-windows`` windows of the
test files (the corpus is split by file, :class:`omniperceiver.training.TextBytesData`),
each model reading as many bytes before them as its context holds; bits per byte is the mean
cross-entropy / ln 2. Each model also continues a fixed prompt (the generated samples).

Writes ``perceiver_ar.json`` (every run; the corpus, command, commit and machine),
``perceiver_ar.md`` and ``perceiver_ar.png``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omniperceiver import create_model
from omniperceiver.adapters import ByteTokenizer
from omniperceiver.training.language import ByteCorpus, ByteWindows
from omniperceiver.training.module import weight_decay_groups

from . import common
from .baselines import CausalTransformer

NAME = "perceiver_ar"
PROMPT = "def read_config(path):\n    "


def train_for(model: nn.Module, tokens: Tensor, context: int, *, seconds: float,
              max_steps: int | None, batch_size: int, lr: float, seed: int) -> dict[str, Any]:
    """AdamW steps on random windows of ``tokens`` until ``seconds`` of CPU time have passed:
    the loss is over every position the model predicts (all N for the Transformer, the last
    M for Perceiver AR)."""
    windows = ByteWindows(tokens, context, 1 << 30, random=True, seed=seed)
    optimizer = torch.optim.AdamW(weight_decay_groups(model, 0.1), lr=lr, betas=(0.9, 0.95))
    torch.manual_seed(seed)
    model.train()
    step, losses, start, warmup = 0, [], time.process_time(), 20
    wall = time.perf_counter()
    while (max_steps is None or step < max_steps) and time.process_time() - start < seconds:
        done = (time.process_time() - start) / seconds
        factor = min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * done)))
        for group in optimizer.param_groups:
            group["lr"] = lr * factor
        items = [windows[step * batch_size + i] for i in range(batch_size)]
        ids, targets = torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])
        logits = model(ids)
        loss = F.cross_entropy(logits.flatten(0, 1).float(),
                               targets[:, -logits.shape[1]:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        step += 1
    return {"steps": step, "train_seconds": round(time.process_time() - start, 1),
            "wall_seconds": round(time.perf_counter() - wall, 1),
            "final_loss": round(sum(losses[-20:]) / max(1, len(losses[-20:])), 4)}


@torch.no_grad()
def bits_per_byte(model: nn.Module, tokens: Tensor, context: int, longest: int, *,
                  windows: int, scored: int) -> float:
    """Mean bits per byte of the last ``scored`` bytes of ``windows`` evaluation windows of
    ``longest + 1`` bytes; the model reads the last ``context`` bytes of each."""
    model.eval()
    evaluation = ByteWindows(tokens, longest, windows, random=False)
    total = 0.0
    for i in range(len(evaluation)):
        ids, targets = evaluation[i]
        logits = model(ids[None, -context:])[:, -scored:]
        total += F.cross_entropy(logits[0].float(), targets[-scored:]).item()
    return total / len(evaluation) / math.log(2)


def sample(model: nn.Module, prompt: str, new_tokens: int) -> str:
    """The model's continuation of ``prompt`` (temperature 0.8, top-k 40, seed 0)."""
    tokenizer = ByteTokenizer()
    ids, _ = tokenizer.encode(prompt, add_special_tokens=False)
    if hasattr(model, "generate"):
        out = model.generate(ids, new_tokens, 0.8, 40, None, 0)
    else:  # the Transformer: recompute the window for every token
        from omniperceiver.perceiver_ar import sample_token

        generator, out = torch.Generator().manual_seed(0), ids
        with torch.no_grad():
            for _ in range(new_tokens):
                step = model(out[:, -model.max_context:])[:, -1]
                out = torch.cat([out, sample_token(step, 0.8, 40, None, generator)[:, None]], 1)
    return tokenizer.decode(out[:, ids.shape[1]:])[0]


def run(args) -> common.RunLog:
    corpus = ByteCorpus(max_bytes=args.max_bytes)
    train, test = corpus.tokens("train"), corpus.tokens("test")
    contexts = [args.context * f for f in (1, 4, 16)]
    longest = contexts[-1]
    meta = common.provenance(NAME, args.argv)
    meta.update(quick=args.quick, corpus=corpus.description, budget_seconds=args.budget_seconds,
                batch_size=args.batch_size, lr=args.lr, eval_windows=args.eval_windows,
                scored_bytes=args.scored, model_args=args.model_args, prompt=PROMPT)
    log = common.RunLog(common.output_folder(args), NAME, meta, resume=args.resume)
    runs = [("transformer", args.context)] + [("perceiver-ar", c) for c in contexts]
    for seed in args.seeds:
        for kind, context in runs:
            if log.find(model=kind, context=context, seed=seed):
                continue
            torch.manual_seed(seed)
            perceiver = create_model("perceiver-ar-bytes-small", **{**args.model_args,
                                                                    "max_context": context})
            model = perceiver if kind == "perceiver-ar" else CausalTransformer.like(perceiver)
            result = train_for(model, train, context, seconds=args.budget_seconds,
                               max_steps=args.max_steps, batch_size=args.batch_size,
                               lr=args.lr, seed=seed)
            bpb = bits_per_byte(model, test, context, longest, windows=args.eval_windows,
                                scored=args.scored)
            log.add({"model": kind, "context": context, "seed": seed,
                     "params": common.count_parameters(model), "test_bits_per_byte": bpb,
                     "sample": sample(model, PROMPT, args.sample_bytes), **result})
            print(f"{kind} N={context}: {bpb:.3f} bits/byte after {result['steps']} steps",
                  flush=True)
    return log


def report(log: common.RunLog) -> str:
    text = common.markdown_header("Perceiver AR vs a Transformer: bits per byte on held-out "
                                  "Python standard-library files", log.meta)
    corpus = log.meta["corpus"]
    text += (f"Corpus: {corpus['corpus']} (Python {corpus['python']}), split by file: "
             + ", ".join(f"{s} {corpus[s]['files']} files / {corpus[s]['bytes']:,} bytes"
                         for s in ("train", "val", "test"))
             + f". Budget {log.meta['budget_seconds']} CPU seconds of training per model "
             f"({log.meta['torch_threads']} torch threads).\n\n")
    rows = [[r["model"], f"{r['context']:,}", f"{r['params']:,}", r["seed"], r["steps"],
             f"{r['train_seconds']:.0f}", f"{r['test_bits_per_byte']:.3f}"] for r in log.runs]
    text += common.markdown_table(["model", "context", "parameters", "seed", "steps",
                                   "training CPU s", "test bits/byte"], rows)
    text += f"\nSamples (prompt `{log.meta['prompt']!r}`):\n\n"
    for r in log.runs:
        text += f"- {r['model']} N={r['context']:,}: `{r['sample']!r}`\n"
    return text


def chart(log: common.RunLog, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, marker in (("transformer", "s"), ("perceiver-ar", "o")):
        runs = [r for r in log.runs if r["model"] == kind]
        ax.plot([r["context"] for r in runs], [r["test_bits_per_byte"] for r in runs], marker,
                label=kind, linestyle="-" if kind == "perceiver-ar" else "none")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="context (bytes)", ylabel="test bits per byte",
           title=f"Same parameters, {log.meta['budget_seconds']} CPU s of training each")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = common.base_parser(__doc__.split("\n\n")[0], epochs=None, seeds=(0,),
                                epochs_help="not used (the budget is in seconds)")
    parser.add_argument("--context", type=int, default=1024,
                        help="the Transformer's context; Perceiver AR also at 4x and 16x")
    parser.add_argument("--budget-seconds", type=float, default=900,
                        help="training CPU seconds per model (default 900)")
    parser.add_argument("--max-steps", type=int, default=None, help="also stop after this")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-bytes", type=int, default=None,
                        help="bytes read per split (default all)")
    parser.add_argument("--eval-windows", type=int, default=64)
    parser.add_argument("--scored", type=int, default=128,
                        help="bytes scored at the end of each evaluation window")
    parser.add_argument("--sample-bytes", type=int, default=200)
    args = common.parse(parser, argv)
    args.argv = argv
    args.model_args = {}
    if args.quick:
        args.context, args.budget_seconds, args.max_steps = 16, 30.0, 2
        args.max_bytes, args.eval_windows, args.scored, args.sample_bytes = 100_000, 2, 4, 8
        args.batch_size = 2
        args.model_args = {"num_latents": 4, "dim": 16, "heads": 2, "num_self_attends": 1}
    start = time.perf_counter()
    log = run(args)
    return common.finish(log, common.output_folder(args), NAME, started=start, report=report,
                         chart=chart)


if __name__ == "__main__":
    main(sys.argv[1:])
