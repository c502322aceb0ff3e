"""Perceiver AR: causal masking aligned at the lower right, rotary positions, left padding,
prefix dropout, and generation whose cache gives what recomputing from scratch gives."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import omniperceiver
from omniperceiver import PerceiverAR, create_model
from omniperceiver.kernels import attend, attend_chunks
from omniperceiver.perceiver_ar import WindowSchedule
from omniperceiver.position import RotaryPositions

SRC = str(Path(omniperceiver.__file__).resolve().parents[1])
VOCAB, N, M = 23, 12, 4


def tiny(**overrides) -> PerceiverAR:
    torch.manual_seed(0)
    options = dict(vocab_size=VOCAB, max_context=N, num_latents=M, dim=16, heads=2,
                   num_self_attends=2, widening_factor=2)
    return PerceiverAR(**{**options, **overrides}).eval()


MODEL = tiny()
MODEL64 = tiny().double()


def logits(model, ids, **kwargs):
    with torch.no_grad():
        return model(ids, **kwargs)


# -- masking --------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, N), data=st.data())
def test_changing_a_token_never_changes_the_outputs_before_it(seed, n, data):
    m = data.draw(st.integers(1, n))
    j = data.draw(st.integers(0, n - 1))
    ids = torch.randint(0, VOCAB, (2, n), generator=torch.Generator().manual_seed(seed))
    changed = ids.clone()
    changed[:, j] = (changed[:, j] + 1) % VOCAB
    before, after = logits(MODEL, ids, num_latents=m), logits(MODEL, changed, num_latents=m)
    positions = torch.arange(n - m, n)  # latent i sits at N - M + i
    earlier = positions < j
    torch.testing.assert_close(after[:, earlier], before[:, earlier], rtol=0, atol=0)
    assert not torch.allclose(after[:, ~earlier], before[:, ~earlier])


def test_latents_are_aligned_at_the_lower_right():
    """Latent i (at position N - M + i) sees the whole prefix and its own token, nothing
    after: with upper-left alignment it would see only the first i + 1 tokens."""
    ids = torch.randint(0, VOCAB, (1, N))
    base = logits(MODEL, ids, num_latents=M)[0]
    first = ids.clone()
    first[0, 0] = (first[0, 0] + 1) % VOCAB
    assert (logits(MODEL, first, num_latents=M)[0] - base).abs().amax(dim=-1).min() > 1e-4
    for i in range(M):
        own = ids.clone()
        own[0, N - M + i] = (own[0, N - M + i] + 1) % VOCAB
        diff = (logits(MODEL, own, num_latents=M)[0] - base).abs().amax(dim=-1)
        assert (diff[:i] == 0).all() and (diff[i:] > 1e-4).all(), (i, diff)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), lengths=st.lists(st.integers(1, N), min_size=1, max_size=3),
       m=st.integers(1, M))
def test_left_padding_leaves_the_real_positions_outputs_unchanged(seed, lengths, m):
    generator = torch.Generator().manual_seed(seed)
    n = max(lengths)
    m = min(m, n)
    ids = torch.randint(0, VOCAB, (len(lengths), n), generator=generator)  # padding: junk ids
    mask = torch.arange(n)[None] >= n - torch.tensor(lengths)[:, None]
    padded = logits(MODEL64, ids, mask=mask, num_latents=m)
    for row, length in enumerate(lengths):
        alone = logits(MODEL64, ids[row:row + 1, n - length:], num_latents=min(m, length))
        real = min(m, length)
        torch.testing.assert_close(padded[row, m - real:], alone[0, -real:], rtol=0, atol=1e-10)


# -- one layer against the textbook formula ----------------------------------------------------

def test_the_cross_attend_is_the_textbook_formula_in_float64():
    model = tiny(rotary_fraction=1.0).double()
    layer, heads, dim = model.cross_attend, 2, 16
    d = dim // heads
    x = torch.randn(1, 7, dim, dtype=torch.float64)
    pos = torch.tensor([[0, 1, 2, 3, 5, 8, 9]])  # a gap, as prefix dropout leaves
    queries = slice(4, 7)

    def norm(t, ln):
        return (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False,
                                                                 keepdim=True) + 1e-5) \
            * ln.weight + ln.bias

    def rope(t, p):  # t (n, d): channels j and j + d/2 turn by p * theta_j
        theta = model.max_context ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        out = t.clone()
        for row in range(t.shape[0]):
            for j in range(d // 2):
                a = p[row].item() * theta[j]
                c, s = math.cos(a), math.sin(a)
                out[row, j] = c * t[row, j] - s * t[row, j + d // 2]
                out[row, j + d // 2] = s * t[row, j] + c * t[row, j + d // 2]
        return out

    att = layer.attention
    w_k, w_v = att.to_kv.weight.split(dim)
    b_k, b_v = att.to_kv.bias.split(dim)
    xq, xkv = norm(x[0, queries], layer.norm_q), norm(x[0], layer.norm_kv)
    q, k, v = xq @ att.to_q.weight.T + att.to_q.bias, xkv @ w_k.T + b_k, xkv @ w_v.T + b_v
    outs = []
    for h in range(heads):
        c = slice(h * d, (h + 1) * d)
        scores = rope(q[:, c], pos[0, queries]) @ rope(k[:, c], pos[0]).T / math.sqrt(d)
        scores = scores.masked_fill(pos[0][None, :] > pos[0, queries][:, None], -math.inf)
        outs.append(scores.softmax(-1) @ v[:, c])
    y = x[0, queries] + torch.cat(outs, -1) @ att.to_out.weight.T + att.to_out.bias
    hidden = F.gelu(norm(y, layer.norm_ff) @ layer.ff.fc1.weight.T + layer.ff.fc1.bias)
    want = y + hidden @ layer.ff.fc2.weight.T + layer.ff.fc2.bias

    rotary = model.rotary
    with torch.no_grad():
        keys, values = layer.keys_values(x, rotary.angles(pos), rotary)
        mask = pos[:, None, :] <= pos[:, queries, None]
        got = layer(x[:, queries], rotary.angles(pos[:, queries]), rotary, keys, values, mask)
    torch.testing.assert_close(got[0], want, rtol=0, atol=1e-12)


def test_rotary_scores_depend_only_on_the_distance():
    rotary = RotaryPositions(8, fraction=0.5, max_wavelength=100.0).double()
    q, k = torch.randn(2, 1, 1, 1, 8, dtype=torch.float64)

    def score(p, s):
        return (rotary.rotate(q, rotary.angles(torch.tensor([[p]])))
                * rotary.rotate(k, rotary.angles(torch.tensor([[s]])))).sum()

    torch.testing.assert_close(score(3, 1), score(1003, 1001))
    assert not torch.allclose(score(3, 1), score(3, 2))
    rotated = rotary.rotate(q, rotary.angles(torch.tensor([[7]])))
    assert torch.equal(rotated[..., 4:], q[..., 4:])  # only half the channels turn
    torch.testing.assert_close(rotated.norm(), q.norm())


def test_attend_takes_a_mask_per_query(monkeypatch):
    q, k, v = torch.randn(1, 2, 6, 4), torch.randn(1, 2, 9, 4), torch.randn(1, 2, 9, 5)
    mask = torch.rand(1, 6, 9) > 0.4
    mask[0, 2] = False  # a query without keys gets zeros
    scores = (q @ k.transpose(-1, -2) / 2).masked_fill(~mask[:, None], -math.inf)
    want = torch.nan_to_num(scores.softmax(-1)) @ v
    torch.testing.assert_close(attend(q, k, v, mask), want)
    chunks = ((k[:, :, i:i + 4], v[:, :, i:i + 4], mask[..., i:i + 4]) for i in (0, 4, 8))
    torch.testing.assert_close(attend_chunks(q, chunks), want)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)  # queries split into groups
    q.requires_grad_(True)
    torch.testing.assert_close(attend(q, k, v, mask), want)


# -- prefix dropout ------------------------------------------------------------------------

def test_prefix_dropout_drops_prefix_inputs_and_never_the_latents():
    model = tiny(prefix_dropout=0.99).train()  # layer dropout is 0: only the prefix is dropped
    ids = torch.randint(0, VOCAB, (3, N))
    with torch.no_grad():
        dropped = model(ids)  # 8 prefix inputs: none is kept
        latents_only = model.eval()(ids[:, N - M:])
    torch.testing.assert_close(dropped, latents_only, rtol=0, atol=1e-5)
    assert not torch.allclose(model(ids), dropped)  # in eval, the prefix counts


def test_prefix_dropout_keeps_the_model_causal():
    model = tiny(prefix_dropout=0.5).train()
    ids = torch.randint(0, VOCAB, (2, N))
    changed = ids.clone()
    changed[:, N - 2] = (changed[:, N - 2] + 1) % VOCAB
    outputs = []
    for x in (ids, changed):
        torch.manual_seed(3)
        with torch.no_grad():
            outputs.append(model(x))
    torch.testing.assert_close(outputs[0][:, :M - 2], outputs[1][:, :M - 2], rtol=0, atol=0)


# -- generation --------------------------------------------------------------------------------

def recomputed(model, prompt, mask, steps, num_latents=M, stride=1):
    """Greedy decoding that runs the whole model at every step: on the last N tokens with
    ``num_latents`` latents, or (``stride`` > 1) on the window and with the latents that
    WindowSchedule gives each step."""
    schedule = WindowSchedule(N, num_latents, stride)
    window, latents = schedule.start(prompt.shape[1])
    ids, logits_seen = prompt, []
    for _ in range(steps):
        step = logits(model, ids[:, -window:], mask=mask[:, -window:],
                      num_latents=latents)[:, -1]
        logits_seen.append(step)
        ids = torch.cat([ids, step.argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        window, latents = schedule.next(window, latents)
    return ids, torch.stack(logits_seen, dim=1)


def test_stride_1_is_the_last_n_tokens_with_m_latents():
    schedule = WindowSchedule(N, M, 1)
    window, latents = schedule.start(1)
    for length in range(1, 3 * N):
        assert (window, latents) == (min(length, N), min(M, length))
        window, latents = schedule.next(window, latents)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 40), data=st.data())
def test_a_stride_moves_the_window_and_the_latents_s_positions_at_once(n, data):
    """Every step the window and the latents grow by one, or the window falls from N to
    N - S + 1 (the S oldest tokens leave at once), or the latents fall from M + S - 1 to M;
    the window holds every token while there are at most N, and never fewer than N - S + 1."""
    m, stride = data.draw(st.integers(1, n)), data.draw(st.integers(1, n))
    prompt = data.draw(st.integers(1, 3 * n))
    schedule = WindowSchedule(n, m, stride)
    window, latents = schedule.start(prompt)
    for length in range(prompt, prompt + 3 * n):
        assert min(length, n - stride + 1) <= window <= min(length, n)
        assert min(m, window) <= latents <= min(m + stride - 1, window)
        after = schedule.next(window, latents)
        grew = after == (window + 1, latents + 1)
        moved = window == n and after == (n - stride + 1, min(m, n - stride + 1))
        fell = latents == m + stride - 1 and after == (window + 1, min(m, window + 1))
        assert grew or moved or fell, (window, latents, after)
        window, latents = after


@pytest.mark.parametrize("length", [1, 3, 4, 7, 12, 13, 30])  # < M, M .. N, > N
@pytest.mark.parametrize("padded", [False, True])
def test_cached_greedy_generation_equals_recomputing_at_every_step(length, padded):
    prompt = torch.randint(0, VOCAB, (2, length))
    mask = torch.ones_like(prompt, dtype=torch.bool)
    if padded:
        mask[1, :length // 2] = False  # the second prompt is left-padded
    steps = 2 * N + 3  # the window slides well past N
    ids, seen = MODEL64.generate(prompt, steps, temperature=0, mask=mask, return_logits=True)
    want_ids, want_seen = recomputed(MODEL64, prompt, mask, steps)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(seen, want_seen, rtol=0, atol=1e-10)


@pytest.mark.parametrize("length", [1, 3, 7, 13, 30])  # < M, M .. N, > N
@pytest.mark.parametrize("stride", [2, 5, N])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("num_latents", [None, M])
def test_cached_generation_with_a_stride_equals_recomputing_its_windows(length, stride, padded,
                                                                       num_latents):
    """By default the latents of a stride stay within the model's M (M - S + 1 .. M);
    ``num_latents=M`` grows them beyond (M .. M + S - 1)."""
    prompt = torch.randint(0, VOCAB, (2, length))
    mask = torch.ones_like(prompt, dtype=torch.bool)
    if padded:
        mask[1, :length // 2] = False
    steps = 3 * N + 1
    ids, seen = MODEL64.generate(prompt, steps, temperature=0, mask=mask, stride=stride,
                                 num_latents=num_latents, return_logits=True)
    fewest = max(1, M - stride + 1) if num_latents is None else num_latents
    want_ids, want_seen = recomputed(MODEL64, prompt, mask, steps, fewest, stride=stride)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(seen, want_seen, rtol=0, atol=1e-10)


@pytest.mark.parametrize("num_latents", [1, N])
def test_cache_with_one_latent_or_every_position_a_latent(num_latents):
    prompt = torch.randint(0, VOCAB, (1, 5))
    mask = torch.ones_like(prompt, dtype=torch.bool)
    ids, seen = MODEL64.generate(prompt, N + 4, temperature=0, num_latents=num_latents,
                                 return_logits=True)
    want_ids, want_seen = recomputed(MODEL64, prompt, mask, N + 4, num_latents)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(seen, want_seen, rtol=0, atol=1e-10)


@pytest.mark.parametrize("options", [dict(learned_positions=True),
                                     dict(separate_latent_norm=True, head_dim=5)])
@pytest.mark.parametrize("length", [3, 13, 30])  # < M, M .. N, > N
@pytest.mark.parametrize("padded", [False, True])
def test_generation_without_a_cache_equals_recomputing_at_every_step(options, length, padded):
    """Models whose keys change as the window slides generate by recomputing: the same
    tokens and logits as the forward on the window at every step."""
    model = tiny(**options).double()
    prompt = torch.randint(0, VOCAB, (2, length))
    mask = torch.ones_like(prompt, dtype=torch.bool)
    if padded:
        mask[1, :length // 2] = False
    ids, seen = model.generate(prompt, N + 3, temperature=0, mask=mask, return_logits=True)
    want_ids, want_seen = recomputed(model, prompt, mask, N + 3)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(seen, want_seen, rtol=0, atol=1e-10)
    ids, seen = model.generate(prompt, N + 3, temperature=0, mask=mask, stride=3,
                               return_logits=True)
    want_ids, want_seen = recomputed(model, prompt, mask, N + 3, M - 2, stride=3)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(seen, want_seen, rtol=0, atol=1e-10)


def test_sampling_with_a_seed_is_reproducible():
    prompt = torch.randint(0, VOCAB, (3, 5))
    first = MODEL.generate(prompt, 20, temperature=1.5, seed=7)
    assert torch.equal(first, MODEL.generate(prompt, 20, temperature=1.5, seed=7))
    assert not torch.equal(first, MODEL.generate(prompt, 20, temperature=1.5, seed=8))
    assert torch.equal(first[:, :5], prompt) and first.shape == (3, 25)


def test_top_k_1_and_a_tiny_top_p_are_greedy():
    prompt = torch.randint(0, VOCAB, (2, 6))
    greedy = MODEL.generate(prompt, 15, temperature=0)
    assert torch.equal(MODEL.generate(prompt, 15, top_k=1, seed=1), greedy)
    assert torch.equal(MODEL.generate(prompt, 15, top_p=1e-6, seed=2), greedy)


def test_top_k_and_top_p_draw_only_the_tokens_they_keep():
    prompt = torch.randint(0, VOCAB, (1, 6))
    _, seen = MODEL.generate(prompt, 1, temperature=0, return_logits=True)
    top3 = set(seen[0, 0].topk(3).indices.tolist())
    drawn = {MODEL.generate(prompt, 1, top_k=3, seed=s)[0, -1].item() for s in range(40)}
    assert drawn <= top3 and len(drawn) > 1
    probs = seen[0, 0].softmax(-1).sort(descending=True)
    nucleus = int((probs.values.cumsum(-1) < 0.5).sum()) + 1
    allowed = set(probs.indices[:nucleus].tolist())
    drawn = {MODEL.generate(prompt, 1, top_p=0.5, seed=s)[0, -1].item() for s in range(40)}
    assert drawn <= allowed


# -- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("call, error, message", [
    (lambda: MODEL(torch.randint(0, VOCAB, (2, 5)), num_latents=6), ValueError,
     r"\[1, N\] for N=5 inputs, got M=6"),
    (lambda: MODEL(torch.rand(2, 5)), TypeError, "integer tensor.*got dtype torch.float32"),
    (lambda: MODEL(torch.tensor([[1, VOCAB]])), ValueError,
     rf"\[0, {VOCAB - 1}\], got values in \[1, {VOCAB}\]"),
    (lambda: MODEL(torch.zeros(1, N + 1, dtype=torch.long)), ValueError,
     f"length {N + 1}, more than max_length={N}"),
    (lambda: MODEL(torch.zeros(2, 5, dtype=torch.long), mask=torch.ones(2, 5)), TypeError,
     "torch.bool.*got torch.float32"),
    (lambda: MODEL(torch.zeros(2, 5, dtype=torch.long), mask=torch.ones(2, 4, dtype=bool)),
     ValueError, r"shape \(2, 5\).*got \(2, 4\)"),
    (lambda: MODEL.generate(torch.zeros(1, 3, dtype=torch.long), 2, temperature=-1),
     ValueError, "temperature must be >= 0.*got -1"),
    (lambda: MODEL.generate(torch.zeros(1, 3, dtype=torch.long), 2, top_k=0), ValueError,
     "top_k must be an int >= 1.*got 0"),
    (lambda: MODEL.generate(torch.zeros(1, 3, dtype=torch.long), 2, top_p=1.5), ValueError,
     r"top_p must lie in \(0, 1\].*got 1.5"),
    (lambda: MODEL.generate(torch.zeros(1, 3, dtype=torch.long), 2,
                            mask=torch.zeros(1, 3, dtype=bool)), ValueError, "row of padding"),
    (lambda: MODEL.generate(torch.zeros(1, 3, dtype=torch.long), 2, num_latents=N + 1),
     ValueError, f"got M={N + 1}"),
    (lambda: MODEL.generate(torch.zeros(1, 3, dtype=torch.long), 2, stride=0),
     ValueError, rf"stride must be an int in \[1, max_context={N}\], got 0"),
    (lambda: MODEL.generate(torch.zeros(1, 3, dtype=torch.long), 2, stride=N + 1),
     ValueError, rf"got {N + 1}"),
    (lambda: tiny(num_latents=N + 1), ValueError, rf"\[1, max_context={N}\], got {N + 1}"),
])
def test_bad_inputs_name_what_was_expected_and_what_came(call, error, message):
    with pytest.raises(error, match=message):
        call()


# -- options of converted perceiver-ar-pytorch models --------------------------------------

def test_separate_latent_norm_norms_only_the_prefix_with_the_inputs_norm():
    model = tiny(separate_latent_norm=True)
    ids = torch.randint(0, VOCAB, (2, N))
    every_input_a_latent, with_prefix = logits(model, ids, num_latents=N), logits(model, ids)
    with torch.no_grad():
        model.cross_attend.norm_kv.weight.mul_(3)
        model.cross_attend.norm_kv.bias.add_(1)
    torch.testing.assert_close(logits(model, ids, num_latents=N), every_input_a_latent,
                               rtol=0, atol=0)
    assert not torch.allclose(logits(model, ids), with_prefix)


def test_learned_positions_are_added_by_index_in_the_window():
    plain, model = tiny(), tiny(learned_positions=True)
    model.load_state_dict({**plain.state_dict(),
                           "position_embedding.weight": torch.zeros(N, 16)})
    ids = torch.randint(0, VOCAB, (2, N))
    torch.testing.assert_close(logits(model, ids), logits(plain, ids), rtol=0, atol=1e-6)
    with torch.no_grad():
        model.position_embedding.weight.normal_()
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[:, 0] = False  # one token of left padding: without it, the row's window starts later
    torch.testing.assert_close(logits(plain, ids, mask=mask), logits(plain, ids[:, 1:]),
                               rtol=0, atol=1e-6)
    assert not torch.allclose(logits(model, ids, mask=mask), logits(model, ids[:, 1:]))


def test_final_norm_off_and_a_head_width_of_its_own():
    model = tiny(final_norm=False, head_dim=5)
    assert not any(name.startswith("norm.") for name in model.state_dict())
    assert model.cross_attend.attention.to_q.weight.shape == (2 * 5, 16)
    assert logits(model, torch.randint(0, VOCAB, (2, N))).shape == (2, M, VOCAB)


# -- presets and saving --------------------------------------------------------------------

def test_the_presets_are_registered_with_their_sizes():
    assert {"perceiver-ar-bytes-small", "perceiver-ar-imagenet64"} <= set(
        omniperceiver.list_models())
    small = create_model("perceiver-ar-bytes-small")
    assert 3e6 < sum(p.numel() for p in small.parameters()) < 5e6
    assert (small.vocab_size, small.max_context, small.num_latents) == (262, 1024, 128)
    with torch.device("meta"):
        big = create_model("perceiver-ar-imagenet64")
    assert sum(p.numel() for p in big.parameters()) == 768_898_304


def test_save_and_load_in_a_fresh_interpreter_give_the_same_logits(tmp_path):
    model = create_model("perceiver-ar-bytes-small", max_context=16, num_latents=4, dim=16,
                         heads=2, num_self_attends=1).eval()
    ids = torch.randint(0, 262, (2, 10))
    want = logits(model, ids).tolist()
    want_tokens = model.generate(ids, 5, temperature=0).tolist()
    omniperceiver.save_pretrained(model, tmp_path / "model")
    code = (
        "import json, torch, omniperceiver\n"
        f"model = omniperceiver.from_pretrained({str(tmp_path / 'model')!r})\n"
        f"ids = torch.tensor({ids.tolist()})\n"
        "with torch.no_grad():\n"
        "    print(json.dumps([model(ids).tolist(),\n"
        "                      model.generate(ids, 5, temperature=0).tolist()]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin",
                                 "OMP_NUM_THREADS": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    got, got_tokens = json.loads(result.stdout)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=0, atol=1e-6)
    assert got_tokens == want_tokens


@pytest.mark.parametrize("option, value", [("max_context", 0), ("num_self_attends", 0),
                                           ("prefix_dropout", 1.0), ("dropout", -0.1),
                                           ("init_std", float("nan")), ("head_dim", 0)])
def test_options_are_checked_by_name(option, value):
    from omniperceiver.errors import ConfigError

    with pytest.raises(ConfigError, match=f"PerceiverAR: {option} must"):
        PerceiverAR(**{"max_context": 16, "num_latents": 4, "dim": 16, "heads": 2,
                       option: value})
