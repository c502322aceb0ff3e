"""Converted models against their references: max abs difference per family (a table).

    python benchmarks/parity.py              # small configurations, float64 and float32
    python benchmarks/parity.py --published  # + published sizes in float32 (minutes)
    python benchmarks/parity.py --counts     # parameter counts: transformers vs our presets
    python benchmarks/parity.py --sources perceiver-ar-pytorch flamingo-pytorch open_flamingo \
        --published --out benchmarks/results/parity-perceiver-ar-resampler

References: transformers, perceiver-pytorch, perceiver-ar-pytorch, flamingo-pytorch and
open_flamingo models randomly initialised offline; for DeepMind, the NumPy re-implementation of
the Haiku forward pass in tests/test_convert_deepmind.py, on synthetic checkpoints with the
release's names. The small cases are the tests' own (one oracle for tests and table), so the
tests' reference helpers are imported from tests/. ``--out PATH`` writes ``PATH.json`` and
``PATH.md`` with the command, the commit, the machine and the references' versions.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")


from common import Table, machine_info, write_results  # noqa: E402

from omniperceiver import create_model  # noqa: E402
from omniperceiver.convert import (  # noqa: E402
    from_flamingo_resampler,
    from_lucidrains,
    from_transformers,
)


def max_diff(a, b) -> float:
    if isinstance(a, dict):
        return max(max_diff(a[k], b[k]) for k in b)
    return float((a.double() - b.double()).abs().max())


# --- transformers -------------------------------------------------------------------------


def transformers_cases(dtype: torch.dtype, published: bool = False):
    """(family, ours, reference) outputs on random inputs."""
    import transformers
    from test_convert_transformers import hf_model

    def run(cls_name, config, make_input, ours_input, **kwargs):
        if published:
            torch.manual_seed(0)
            hf = getattr(transformers, cls_name)(transformers.PerceiverConfig(
                **config, attention_probs_dropout_prob=0.0, **kwargs)).to(dtype).eval()
        else:
            hf = hf_model(cls_name, config, **kwargs).to(dtype)
        ours = from_transformers(hf, semantics="transformers")
        x = make_input()
        with torch.no_grad():
            theirs = hf(inputs=x).logits if not isinstance(x, tuple) else hf(
                inputs=x[0], attention_mask=x[1]).logits
            return ours(*ours_input(x)), theirs

    g = torch.Generator().manual_seed(0)
    size = 224 if published else 9
    image = dict(num_latents=512, d_latents=1024, num_blocks=8, num_self_attends_per_block=6,
                 num_cross_attention_heads=1, num_self_attention_heads=8,
                 num_labels=1000) if published else "plain"
    channels_last = lambda x: (x.permute(0, 2, 3, 1),)  # noqa: E731
    rand = lambda *s: (lambda: torch.randn(*s, generator=g, dtype=dtype))  # noqa: E731
    yield "vision-perceiver-fourier", *run(
        "PerceiverForImageClassificationFourier", image, rand(1, 3, size, size), channels_last)
    yield "vision-perceiver-learned", *run(
        "PerceiverForImageClassificationLearned", image, rand(1, 3, size, size), channels_last,
        image_size=size)
    yield "vision-perceiver-conv", *run(
        "PerceiverForImageClassificationConvProcessing", image,
        rand(1, 3, 224 if published else 24, 224 if published else 24), channels_last)
    length = 2048 if published else 9
    lm = dict(qk_channels=256, v_channels=1280) if published else "plain"

    def tokens():
        ids = torch.randint(6, 262, (2, length), generator=g)
        mask = torch.ones(2, length, dtype=torch.long)
        mask[1, length // 2:] = 0
        return ids, mask

    yield "language-perceiver", *run(
        "PerceiverForMaskedLM", lm, tokens, lambda x: (x[0], x[1].bool()),
        **({} if published else dict(d_model=16, max_position_embeddings=length)))
    train = [368, 496] if published else [4, 6]
    flow = dict(num_latents=2048, d_latents=512, num_blocks=1, num_self_attends_per_block=24,
                num_self_attention_heads=16, num_cross_attention_heads=1) if published else "plain"
    yield "optical-flow-perceiver", *run(
        "PerceiverForOpticalFlow", flow, rand(1, 2, 27, *train),
        lambda x: (x.permute(0, 1, 3, 4, 2),), train_size=train)
    if published:
        return
    cfg = transformers.PerceiverConfig(
        num_latents=6, d_latents=16, num_blocks=2, num_self_attends_per_block=2,
        num_self_attention_heads=2, num_cross_attention_heads=1, attention_probs_dropout_prob=0.0,
        num_labels=5, image_size=8, num_frames=2, audio_samples_per_frame=8, samples_per_patch=4,
        output_shape=[1, 2, 16, 16], output_num_channels=7, _label_trainable_num_channels=9)
    torch.manual_seed(0)
    hf = transformers.PerceiverForMultimodalAutoencoding(cfg).to(dtype).eval()
    ours = from_transformers(hf, semantics="transformers")
    images, audio = rand(2, 2, 3, 16, 16)(), rand(2, 16, 1)()
    label = torch.zeros(2, 5, dtype=dtype)
    sub = {"image": torch.arange(100, 164), "audio": torch.arange(1, 3), "label": None}
    with torch.no_grad():
        theirs = hf(inputs={"image": images, "audio": audio, "label": label},
                    subsampled_output_points=sub).logits
        mine = ours({"image": images.permute(0, 1, 3, 4, 2), "audio": audio, "label": label},
                    subsample=sub)
    yield "multimodal-perceiver", mine, theirs


# --- perceiver-pytorch --------------------------------------------------------------------


def lucidrains_cases(dtype: torch.dtype, published: bool = False):
    from test_convert_lucidrains import PERCEIVER, PERCEIVER_IO, random_mask, reference

    torch.manual_seed(0)
    if published:  # perceiver-pytorch's README model (45,187,140 parameters)
        kwargs = dict(input_channels=3, input_axis=2, num_freq_bands=6, max_freq=10.0, depth=6,
                      num_latents=256, latent_dim=512, cross_heads=1, latent_heads=8,
                      cross_dim_head=64, latent_dim_head=64, num_classes=1000)
        x = torch.randn(1, 224, 224, 3, dtype=dtype)
    else:
        kwargs, x = PERCEIVER["image"], torch.randn(3, 5, 7, 3, dtype=dtype)
    for tied in (False, True):
        args = dict(kwargs, weight_tie_layers=tied)
        theirs = reference("Perceiver", dtype=dtype, **args)
        ours = from_lucidrains(theirs, **args)
        mask = random_mask(x.shape[0], x[0, ..., 0].numel())
        with torch.no_grad():
            yield f"Perceiver ({'tied' if tied else 'untied'}, masked)", ours(x, mask), \
                theirs(x, mask=mask)
    if published:
        return
    args = dict(PERCEIVER_IO, decoder_ff=True, logits_dim=7)
    theirs = reference("PerceiverIO", dtype=dtype, **args)
    ours = from_lucidrains(theirs, **args)
    data, queries = torch.randn(3, 9, 5, dtype=dtype), torch.randn(3, 4, 6, dtype=dtype)
    mask = random_mask(3, 9)
    with torch.no_grad():
        yield "PerceiverIO (masked)", ours(data, mask, queries=queries), \
            theirs(data, mask=mask, queries=queries)


# --- perceiver-ar-pytorch -----------------------------------------------------------------

#: perceiver-ar-pytorch's README model.
PERCEIVER_AR_README = dict(num_tokens=20000, dim=512, depth=8, dim_head=64, heads=8,
                           max_seq_len=4096, cross_attn_seq_len=3072)


def perceiver_ar_cases(dtype: torch.dtype, published: bool = False):
    """Small: the tests' configuration and one with 3 heads of 64 channels, at N =
    max_seq_len, at a shorter N, and with a prefix mask (left padding and holes); float64 with
    their rotary frequencies in float64 as ours (and, one row, as they compute them)."""
    from test_convert_perceiver_ar import KWARGS, exact_frequencies, prefix_mask, reference

    if published:  # also both against theirs in float64 with exact rotary frequencies
        theirs = reference(dtype, exact=False, **PERCEIVER_AR_README)
        ours = from_lucidrains(theirs, **PERCEIVER_AR_README)
        exact = copy.deepcopy(theirs).double()
        exact_frequencies(exact)
        ids = torch.randint(0, 20000, (1, 4096), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            mine, want, truth = ours(ids), theirs(ids), exact(ids)
        size = f"N 4096, M 1024, logits up to {truth.abs().max():.0f}"
        yield f"PerceiverAR ({size})", mine, want
        yield f"PerceiverAR ({size}): ours against float64", mine, truth
        yield f"PerceiverAR ({size}): theirs against float64", want, truth
        return
    configs = {"": KWARGS, ", 3 heads of 64": dict(KWARGS, heads=3, dim_head=64, depth=1,
                                                    ff_mult=4, cross_attn_seq_len=8)}
    for label, kwargs in configs.items():
        theirs = reference(dtype, **kwargs)
        ours = from_lucidrains(theirs, **kwargs)
        g = torch.Generator().manual_seed(0)
        n, prefix = kwargs["max_seq_len"], kwargs["cross_attn_seq_len"]
        ids = torch.randint(0, kwargs["num_tokens"], (3, n), generator=g)
        mask = prefix_mask(3, prefix, g)
        ours_mask = torch.cat([mask, torch.ones(3, n - prefix, dtype=torch.bool)], dim=1)
        with torch.no_grad():
            yield f"PerceiverAR (N = max_seq_len{label})", ours(ids), theirs(ids)
            yield f"PerceiverAR (N = max_seq_len - 2{label})", \
                ours(ids[:, 2:], num_latents=n - 2 - prefix), theirs(ids[:, 2:])
            yield f"PerceiverAR (prefix mask{label})", ours(ids, ours_mask), \
                theirs(ids, prefix_mask=mask)
    if dtype == torch.float64:
        theirs = reference(dtype, exact=False, **KWARGS)
        ours = from_lucidrains(theirs, **KWARGS)
        with torch.no_grad():
            yield "PerceiverAR (their float32 rotary frequencies)", ours(ids), theirs(ids)


# --- flamingo-pytorch and open_flamingo ---------------------------------------------------


def _masked_against_unpadded(ours_out, theirs_fn, media, lengths):
    """Ours with a mask, and theirs on each example's unpadded tokens, side by side."""
    theirs = [theirs_fn(media[i:i + 1, ..., :n, :]) for i, n in enumerate(lengths)]
    return ours_out.flatten(), torch.cat([t.flatten() for t in theirs])


def flamingo_pytorch_cases(dtype: torch.dtype, published: bool = False):
    from test_convert_flamingo import FLAMINGO_PYTORCH, flamingo_pytorch, lengths_mask

    if published:
        return
    for name in FLAMINGO_PYTORCH:
        theirs = flamingo_pytorch(name, dtype)
        ours = from_flamingo_resampler(theirs)
        g = torch.Generator().manual_seed(0)
        media = torch.randn(3, 2, 7, FLAMINGO_PYTORCH[name]["dim"], generator=g, dtype=dtype)
        lengths = [7, 4, 1]
        mask = lengths_mask(lengths, 7)[:, None].expand(-1, 2, -1)
        with torch.no_grad():
            yield f"PerceiverResampler ({name}, 2 frames)", ours(media), theirs(media)
            yield f"PerceiverResampler ({name}, masked vs unpadded)", \
                *_masked_against_unpadded(ours(media, mask), theirs, media, lengths)


def open_flamingo_cases(dtype: torch.dtype, published: bool = False):
    from test_convert_flamingo import (
        OPEN_FLAMINGO,
        lengths_mask,
        open_flamingo,
        open_flamingo_helpers,
        ours_on_open_flamingo_media,
    )

    if published:  # open_flamingo's own (dim 1024, 6 layers, 64 latents), one CLIP ViT-L image
        torch.manual_seed(0)
        theirs = open_flamingo_helpers().PerceiverResampler(dim=1024).to(dtype).eval()
        ours = from_flamingo_resampler(theirs)
        media = torch.randn(1, 1, 1, 257, 1024, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            yield "PerceiverResampler (dim 1024, 6 layers, 64 latents; a 257-token image)", \
                ours_on_open_flamingo_media(ours, "separate", media), theirs(media)
        return
    for name, (_, frames) in OPEN_FLAMINGO.items():
        theirs = open_flamingo(name, dtype)
        ours = from_flamingo_resampler(theirs)
        g = torch.Generator().manual_seed(0)
        media = torch.randn(3, 2, 3, 5, OPEN_FLAMINGO[name][0]["dim"], generator=g, dtype=dtype)
        lengths = [5, 3, 1]
        mask = lengths_mask(lengths, 5)[:, None, None].expand(-1, 2, 3, -1)
        with torch.no_grad():
            yield f"PerceiverResampler ({name}, 2 items x 3 frames)", \
                ours_on_open_flamingo_media(ours, frames, media), theirs(media)
            yield f"PerceiverResampler ({name}, masked vs unpadded)", *_masked_against_unpadded(
                ours_on_open_flamingo_media(ours, frames, media, mask), theirs, media, lengths)


# --- DeepMind -----------------------------------------------------------------------------


def deepmind_cases(dtype: torch.dtype):
    from test_convert_deepmind import CASES

    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    for family, case in CASES.items():
        yield family, *case(np_dtype)


# --- parameter counts ---------------------------------------------------------------------


def counts() -> None:
    import transformers as tf

    image = dict(num_latents=512, d_latents=1024, num_blocks=8, num_self_attends_per_block=6,
                 num_cross_attention_heads=1, num_self_attention_heads=8, num_labels=1000)
    published = [
        ("vision-perceiver-fourier", "PerceiverForImageClassificationFourier", image),
        ("vision-perceiver-learned", "PerceiverForImageClassificationLearned",
         dict(image, image_size=224)),
        ("vision-perceiver-conv", "PerceiverForImageClassificationConvProcessing", image),
        ("language-perceiver", "PerceiverForMaskedLM", dict(qk_channels=256, v_channels=1280)),
        ("optical-flow-perceiver", "PerceiverForOpticalFlow",
         dict(num_latents=2048, d_latents=512, num_blocks=1, num_self_attends_per_block=24,
              num_self_attention_heads=16, num_cross_attention_heads=1)),
        ("multimodal-perceiver", "PerceiverForMultimodalAutoencoding",
         dict(num_latents=784, d_latents=512, num_blocks=1, num_self_attends_per_block=8,
              num_self_attention_heads=8, num_cross_attention_heads=1, num_labels=700)),
    ]
    print("| preset | transformers | ours |\n|---|---:|---:|")
    with torch.device("meta"):
        for name, cls, config in published:
            theirs = getattr(tf, cls)(tf.PerceiverConfig(**config))
            ours = create_model(name)
            n = [sum(p.numel() for p in m.parameters()) for m in (theirs, ours)]
            print(f"| {name} | {n[0]:,} | {n[1]:,} |")


#: --sources name -> (the table's source, its cases, the distribution whose version is noted).
SOURCES = {
    "transformers": ("transformers", transformers_cases, "transformers"),
    "perceiver-pytorch": ("perceiver-pytorch", lucidrains_cases, "perceiver-pytorch"),
    "deepmind": ("DeepMind (NumPy reference)", deepmind_cases, None),
    "perceiver-ar-pytorch": ("perceiver-ar-pytorch", perceiver_ar_cases, "perceiver-ar-pytorch"),
    "flamingo-pytorch": ("flamingo-pytorch", flamingo_pytorch_cases, "flamingo-pytorch"),
    "open_flamingo": ("open_flamingo", open_flamingo_cases, "open-flamingo"),
}
PUBLISHED = ("transformers", "perceiver-pytorch", "perceiver-ar-pytorch", "open_flamingo")


def version(distribution: str | None) -> str:
    if distribution is None:
        return "-"
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> None:
    import pytest  # the tests' helpers skip a missing reference with pytest.skip

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", action="store_true",
                        help="also run the references at their published sizes (float32)")
    parser.add_argument("--counts", action="store_true", help="only the parameter counts")
    parser.add_argument("--sources", nargs="+", choices=list(SOURCES), default=list(SOURCES),
                        help="the references to compare with (default: all)")
    parser.add_argument("--out", type=Path,
                        help="also write the table to OUT.json and OUT.md, with the machine")
    args = parser.parse_args(argv)
    if args.counts:
        counts()
        return
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    rows: dict[tuple[str, str], dict[str, float]] = {}
    skipped: list[str] = []
    for key in args.sources:
        source, cases, _ = SOURCES[key]
        runs = [(torch.float64, False), (torch.float32, False)]
        runs += [(torch.float32, True)] if args.published and key in PUBLISHED else []
        try:
            for dtype, published in runs:
                column = "published" if published else str(dtype)[6:]
                for family, ours, theirs in cases(dtype, published=published):
                    rows.setdefault((source, family), {})[column] = max_diff(ours, theirs)
        except pytest.skip.Exception as reason:
            skipped.append(f"{source}: {reason}")
    columns = ["source", "family", "float64 (small)", "float32 (small)"]
    columns += ["float32 (published size)"] if args.published else []
    table = Table("parity", "Converted models against their references: max abs difference",
                  columns)
    for (source, family), diffs in rows.items():
        cells = [f"{diffs[k]:.1e}" if k in diffs else None
                 for k in ("float64", "float32") + (("published",) if args.published else ())]
        table.add(source, family, *cells)
    table.notes = [f"{SOURCES[k][0]} {version(SOURCES[k][2])}" for k in args.sources
                   if SOURCES[k][2]] + [f"skipped {reason}" for reason in skipped]
    print(table.markdown())
    if args.out:
        command = "python benchmarks/parity.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        meta = {**machine_info("cpu"), "command": command}
        for path in write_results([table], meta, args.out.parent, args.out.name):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
