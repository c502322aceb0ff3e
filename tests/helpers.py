"""Small models shared by the core tests, and what the scale-out tests compare."""

import torch

from omniperceiver import (
    AttentionSpec,
    ClassificationDecoderConfig,
    EncoderConfig,
    Perceiver,
    PerceiverIO,
    PerceiverIOConfig,
)


def tiny_io(*, input_channels=5, input_axis=1, position=None, decoder=None, dtype=torch.float32,
            **encoder):
    enc = dict(num_latents=6, latent_dim=16, num_blocks=2, self_attends_per_block=2,
               cross_attend=AttentionSpec(heads=1, qk_channels=8),
               self_attend=AttentionSpec(heads=2, widening_factor=2))
    enc.update(encoder)
    config = PerceiverIOConfig(
        input_channels=input_channels, input_axis=input_axis, position=position,
        encoder=EncoderConfig(**enc),
        decoder=decoder or ClassificationDecoderConfig(num_classes=3))
    return PerceiverIO(config).to(dtype).eval()


def tiny_perceiver(**kwargs):
    args = dict(input_channels=3, input_axis=2, num_freq_bands=3, max_freq=8.0, depth=2,
                num_latents=6, latent_dim=16, cross_heads=1, latent_heads=2, cross_dim_head=8,
                latent_dim_head=8, num_classes=4)
    args.update(kwargs)
    return Perceiver(**args).eval()


def key_bias_entries(model) -> dict[str, slice]:
    """The key half of every attention layer's ``to_kv.bias``: its gradient is zero in exact
    arithmetic (the softmax cancels ``q . b_k``), so Adam turns rounding noise into steps of
    the size of the learning rate there; runs that sum in another order differ by that much."""
    from omniperceiver.attention import Attention

    return {f"{name}.to_kv.bias": slice(0, module.qk_channels)
            for name, module in model.named_modules() if isinstance(module, Attention)}
