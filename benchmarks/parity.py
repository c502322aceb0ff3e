"""Converted models against their references: max abs difference per family (a table).

    python benchmarks/parity.py              # small configurations, float64 and float32
    python benchmarks/parity.py --published  # + published sizes in float32 (minutes)
    python benchmarks/parity.py --counts     # parameter counts: transformers vs our presets

References: transformers and perceiver-pytorch models randomly initialised offline; for DeepMind,
the NumPy re-implementation of the Haiku forward pass in tests/test_convert_deepmind.py, on
synthetic checkpoints with the release's names. The small cases are the tests' own (one oracle
for tests and table), so the tests' reference helpers are imported from tests/.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")


from omniperceiver import create_model  # noqa: E402
from omniperceiver.convert import from_lucidrains, from_transformers  # noqa: E402


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--published", action="store_true",
                        help="also run transformers and perceiver-pytorch at published sizes")
    parser.add_argument("--counts", action="store_true", help="only the parameter counts")
    args = parser.parse_args(argv)
    if args.counts:
        counts()
        return
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for source, cases in (("transformers", transformers_cases),
                          ("perceiver-pytorch", lucidrains_cases),
                          ("DeepMind (NumPy reference)", deepmind_cases)):
        for dtype in (torch.float64, torch.float32):
            for family, ours, theirs in cases(dtype):
                rows.setdefault((source, family), {})[str(dtype)[6:]] = max_diff(ours, theirs)
    if args.published:
        for source, cases in (("transformers", transformers_cases),
                              ("perceiver-pytorch", lucidrains_cases)):
            for family, ours, theirs in cases(torch.float32, published=True):
                rows.setdefault((source, family), {})["published"] = max_diff(ours, theirs)
    print("| source | family | float64 (small) | float32 (small) |"
          + (" float32 (published size) |" if args.published else ""))
    print("|---|---|---:|---:|" + ("---:|" if args.published else ""))
    for (source, family), diffs in rows.items():
        cells = [f"{diffs[k]:.1e}" if k in diffs else "-"
                 for k in ("float64", "float32") + (("published",) if args.published else ())]
        print(f"| {source} | {family} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
