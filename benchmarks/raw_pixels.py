"""Training on raw pixels on a CPU: the cross-attend kernel and the main job's step.

* Cross-attend kernel: latents attend to raw inputs whose keys and values need no gradient
  (the main job's first layer: batch 64, 16 latents, 784 pixels of 67 channels; the seed
  model's: one 224x224 image, 256 latents, 50,176 pixels of 29 channels; one in between).
  PyTorch's fused CPU kernel computes key and value gradients in its backward anyway;
  ``omniperceiver.kernels.attend`` builds the scores explicitly while they are small
  (``CPU_EXPLICIT_SCORES_MAX_BYTES``, ``CPU_EXPLICIT_HALF_SCORES_MAX_BYTES``). Forward +
  backward with each route forced, fp32 and under bf16 autocast, and the route ``attend``
  takes by itself.
* Seed training step: ``perceiver-seed``, batch 1, fp32, with each route forced.
* Training step: forward, backward and AdamW step of the main job's model
  (``configs/mnist.yaml``: ``mnist-perceiver`` on raw pixels) with either kernel, beside
  perceiver-pytorch 0.11 on the same pixels (64 x 128 latents, depth 4 with tied weights,
  16 bands, max_freq 28), batch 64; an epoch of the main job is 62 steps.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from common import Table, median

LIMITS = ("CPU_EXPLICIT_SCORES_MAX_BYTES", "CPU_EXPLICIT_HALF_SCORES_MAX_BYTES",
          "CPU_EXPLICIT_HALF_INFERENCE_SCORES_MAX_BYTES")


@contextlib.contextmanager
def _route(route: str):
    """``attend``'s own choice (``"auto"``), or every eligible call ``"explicit"`` / ``"fused"``."""
    from omniperceiver import kernels

    saved = [getattr(kernels, name) for name in LIMITS]
    if route != "auto":
        for name in LIMITS:
            setattr(kernels, name, 2**62 if route == "explicit" else 0)
    try:
        yield
    finally:
        for name, value in zip(LIMITS, saved, strict=True):
            setattr(kernels, name, value)


def _timed_kernel(route: str, autocast: bool = False):
    def run(fn):
        def call():
            with _route(route), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                fn()
        return call
    return run


def run_raw_pixels(run) -> list[Table]:
    from omniperceiver import kernels
    from omniperceiver.kernels import attend

    quick = run.quick
    kernel = Table("raw_pixels_kernel", "Cross-attend to raw inputs, training on a CPU "
                   "(forward + backward; keys and values need no gradient)",
                   ["case", "batch x latents", "inputs x channels", "precision", "scores MiB",
                    "fused ms", "explicit scores ms", "explicit speed-up", "attend's route"])
    from omniperceiver.models.classifiers import MNIST_ENCODER

    cases = ([("tiny", 8, 8, 64, 67)] if quick else
             [("main job", 64, MNIST_ENCODER["num_latents"], 784, 67),
              ("a 112x112 image", 1, 256, 12544, 29),
              ("seed model, 224x224", 1, 256, 50176, 29)])
    for name, batch, latents, inputs, channels in cases:
        context = torch.randn(batch, 1, inputs, channels)
        q = torch.randn(batch, 1, latents, channels, requires_grad=True)

        def step(q=q, context=context):
            attend(q, context, context).float().sum().backward()

        for precision, autocast in (("fp32", False), ("bf16", True)):
            rounds = run.rounds({"fused": _timed_kernel("fused", autocast)(step),
                                 "explicit": _timed_kernel("explicit", autocast)(step)})
            fused, explicit = median(rounds["fused"]), median(rounds["explicit"])
            speedup = median([f / e for f, e in zip(rounds["fused"], rounds["explicit"],
                                                     strict=True)])
            with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                chosen = kernels._explicit_scores_pay_off(q, context, context)
            score_bytes = batch * latents * inputs * (2 if autocast else 4)
            kernel.add(name, f"{batch} x {latents}", f"{inputs:,} x {channels}", precision,
                       round(score_bytes / 2**20, 1), round(fused * 1e3, 1),
                       round(explicit * 1e3, 1), round(speedup, 2),
                       "explicit" if chosen else "fused")
            print(f"  raw-input cross-attend, {name}, {precision}: fused {fused * 1e3:.1f} ms,"
                  f" explicit {explicit * 1e3:.1f} ms", flush=True)

    seed_table = Table("raw_pixels_seed_step", "Seed model training step on a CPU with each "
                       "cross-attend route (batch 1, fp32, forward + backward + AdamW)",
                       ["route", "step ms", "speed-up over explicit"])
    from models import MAIN_JOB_QUICK, build

    seed_case = build("omniperceiver-seed", quick=quick)
    seed = seed_case.model.train()
    image, label = seed_case.make_input(1), torch.tensor([3])
    seed_optimizer = torch.optim.AdamW(seed.parameters(), lr=1e-5)

    def seed_step():
        seed_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(seed(image), label).backward()
        seed_optimizer.step()

    rounds = run.rounds({route: _timed_kernel(route)(seed_step)
                         for route in ("explicit", "fused", "auto")})
    for route in ("explicit", "fused", "auto"):
        ratio = median([e / r for e, r in zip(rounds["explicit"], rounds[route], strict=True)])
        label_text = {"auto": "attend's own choice"}.get(route, f"{route} forced")
        seed_table.add(label_text, round(median(rounds[route]) * 1e3, 1), round(ratio, 2))
    print(f"  seed step: explicit {median(rounds['explicit']) * 1e3:.1f} ms, fused "
          f"{median(rounds['fused']) * 1e3:.1f} ms", flush=True)

    step_table = Table("raw_pixels_step", "The main job's training step on raw pixels "
                       "(batch 64, forward + backward + AdamW)",
                       ["model", "parameters", "step ms", "epoch s (62 steps)",
                        "vs perceiver-pytorch"])
    image_batch = 8 if quick else 64
    main_job = build("omniperceiver-main-job", quick=quick)
    x = main_job.make_input(image_batch)
    y = torch.randint(0, 10, (image_batch,))
    small = MAIN_JOB_QUICK if quick else {}  # the peer's latents match ours
    ours = main_job.model.train()
    import perceiver_pytorch

    peer = perceiver_pytorch.Perceiver(
        input_channels=1, input_axis=2, num_freq_bands=16, max_freq=28.0, depth=4,
        num_latents=small.get("num_latents", 64), latent_dim=small.get("latent_dim", 128),
        cross_heads=1, latent_heads=8, cross_dim_head=64, latent_dim_head=64, num_classes=10,
        weight_tie_layers=True).train()

    def train_step(model):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    ours_step = train_step(ours)
    rounds = run.rounds({"auto": _timed_kernel("auto")(ours_step),
                         "fused": _timed_kernel("fused")(ours_step),
                         "peer": train_step(peer)})
    medians = {k: median(v) for k, v in rounds.items()}
    count = {"ours": sum(p.numel() for p in ours.parameters()),
             "peer": sum(p.numel() for p in peer.parameters())}
    for key, label, params in (("auto", "omniperceiver mnist-perceiver", count["ours"]),
                               ("fused", "omniperceiver, fused kernel only", count["ours"]),
                               ("peer", "perceiver-pytorch 0.11", count["peer"])):
        step_table.add(label, f"{params:,}", round(medians[key] * 1e3, 1),
                       round(medians[key] * 62, 1), round(medians["peer"] / medians[key], 2))
    print(f"  main-job step: ours {medians['auto'] * 1e3:.1f} ms, fused only "
          f"{medians['fused'] * 1e3:.1f} ms, perceiver-pytorch {medians['peer'] * 1e3:.1f} ms",
          flush=True)
    return [kernel, seed_table, step_table]
