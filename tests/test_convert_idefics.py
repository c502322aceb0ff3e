"""transformers' IDEFICS and Idefics2 Perceiver Resamplers -> our PerceiverResampler: the same
outputs, the same parameter counts.

Reference modules are built offline from small configs with random weights. Tolerances:
1e-5 in float32; in float64 1e-10 for IDEFICS, and 1e-6 for Idefics2, whose RMSNorm computes
in float32 whatever the input's dtype. IDEFICS' resampler takes no mask: ours with a media
mask is compared with IDEFICS' on each example's unpadded tokens.
"""

import pytest
import torch

from omniperceiver import from_pretrained, save_pretrained
from omniperceiver.convert import from_idefics2_resampler, from_idefics_resampler
from omniperceiver.convert._common import count_parameters as n_params
from omniperceiver.errors import ConfigError

transformers = pytest.importorskip("transformers")
from transformers.models.idefics.perceiver import IdeficsPerceiverResampler  # noqa: E402
from transformers.models.idefics2.configuration_idefics2 import (  # noqa: E402
    Idefics2PerceiverConfig,
)
from transformers.models.idefics2.modeling_idefics2 import (  # noqa: E402
    Idefics2PerceiverResampler,
)

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
IDEFICS2_FLOAT64 = 1e-6  # their RMSNorm computes in float32

# Two configurations each: the second turns every knob the variant has.
IDEFICS = {
    "plain": dict(embed_dim=16, depth=2, n_heads=2, head_dim=6, n_latents=4, qk_norms=False),
    "qk-norms": dict(embed_dim=12, depth=3, n_heads=3, head_dim=5, n_latents=5, qk_norms=True),
}
IDEFICS2 = {
    "grouped-query": dict(hidden_size=16, resampler_n_latents=4, resampler_depth=2,
                          resampler_n_heads=4, resampler_head_dim=6, num_key_value_heads=2),
    "gelu-full-heads": dict(hidden_size=12, resampler_n_latents=3, resampler_depth=3,
                            resampler_n_heads=3, resampler_head_dim=5, num_key_value_heads=3,
                            hidden_act="gelu", rms_norm_eps=1e-5),
}


def randomise(module, dtype):
    module = module.to(dtype).eval()
    with torch.no_grad():  # norms start at 1 and 0, Idefics2's latents at 1: make all matter
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return module


def idefics(name, dtype):
    torch.manual_seed(0)
    c = dict(IDEFICS[name])
    config = transformers.IdeficsConfig(
        vision_config=dict(embed_dim=c["embed_dim"]),
        perceiver_config=dict(qk_layer_norms_perceiver=c.pop("qk_norms")))
    return randomise(IdeficsPerceiverResampler(config, **c), dtype)


def idefics2(name, dtype, attn_implementation="eager"):
    torch.manual_seed(0)
    config = Idefics2PerceiverConfig(**IDEFICS2[name], attn_implementation=attn_implementation)
    return randomise(Idefics2PerceiverResampler(config), dtype)


def media_and_mask(dim, dtype):
    torch.manual_seed(1)
    media = torch.randn(3, 7, dim, dtype=dtype)
    lengths = torch.tensor([7, 4, 1])
    return media, torch.arange(7) < lengths[:, None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(IDEFICS))
def test_idefics_parity(name, dtype):
    hf = idefics(name, dtype)
    ours = from_idefics_resampler(hf)
    assert n_params(ours) == n_params(hf)
    media, mask = media_and_mask(hf.embed_dim, dtype)
    tol = dict(atol=TOLERANCE[dtype], rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(ours(media), hf(media), **tol)
        masked = ours(media, mask)
        for i, n in enumerate(mask.sum(dim=1).tolist()):
            torch.testing.assert_close(masked[i:i + 1], hf(media[i:i + 1, :n]), **tol)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(IDEFICS2))
def test_idefics2_parity(name, dtype, attn_implementation):
    hf = idefics2(name, dtype, attn_implementation)
    ours = from_idefics2_resampler(hf)
    assert n_params(ours) == n_params(hf)
    media, mask = media_and_mask(hf.hidden_size, dtype)
    tol = dict(atol=IDEFICS2_FLOAT64 if dtype == torch.float64 else TOLERANCE[dtype], rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(ours(media), hf(media, torch.ones_like(mask)), **tol)
        masked = ours(media, mask)
        torch.testing.assert_close(masked, hf(media, mask.long()), **tol)
        assert (masked - ours(media)).abs().max() > 1e-3  # the mask matters


def test_converted_resampler_saves_and_loads(tmp_path):
    ours = from_idefics2_resampler(idefics2("grouped-query", torch.float32))
    assert ours.recipe["preset"] == "perceiver-resampler"
    save_pretrained(ours, tmp_path)
    media, mask = media_and_mask(16, torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(from_pretrained(tmp_path)(media, mask), ours(media, mask),
                                   atol=0, rtol=0)


def test_idefics2_activation_without_a_gated_twin_is_refused():
    torch.manual_seed(0)
    config = Idefics2PerceiverConfig(**{**IDEFICS2["grouped-query"], "hidden_act": "relu"})
    with pytest.raises(ConfigError, match="hidden_act must be one of .* got 'relu'"):
        from_idefics2_resampler(Idefics2PerceiverResampler(config))


def test_the_docs_example_runs_as_written():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "interop.md").read_text()
    section = text[text.index("## Perceiver Resampler"):]
    block = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    exec(compile(block, "docs/interop.md", "exec"), {})
