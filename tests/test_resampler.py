"""The Perceiver Resampler's contract: shapes, media masks, order-free tokens, saving."""

import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from omniperceiver import PerceiverResampler, create_model, list_models, save_pretrained

SMALL = dict(dim=12, depth=2, num_latents=3, heads=2, head_dim=4, widening_factor=2)
# Idefics2's options: RMSNorm, grouped-query heads, a gated feed-forward; and IDEFICS' qk norms.
VARIANTS = {
    "flamingo": dict(max_frames=4),
    "idefics2": dict(norm="rms", norm_eps=1e-6, heads=4, kv_heads=2, activation="swiglu"),
    "idefics-qk-norm": dict(qk_norm=True, activation="relu"),
}


def resampler(variant="flamingo", **overrides):
    torch.manual_seed(0)
    model = PerceiverResampler(**{**SMALL, **VARIANTS[variant], **overrides}).double().eval()
    with torch.no_grad():  # norms start at 1 and 0: make every weight matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


MODELS = {name: resampler(name) for name in VARIANTS}
MODELS["joint"] = resampler(frames="joint", max_frames=None)  # no time embeddings


@pytest.mark.parametrize("frames, shape, expected", [
    ("separate", (2, 5, 12), (2, 3, 12)),
    ("separate", (2, 4, 5, 12), (2, 4, 3, 12)),
    ("joint", (2, 5, 12), (2, 3, 12)),
    ("joint", (2, 4, 5, 12), (2, 3, 12)),
])
def test_shapes(frames, shape, expected):
    model = resampler(frames=frames)
    with torch.no_grad():
        assert model(torch.randn(shape, dtype=torch.float64)).shape == expected


def test_preset_is_registered_with_open_flamingo_sizes():
    assert "perceiver-resampler" in list_models()
    model = create_model("perceiver-resampler")
    assert tuple(model.latents.shape) == (64, 1024) and len(model.layers) == 6
    assert model.recipe["overrides"]["heads"] == 8


def media_and_mask(seed, batch, frames, tokens, dim=12):
    generator = torch.Generator().manual_seed(seed)
    media = torch.randn(batch, frames, tokens, dim, generator=generator, dtype=torch.float64)
    mask = torch.rand(batch, frames, tokens, generator=generator) < 0.6
    return media, mask


@given(seed=st.integers(0, 2**16), batch=st.integers(1, 3), frames=st.integers(1, 4),
       tokens=st.integers(1, 7), variant=st.sampled_from(sorted(MODELS)))
def test_masked_media_values_do_not_matter(seed, batch, frames, tokens, variant):
    """Also when every token of a frame is masked: the latents still see themselves."""
    model = MODELS[variant]
    media, mask = media_and_mask(seed, batch, frames, tokens)
    other = torch.where(mask[..., None], media, torch.randn_like(media) * 100)
    with torch.no_grad():
        out = model(media, mask)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(model(other, mask), out, atol=1e-10, rtol=0)


@given(lengths=st.lists(st.integers(1, 8), min_size=1, max_size=3), pad=st.integers(1, 4),
       variant=st.sampled_from(sorted(MODELS)))
def test_padding_plus_mask_equals_unpadded(lengths, pad, variant):
    model = MODELS[variant]
    media = torch.randn(len(lengths), max(lengths) + pad, 12, dtype=torch.float64)
    mask = torch.arange(media.shape[1]) < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        batched = model(media, mask)
        for i, n in enumerate(lengths):
            torch.testing.assert_close(batched[i:i + 1], model(media[i:i + 1, :n]),
                                       atol=1e-10, rtol=0)


@given(seed=st.integers(0, 2**16), frames=st.integers(1, 4), tokens=st.integers(2, 7),
       variant=st.sampled_from(sorted(MODELS)))
def test_permuting_tokens_within_frames_changes_nothing(seed, frames, tokens, variant):
    """The tokens of a frame are a set: time embeddings are per frame, not per token."""
    model = MODELS[variant]
    media, mask = media_and_mask(seed, 2, frames, tokens)
    perm = torch.randperm(tokens, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        torch.testing.assert_close(model(media[:, :, perm], mask[:, :, perm]),
                                   model(media, mask), atol=1e-10, rtol=0)


@given(seed=st.integers(0, 2**16), frames=st.integers(2, 4), tokens=st.integers(1, 4))
def test_joint_frames_without_time_embeddings_are_one_set_of_tokens(seed, frames, tokens):
    model = MODELS["joint"]
    media, mask = media_and_mask(seed, 2, frames, tokens)
    with torch.no_grad():
        flat = model(media.flatten(1, 2), mask.flatten(1, 2))
        torch.testing.assert_close(model(media, mask), flat, atol=1e-10, rtol=0)
        perm = torch.randperm(frames * tokens, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(model(media.flatten(1, 2)[:, perm],
                                         mask.flatten(1, 2)[:, perm]), flat, atol=1e-10, rtol=0)


def test_separate_frames_are_resampled_alone_with_their_time_embedding():
    model = MODELS["flamingo"]
    media, mask = media_and_mask(0, 2, 3, 5)
    with torch.no_grad():
        out = model(media, mask)
        for t in range(3):
            frame = media[:, t] + model.time_embeddings[t] - model.time_embeddings[0]
            torch.testing.assert_close(out[:, t], model(frame, mask[:, t]), atol=1e-10, rtol=0)
        # the time embeddings tell frames apart: the same tokens in frame 0 and 1 differ
        same = media[:, :1].expand(-1, 2, -1, -1)
        out = model(same)
        assert (out[:, 0] - out[:, 1]).abs().max() > 1e-4


def test_grouped_query_heads_equal_full_heads_with_shared_keys_and_values():
    grouped = MODELS["idefics2"]
    full = PerceiverResampler(**{**SMALL, **VARIANTS["idefics2"], "kv_heads": None}).double()
    state = grouped.state_dict()
    for i in range(SMALL["depth"]):
        name = f"layers.{i}.attention.to_kv.weight"
        k, v = state[name].view(2, 2, 4, 12).unbind(0)  # (k/v, kv_heads, head_dim, dim)
        shared = [k.repeat_interleave(2, 0), v.repeat_interleave(2, 0)]  # 4 heads each
        state[name] = torch.cat(shared).flatten(0, 1)
    full.load_state_dict(state)
    media, mask = media_and_mask(0, 2, 1, 6)
    with torch.no_grad():
        torch.testing.assert_close(full.eval()(media[:, 0], mask[:, 0]),
                                   grouped(media[:, 0], mask[:, 0]), atol=1e-12, rtol=0)


@pytest.mark.parametrize("call, message", [
    (lambda m: m(torch.randn(2, 5, 7)), r"media must be \(batch, n, 12\).*got \(2, 5, 7\)"),
    (lambda m: m(torch.randn(5, 12)), r"got \(5, 12\)"),
    (lambda m: m(torch.randn(2, 5, 12), torch.ones(2, 4, dtype=torch.bool)),
     r"mask must be bool of shape \(2, 5\).*got torch.bool \(2, 4\)"),
    (lambda m: m(torch.randn(2, 5, 12), torch.ones(2, 5)), r"got torch.float32"),
    (lambda m: m(torch.randn(1, 5, 2, 12)), "at most max_frames=4 frames .* got 5"),
])
def test_bad_inputs_name_expected_and_received(call, message):
    model = PerceiverResampler(**SMALL, max_frames=4)
    with pytest.raises(ValueError, match=message):
        call(model)


@pytest.mark.parametrize("overrides, message", [
    (dict(frames="time"), "frames must be one of"), (dict(norm="batch"), "norm must be one of"),
    (dict(kv_heads=3), "divisible by kv_heads=3"), (dict(activation="tanh"), "activation"),
])
def test_bad_options(overrides, message):
    with pytest.raises(ValueError, match=message):
        PerceiverResampler(**{**SMALL, **overrides})


def test_save_and_load_in_a_fresh_interpreter(tmp_path):
    model = create_model("perceiver-resampler", **{**SMALL, **VARIANTS["idefics2"]}, max_frames=2)
    media = torch.randn(2, 2, 5, 12)
    mask = torch.rand(2, 2, 5) < 0.7
    with torch.no_grad():
        expected = model.eval()(media, mask)
    save_pretrained(model, tmp_path / "model")
    torch.save({"media": media, "mask": mask}, tmp_path / "inputs.pt")
    code = ("import sys, json, torch, omniperceiver; "
            "m = omniperceiver.from_pretrained(sys.argv[1]); d = torch.load(sys.argv[2]); "
            "print(json.dumps(m(d['media'], d['mask']).tolist()))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model"),
                          str(tmp_path / "inputs.pt")], capture_output=True, text=True,
                         check=True)
    torch.testing.assert_close(torch.tensor(json.loads(out.stdout)), expected, atol=1e-6,
                               rtol=0)
