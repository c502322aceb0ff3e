"""perceiver-ar-pytorch 0.0.10 ``PerceiverAR`` -> our PerceiverAR (``from_lucidrains``): the
same logits for random configurations, input lengths and prefix masks, and the same greedy
tokens from their ``AutoregressiveWrapper``.

Tolerances: float32 1e-4; float64 1e-10 once their rotary frequencies, which they compute in
float32 when the model is built (a float64 model keeps the rounded values), are set to the
float64 values ours use (unchanged, float64 agrees to 1e-6).
"""

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omniperceiver import PerceiverAR, from_pretrained, save_pretrained
from omniperceiver.convert import from_lucidrains
from omniperceiver.convert._common import count_parameters as n_params
from omniperceiver.convert.cli import main as convert_main
from omniperceiver.convert.perceiver_ar import ROTARY_BASE
from omniperceiver.errors import ConfigError

perceiver_ar_pytorch = pytest.importorskip("perceiver_ar_pytorch")
from perceiver_ar_pytorch.autoregressive_wrapper import AutoregressiveWrapper  # noqa: E402

TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-10}
KWARGS = dict(num_tokens=20, dim=24, depth=2, max_seq_len=12, cross_attn_seq_len=5, heads=2,
              dim_head=40, ff_mult=2)


def exact_frequencies(theirs) -> None:
    """Their rotary frequencies in float64, as ours compute them."""
    rotary = theirs.rotary_pos_emb
    channels = 2 * rotary.inv_freq.numel()
    exponents = torch.arange(0, channels, 2, dtype=torch.float64) / channels
    rotary.inv_freq.copy_(ROTARY_BASE ** -exponents)


def reference(dtype=torch.float64, seed=0, exact=True, **kwargs):
    torch.manual_seed(seed)
    theirs = perceiver_ar_pytorch.PerceiverAR(**kwargs).to(dtype).eval()
    with torch.no_grad():  # norms start at 1 and 0: perturb every weight so that each matters
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        if exact and dtype == torch.float64:
            exact_frequencies(theirs)
    return theirs


def prefix_mask(batch, prefix, generator):
    """Their ``prefix_mask`` (batch, P), False = not attended: left padding in one row, holes
    in another; ours takes it with the latents' positions appended (always True)."""
    mask = torch.rand(batch, prefix, generator=generator) > 0.3
    mask[0, : prefix // 2] = False
    return mask


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), heads=st.integers(1, 3),
       dim_head=st.sampled_from([32, 40, 64]), dim=st.integers(4, 40), depth=st.integers(1, 2),
       max_seq_len=st.integers(3, 14), ff_mult=st.sampled_from([1, 2, 4]),
       dtype=st.sampled_from([torch.float32, torch.float64]), data=st.data())
def test_logits_equal_theirs(seed, heads, dim_head, dim, depth, max_seq_len, ff_mult, dtype,
                             data):
    prefix = data.draw(st.integers(1, max_seq_len - 1), label="cross_attn_seq_len")
    n = data.draw(st.integers(prefix + 1, max_seq_len), label="N")
    kwargs = dict(num_tokens=17, dim=dim, depth=depth, max_seq_len=max_seq_len,
                  cross_attn_seq_len=prefix, heads=heads, dim_head=dim_head, ff_mult=ff_mult)
    theirs = reference(dtype, seed, **kwargs)
    ours = from_lucidrains(theirs, **kwargs)
    assert isinstance(ours, PerceiverAR) and ours.num_latents == max_seq_len - prefix
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 17, (3, n), generator=g)
    mask = prefix_mask(3, prefix, g)
    ours_mask = torch.cat([mask, torch.ones(3, n - prefix, dtype=torch.bool)], dim=1)
    tol = dict(atol=TOLERANCE[dtype], rtol=0)
    with torch.no_grad():
        want = theirs(ids)
        torch.testing.assert_close(ours(ids, num_latents=n - prefix), want, **tol)
        masked = ours(ids, ours_mask, num_latents=n - prefix)
        torch.testing.assert_close(masked, theirs(ids, prefix_mask=mask), **tol)
        if n == max_seq_len:  # the default M is theirs at N = max_seq_len
            torch.testing.assert_close(ours(ids), want, **tol)


def test_float64_gap_is_their_float32_frequencies():
    theirs = reference(torch.float64, exact=False, **KWARGS)
    ours = from_lucidrains(theirs, **KWARGS)
    ids = torch.randint(0, 20, (2, 12))
    with torch.no_grad():
        gap = (ours(ids) - theirs(ids)).abs().max()
        exact_frequencies(theirs)
        torch.testing.assert_close(ours(ids), theirs(ids), atol=1e-10, rtol=0)
    assert 1e-10 < gap < 1e-6


def test_extra_parameters_are_zero_biases_where_they_have_none():
    theirs = reference(**KWARGS)
    ours = from_lucidrains(theirs.state_dict(), **KWARGS)
    zero_biases = [p for name, p in ours.named_parameters()
                   if name.endswith("bias") and not p.any()]
    assert zero_biases and n_params(ours) - n_params(theirs) == sum(p.numel() for p in zero_biases)


def test_greedy_generation_equals_their_wrapper():
    """Their generate with top-k of one token is greedy; prompts fill max_seq_len (before
    that, their number of latents grows with the sequence, see docs/perceiver-ar.md)."""
    theirs = reference(**KWARGS)
    ours = from_lucidrains(theirs, **KWARGS)
    prompt = torch.randint(0, 20, (2, 15))
    torch.manual_seed(0)
    want = AutoregressiveWrapper(theirs).generate(prompt, 8, filter_thres=1 - 1.5 / 20)
    got = ours.generate(prompt, 8, temperature=0)
    assert torch.equal(got[:, 15:], want)


def test_round_trip_and_cli(tmp_path):
    theirs = reference(torch.float32, **KWARGS)
    ours = from_lucidrains({f"module.{k}": v for k, v in theirs.state_dict().items()}, **KWARGS)
    assert ours.recipe["preset"] == "perceiver-ar"
    save_pretrained(ours, tmp_path / "api")
    ids = torch.randint(0, 20, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(from_pretrained(tmp_path / "api")(ids), ours(ids),
                                   atol=0, rtol=0)
    torch.save(theirs.state_dict(), tmp_path / "ar.pt")
    assert convert_main(["--from", "lucidrains", str(tmp_path / "ar.pt"), str(tmp_path / "cli"),
                         "--kwargs", json.dumps(KWARGS)]) == 0
    with torch.no_grad():
        torch.testing.assert_close(from_pretrained(tmp_path / "cli")(ids), theirs(ids),
                                   atol=1e-4, rtol=0)


@pytest.mark.parametrize("change, message", [
    (dict(perceive_depth=2), "perceive_depth=2 cannot be converted"),
    (dict(dim_head=16), "dim_head=16 cannot be converted"),
    (dict(dim_head=66), "dim_head=66 cannot be converted"),
    (dict(dim=9, ff_mult=1.5), "ff_mult=1.5 makes a feed-forward 13 wide"),
    (dict(depth=0), "depth=0 cannot be converted"),
])
def test_configurations_without_an_equivalent_are_refused(change, message):
    kwargs = {**KWARGS, **change}
    theirs = reference(**kwargs)
    with pytest.raises(ConfigError, match=message):
        from_lucidrains(theirs, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({k: v for k, v in KWARGS.items() if k != "cross_attn_seq_len"},
     "keyword.*cross_attn_seq_len"),
    ({**KWARGS, "weight_tie_layers": True}, "no keyword 'weight_tie_layers'"),
    ({**KWARGS, "depth": 1}, "more layers than depth=1"),
])
def test_wrong_keywords_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        from_lucidrains(reference(**KWARGS), **kwargs)
