"""Masks, permutation invariance, batch independence: the attention's contract."""

import pytest
import torch
from helpers import tiny_io, tiny_perceiver
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from omniperceiver import PerceiverModel, attend
from omniperceiver.adapters import GridAdapter
from omniperceiver.attention import AttentionLayer, AttentionSpec, FeedForward
from omniperceiver.position import FourierPositionEncoding

torch.manual_seed(0)
MODEL64 = tiny_io(dtype=torch.float64)


@given(lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4), pad=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_padding_plus_mask_equals_unpadded(lengths, pad, seed):
    torch.manual_seed(seed)
    model = MODEL64
    longest = max(lengths) + pad
    padded = torch.randn(len(lengths), longest, 5, dtype=torch.float64) * 3
    mask = torch.zeros(len(lengths), longest, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    with torch.no_grad():
        batched = model(padded, mask)
        for i, n in enumerate(lengths):
            alone = model(padded[i:i + 1, :n])
            torch.testing.assert_close(batched[i:i + 1], alone, atol=1e-6, rtol=0)


def test_fully_masked_example_is_finite_and_isolated():
    torch.manual_seed(0)
    model = tiny_io(dtype=torch.float64)
    x = torch.randn(3, 9, 5, dtype=torch.float64)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1] = False
    mask[2, 4:] = False
    with torch.no_grad():
        out = model(x, mask)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[0:1], model(x[0:1]), atol=1e-10, rtol=0)
        torch.testing.assert_close(out[2:3], model(x[2:3, :4]), atol=1e-10, rtol=0)


def test_fully_masked_gradients_are_finite():
    model = tiny_io().train()
    x = torch.randn(2, 7, 5, requires_grad=True)
    mask = torch.tensor([[False] * 7, [True] * 7])
    model(x, mask).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_attend_zeroes_queries_without_keys():
    q, k, v = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 6)
    mask = torch.tensor([[False] * 5, [True, False, True, False, True]])
    out = attend(q, k, v, mask)
    assert out.shape == (2, 2, 3, 6)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    keep = mask[1]
    weights = torch.softmax(q[1] @ k[1, :, keep].transpose(-1, -2) / 2.0, dim=-1)
    torch.testing.assert_close(out[1], weights @ v[1, :, keep], atol=1e-5, rtol=1e-5)


@given(seed=st.integers(0, 2**16), n=st.integers(2, 20))
def test_permutation_invariance_without_positions(seed, n):
    torch.manual_seed(seed)
    model = MODEL64
    x = torch.randn(2, n, 5, dtype=torch.float64)
    perm = torch.randperm(n)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x[:, perm]), atol=1e-9, rtol=0)


@given(seed=st.integers(0, 2**16), n=st.integers(2, 20))
def test_permuting_points_with_their_coordinates(seed, n):
    torch.manual_seed(seed)
    enc = FourierPositionEncoding(num_axes=3, num_bands=4, max_resolution=16)
    model = tiny_io(input_channels=2 + enc.num_channels, dtype=torch.float64)
    coords = torch.rand(2, n, 3, dtype=torch.float64) * 2 - 1
    feats = torch.randn(2, n, 2, dtype=torch.float64)

    def run(c, f):
        return model(torch.cat([f, enc.points(c)], dim=-1))

    perm = torch.randperm(n)
    with torch.no_grad():
        torch.testing.assert_close(run(coords, feats), run(coords[:, perm], feats[:, perm]),
                                   atol=1e-9, rtol=0)
        # The coordinates matter: moving points without their features changes the output.
        shift = torch.roll(torch.arange(n), 1)
        assert not torch.allclose(run(coords, feats), run(coords[:, shift], feats), atol=1e-6)


def test_batch_independence():
    torch.manual_seed(1)
    model = tiny_perceiver().double()
    x = torch.randn(4, 6, 5, 3, dtype=torch.float64)
    with torch.no_grad():
        batched = model(x)
        for i in range(4):
            torch.testing.assert_close(batched[i:i + 1], model(x[i:i + 1]), atol=1e-10, rtol=0)


class ShapeRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(o, torch.Tensor):
                self.shapes.append((str(func), tuple(o.shape)))
        return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_mask", [False, True])
def test_no_latents_by_inputs_matrix(dtype, with_mask):
    """The (num_latents x num_inputs) attention matrix is never materialised."""
    model = tiny_perceiver(num_latents=7).to(dtype)
    x = torch.randn(2, 11, 13, 3, dtype=dtype)
    mask = torch.rand(2, 11, 13) > 0.2 if with_mask else None
    rec = ShapeRecorder()
    with rec, torch.no_grad():
        model(x, mask)
    big = [(f, s) for f, s in rec.shapes if len(s) >= 2 and s[-2:] == (7, 11 * 13)]
    assert not big, big
    assert any("scaled_dot_product" in f for f, _ in rec.shapes)


def test_attention_layer_shapes_and_channels():
    spec = AttentionSpec(heads=2, qk_channels=6, v_channels=10)
    layer = AttentionLayer(12, 7, spec)
    out = layer(torch.randn(3, 4, 12), torch.randn(3, 9, 7), torch.ones(3, 9, dtype=torch.bool))
    assert out.shape == (3, 4, 12)
    assert layer.attention.to_kv.out_features == 16
    with pytest.raises(ValueError, match="divisible by heads"):
        AttentionLayer(12, 7, AttentionSpec(heads=4, qk_channels=6))
    assert AttentionLayer(12, 7).attention.to_q.out_features == 7  # DeepMind default: kv channels
    assert AttentionLayer(12).attention.to_q.out_features == 12


def test_query_residual_option():
    torch.manual_seed(0)
    layer = AttentionLayer(8, 4, AttentionSpec(query_residual=False))
    x, ctx = torch.randn(2, 3, 8), torch.randn(2, 5, 4)
    attended = layer.attention(layer.norm_q(x), layer.norm_kv(ctx))
    want = attended + layer.ff(layer.norm_ff(attended))
    torch.testing.assert_close(layer(x, ctx), want)


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu", "geglu", "swiglu"])
def test_feed_forward_variants(activation):
    ff = FeedForward(8, widening_factor=3, activation=activation)
    assert ff.fc1.out_features == 24 * (2 if activation.endswith("glu") else 1)
    assert ff(torch.randn(2, 5, 8)).shape == (2, 5, 8)
    with pytest.raises(ValueError, match="activation"):
        FeedForward(8, activation="tanh")


def test_composition_checks_channel_agreement():
    from omniperceiver import EncoderConfig, PerceiverEncoder

    with pytest.raises(ValueError, match="input channels"):
        PerceiverModel(input_adapter=GridAdapter(input_channels=3, input_axis=1),
                       encoder=PerceiverEncoder(4, EncoderConfig(num_latents=2, latent_dim=8)))


@pytest.mark.parametrize("with_mask", [False, True])
def test_explicit_cpu_scores_match_the_fused_kernel(with_mask):
    """Training a cross-attend whose keys and values need no gradient (raw inputs) builds
    the scores explicitly on a CPU: same outputs and query gradients as the fused kernel."""
    from omniperceiver import kernels

    torch.manual_seed(0)
    q = torch.randn(3, 2, 5, 8, dtype=torch.float64, requires_grad=True)
    k, v = torch.randn(3, 2, 17, 8, dtype=torch.float64), torch.randn(3, 2, 17, 8,
                                                                      dtype=torch.float64)
    mask = torch.rand(3, 17) > 0.3 if with_mask else None
    if with_mask:
        mask[1] = False  # an example without any key gets zeros on both paths
    assert kernels._explicit_scores_pay_off(q, k, v)
    out = kernels.attend(q, k, v, mask)
    (grad,) = torch.autograd.grad(out.square().sum(), q)
    limit = kernels.CPU_EXPLICIT_SCORES_MAX_BYTES
    try:
        kernels.CPU_EXPLICIT_SCORES_MAX_BYTES = 0  # force the fused kernel
        assert not kernels._explicit_scores_pay_off(q, k, v)
        fused = kernels.attend(q, k, v, mask)
        (fused_grad,) = torch.autograd.grad(fused.square().sum(), q)
    finally:
        kernels.CPU_EXPLICIT_SCORES_MAX_BYTES = limit
    torch.testing.assert_close(out, fused)
    torch.testing.assert_close(grad, fused_grad)
    if with_mask:
        assert out[1].abs().max() == 0


def test_explicit_cpu_scores_are_chosen_by_the_size_of_the_scores_in_their_dtype():
    """float32 scores past CPU_EXPLICIT_SCORES_MAX_BYTES go to the fused kernel; the same
    shapes under bf16 autocast write 2-byte scores and stay explicit up to their own limits."""
    from omniperceiver import kernels

    limit = kernels.CPU_EXPLICIT_SCORES_MAX_BYTES
    keys = limit // (64 * 4)  # 64 queries: exactly the float32 limit
    q = torch.zeros(1, 1, 64, 8, requires_grad=True)
    fits, too_long = torch.zeros(1, 1, keys, 8), torch.zeros(1, 1, keys + 1, 8)
    assert kernels._explicit_scores_pay_off(q, fits, fits)
    assert not kernels._explicit_scores_pay_off(q, too_long, too_long)
    with torch.autocast("cpu", torch.bfloat16):
        assert kernels._explicit_scores_pay_off(q, too_long, too_long)
        half_keys = kernels.CPU_EXPLICIT_HALF_SCORES_MAX_BYTES // (64 * 2)
        longer = torch.zeros(1, 1, half_keys + 1, 8)
        assert not kernels._explicit_scores_pay_off(q, longer, longer)
    with torch.no_grad():  # float32 inference never builds the scores
        assert not kernels._explicit_scores_pay_off(q, fits, fits)
    # bf16: self-attends too (keys and values with gradients) in training; in inference up to
    # their own, smaller limit
    q16 = torch.zeros(1, 1, 64, 8, dtype=torch.bfloat16, requires_grad=True)
    small = torch.zeros(1, 1, 256, 8, dtype=torch.bfloat16, requires_grad=True)
    assert kernels._explicit_scores_pay_off(q16, small, small)
    inference_keys = kernels.CPU_EXPLICIT_HALF_INFERENCE_SCORES_MAX_BYTES // (64 * 2)
    past = torch.zeros(1, 1, inference_keys + 1, 8, dtype=torch.bfloat16)
    with torch.no_grad():
        assert kernels._explicit_scores_pay_off(q16, small, small)
        assert not kernels._explicit_scores_pay_off(q16, past, past)
    assert kernels._explicit_scores_pay_off(q16, past, past)  # training: the larger limit


@pytest.mark.parametrize("with_mask", [False, True])
def test_explicit_cpu_scores_under_bf16_autocast_stay_in_bf16_and_close_to_float64(with_mask):
    """Under bf16 autocast the explicit route's softmax reads and writes bf16 (no float32 copy
    of the score array, forward or backward); outputs and query gradients stay close to the
    float64 result."""
    from omniperceiver import kernels

    torch.manual_seed(0)
    q64 = torch.randn(1, 1, 64, 16, dtype=torch.float64)
    k64, v64 = torch.randn(1, 1, 4000, 16, dtype=torch.float64), torch.randn(
        1, 1, 4000, 16, dtype=torch.float64)
    mask = torch.rand(1, 4000) > 0.3 if with_mask else None

    def run(dtype, explicit):
        q = q64.to(dtype).requires_grad_()
        limit = kernels.CPU_EXPLICIT_HALF_SCORES_MAX_BYTES
        kernels.CPU_EXPLICIT_HALF_SCORES_MAX_BYTES = limit if explicit else 0
        try:
            with torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.float32):
                assert kernels._explicit_scores_pay_off(q, k64.to(dtype), v64) == explicit
                out = kernels.attend(q, k64.to(dtype), v64.to(dtype), mask)
            (grad,) = torch.autograd.grad(out.float().square().sum(), q)
        finally:
            kernels.CPU_EXPLICIT_HALF_SCORES_MAX_BYTES = limit
        return out.double(), grad.double()

    want, want_grad = run(torch.float64, explicit=True)
    with torch.profiler.profile(record_shapes=True) as prof:
        out, grad = run(torch.float32, explicit=True)
    fused, fused_grad = run(torch.float32, explicit=False)
    casts = [e.input_shapes[0] for e in prof.events()
             if e.name == "aten::_to_copy" and e.input_shapes and e.input_shapes[0]]
    assert not [shape for shape in casts if shape[-1] == 4000 and shape[-2] != 16]  # scores
    for got, fused_got, target in ((out, fused, want), (grad, fused_grad, want_grad)):
        # the weights are rounded to bf16 before the product with v (as they were when the
        # softmax ran in float32): within 3x the fused kernel's error, which keeps them wider
        error, fused_error = ((x - target).abs().max() / target.abs().max()
                             for x in (got, fused_got))
        assert error <= 3 * fused_error, (float(error), float(fused_error))


def test_bf16_self_attention_on_the_explicit_route_is_as_close_to_float64_as_the_fused_one():
    """bf16 training with gradients for queries, keys and values: the explicit route (taken on
    a CPU) gives outputs and all three gradients within 3x the fused kernel's error against
    float64."""
    from omniperceiver import kernels

    torch.manual_seed(0)
    base = [torch.randn(2, 4, 48, 16, dtype=torch.float64) for _ in range(3)]
    mask = torch.rand(2, 48) > 0.2

    def run(dtype, route_limit):
        inputs = [t.to(dtype).requires_grad_() for t in base]
        saved = kernels.CPU_EXPLICIT_HALF_SCORES_MAX_BYTES
        kernels.CPU_EXPLICIT_HALF_SCORES_MAX_BYTES = route_limit
        try:
            assert kernels._explicit_scores_pay_off(*inputs) == (dtype == torch.bfloat16
                                                                 and route_limit > 0)
            out = kernels.attend(*inputs, mask)
            grads = torch.autograd.grad(out.float().square().sum(), inputs)
        finally:
            kernels.CPU_EXPLICIT_HALF_SCORES_MAX_BYTES = saved
        return [out.double(), *(g.double() for g in grads)]

    want = run(torch.float64, 0)
    explicit, fused = run(torch.bfloat16, 2**30), run(torch.bfloat16, 0)
    for got, other, target in zip(explicit, fused, want, strict=True):
        error, fused_error = ((x - target).abs().max() / target.abs().max() for x in (got, other))
        assert error <= 3 * fused_error, (float(error), float(fused_error))
