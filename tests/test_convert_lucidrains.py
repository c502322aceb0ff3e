"""perceiver-pytorch ``Perceiver`` / ``PerceiverIO`` -> ours: identical outputs, with and
without masks, tied and untied (float64, tolerance 1e-12; float32 within 1e-4, the gap being
perceiver-pytorch's float32 Fourier features against our float64 ones)."""

import json

import pytest
import torch

from omniperceiver import Perceiver, from_pretrained, save_pretrained
from omniperceiver.convert import from_lucidrains
from omniperceiver.convert._common import count_parameters as n_params
from omniperceiver.convert.cli import main as convert_main

perceiver_pytorch = pytest.importorskip("perceiver_pytorch")

EXACT = dict(atol=1e-12, rtol=0)

PERCEIVER = {
    "image": dict(input_channels=3, input_axis=2, num_freq_bands=4, max_freq=10.0, depth=3,
                  num_latents=6, latent_dim=16, cross_heads=2, latent_heads=2, cross_dim_head=8,
                  latent_dim_head=8, num_classes=5, self_per_cross_attn=2),
    "sequence": dict(input_channels=5, input_axis=1, num_freq_bands=3, max_freq=6.0, depth=2,
                     num_latents=4, latent_dim=12, cross_heads=1, latent_heads=3,
                     cross_dim_head=4, latent_dim_head=4, num_classes=3),
}
PERCEIVER_IO = dict(depth=3, dim=5, queries_dim=6, num_latents=4, latent_dim=16, cross_heads=2,
                    latent_heads=2, cross_dim_head=8, latent_dim_head=8)


def reference(cls, dtype=torch.float64, **kwargs):
    torch.manual_seed(0)
    model = getattr(perceiver_pytorch, cls)(**kwargs).to(dtype).eval()
    with torch.no_grad():  # LayerNorms start at 1/0: perturb them so that every weight matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def random_mask(batch, n):
    mask = torch.rand(batch, n) > 0.4
    mask[:, 0] = True  # perceiver-pytorch attends uniformly when every key is masked
    return mask


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("config", list(PERCEIVER))
def test_perceiver(config, tied):
    kwargs = dict(PERCEIVER[config], weight_tie_layers=tied)
    theirs = reference("Perceiver", **kwargs)
    ours = from_lucidrains(theirs, **kwargs)
    assert isinstance(ours, Perceiver)
    assert n_params(ours) == n_params(theirs)
    axes = (5, 7) if kwargs["input_axis"] == 2 else (11,)
    x = torch.randn(3, *axes, kwargs["input_channels"], dtype=torch.float64)
    mask = random_mask(3, x[0, ..., 0].numel())
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), **EXACT)
        torch.testing.assert_close(ours(x, mask=mask), theirs(x, mask=mask), **EXACT)
        torch.testing.assert_close(ours(x, return_embeddings=True),
                                   theirs(x, return_embeddings=True), **EXACT)


def test_perceiver_float32_gap_is_the_fourier_features():
    kwargs = PERCEIVER["image"]
    theirs = reference("Perceiver", dtype=torch.float32, **kwargs)
    ours = from_lucidrains(theirs, **kwargs)
    x = torch.randn(2, 16, 16, 3)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-4, rtol=0)


def test_untied_checkpoint_is_refused_as_tied():
    kwargs = PERCEIVER["image"]
    theirs = reference("Perceiver", **kwargs)
    with pytest.raises(ValueError, match="weight_tie_layers=False"):
        from_lucidrains(theirs, **dict(kwargs, weight_tie_layers=True))


def test_perceiver_without_head_or_fourier_features():
    kwargs = dict(PERCEIVER["sequence"], final_classifier_head=False, fourier_encode_data=False)
    theirs = reference("Perceiver", **kwargs)
    ours = from_lucidrains(theirs.state_dict(), **kwargs)
    x = torch.randn(2, 9, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), **EXACT)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("decoder_ff, logits_dim", [(False, None), (True, 7)])
def test_perceiver_io(tied, decoder_ff, logits_dim):
    kwargs = dict(PERCEIVER_IO, weight_tie_layers=tied, decoder_ff=decoder_ff,
                  logits_dim=logits_dim)
    theirs = reference("PerceiverIO", **kwargs)
    ours = from_lucidrains(theirs, **kwargs)
    assert n_params(ours) == n_params(theirs)
    x = torch.randn(3, 9, 5, dtype=torch.float64)
    queries = torch.randn(3, 4, 6, dtype=torch.float64)
    mask = random_mask(3, 9)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, queries=queries), theirs(x, queries=queries), **EXACT)
        torch.testing.assert_close(ours(x, mask, queries=queries),
                                   theirs(x, mask=mask, queries=queries), **EXACT)


def test_round_trip_and_cli(tmp_path):
    kwargs = dict(PERCEIVER["image"], weight_tie_layers=True)
    theirs = reference("Perceiver", dtype=torch.float32, **kwargs)
    ours = from_lucidrains(theirs, **kwargs)
    save_pretrained(ours, tmp_path / "api")
    x = torch.randn(2, 5, 7, 3)
    with torch.no_grad():
        torch.testing.assert_close(from_pretrained(tmp_path / "api")(x), ours(x), atol=0, rtol=0)

    torch.save(theirs.state_dict(), tmp_path / "perceiver.pt")
    (tmp_path / "kwargs.json").write_text(json.dumps(kwargs))
    assert convert_main(["--from", "lucidrains", str(tmp_path / "perceiver.pt"),
                         str(tmp_path / "cli"), "--kwargs", str(tmp_path / "kwargs.json")]) == 0
    with torch.no_grad():
        torch.testing.assert_close(from_pretrained(tmp_path / "cli")(x), ours(x), atol=0, rtol=0)
    assert convert_main(["--from", "lucidrains", str(tmp_path / "perceiver.pt"),
                         str(tmp_path / "nokwargs")]) == 1
