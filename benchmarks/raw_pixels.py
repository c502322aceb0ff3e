"""Training on raw pixels on a CPU: the cross-attend kernel and the main job's step.

* Cross-attend kernel: latents (batch 64) attend to 784 raw-pixel inputs of 67 channels whose
  keys and values need no gradient (the main job's first layer). PyTorch's fused CPU kernel
  computes key and value gradients in its backward anyway; ``omniperceiver.kernels.attend``
  builds the scores explicitly there (``CPU_EXPLICIT_SCORES_MAX_BYTES``). Forward + backward.
* Training step: forward, backward and AdamW step of the main job's model
  (``configs/mnist.yaml``: ``mnist-perceiver`` on raw pixels) with either kernel, beside
  perceiver-pytorch 0.11 on the same pixels (64 x 128 latents, depth 4 with tied weights,
  16 bands, max_freq 28), batch 64; an epoch of the main job is 62 steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import Table


def _timed_kernel(explicit: bool):
    from omniperceiver import kernels

    limit = kernels.CPU_EXPLICIT_SCORES_MAX_BYTES if explicit else 0

    def run(fn):
        def call():
            saved = kernels.CPU_EXPLICIT_SCORES_MAX_BYTES
            kernels.CPU_EXPLICIT_SCORES_MAX_BYTES = limit
            try:
                fn()
            finally:
                kernels.CPU_EXPLICIT_SCORES_MAX_BYTES = saved
        return call
    return run


def run_raw_pixels(run) -> list[Table]:
    from omniperceiver import create_model
    from omniperceiver.kernels import attend

    quick = run.quick
    batch, inputs, channels = (8, 64, 67) if quick else (64, 784, 67)
    kernel = Table("raw_pixels_kernel", "Cross-attend to raw pixels, training on a CPU "
                   "(forward + backward; keys and values need no gradient)",
                   ["latents", "inputs x channels", "fused ms", "explicit scores ms",
                    "speed-up"])
    context = torch.randn(batch, 1, inputs, channels)
    for latents in ((8,) if quick else (32, 64, 128)):
        q = torch.randn(batch, 1, latents, channels, requires_grad=True)

        def step(q=q):
            attend(q, context, context).sum().backward()

        rounds = run.rounds({"fused": _timed_kernel(False)(step),
                             "explicit": _timed_kernel(True)(step)})
        fused, explicit = (sorted(rounds[k])[len(rounds[k]) // 2] for k in ("fused", "explicit"))
        speedup = sorted(f / e for f, e in zip(rounds["fused"], rounds["explicit"],
                                                strict=True))[len(rounds["fused"]) // 2]
        kernel.add(latents, f"{inputs} x {channels}", round(fused * 1e3, 1),
                   round(explicit * 1e3, 1), round(speedup, 2))
        print(f"  raw-pixel cross-attend, {latents} latents: fused {fused * 1e3:.1f} ms, "
              f"explicit {explicit * 1e3:.1f} ms", flush=True)

    step_table = Table("raw_pixels_step", "The main job's training step on raw pixels "
                       "(batch 64, forward + backward + AdamW)",
                       ["model", "parameters", "step ms", "epoch s (62 steps)",
                        "vs perceiver-pytorch"])
    image_batch = 8 if quick else 64
    x = torch.rand(image_batch, 28, 28, 1)
    y = torch.randint(0, 10, (image_batch,))
    small = dict(num_latents=8, latent_dim=32) if quick else {}
    ours = create_model("mnist-perceiver", encoder=small).train()
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
    rounds = run.rounds({"explicit": _timed_kernel(True)(ours_step),
                         "fused": _timed_kernel(False)(ours_step),
                         "peer": train_step(peer)})
    medians = {k: sorted(v)[len(v) // 2] for k, v in rounds.items()}
    count = {"ours": sum(p.numel() for p in ours.parameters()),
             "peer": sum(p.numel() for p in peer.parameters())}
    for key, label, params in (("explicit", "omniperceiver mnist-perceiver", count["ours"]),
                               ("fused", "omniperceiver, fused kernel only", count["ours"]),
                               ("peer", "perceiver-pytorch 0.11", count["peer"])):
        step_table.add(label, f"{params:,}", round(medians[key] * 1e3, 1),
                       round(medians[key] * 62, 1), round(medians["peer"] / medians[key], 2))
    print(f"  main-job step: ours {medians['explicit'] * 1e3:.1f} ms, fused only "
          f"{medians['fused'] * 1e3:.1f} ms, perceiver-pytorch {medians['peer'] * 1e3:.1f} ms",
          flush=True)
    return [kernel, step_table]
