"""DeepMind's Haiku checkpoints -> our models, checked against a NumPy re-implementation of
DeepMind's forward pass (perceiver.py, io_processors.py, position_encoding.py) run on
synthetic parameters with the release's names and shapes (float64; tolerance 1e-9 after our
float32 conversion is undone by comparing in float64)."""

import json
import math
import pickle

import numpy as np
import pytest
import torch

from omniperceiver import from_pretrained, save_pretrained
from omniperceiver.convert import from_deepmind, load_deepmind_params
from omniperceiver.convert.cli import main as convert_main

RNG = np.random.default_rng(0)
TOL = dict(atol=1e-9, rtol=1e-9)


# --- synthetic parameters with the release's Haiku names ----------------------------------


def _rand(*shape, scale=0.3):
    return RNG.normal(0, scale, shape)


def _linear(params, name, n_in, n_out, bias=True):
    params[name] = {"w": _rand(n_in, n_out, scale=n_in ** -0.5)}
    if bias:
        params[name]["b"] = _rand(n_out, scale=0.1)


def _norm(params, name, n):
    params[name] = {"scale": 1 + _rand(n, scale=0.1), "offset": _rand(n, scale=0.1)}


def _attention_module(params, prefix, q_dim, kv_dim, qk, v, widening, cross):
    _norm(params, f"{prefix}/layer_norm", q_dim)
    if cross:
        _norm(params, f"{prefix}/layer_norm_1", kv_dim)
    _linear(params, f"{prefix}/attention/linear", q_dim, qk)
    _linear(params, f"{prefix}/attention/linear_1", kv_dim, qk)
    _linear(params, f"{prefix}/attention/linear_2", kv_dim, v)
    _linear(params, f"{prefix}/attention/linear_3", v, q_dim)
    _norm(params, f"{prefix}/layer_norm_2" if cross else f"{prefix}/layer_norm_1", q_dim)
    _linear(params, f"{prefix}/mlp/linear", q_dim, q_dim * widening)
    _linear(params, f"{prefix}/mlp/linear_1", q_dim * widening, q_dim)


def _encoder(params, name, *, input_channels, num_latents=5, latent_dim=8, self_attends=2,
             qk=None, v=None):
    params[f"{name}/~/trainable_position_encoding"] = {"pos_embs": _rand(num_latents, latent_dim)}
    _attention_module(params, f"{name}/~/cross_attention", latent_dim, input_channels,
                      qk or input_channels, v or qk or input_channels, 1, cross=True)
    for i in range(self_attends):
        _attention_module(params, f"{name}/~/self_attention" + (f"_{i}" if i else ""),
                          latent_dim, latent_dim, qk or latent_dim, v or qk or latent_dim, 2,
                          cross=False)


def _pos(params, name, n, c):
    params[name] = {"pos_embs": _rand(n, c)}


def _classifier(params, latent_dim=8, num_classes=4):
    d = "classification_decoder/~/basic_decoder"
    _pos(params, f"{d}/~/trainable_position_encoding", 1, latent_dim)
    _attention_module(params, f"{d}/cross_attention", latent_dim, latent_dim, latent_dim,
                      latent_dim, 1, cross=True)
    _linear(params, f"{d}/output", latent_dim, num_classes)


# --- NumPy re-implementation of DeepMind's forward pass -----------------------------------


def np_layer_norm(x, p, name):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * p[f"{name}/scale"] + p[f"{name}/offset"]


def np_linear(x, p, name):
    return x @ p[f"{name}/w"] + p.get(f"{name}/b", 0)


def np_gelu(x):  # jax.nn.gelu, approximate=True
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def np_attention(p, name, xq, xkv, heads, mask=None):
    q, k, v = (np_linear(x, p, f"{name}/linear{s}") for x, s in ((xq, ""), (xkv, "_1"),
                                                                  (xkv, "_2")))
    b, t, _ = q.shape
    split = lambda a: a.reshape(b, a.shape[1], heads, -1)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    logits = np.einsum("bthd,bThd->bhtT", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:  # (b, t, T), as make_cross_attention_mask
        logits = np.where(mask[:, None], logits, -1e30)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("bhtT,bThd->bthd", weights, v).reshape(b, t, -1)
    if mask is not None:
        out = np.where(np.all(mask == 0, axis=2, keepdims=True), 0, out)
    return np_linear(out, p, f"{name}/linear_3")


def np_mlp(p, name, x):
    return np_linear(np_gelu(np_linear(x, p, f"{name}/linear")), p, f"{name}/linear_1")


def np_cross_attention(p, name, q, kv, heads, residual, mask=None):
    att = np_attention(p, f"{name}/attention", np_layer_norm(q, p, f"{name}/layer_norm"),
                       np_layer_norm(kv, p, f"{name}/layer_norm_1"), heads, mask)
    x = q + att if residual else att
    return x + np_mlp(p, f"{name}/mlp", np_layer_norm(x, p, f"{name}/layer_norm_2"))


def np_self_attention(p, name, x, heads):
    n = np_layer_norm(x, p, f"{name}/layer_norm")
    x = x + np_attention(p, f"{name}/attention", n, n, heads)
    return x + np_mlp(p, f"{name}/mlp", np_layer_norm(x, p, f"{name}/layer_norm_1"))


def np_encoder(p, name, inputs, *, cross_heads, self_heads, num_blocks, input_mask=None):
    z = np.broadcast_to(p[f"{name}/~/trainable_position_encoding/pos_embs"],
                        (inputs.shape[0],) + p[f"{name}/~/trainable_position_encoding/pos_embs"]
                        .shape)
    mask = None if input_mask is None else np.einsum(
        "bt,bT->btT", np.ones(z.shape[:2]), input_mask)
    z = np_cross_attention(p, f"{name}/~/cross_attention", z, inputs, cross_heads, True, mask)
    n_self = sum(1 for k in p if k.startswith(f"{name}/~/self_attention")
                 and k.endswith("/layer_norm/scale"))
    for _ in range(num_blocks):
        for i in range(n_self):
            z = np_self_attention(p, f"{name}/~/self_attention" + (f"_{i}" if i else ""), z,
                                  self_heads)
    return z


def np_fourier(pos, num_bands, max_resolution):
    freqs = np.stack([np.linspace(1.0, r / 2, num_bands) for r in max_resolution])
    f = (pos[:, :, None] * freqs[None]).reshape(pos.shape[0], -1)
    return np.concatenate([pos, np.sin(np.pi * f), np.cos(np.pi * f)], axis=-1)


def np_grid(dims):
    axes = [np.linspace(-1, 1, n) for n in dims]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(dims))


def np_with_fourier(x, num_bands, max_resolution):
    """(b, *dims, c) -> (b, prod(dims), c + fourier channels), DeepMind's _build_network_inputs."""
    b, *dims, c = x.shape
    pos = np_fourier(np_grid(dims), num_bands, max_resolution)
    return np.concatenate([x.reshape(b, -1, c), np.broadcast_to(pos, (b,) + pos.shape)], -1)


def np_classify(p, z, residual):
    d = "classification_decoder/~/basic_decoder"
    q = np.broadcast_to(p[f"{d}/~/trainable_position_encoding/pos_embs"], (z.shape[0], 1,
                                                                          z.shape[-1]))
    out = np_cross_attention(p, f"{d}/cross_attention", q, z, 1, residual)
    return np_linear(out, p, f"{d}/output")[:, 0]


def np_same_pads(size, kernel, stride):
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def np_conv_stem(p, x):
    """hk.Conv2D(7, stride 2, SAME, no bias) -> BatchNorm (moving averages) -> ReLU ->
    max_pool(3, stride 2, SAME); x (b, H, W, C)."""
    s = "image_preprocessor/~/conv2_d_downsample/~"
    w = p[f"{s}/conv/w"]
    (top, bottom), (left, right) = (np_same_pads(n, 7, 2) for n in x.shape[1:3])
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    oh, ow = -(-x.shape[1] // 2), -(-x.shape[2] // 2)
    out = sum(xp[:, i:i + 2 * oh:2, j:j + 2 * ow:2] @ w[i, j] for i in range(7) for j in range(7))
    mean = p[f"{s}/batchnorm/~/mean_ema/average"].reshape(-1)
    var = p[f"{s}/batchnorm/~/var_ema/average"].reshape(-1)
    out = (out - mean) / np.sqrt(var + 1e-5) * p[f"{s}/batchnorm/scale"].reshape(-1) \
        + p[f"{s}/batchnorm/offset"].reshape(-1)
    out = np.maximum(out, 0)
    (top, bottom), (left, right) = (np_same_pads(n, 3, 2) for n in out.shape[1:3])
    out = np.pad(out, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    ph, pw = -(-oh // 2), -(-ow // 2)
    return np.max([out[:, i:i + 2 * ph:2, j:j + 2 * pw:2] for i in range(3) for j in range(3)],
                  axis=0)


# --- cases: (ours, DeepMind's) on the same synthetic checkpoint ---------------------------
#
# Each case builds a checkpoint, converts it in ``dtype`` and returns our output and the NumPy
# reference's (computed in float64 on the same, possibly float32-rounded, parameters and
# inputs), both as float64 tensors. The tests run them in float64; benchmarks/parity.py reports
# their float32 gaps too.


def _cast(params, dtype):
    """Parameters as released in ``dtype``, and a float64 flat view of exactly those values."""
    cast = {m: {k: np.asarray(v).astype(dtype) for k, v in d.items()} for m, d in params.items()}
    flat = {f"{m}/{k}": v.astype(np.float64) for m, d in cast.items() for k, v in d.items()}
    return cast, flat


def _input(*shape, dtype):
    return RNG.normal(size=shape).astype(dtype).astype(np.float64)


def _ours(model, *args, **kwargs):
    dtype = next(model.parameters()).dtype
    args = [a if not isinstance(a, np.ndarray) else t(a).to(dtype) if a.dtype.kind == "f"
            else t(a) for a in args]
    with torch.no_grad():
        out = model(*args, **kwargs)
    if isinstance(out, dict):
        return {k: v.double() for k, v in out.items()}
    return out.double()


def t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


SMALL = dict(encoder={"num_blocks": 2, "cross_attend": {"heads": 1},
                      "self_attend": {"heads": 2}})


def case_imagenet_fourier(dtype=np.float64):
    p = {}
    _encoder(p, "perceiver_encoder", input_channels=3 + 2 * (2 * 6 + 1))
    _classifier(p)
    params, flat = _cast(p, dtype)
    model = from_deepmind(params, num_bands=6, max_resolution=(12, 12), **SMALL)
    assert model.config.encoder.self_attend.activation == "gelu_tanh"
    x = _input(2, 5, 7, 3, dtype=dtype)
    z = np_encoder(flat, "perceiver_encoder", np_with_fourier(x, 6, (12, 12)), cross_heads=1,
                   self_heads=2, num_blocks=2)
    return _ours(model, x), t(np_classify(flat, z, True))


def case_imagenet_learned(dtype=np.float64):
    p = {}
    _encoder(p, "perceiver_encoder", input_channels=6 + 5)
    _classifier(p)
    p["image_preprocessor/~/conv2_d"] = {"w": _rand(1, 1, 3, 6), "b": _rand(6)}
    pre = "image_preprocessor/~_build_network_inputs"
    _pos(p, f"{pre}/trainable_position_encoding", 16, 4)
    _linear(p, f"{pre}/position_encoding_projector/linear", 4, 5)
    params, flat = _cast(p, dtype)
    model = from_deepmind(params, "imagenet_learned_position_encoding", **SMALL)
    x = _input(2, 4, 4, 3, dtype=dtype)
    pos = np_linear(flat[f"{pre}/trainable_position_encoding/pos_embs"], flat,
                    f"{pre}/position_encoding_projector/linear")
    conv = "image_preprocessor/~/conv2_d"
    conv1x1 = x @ flat[f"{conv}/w"][0, 0] + flat[f"{conv}/b"]
    inputs = np.concatenate([conv1x1.reshape(2, 16, 6), np.broadcast_to(pos, (2, 16, 5))], -1)
    z = np_encoder(flat, "perceiver_encoder", inputs, cross_heads=1, self_heads=2, num_blocks=2)
    # DeepMind's learned-position classifier has no query residual (transformers adds one).
    return _ours(model, x), t(np_classify(flat, z, False))


def case_imagenet_conv(dtype=np.float64, image=13):
    p = {}
    _encoder(p, "perceiver_encoder", input_channels=4 + 2 * (2 * 64 + 1))
    _classifier(p)
    s = "image_preprocessor/~/conv2_d_downsample/~"
    p[f"{s}/conv"] = {"w": _rand(7, 7, 3, 4)}
    p[f"{s}/batchnorm"] = {"scale": 1 + _rand(1, 1, 1, 4, scale=0.1),
                           "offset": _rand(1, 1, 1, 4, scale=0.1)}
    state = {f"{s}/batchnorm/~/mean_ema": {"average": _rand(1, 1, 1, 4, scale=0.1),
                                           "counter": np.array(3), "hidden": _rand(1, 1, 1, 4)},
             f"{s}/batchnorm/~/var_ema": {"average": 1 + np.abs(_rand(1, 1, 1, 4)),
                                          "counter": np.array(3), "hidden": _rand(1, 1, 1, 4)}}
    params, flat = _cast(p, dtype)
    state, flat_state = _cast(state, dtype)
    flat.update(flat_state)
    model = from_deepmind({"params": params, "state": state}, **SMALL)
    x = _input(2, image, image, 3, dtype=dtype)
    z = np_encoder(flat, "perceiver_encoder", np_with_fourier(np_conv_stem(flat, x), 64, (56, 56)),
                   cross_heads=1, self_heads=2, num_blocks=2)
    return _ours(model, x), t(np_classify(flat, z, True))


def case_language(dtype=np.float64):
    """With a padded example; only the unpadded positions are returned (DeepMind also masks
    the padded queries, whose logits mean nothing)."""
    p = {}
    d_model, length, vocab = 6, 10, 262
    _encoder(p, "perceiver_encoder", input_channels=d_model, qk=4, v=8)
    p["embed"] = {"embeddings": _rand(vocab, d_model)}
    _pos(p, "trainable_position_encoding", length, d_model)
    _pos(p, "basic_decoder/~/trainable_position_encoding", length, d_model)
    _attention_module(p, "basic_decoder/cross_attention", d_model, 8, 4, d_model, 1, cross=True)
    p["embedding_decoder"] = {"bias": _rand(vocab)}
    params, flat = _cast(p, dtype)
    model = from_deepmind(params, encoder={"num_blocks": 2, "cross_attend": {"heads": 2},
                                           "self_attend": {"heads": 2}}, decoder={"heads": 2})
    ids = RNG.integers(6, vocab, size=(2, length))
    mask = np.ones((2, length), dtype=bool)
    mask[1, 7:] = False
    embedded = flat["embed/embeddings"][ids] + flat["trainable_position_encoding/pos_embs"]
    z = np_encoder(flat, "perceiver_encoder", embedded, cross_heads=2, self_heads=2,
                   num_blocks=2, input_mask=mask)
    queries = np.broadcast_to(flat["basic_decoder/~/trainable_position_encoding/pos_embs"],
                              (2, length, d_model))
    query_mask = np.einsum("bt,bT->btT", mask, np.ones((2, z.shape[1])))
    out = np_cross_attention(flat, "basic_decoder/cross_attention", queries, z, 2, False,
                             query_mask)
    logits = out @ flat["embed/embeddings"].T + flat["embedding_decoder/bias"]
    return _ours(model, ids, mask)[t(mask)], t(logits)[t(mask)]


def case_optical_flow(dtype=np.float64):
    p = {}
    channels = 7 + 2 * (2 * 64 + 1)
    _encoder(p, "perceiver_encoder", input_channels=channels)
    _linear(p, "image_preprocessor/patches_linear", 2 * 5, 7)
    d = "flow_decoder/~/basic_decoder"
    _attention_module(p, f"{d}/cross_attention", channels, 8, 8, 8, 1, cross=True)
    _linear(p, f"{d}/output", channels, 2)
    params, flat = _cast(p, dtype)
    model = from_deepmind(params, image_shape=(4, 6), **SMALL)
    x = _input(2, 2, 4, 6, 5, dtype=dtype)  # (batch, frames, H, W, C)
    stacked = np.concatenate([x[:, 0], x[:, 1]], -1)  # space-to-depth in time: frame-major
    inputs = np_with_fourier(np_linear(stacked, flat, "image_preprocessor/patches_linear"), 64,
                             (4, 6))
    z = np_encoder(flat, "perceiver_encoder", inputs, cross_heads=1, self_heads=2, num_blocks=2)
    # DeepMind's examples multiply the model's output by 20 to get flow in pixels.
    flow = np_linear(np_cross_attention(flat, f"{d}/cross_attention", inputs, z, 1, False),
                     flat, f"{d}/output") / 100.0 * 20.0
    return _ours(model, x), t(flow.reshape(2, 4, 6, 2))


def case_video_autoencoding(dtype=np.float64):
    """Subsampled decoding (DeepMind's chunks); returns dicts {modality: output}."""
    frames, spp, n_audio, classes = (2, 8, 8), 4, 16, 5
    image_c, audio_c = 4 * 4 * 3 + 3 * (2 * 32 + 1), spp + 2 * 192 + 1
    in_c = max(image_c, audio_c, classes) + 4
    q_c = max(2 * 192 + 1, 3 * (2 * 32 + 1), 10) + 2
    p = {}
    _encoder(p, "encoder", input_channels=in_c)
    for name, c in (("audio", audio_c), ("image", image_c), ("label", classes)):
        _pos(p, f"multimodal_preprocessor/{name}_padding", 1, in_c - c)
        _pos(p, f"multimodal_preprocessor/{name}_mask_token", 1, in_c)
    _pos(p, "classification_decoder/~/basic_decoder/~/trainable_position_encoding", 1, 10)
    for name, c in (("audio", 2 * 192 + 1), ("image", 3 * 65), ("label", 10)):
        _pos(p, f"multimodal_decoder/~decoder_query/{name}_padding", 1, q_c - c)
    dec = "multimodal_decoder/~/basic_decoder"
    _attention_module(p, f"{dec}/cross_attention", q_c, 8, 8, 8, 1, cross=True)
    _linear(p, f"{dec}/output", q_c, 6)
    _linear(p, "audio_postprocessor/linear", 6, spp)
    _linear(p, "projection_postprocessor/linear", 6, 3)
    _linear(p, "classification_postprocessor/linear", 6, classes)
    params, flat = _cast(p, dtype)
    model = from_deepmind(params, image={"video_shape": frames, "max_resolution": (2, 4, 4)},
                          audio={"max_samples": n_audio, "max_resolution": n_audio},
                          encoder={"num_blocks": 1, "self_attend": {"heads": 2}})

    images, audio = _input(2, *frames, 3, dtype=dtype), _input(2, n_audio, 1, dtype=dtype)
    label = np.zeros((2, classes))
    sub = {"image": np.arange(20, 50), "audio": np.arange(1, 3)}
    # Encoder inputs: per-modality preprocessing, padding, the label masked by its token.
    a = np_with_fourier(audio.reshape(2, -1, spp), 192, (n_audio,))
    v = images.reshape(2, 2, 2, 4, 2, 4, 3).transpose(0, 1, 2, 4, 3, 5, 6).reshape(2, 2, 2, 2, 48)
    v = np_with_fourier(v, 32, (2, 4, 4))
    parts = {}
    for name, x in (("audio", a), ("image", v), ("label", label[:, None])):
        pad = np.broadcast_to(flat[f"multimodal_preprocessor/{name}_padding/pos_embs"],
                              x.shape[:2] + (in_c - x.shape[2],))
        parts[name] = np.concatenate([x, pad], -1)
    parts["label"] = np.broadcast_to(flat["multimodal_preprocessor/label_mask_token/pos_embs"],
                                     parts["label"].shape)
    z = np_encoder(flat, "encoder", np.concatenate([parts[k] for k in sorted(parts)], 1),
                   cross_heads=1, self_heads=2, num_blocks=1)
    # Decoder queries at the subsampled points: -1 + 2 * index / size.
    audio_pos = -1 + 2 * sub["audio"][:, None] / 4
    image_pos = -1 + 2 * np.stack(np.unravel_index(sub["image"], frames), 1) / np.array(frames)
    queries = {
        "audio": np_fourier(audio_pos, 192, (n_audio,)),
        "image": np_fourier(image_pos, 32, (2, 4, 4)),
        "label": flat["classification_decoder/~/basic_decoder/~/trainable_position_encoding/"
                      "pos_embs"]}
    q = np.concatenate([np.concatenate([queries[k], np.broadcast_to(
        flat[f"multimodal_decoder/~decoder_query/{k}_padding/pos_embs"],
        (len(queries[k]), q_c - queries[k].shape[1]))], -1) for k in sorted(queries)])
    out = np_linear(np_cross_attention(flat, f"{dec}/cross_attention",
                                       np.broadcast_to(q, (2,) + q.shape), z, 1, False),
                    flat, f"{dec}/output")
    expected = {"audio": np_linear(out[:, :2], flat, "audio_postprocessor/linear").reshape(2, -1),
                "image": np_linear(out[:, 2:32], flat, "projection_postprocessor/linear"),
                "label": np_linear(out[:, 32:], flat, "classification_postprocessor/linear")[:, 0]}
    inputs = {"image": images, "audio": audio, "label": label}
    ours = _ours(model, {k: t(v).to(model.encoder.latents.dtype) for k, v in inputs.items()},
                 subsample={k: torch.from_numpy(v) for k, v in sub.items()})
    return ours, {k: t(v) for k, v in expected.items()}


CASES = {"vision-perceiver-fourier": case_imagenet_fourier,
         "vision-perceiver-learned": case_imagenet_learned,
         "vision-perceiver-conv": case_imagenet_conv, "language-perceiver": case_language,
         "optical-flow-perceiver": case_optical_flow,
         "multimodal-perceiver": case_video_autoencoding}


@pytest.mark.parametrize("family", list(CASES))
def test_matches_deepmind(family):
    ours, expected = CASES[family]()
    if isinstance(expected, dict):
        assert set(ours) == set(expected)
        for name in expected:
            torch.testing.assert_close(ours[name], expected[name], **TOL)
    else:
        torch.testing.assert_close(ours, expected, **TOL)


def test_imagenet_conv_matches_deepmind_on_even_sizes():
    """TensorFlow's SAME pads the 7x7 conv 2 before / 3 after on even sizes (224 -> 112)."""
    ours, expected = case_imagenet_conv(image=16)
    torch.testing.assert_close(ours, expected, **TOL)


# --- reading pickles ----------------------------------------------------------------------


def _write_pickle(tmp_path):
    p = {}
    _encoder(p, "perceiver_encoder", input_channels=3 + 2 * (2 * 64 + 1))
    _classifier(p)
    p = {m: {k: v.astype(np.float32) for k, v in d.items()} for m, d in p.items()}  # as released
    path = tmp_path / "imagenet_fourier_position_encoding.pystate"
    path.write_bytes(pickle.dumps({"params": p, "state": {}}))
    return path


def test_pickle_is_refused_without_trust_pickle(tmp_path):
    path = _write_pickle(tmp_path)
    with pytest.raises(ValueError, match="trust_pickle=True"):
        load_deepmind_params(path)
    with pytest.raises(ValueError, match="arbitrary code"):
        from_deepmind(path)
    assert convert_main(["--from", "deepmind", str(path), str(tmp_path / "out")]) != 0
    assert not (tmp_path / "out").exists()


def test_pickle_with_trust_pickle_warns_converts_and_round_trips(tmp_path):
    path = _write_pickle(tmp_path)
    with pytest.warns(UserWarning, match="arbitrary code"):
        model = from_deepmind(path, trust_pickle=True, **SMALL)
    out = tmp_path / "converted"
    save_pretrained(model, out)
    x = torch.randn(1, 6, 6, 3)
    with torch.no_grad():
        torch.testing.assert_close(from_pretrained(out)(x), model(x), atol=0, rtol=0)


def test_cli_converts_a_trusted_pickle(tmp_path):
    path = _write_pickle(tmp_path)
    out = tmp_path / "cli"
    with pytest.warns(UserWarning, match="arbitrary code"):
        assert convert_main(["--from", "deepmind", str(path), str(out), "--trust-pickle",
                             "--encoder", '{"num_blocks": 2, "self_attend": {"heads": 2}}']) == 0
    model = from_pretrained(out)
    assert model.config.encoder.num_blocks == 2
    # predict reads images for it as DeepMind's ImageNet example prepares them; a pickle holds
    # no class names.
    extra = json.loads((out / "config.json").read_text())["extra"]
    assert extra["classes"] == [str(i) for i in range(model.decoder.output_channels)]
    assert extra["input_spec"]["preprocess"]["center_crop"] == {"fraction": [0.875, 0.875]}


def test_haiku_mappings_unpickle_without_haiku(tmp_path, monkeypatch):
    """Old Haiku checkpoints pickle ``haiku._src.data_structures.FlatMapping(dict)``: readable
    without Haiku installed."""
    import sys
    import types

    module = types.ModuleType("haiku._src.data_structures")

    class FlatMapping(dict):
        def __reduce__(self):
            return FlatMapping, (dict(self),)

    FlatMapping.__module__ = module.__name__
    FlatMapping.__qualname__ = "FlatMapping"
    module.FlatMapping = FlatMapping
    for name in ("haiku", "haiku._src"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "haiku._src.data_structures", module)
    weights = {"perceiver_encoder/~/trainable_position_encoding": {"pos_embs": np.ones((2, 3))}}
    path = tmp_path / "haiku.pickle"
    path.write_bytes(pickle.dumps(FlatMapping({k: FlatMapping(v) for k, v in weights.items()})))
    monkeypatch.delitem(sys.modules, "haiku._src.data_structures")
    with pytest.warns(UserWarning):
        flat = load_deepmind_params(path, trust_pickle=True)
    assert list(flat) == ["perceiver_encoder/~/trainable_position_encoding/pos_embs"]
    assert flat["perceiver_encoder/~/trainable_position_encoding/pos_embs"].shape == (2, 3)


def test_flow_patches_match_deepminds_patches_for_flow():
    """io_processors.patches_for_flow: each pixel's zero-padded 3x3 neighbourhood, ordered
    (row offset, column offset, channel)."""
    from omniperceiver.adapters import flow_patches

    frames = RNG.normal(size=(1, 2, 4, 5, 3))
    padded = np.pad(frames, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
    expected = np.zeros((1, 2, 4, 5, 27))
    for y in range(4):
        for x in range(5):
            expected[:, :, y, x] = padded[:, :, y:y + 3, x:x + 3].reshape(1, 2, 27)
    torch.testing.assert_close(flow_patches(t(frames)), t(expected), atol=0, rtol=0)
