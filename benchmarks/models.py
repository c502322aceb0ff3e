"""The models the benchmarks compare, built the same way in the main process and in the
memory subprocesses.

A :class:`Case` is a model plus how to make its input and call it. ``quick=True`` builds tiny
versions with the same structure (the CI smoke run); the numbers then mean nothing.

* ``omniperceiver-seed`` / ``perceiver-pytorch-seed``: perceiver-pytorch's README model
  (``create_model("perceiver-seed")`` and ``perceiver_pytorch.Perceiver`` with the same
  arguments), 224 x 224 x 3 images, channels-last.
* ``omniperceiver-vpf`` / ``transformers-vpf``: ``create_model("vision-perceiver-fourier")``
  and transformers' ``PerceiverForImageClassificationFourier`` built offline from a
  ``PerceiverConfig`` with the same hyper-parameters (random weights; channels-first input).
* ``transformer-encoder``: a plain Transformer encoder over every input (the same pixels and
  Fourier features as the seed model), the quadratic baseline of the scaling benchmark.
* ``omniperceiver-points``: a point-cloud encoder (returns latents), for the chunked demo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

SEED_ARGS = dict(input_channels=3, input_axis=2, num_freq_bands=6, max_freq=10.0, depth=6,
                 num_latents=256, latent_dim=512, cross_heads=1, latent_heads=8,
                 cross_dim_head=64, latent_dim_head=64, num_classes=1000)
SEED_QUICK = dict(SEED_ARGS, depth=2, num_latents=16, latent_dim=32, latent_heads=2,
                  cross_dim_head=8, latent_dim_head=16, num_classes=10)
# vision-perceiver-fourier's hyper-parameters (transformers' PerceiverConfig names).
VPF_ARGS = dict(num_latents=512, d_latents=1024, d_model=261, num_blocks=8,
                num_self_attends_per_block=6, num_self_attention_heads=8,
                num_cross_attention_heads=1, cross_attention_widening_factor=1,
                self_attention_widening_factor=1, num_labels=1000)
VPF_QUICK = dict(VPF_ARGS, num_latents=16, d_latents=64, num_blocks=1,
                 num_self_attends_per_block=2, num_labels=10)


@dataclass
class Case:
    """``model``, ``make_input(batch)`` and ``forward(model, x) -> logits``."""

    name: str
    model: nn.Module
    make_input: Callable[[int], Tensor]
    forward: Callable[[nn.Module, Tensor], Tensor]
    num_classes: int

    def to(self, device: str) -> Case:
        self.model.to(device)
        make = self.make_input
        self.make_input = lambda batch: make(batch).to(device)
        return self


def image(batch: int, size: int, *, channels_last: bool = True, seed: int = 0) -> Tensor:
    x = torch.rand(batch, size, size, 3, generator=torch.Generator().manual_seed(seed))
    return x if channels_last else x.permute(0, 3, 1, 2).contiguous()


def image_shape(quick: bool) -> int:
    return 32 if quick else 224


def _omniperceiver_seed(quick: bool, size: int | None) -> Case:
    import omniperceiver

    args = SEED_QUICK if quick else SEED_ARGS
    overrides = {k: v for k, v in args.items() if SEED_ARGS.get(k) != v}
    model = omniperceiver.create_model("perceiver-seed", **overrides)
    size = size or image_shape(quick)
    return Case("omniperceiver", model, lambda b: image(b, size), lambda m, x: m(x),
                args["num_classes"])


def _perceiver_pytorch_seed(quick: bool, size: int | None) -> Case:
    from perceiver_pytorch import Perceiver

    args = SEED_QUICK if quick else SEED_ARGS
    size = size or image_shape(quick)
    return Case("perceiver-pytorch", Perceiver(**args), lambda b: image(b, size),
                lambda m, x: m(x), args["num_classes"])


def _omniperceiver_vpf(quick: bool, size: int | None) -> Case:
    import omniperceiver
    from omniperceiver import (
        AttentionSpec,
        ClassificationDecoderConfig,
        EncoderConfig,
        FourierConfig,
        PerceiverIO,
        PerceiverIOConfig,
    )

    size = size or image_shape(quick)
    if not quick:
        model = omniperceiver.create_model("vision-perceiver-fourier", image_shape=size)
    else:  # the same structure, scaled down like VPF_QUICK
        a = VPF_QUICK
        model = PerceiverIO(PerceiverIOConfig(
            input_channels=3, input_axis=2, input_shape=(size, size),
            position=FourierConfig(num_bands=64, max_resolution=(224, 224)),
            encoder=EncoderConfig(
                num_latents=a["num_latents"], latent_dim=a["d_latents"],
                num_blocks=a["num_blocks"], self_attends_per_block=a["num_self_attends_per_block"],
                cross_attend=AttentionSpec(heads=1),
                self_attend=AttentionSpec(heads=a["num_self_attention_heads"])),
            decoder=ClassificationDecoderConfig(num_classes=a["num_labels"], pooling="query")))
    classes = (VPF_QUICK if quick else VPF_ARGS)["num_labels"]
    return Case("omniperceiver", model, lambda b: image(b, size), lambda m, x: m(x), classes)


def _transformers_vpf(quick: bool, size: int | None) -> Case:
    from transformers import PerceiverConfig, PerceiverForImageClassificationFourier

    size = size or image_shape(quick)
    args = VPF_QUICK if quick else VPF_ARGS
    model = PerceiverForImageClassificationFourier(PerceiverConfig(**args, image_size=size))
    return Case("transformers", model, lambda b: image(b, size, channels_last=False),
                lambda m, x: m(inputs=x).logits, args["num_labels"])


class TransformerEncoderBaseline(nn.Module):
    """A plain Transformer over all inputs: the seed model's pixels + Fourier features
    (29 channels) embedded to ``width``, ``depth`` pre-norm encoder layers (torch's
    ``nn.TransformerEncoder``), mean-pooled, classified. Its time grows with the square of the
    number of inputs. Run with torch's MHA "fast path" off, so that its attention is
    ``scaled_dot_product_attention`` (flash kernel, memory linear in the inputs) rather than
    the fast path's CPU kernel that builds the (inputs x inputs) weights (8 GB at 128x128)."""

    def __init__(self, *, width: int = 512, heads: int = 8, depth: int = 1,
                 num_classes: int = 1000):
        super().__init__()
        from omniperceiver.adapters import GridAdapter
        from omniperceiver.position import FourierPositionEncoding

        position = FourierPositionEncoding(num_axes=2, num_bands=6, max_resolution=10.0,
                                           layout="lucidrains")
        self.adapter = GridAdapter(input_channels=3, input_axis=2, position=position)
        self.embed = nn.Linear(self.adapter.num_channels, width)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        fast_path = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            h = self.encoder(self.embed(self.adapter(x).inputs))
        finally:
            torch.backends.mha.set_fastpath_enabled(fast_path)
        return self.head(h.mean(dim=1))


def _transformer_encoder(quick: bool, size: int | None) -> Case:
    width = 32 if quick else 512
    model = TransformerEncoderBaseline(width=width, heads=2 if quick else 8,
                                       num_classes=10 if quick else 1000)
    size = size or image_shape(quick)
    return Case("transformer-encoder", model, lambda b: image(b, size), lambda m, x: m(x),
                10 if quick else 1000)


class PointCloudEncoder(nn.Module):
    """Point clouds (batch, num_points, 3) -> latents: the point-cloud adapter (3D Fourier
    features of each point, 64 bands up to frequency 1120, as the Perceiver on ModelNet40) and
    an encoder. With ``encoder.config.input_chunk_size`` set, the adapter runs on slices of the
    points as the encoder consumes them (a per-point adapter needs nothing more), so the
    (num_points x 387) input array never exists whole."""

    def __init__(self, *, num_latents: int = 256, latent_dim: int = 512, num_bands: int = 64):
        super().__init__()
        from omniperceiver import AttentionSpec, EncoderConfig, PerceiverEncoder
        from omniperceiver.adapters import PointCloudAdapter

        self.adapter = PointCloudAdapter(num_bands=num_bands, max_resolution=2240.0)
        self.encoder = PerceiverEncoder(self.adapter.num_channels, EncoderConfig(
            num_latents=num_latents, latent_dim=latent_dim, num_blocks=2,
            self_attends_per_block=2, cross_attend=AttentionSpec(heads=1),
            self_attend=AttentionSpec(heads=8)))

    def forward(self, points: Tensor) -> Tensor:
        from omniperceiver.chunks import InputChunks

        chunk_size = self.encoder.config.input_chunk_size
        if chunk_size is None:
            return self.encoder(self.adapter(points).inputs)
        chunks = InputChunks(lambda start, stop: self.adapter(points[:, start:stop]).inputs,
                             batch_size=points.shape[0], num_inputs=points.shape[1],
                             chunk_size=chunk_size)
        return self.encoder(chunks)


def _omniperceiver_points(quick: bool, size: int | None) -> Case:
    model = (PointCloudEncoder(num_latents=16, latent_dim=32, num_bands=8) if quick
             else PointCloudEncoder())
    num_points = size or (4096 if quick else 100_000)

    def make_input(batch: int) -> Tensor:
        generator = torch.Generator().manual_seed(0)
        return torch.rand(batch, num_points, 3, generator=generator) * 2 - 1

    return Case("omniperceiver", model, make_input, lambda m, x: m(x), 0)


#: The main job's encoder made small for ``--quick``.
MAIN_JOB_QUICK = dict(num_latents=8, latent_dim=32)


def _omniperceiver_main_job(quick: bool, size: int | None) -> Case:
    """The main job's model (``configs/mnist.yaml``: mnist-perceiver on 28x28 raw pixels)."""
    import omniperceiver

    small = {"encoder": MAIN_JOB_QUICK} if quick else {}
    model = omniperceiver.create_model("mnist-perceiver", **small)
    return Case("omniperceiver", model,
                lambda b: torch.rand(b, 28, 28, 1, generator=torch.Generator().manual_seed(0)),
                lambda m, x: m(x), 10)


BUILDERS = {
    "omniperceiver-main-job": _omniperceiver_main_job,
    "omniperceiver-points": _omniperceiver_points,
    "omniperceiver-seed": _omniperceiver_seed,
    "perceiver-pytorch-seed": _perceiver_pytorch_seed,
    "omniperceiver-vpf": _omniperceiver_vpf,
    "transformers-vpf": _transformers_vpf,
    "transformer-encoder": _transformer_encoder,
}


def build(name: str, *, quick: bool = False, size: int | None = None, seed: int = 0) -> Case:
    """The case ``name`` (a key of BUILDERS), weights drawn with ``seed``; ``size`` overrides
    the image side."""
    torch.manual_seed(seed)
    return BUILDERS[name](quick, size)


def autocast(device: str, precision: str):
    """bf16 autocast for ``precision == "bf16"``, a no-op context for fp32."""
    return torch.autocast(device.split(":")[0], torch.bfloat16, enabled=precision == "bf16")


def forward_fn(case: Case, x: Tensor, *, device: str, precision: str) -> Callable[[], Tensor]:
    """One inference call, autocast entered per call (so its weight-cast cache is not kept
    from one call to the next)."""
    case.model.eval()

    def run() -> Tensor:
        with torch.inference_mode(), autocast(device, precision):
            return case.forward(case.model, x)

    return run


def latent_fn(case: Case, batch: int, *, device: str, precision: str,
              grad: bool = False) -> Callable[[], Tensor]:
    """omniperceiver's latent Transformer alone: the encoder's self-attention blocks, in
    their schedule, on the initial latents (what a forward spends besides the inputs)."""
    encoder = case.model.encoder.eval()
    latents = encoder.latents.detach().expand(batch, -1, -1)

    def run() -> Tensor:
        with torch.inference_mode(not grad), autocast(device, precision):
            x = latents
            for block in encoder.block_schedule:
                x = encoder.blocks[block](x)
            return x

    return run


def train_step_fn(case: Case, x: Tensor, *, device: str, precision: str,
                  model: nn.Module | None = None) -> Callable[[], None]:
    """One training step: forward, cross-entropy on fixed random labels, backward, AdamW.
    ``model`` replaces ``case.model`` in the call (a compiled version of it)."""
    case.model.train()
    call_model = case.model if model is None else model
    optimizer = torch.optim.AdamW(case.model.parameters(), lr=1e-5)
    labels = torch.randint(0, case.num_classes, (x.shape[0],),
                           generator=torch.Generator().manual_seed(0)).to(x.device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits = case.forward(call_model, x)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        loss.backward()
        optimizer.step()

    return step
