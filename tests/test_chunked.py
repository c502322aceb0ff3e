"""Chunked encoding: the inputs visited chunk by chunk (online softmax) give the same result
as the whole input array at once, with masks, fully masked chunks and fully masked examples."""

import math

import pytest
import torch
from helpers import tiny_io, tiny_perceiver
from hypothesis import given
from hypothesis import strategies as st

from omniperceiver import (
    ClassificationDecoderConfig,
    EncoderConfig,
    FourierConfig,
    LearnedPositionConfig,
    PerceiverEncoder,
    PerceiverIO,
    PerceiverIOConfig,
    attend,
)
from omniperceiver.adapters import PointCloudAdapter
from omniperceiver.attention import Attention
from omniperceiver.chunks import InputChunks
from omniperceiver.kernels import attend_chunks

F64 = torch.float64


def chunked(k, v, mask, size):
    for i in range(0, k.shape[2], size):
        part = slice(i, i + size)
        yield k[:, :, part], v[:, :, part], None if mask is None else mask[:, part]


@given(num_keys=st.integers(1, 30), chunk=st.integers(1, 12), heads=st.integers(1, 3),
       seed=st.integers(0, 2**16), masked=st.booleans())
def test_attend_chunks_equals_attend(num_keys, chunk, heads, seed, masked):
    torch.manual_seed(seed)
    q = torch.randn(3, heads, 4, 5, dtype=F64)
    k = torch.randn(3, heads, num_keys, 5, dtype=F64) * 3
    v = torch.randn(3, heads, num_keys, 7, dtype=F64)
    mask = None
    if masked:
        mask = torch.rand(3, num_keys) > 0.5
        mask[0] = False  # a fully masked example
        mask[1, :chunk] = False  # a fully masked first chunk
    out = attend_chunks(q, chunked(k, v, mask, chunk))
    torch.testing.assert_close(out, attend(q, k, v, mask), atol=1e-12, rtol=1e-10)
    if masked:
        assert torch.equal(out[0], torch.zeros_like(out[0]))


def reference_attention(layer: Attention, x, context, mask=None):
    """softmax((x Wq + bq)(c Wk + bk)^T / sqrt(d)) (c Wv + bv), per head, then Wo: the
    textbook formula, with a zero output for examples without any key."""
    h, dk = layer.heads, layer.qk_channels // layer.heads
    w_k, w_v = layer.to_kv.weight.split([layer.qk_channels, layer.v_channels])
    b_k, b_v = (layer.to_kv.bias.split([layer.qk_channels, layer.v_channels])
                if layer.to_kv.bias is not None else (0, 0))
    q = layer.to_q(x).unflatten(-1, (h, -1)).transpose(1, 2)
    k = (context @ w_k.T + b_k).unflatten(-1, (h, -1)).transpose(1, 2)
    v = (context @ w_v.T + b_v).unflatten(-1, (h, -1)).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / math.sqrt(dk)
    if mask is not None:
        s = s.masked_fill(~mask[:, None, None], float("-inf"))
    w = torch.nan_to_num(s.softmax(-1))  # all keys masked: NaN -> 0
    out = (w @ v).transpose(1, 2).flatten(2)
    return layer.to_out(out)


@pytest.mark.parametrize("kv_dim,heads,bias", [(3, 1, True), (3, 2, False), (5, 2, True),
                                               (40, 2, True), (40, 1, False)])
def test_attention_equals_textbook_formula(kv_dim, heads, bias):
    """Whichever way the attention is computed (keys and values projected, or queries moved
    into the inputs' channel space when the inputs have few channels), and chunked or not."""
    torch.manual_seed(0)
    layer = Attention(q_dim=12, kv_dim=kv_dim, qk_channels=8 * heads, v_channels=6 * heads,
                      heads=heads, qkv_bias=bias).double()
    x, ctx = torch.randn(3, 16, 12, dtype=F64), torch.randn(3, 50, kv_dim, dtype=F64)
    mask = torch.rand(3, 50) > 0.3
    mask[1] = False
    scale, shift = torch.rand(kv_dim, dtype=F64) + 0.5, torch.randn(kv_dim, dtype=F64)
    for m in (None, mask):
        want = reference_attention(layer, x, ctx, m)
        torch.testing.assert_close(layer(x, ctx, m), want, atol=1e-12, rtol=1e-10)
        chunks = InputChunks.from_tensor(ctx, chunk_size=7)
        torch.testing.assert_close(layer(x, chunks, m), want, atol=1e-12, rtol=1e-10)
        # A LayerNorm's scale and shift folded into the projection.
        torch.testing.assert_close(layer(x, ctx, m, context_affine=(scale, shift)),
                                   reference_attention(layer, x, ctx * scale + shift, m),
                                   atol=1e-12, rtol=1e-10)
    # Both ways of computing are covered by the cases above.
    assert layer.attends_in_context_space(16, 50) == (kv_dim < 8)


def randomize_layer_norms(module):
    """LayerNorms away from their initial identity (scale 1, shift 0)."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.LayerNorm):
            torch.nn.init.uniform_(layer.weight, 0.5, 1.5)
            torch.nn.init.normal_(layer.bias)


def masks_with_empty_chunks(batch, num_inputs, chunk):
    mask = torch.rand(batch, num_inputs) > 0.4
    mask[0] = False  # a fully masked example
    mask[1, chunk:2 * chunk] = False  # a fully masked chunk in the middle
    mask[2, :chunk] = False  # a fully masked first chunk
    return mask


@pytest.mark.parametrize("chunk", [1, 4, 7, 40, 100])
@pytest.mark.parametrize("make", [tiny_io, lambda: tiny_perceiver(input_axis=1).encoder],
                         ids=["perceiver-io", "perceiver"])
def test_encoder_chunked_equals_unchunked(chunk, make):
    torch.manual_seed(0)
    model = make().double()
    encoder = model.encoder if hasattr(model, "encoder") else model
    randomize_layer_norms(encoder)
    channels = encoder.input_channels
    x = torch.randn(4, 40, channels, dtype=F64)
    mask = masks_with_empty_chunks(4, 40, chunk)
    with torch.no_grad():
        for m in (None, mask):
            whole = encoder(x, m)
            encoder.config.input_chunk_size = chunk
            try:
                parts = encoder(x, m)
                built = encoder(InputChunks(lambda a, b: x[:, a:b], batch_size=4, num_inputs=40,
                                            chunk_size=chunk), m)
            finally:
                encoder.config.input_chunk_size = None
            torch.testing.assert_close(parts, whole, atol=1e-10, rtol=1e-9)
            torch.testing.assert_close(built, whole, atol=1e-10, rtol=1e-9)
            assert torch.isfinite(parts).all()


def test_chunked_gradients_equal_unchunked():
    torch.manual_seed(0)
    encoder = tiny_perceiver(input_axis=1).encoder.double().train()
    randomize_layer_norms(encoder)
    x = torch.randn(3, 30, encoder.input_channels, dtype=F64, requires_grad=True)
    mask = masks_with_empty_chunks(3, 30, 8)

    def grads(chunk):
        encoder.config.input_chunk_size = chunk
        encoder.zero_grad()
        x.grad = None
        encoder(x, mask).square().sum().backward()
        return [x.grad.clone()] + [p.grad.clone() for p in encoder.parameters()]

    try:
        whole, parts = grads(None), grads(8)
    finally:
        encoder.config.input_chunk_size = None
    for a, b in zip(whole, parts, strict=True):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b, a, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("position", [FourierConfig(num_bands=3, max_resolution=(9, 7)),
                                      LearnedPositionConfig(shape=(9, 7), num_channels=4)],
                         ids=["fourier", "learned"])
def test_model_builds_grid_inputs_chunk_by_chunk(position):
    """With input_chunk_size set, the grid adapter builds the inputs with their position
    features chunk by chunk; the model's output does not change."""
    torch.manual_seed(0)
    config = PerceiverIOConfig(
        input_channels=2, input_axis=2, position=position,
        encoder=EncoderConfig(num_latents=5, latent_dim=16, num_blocks=2, num_cross_attends=2,
                              cross_attend_sharing="none", self_attends_per_block=1),
        decoder=ClassificationDecoderConfig(num_classes=3))
    model = PerceiverIO(config).double().eval()
    x = torch.randn(3, 9, 7, 2, dtype=F64)
    mask = masks_with_empty_chunks(3, 63, 10).reshape(3, 9, 7)
    with torch.no_grad():
        for m in (None, mask):
            whole = model(x, m)
            model.encoder.config.input_chunk_size = 10
            try:
                adapted = model.input_adapter.input_chunks(x, m, chunk_size=10)
                assert isinstance(adapted.inputs, InputChunks)
                torch.testing.assert_close(
                    torch.cat([c for _, _, c in adapted.inputs], dim=1),
                    model.input_adapter(x, m).inputs, atol=0, rtol=0)
                parts = model(x, m)
            finally:
                model.encoder.config.input_chunk_size = None
            torch.testing.assert_close(parts, whole, atol=1e-10, rtol=1e-9)


def test_point_cloud_chunks_from_the_adapter():
    """Per-point adapters build chunks by adapting slices of the points."""
    torch.manual_seed(0)
    adapter = PointCloudAdapter(num_features=1, num_bands=4, max_resolution=16.0)
    encoder = PerceiverEncoder(adapter.num_channels,
                               EncoderConfig(num_latents=4, latent_dim=16, num_blocks=1,
                                             self_attends_per_block=1)).double().eval()
    points = torch.rand(2, 50, 4, dtype=F64) * 2 - 1
    chunks = InputChunks(lambda a, b: adapter(points[:, a:b]).inputs, batch_size=2,
                         num_inputs=50, chunk_size=16)
    with torch.no_grad():
        torch.testing.assert_close(encoder(chunks), encoder(adapter(points).inputs),
                                   atol=1e-10, rtol=1e-9)


def test_chunked_under_bf16_autocast_is_close():
    torch.manual_seed(0)
    model = tiny_perceiver()
    x = torch.randn(2, 12, 10, 3)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        whole = model(x)
        model.encoder.config.input_chunk_size = 25
        try:
            parts = model(x)
        finally:
            model.encoder.config.input_chunk_size = None
    torch.testing.assert_close(parts.float(), whole.float(), atol=5e-2, rtol=5e-2)


def test_chunk_size_is_checked():
    with pytest.raises(ValueError, match="input_chunk_size"):
        PerceiverEncoder(3, EncoderConfig(num_latents=2, latent_dim=8, input_chunk_size=0))
    with pytest.raises(ValueError, match="chunk_size"):
        InputChunks(lambda a, b: None, batch_size=1, num_inputs=3, chunk_size=0)
    q = torch.randn(1, 1, 2, 4)
    with pytest.raises(ValueError, match="no chunks"):
        attend_chunks(q, [])


@pytest.mark.parametrize("kv_dim", [5, 40])
@pytest.mark.parametrize("heads,num_queries", [(1, 16), (1, 15), (2, 8)])
def test_single_example_training_matches_textbook_formula(heads, num_queries, kv_dim):
    """Values and gradients of one example (whose queries may be split across threads in
    the backward pass) equal the textbook formula's, whichever way the attention is computed."""
    torch.manual_seed(0)
    layer = Attention(q_dim=12, kv_dim=kv_dim, qk_channels=8 * heads, v_channels=6 * heads,
                      heads=heads).double()
    x = torch.randn(1, num_queries, 12, dtype=F64, requires_grad=True)
    ctx = torch.randn(1, 30, kv_dim, dtype=F64, requires_grad=True)
    mask = torch.rand(1, 30) > 0.3
    for m in (None, mask):
        grads = []
        for fn in (layer, lambda *a: reference_attention(layer, *a)):
            out = fn(x, ctx, m)
            grads.append((out, *torch.autograd.grad(out.square().sum(), (x, ctx))))
        for got, want in zip(*grads, strict=True):
            torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)
