"""Training building blocks: schedules, data order, augmentations, attention weights for the
plots, input files for predict, atomic checkpoint writes."""

from __future__ import annotations

import copy
import math
import wave

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("lightning")

from omniperceiver import create_model  # noqa: E402
from omniperceiver.training import augment as aug  # noqa: E402
from omniperceiver.training.checkpoint import (  # noqa: E402
    AtomicCheckpointIO,
    write_atomically,
)
from omniperceiver.training.inputs import InputFileError, load_input_file  # noqa: E402
from omniperceiver.training.module import WarmupSchedule  # noqa: E402
from omniperceiver.training.plots import cross_attention_weights  # noqa: E402
from omniperceiver.training.sampling import ResumableSampler  # noqa: E402

ENCODER = dict(num_latents=6, latent_dim=16, num_blocks=1, self_attends_per_block=1,
               num_cross_attends=1, self_attend={"heads": 2})
TINY = dict(encoder=ENCODER)


def test_warmup_cosine_and_step_schedules():
    cos = WarmupSchedule("cosine", total_steps=100, warmup_steps=10, min_lr_ratio=0.1)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0)
    assert cos(10) == pytest.approx(1.0)
    assert cos(55) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cos(100) == pytest.approx(0.1)
    step = WarmupSchedule("step", total_steps=120, warmup_steps=0, milestones=[84, 102, 114])
    assert [step(s) for s in (0, 83, 84, 102, 119)] == pytest.approx([1, 1, 0.1, 0.01, 0.001])


def test_sampler_shards_are_the_single_process_batches(monkeypatch):
    """Rank r of w takes every w-th index of the same permutation, so the ranks' k-th batches
    together are the k-th batch of one process with w times the batch size."""
    single = list(ResumableSampler(40, shuffle=True, seed=3))
    shards = []
    for rank in range(2):
        monkeypatch.setattr("omniperceiver.training.sampling.rank_and_world", lambda r=rank: (r, 2))
        shards.append(list(ResumableSampler(40, shuffle=True, seed=3)))
    batch = 4  # per rank
    for k in range(40 // (2 * batch)):
        together = sorted(shards[0][k * batch:(k + 1) * batch]
                          + shards[1][k * batch:(k + 1) * batch])
        assert together == sorted(single[2 * k * batch:2 * (k + 1) * batch])


def test_sampler_epochs_and_resume():
    s = ResumableSampler(10, shuffle=True, seed=0)
    first = list(s)
    s.set_epoch(1)
    second = list(s)
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    s.resume_at(1, 4)
    assert list(s) == second[4:]
    assert list(s) == second  # the skip applies once


def test_random_shift_moves_images_and_videos_rigidly():
    torch.manual_seed(0)
    x = torch.zeros(8, 10, 10, 1)
    x[:, 5, 5] = 1
    y = aug.random_shift(x, 2)
    pos = y[..., 0].flatten(1).argmax(1)
    rows, cols = pos // 10, pos % 10
    assert y.sum() == 8 and ((rows - 5).abs() <= 2).all() and ((cols - 5).abs() <= 2).all()
    video = x[:, None].expand(8, 3, 10, 10, 1).clone()
    moved = aug.random_shift(video, 2)
    assert torch.equal(moved[:, 0], moved[:, 1]) and torch.equal(moved[:, 0], moved[:, 2])


def test_random_affine_is_identity_at_zero_and_rotates_rigidly():
    torch.manual_seed(0)
    x = torch.rand(3, 12, 12, 2)
    assert torch.allclose(aug.random_affine(x, degrees=0.0), x, atol=1e-5)
    r2 = (torch.arange(12)[:, None] - 5.5) ** 2 + (torch.arange(12)[None] - 5.5) ** 2
    blob = torch.exp(-r2 / 8)[None, :, :, None].expand(4, 12, 12, 1)
    rotated = aug.random_affine(blob, degrees=180.0)  # a centred round blob looks the same
    assert torch.allclose(rotated, blob, atol=0.06)
    assert not torch.allclose(aug.random_affine(x, degrees=30.0), x, atol=0.03)


@settings(max_examples=25, deadline=None)
@given(alpha=st.floats(0.3, 4.0), sigma=st.floats(0.5, 6.0), seed=st.integers(0, 2**16))
def test_random_elastic_moves_every_pixel_by_at_most_alpha_along_a_smooth_field(alpha, sigma,
                                                                                 seed):
    # channels 0 and 1 hold each pixel's own x and y: bilinear resampling of a linear ramp
    # returns the sampled position, so output - input is the displacement field itself
    h = w = 28
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing="ij")
    ramp = torch.stack([xs, ys], -1)[None].expand(2, h, w, 2)
    torch.manual_seed(seed)
    out = aug.random_elastic(ramp, alpha=alpha, sigma=sigma)
    assert out.shape == ramp.shape and out.dtype == ramp.dtype
    inner = slice(6, 22)  # away from the zero fill at the borders
    shift = (out - ramp)[:, inner, inner]
    assert shift.abs().max() <= alpha + 1e-4
    assert shift.abs().max() > 0.05 * alpha  # it does move
    # smooth: neighbours move alike, far less than the displacements' own spread allows
    step = (shift[:, 1:] - shift[:, :-1]).abs().max()
    assert step <= 2 * alpha * (1 / sigma + 0.05) + 1e-6


def test_random_elastic_is_the_identity_without_displacement_and_is_validated():
    x = torch.rand(3, 28, 28, 1)
    assert torch.allclose(aug.random_elastic(x, alpha=1e-7, sigma=3.0), x, atol=1e-5)
    assert torch.equal(aug.random_elastic(x, alpha=0.0, sigma=3.0), x)
    from omniperceiver.training.data import MNISTData

    with pytest.raises(ValueError, match=r"elastic: expected \[alpha, sigma\]"):
        MNISTData(elastic=(2.0, 0.0))


def test_mixup_and_cutmix_give_soft_targets():
    torch.manual_seed(0)
    x, y = torch.rand(6, 8, 8, 1), torch.arange(6)
    for kwargs in ({"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}):
        mixed, target = aug.mixup_cutmix(x, y, 10, **kwargs)
        assert mixed.shape == x.shape and target.shape == (6, 10)
        assert torch.allclose(target.sum(-1), torch.ones(6))


def test_point_augmentation_rotates_normals_with_points():
    torch.manual_seed(0)
    points = torch.randn(4, 32, 6)
    out = aug.augment_points(points, rotate_z=True)
    assert torch.allclose(out[..., :3].norm(dim=-1), points[..., :3].norm(dim=-1), atol=1e-5)
    assert torch.allclose(out[..., 2], points[..., 2]) and torch.allclose(out[..., 5],
                                                                          points[..., 5])


def test_spec_augment_masks_bands_and_spans():
    torch.manual_seed(0)
    frames = torch.randn(3, 50, 16)
    masked = aug.SpecAugment(freq_masks=1, freq_width=4, time_masks=1, time_width=5)(frames)
    assert masked.shape == frames.shape and (masked != frames).any()


@pytest.mark.parametrize(("mode", "num_inputs"), [("pixels", 784), ("conv", 49)])
def test_cross_attention_weights_reproduce_the_layer(mode, num_inputs):
    """The plotted weights, applied to the layer's own values, give the cross-attend's output
    (raw pixels: one weight per pixel; the conv stem: one per cell of its 7x7 grid)."""
    torch.manual_seed(0)
    model = create_model("mnist-perceiver", mode=mode, encoder=dict(
        ENCODER, cross_attend={"heads": 2, "qk_channels": 16})).eval()
    x = torch.rand(2, 28, 28, 1)
    weights, adapted = cross_attention_weights(model, x)
    assert weights.shape == (2, 2, 6, num_inputs)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 2, 6))
    layer = model.encoder.cross_attends[0]
    att = layer.attention
    latents = layer.norm_q(model.encoder.latents).expand(2, -1, -1)
    context = layer.norm_kv(adapted.inputs)
    _, v = att.to_kv(context).split([att.qk_channels, att.v_channels], dim=-1)
    v = v.view(2, num_inputs, 2, -1).transpose(1, 2)  # (batch, heads, M, dv)
    ours = att.to_out((weights @ v).transpose(1, 2).reshape(2, 6, -1))
    with torch.no_grad():
        theirs = att(latents, context)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_cross_attention_weights_of_chosen_latents_and_masks():
    torch.manual_seed(0)
    model = create_model("pointcloud-perceiver", num_classes=3, **TINY).eval()
    points = torch.rand(2, 10, 3) * 2 - 1
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    weights, _ = cross_attention_weights(model, points, latents=[1, 4])
    assert weights.shape == (2, 1, 2, 10)
    adapted_mask = model.input_adapter(points, mask).mask
    assert adapted_mask is not None


def test_permuted_pixels_with_travelling_positions_give_the_same_outputs():
    """The paper's permuted-input setting: the position features travel with the pixels, and
    a Perceiver (which does not depend on input order) gives the same outputs."""
    from omniperceiver.position import pixel_permutation

    torch.manual_seed(0)
    # small latents: the random model's outputs depend clearly on its inputs
    small = dict(ENCODER, latent_init_std=0.02)
    plain = create_model("mnist-perceiver", encoder=small).eval()
    permuted = create_model("mnist-perceiver", encoder=small, permutation_seed=3).eval()
    permuted.load_state_dict(plain.state_dict())
    x = torch.rand(2, 28, 28, 1)
    shuffled = x.reshape(2, 784, 1)[:, pixel_permutation(3)].reshape(2, 28, 28, 1)
    with torch.no_grad():
        assert torch.allclose(permuted(shuffled), plain(x), atol=1e-5)
        assert not torch.allclose(plain(shuffled), plain(x), atol=1e-3)


@pytest.mark.parametrize("shift", [0, 2])
def test_permuted_mnist_augments_the_image_before_permuting(shift):
    """Permuted MNIST's training batches are the unpermuted batches, augmented by the same
    random draws, then shuffled by the permutation (the paper's order)."""
    from omniperceiver.position import pixel_permutation
    from omniperceiver.training.data import MNISTData

    order = pixel_permutation(5)
    images = torch.rand(6, 28, 28, 1)
    y = torch.arange(6)
    permuted_input = images.reshape(6, 784, 1)[:, order].reshape(6, 28, 28, 1)
    torch.manual_seed(1)
    got, _ = MNISTData(permuted=True, permutation_seed=5, shift=shift).augment(permuted_input, y)
    torch.manual_seed(1)
    expected, _ = MNISTData(shift=shift).augment(images, y)
    expected = expected.reshape(6, 784, 1)[:, order].reshape(6, 28, 28, 1)
    assert torch.equal(got, expected)
    if shift:
        assert not torch.equal(got, permuted_input)


# --- predict input files ----------------------------------------------------------------------

IMAGE_SPEC = {"modality": "image", "image_shape": [28, 28], "input_channels": 1}
AUDIO_SPEC = {"modality": "audio", "sample_rate": 8000, "num_samples": 4000}
POINT_SPEC = {"modality": "points", "num_points": 64, "num_features": 0}


def _write_wav(path, rate=8000, seconds=0.25):
    t = np.arange(int(rate * seconds)) / rate
    data = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def _write_off(path):
    path.write_text("OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n3 0 1 3\n3 0 2 3\n"
                    "3 1 2 3\n")


def test_input_files_of_each_modality(tmp_path):
    from PIL import Image

    Image.fromarray((np.random.rand(40, 30) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    assert load_input_file(tmp_path / "a.png", IMAGE_SPEC).shape == (28, 28, 1)
    _write_wav(tmp_path / "a.wav")
    audio = load_input_file(tmp_path / "a.wav", AUDIO_SPEC)
    assert audio.shape == (4000,) and audio.abs().max() <= 1
    _write_off(tmp_path / "a.off")
    points = load_input_file(tmp_path / "a.off", POINT_SPEC)
    assert points.shape == (64, 3) and points.norm(dim=-1).max() <= 1 + 1e-5
    np.save(tmp_path / "p.npy", np.random.rand(100, 3).astype(np.float32))
    assert load_input_file(tmp_path / "p.npy", POINT_SPEC).shape == (64, 3)


def test_wrong_modality_and_shape_name_the_file(tmp_path):
    _write_wav(tmp_path / "clip.wav")
    with pytest.raises(InputFileError, match=r"clip\.wav: this model takes images 28x28x1.*"
                                             r"got a WAV audio file"):
        load_input_file(tmp_path / "clip.wav", IMAGE_SPEC)
    np.save(tmp_path / "bad.npy", np.zeros((3, 4)))
    with pytest.raises(InputFileError, match=r"bad\.npy: .*got an array of shape \(3, 4\)"):
        load_input_file(tmp_path / "bad.npy", IMAGE_SPEC)
    with pytest.raises(InputFileError, match=r"missing\.png: no such file"):
        load_input_file(tmp_path / "missing.png", IMAGE_SPEC)
    (tmp_path / "x.off").write_text("not a mesh")
    with pytest.raises(InputFileError, match=r"x\.off"):
        load_input_file(tmp_path / "x.off", POINT_SPEC)


# --- atomic writes ----------------------------------------------------------------------------


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, path)

    def crash(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, crash)
    assert int(io.load_checkpoint(path)["step"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind


def test_checkpoint_loading_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"fn": math.sqrt}, path)  # a pickled callable: not weights-only
    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        AtomicCheckpointIO().load_checkpoint(path)


def test_trainer_adamw_is_fused_on_cpu_and_steps_like_the_loop():
    """The trainer's AdamW takes PyTorch's fused kernel for plain CPU parameters, keeps the
    weight-decay groups, and moves the weights as the per-tensor loop does (to rounding);
    parameters the fused kernel cannot take get the loop."""
    from omniperceiver.training.module import adamw, weight_decay_groups

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8),
                                torch.nn.Linear(8, 3))
    twin = copy.deepcopy(model)
    options = dict(lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    fused = adamw(weight_decay_groups(model, 0.1), **options)
    loop = torch.optim.AdamW(weight_decay_groups(twin, 0.1), **options)
    assert fused.defaults["fused"] is True and not loop.defaults["fused"]
    assert [g["weight_decay"] for g in fused.param_groups] == [
        g["weight_decay"] for g in loop.param_groups]
    for step in range(5):
        x = torch.randn(16, 6, generator=torch.Generator().manual_seed(step))
        for m, optimizer in ((model, fused), (twin, loop)):
            optimizer.zero_grad()
            m(x).square().mean().backward()
            optimizer.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    elsewhere = torch.nn.Parameter(torch.zeros(3, device="meta"))  # no fused kernel there
    assert not adamw([{"params": [elsewhere]}], lr=1e-3).defaults["fused"]
    assert not adamw(weight_decay_groups(model, 0.1), fused=False, lr=1e-3).defaults["fused"]


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_gradient_clipping_before_a_fused_step_clips(algorithm):
    """Lightning refuses to clip before a fused optimizer's step; the module clips itself."""
    from types import SimpleNamespace

    from omniperceiver.training.module import ClassificationModule, adamw, weight_decay_groups

    module = ClassificationModule(model="image-perceiver", num_classes=3, model_args=dict(
        image_shape=[4, 4], input_channels=1, encoder=dict(num_latents=4, latent_dim=8,
                                                            num_blocks=1)))
    module._trainer = SimpleNamespace(strategy=SimpleNamespace(model=module))
    optimizer = adamw(weight_decay_groups(module.model, 0.0), lr=1e-3)
    assert optimizer.defaults["fused"] is True
    for p in module.parameters():
        p.grad = torch.full_like(p, 3.0)
    module.configure_gradient_clipping(optimizer, 0.5, algorithm)
    grads = [p.grad for p in module.parameters()]
    if algorithm == "norm":
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        assert total.item() == pytest.approx(0.5, rel=1e-4)
    else:
        assert max(g.abs().max().item() for g in grads) == pytest.approx(0.5)
