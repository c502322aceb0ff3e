"""The model on a CUDA GPU: the same results as on the CPU, the fused SDPA kernels accept our
attention calls (flash without a mask, memory-efficient with one), bf16 autocast, chunked
encoding, torch.compile and a Lightning run on the GPU. Skipped without a CUDA device
(benchmarks/gpu.sh runs these before the GPU benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_io, tiny_perceiver
from torch.nn.attention import SDPBackend, sdpa_kernel

import omniperceiver
from omniperceiver import AttentionSpec, attend, create_model

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")]
CUDA = torch.device("cuda")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def exact_float32():
    """Full float32 matrix products on the GPU (no TF32), so results compare with the CPU."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def seed_like(**kwargs):
    """The seed configuration's structure, smaller."""
    args = dict(input_channels=3, input_axis=2, num_freq_bands=6, max_freq=10.0, depth=2,
                num_latents=32, latent_dim=128, cross_heads=1, latent_heads=4, cross_dim_head=64,
                latent_dim_head=32, num_classes=10)
    args.update(kwargs)
    return tiny_perceiver(**args)


def test_forward_equals_cpu_with_and_without_mask():
    torch.manual_seed(0)
    model = seed_like()
    x = torch.randn(3, 20, 20, 3)
    mask = torch.rand(3, 20, 20) > 0.3
    mask[1] = False  # a fully masked example: zero attention, finite output
    with torch.no_grad():
        cpu = [model(x), model(x, mask=mask)]
        model.to(CUDA)
        gpu = [model(x.to(CUDA)), model(x.to(CUDA), mask=mask.to(CUDA))]
    for c, g in zip(cpu, gpu, strict=True):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g.cpu(), c, atol=2e-4, rtol=2e-4)


def test_gradients_equal_cpu():
    torch.manual_seed(0)
    model = seed_like().train()
    x = torch.randn(2, 12, 12, 3)
    y = torch.tensor([1, 7])

    def grads(device):
        model.to(device).zero_grad()
        torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device)).backward()
        return [p.grad.detach().cpu().clone() for p in model.parameters()]

    for c, g in zip(grads("cpu"), grads(CUDA), strict=True):
        torch.testing.assert_close(g, c, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_kernels_accept_our_attention(dtype):
    """Without a mask the flash kernel runs our calls; with a key mask the memory-efficient
    kernel does. sdpa_kernel with a single backend raises if that backend refuses."""
    torch.manual_seed(0)
    q = torch.randn(2, 8, 64, 64, device=CUDA, dtype=dtype)
    k, v = torch.randn(2, 2, 8, 300, 64, device=CUDA, dtype=dtype)
    mask = torch.rand(2, 300, device=CUDA) > 0.5
    mask[0] = False
    reference_plain = attend(q.double(), k.double(), v.double())
    reference_masked = attend(q.double(), k.double(), v.double(), mask)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        plain = attend(q, k, v)
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        masked = attend(q, k, v, mask)
    torch.testing.assert_close(plain.double(), reference_plain, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(masked.double(), reference_masked, atol=2e-2, rtol=2e-2)
    assert torch.equal(masked[0], torch.zeros_like(masked[0]))


def textbook_attention(q, k, v, mask=None):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1).nan_to_num(0.0) @ v  # no valid key: zeros


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_few_queries_over_many_keys(dtype):
    """A cross-attend at a small batch (few thread blocks for the fused kernels) takes the
    key-chunked path on the GPU: same values and gradients as the float64 formula."""
    from omniperceiver.kernels import _fused_kernel_underfills_gpu

    torch.manual_seed(0)
    q = torch.randn(2, 1, 256, 64, device=CUDA, dtype=dtype, requires_grad=True)
    k, v = torch.randn(2, 2, 1, 40_000, 64, device=CUDA, dtype=dtype).unbind(0)
    k.requires_grad_(), v.requires_grad_()
    mask = torch.rand(2, 40_000, device=CUDA) > 0.5
    mask[1] = False
    assert _fused_kernel_underfills_gpu(q, k, mask)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    for m in (None, mask):
        out = attend(q, k, v, m)
        grads = torch.autograd.grad(out.square().sum(), (q, k, v))
        q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
        ref = textbook_attention(q64, k64, v64, m)
        ref_grads = torch.autograd.grad(ref.square().sum(), (q64, k64, v64))
        torch.testing.assert_close(out.double(), ref, **tol)
        for g, r in zip(grads, ref_grads, strict=True):
            scale = r.abs().max()
            torch.testing.assert_close(g.double() / scale, r / scale, **tol)


def test_seed_preset_under_bf16_autocast_is_close_to_float32():
    torch.manual_seed(0)
    model = create_model("perceiver-seed").to(CUDA).eval()
    x = torch.randn(2, 224, 224, 3, device=CUDA)
    with torch.no_grad():
        full = model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = model(x)
    assert full.shape == (2, 1000) and torch.isfinite(half).all()
    assert (half.float() - full).abs().max() < 0.1 * full.abs().max() + 0.05


def test_chunked_encoding_equals_whole_input():
    torch.manual_seed(0)
    model = tiny_io(input_channels=32).to(CUDA)  # 32 channels: the context-space path
    x = torch.randn(3, 500, 32, device=CUDA)
    mask = torch.rand(3, 500, device=CUDA) > 0.5
    mask[1, :128] = False  # a fully masked chunk
    with torch.no_grad():
        for m in (None, mask):
            whole = model(x, m)
            model.encoder.config.input_chunk_size = 128
            try:
                parts = model(x, m)
            finally:
                model.encoder.config.input_chunk_size = None
            torch.testing.assert_close(parts, whole, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kv_dim", [32, 29])
def test_context_space_attention_equals_projected(kv_dim):
    """kv_dim 32 attends in the context's channel space on CUDA; 29 (not a multiple of 8)
    falls back to projecting keys and values. Both equal the CPU result."""
    torch.manual_seed(0)
    model = tiny_io(input_channels=kv_dim, cross_attend=AttentionSpec(heads=2, qk_channels=64))
    attention = model.encoder.cross_attends[0].attention
    x = torch.randn(2, 400, kv_dim)
    with torch.no_grad():
        cpu = model(x)
        model.to(CUDA)
        gpu = model(x.to(CUDA))
    assert attention.attends_in_context_space(6, 400, CUDA) == (kv_dim == 32)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-4, rtol=2e-4)


def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    model = seed_like().to(CUDA)
    x = torch.randn(4, 16, 16, 3, device=CUDA)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model)(x)
    torch.testing.assert_close(compiled, eager, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("strategy", ["auto", "fsdp"])
def test_lightning_fit_on_the_gpu_with_bf16(strategy, tmp_path):
    """A short run on one GPU, plain and with FSDP (parameters sharded over one process: the
    same code path as many GPUs, including gathering the full weights for the export)."""
    pytest.importorskip("lightning")
    pytest.importorskip("mlxtend")
    from omniperceiver.cli import main

    root = tmp_path / "run"
    tiny = {"encoder": {"num_latents": 8, "latent_dim": 32, "num_blocks": 1,
                        "self_attends_per_block": 1, "num_cross_attends": 1,
                        "self_attend": {"heads": 2}}}
    args = ["fit", "--config", str(CONFIGS / "mnist.yaml"), "--model.model_args",
            json.dumps(tiny), "--trainer.default_root_dir", str(root),
            "--trainer.accelerator", "gpu", "--trainer.devices", "1",
            "--trainer.strategy", strategy,
            "--trainer.precision", "bf16-mixed", "--trainer.max_steps", "20",
            "--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false"]
    assert main(args) == 0
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["steps"] == 20 and 0 <= metrics["test_accuracy"] <= 1
    exported = omniperceiver.from_pretrained(root / "model")
    assert sum(p.numel() for p in exported.parameters()) == metrics["num_parameters"]
