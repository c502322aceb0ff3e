"""flamingo-pytorch 0.1.2's and open_flamingo 2.0.1's Perceiver Resamplers -> our
PerceiverResampler (``from_flamingo_resampler``): the same outputs and parameter counts, with
several frames and media items, in float32 (1e-5) and float64 (1e-10).

Neither takes a media mask: ours with a mask is compared with theirs on each example's
unpadded tokens. open-flamingo 2.0.1 requires torch 2.0.1, so it is not in our extras; its
test runs where it is installed without its dependencies (``pip install --no-deps
open-flamingo==2.0.1 einops-exts``), reading its resampler module from its file (the
package's ``__init__`` imports open_clip, which the resampler does not need).
"""

import importlib.util
from pathlib import Path

import pytest
import torch

from omniperceiver import from_pretrained, save_pretrained
from omniperceiver.convert import from_flamingo_resampler
from omniperceiver.convert._common import count_parameters as n_params
from omniperceiver.errors import ConfigError

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
FLAMINGO_PYTORCH = {
    "three-heads": dict(dim=16, depth=2, dim_head=8, heads=3, num_latents=5, num_media_embeds=3,
                        ff_mult=2),
    "one-head": dict(dim=12, depth=3, dim_head=6, heads=1, num_latents=4, num_media_embeds=2),
}
OPEN_FLAMINGO = {  # how each is called: "separate" ours(x.flatten(2, 3)), "joint" per item
    "plain": (dict(dim=16, depth=2, dim_head=8, heads=2, num_latents=5), "separate"),
    "media-time": (dict(dim=12, depth=2, dim_head=4, heads=3, num_latents=3, max_num_media=3,
                        ff_mult=2), "separate"),
    "frame-time": (dict(dim=12, depth=3, dim_head=6, heads=2, num_latents=4, max_num_frames=4),
                   "joint"),
}


def open_flamingo_helpers():
    spec = importlib.util.find_spec("open_flamingo")
    if spec is None:
        pytest.skip("open_flamingo is not installed")
    pytest.importorskip("einops_exts")
    path = Path(spec.submodule_search_locations[0]) / "src" / "helpers.py"
    module_spec = importlib.util.spec_from_file_location("open_flamingo_helpers", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def randomise(module, dtype):
    module = module.to(dtype).eval()
    with torch.no_grad():  # norms start at 1 and 0: make every weight matter
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return module


def flamingo_pytorch(name, dtype):
    library = pytest.importorskip("flamingo_pytorch")
    torch.manual_seed(0)
    return randomise(library.PerceiverResampler(**FLAMINGO_PYTORCH[name]), dtype)


def open_flamingo(name, dtype):
    helpers = open_flamingo_helpers()
    torch.manual_seed(0)
    return randomise(helpers.PerceiverResampler(**OPEN_FLAMINGO[name][0]), dtype)


def ours_on_open_flamingo_media(ours, frames, media, mask=None):
    """Our resampler on open_flamingo's media (batch, items, frames, v, dim) and a mask
    (batch, items, frames, v) -> (batch, items, latents, dim), as theirs."""
    if frames == "separate":  # each item's frames and tokens are one set of tokens
        return ours(media.flatten(2, 3), None if mask is None else mask.flatten(2, 3))
    out = ours(media.flatten(0, 1), None if mask is None else mask.flatten(0, 1))  # per item
    return out.unflatten(0, media.shape[:2])


def lengths_mask(lengths, tokens):
    """(batch,) real-token counts -> (batch, tokens) bool, True = real."""
    return torch.arange(tokens) < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(FLAMINGO_PYTORCH))
def test_flamingo_pytorch_parity(name, dtype):
    theirs = flamingo_pytorch(name, dtype)
    ours = from_flamingo_resampler(theirs)
    assert n_params(ours) == n_params(theirs)
    dim = FLAMINGO_PYTORCH[name]["dim"]
    torch.manual_seed(1)
    media = torch.randn(3, 2, 7, dim, dtype=dtype)  # (batch, frames, tokens, dim)
    lengths = [7, 4, 1]
    mask = lengths_mask(lengths, 7)[:, None].expand(-1, 2, -1)
    tol = dict(atol=TOLERANCE[dtype], rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(ours(media), theirs(media), **tol)
        torch.testing.assert_close(ours(media[:, 0]), theirs(media[:, 0])[:, 0], **tol)
        masked = ours(media, mask)
        for i, n in enumerate(lengths):
            torch.testing.assert_close(masked[i:i + 1], theirs(media[i:i + 1, :, :n]), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(OPEN_FLAMINGO))
def test_open_flamingo_parity(name, dtype):
    theirs = open_flamingo(name, dtype)
    ours = from_flamingo_resampler(theirs)
    assert n_params(ours) == n_params(theirs)
    dim, frames = OPEN_FLAMINGO[name][0]["dim"], OPEN_FLAMINGO[name][1]
    torch.manual_seed(1)
    media = torch.randn(3, 2, 3, 5, dim, dtype=dtype)  # (batch, media items, frames, v, dim)
    lengths = [5, 3, 1]
    mask = lengths_mask(lengths, 5)[:, None, None].expand(-1, 2, 3, -1)

    def call(x, m=None):
        return ours_on_open_flamingo_media(ours, frames, x, m)

    tol = dict(atol=TOLERANCE[dtype], rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(call(media), theirs(media), **tol)
        masked = call(media, mask)
        for i, n in enumerate(lengths):
            torch.testing.assert_close(masked[i:i + 1], theirs(media[i:i + 1, ..., :n, :]),
                                       **tol)
        assert (masked - call(media)).abs().max() > 1e-3  # the mask matters


def test_state_dicts_need_heads_and_flamingo_prefixes_are_found(tmp_path):
    theirs = flamingo_pytorch("three-heads", torch.float32)
    with pytest.raises(ConfigError, match="pass heads="):
        from_flamingo_resampler(theirs.state_dict())
    with pytest.raises(ConfigError, match="heads=2 given, but the module has 3"):
        from_flamingo_resampler(theirs, heads=2)
    flamingo_state = {f"perceiver.{k}": v for k, v in theirs.state_dict().items()}
    flamingo_state["lang_encoder.weight"] = torch.zeros(2)  # the rest of a Flamingo
    ours = from_flamingo_resampler(flamingo_state, heads=3)
    assert ours.recipe["preset"] == "perceiver-resampler"
    save_pretrained(ours, tmp_path)
    media = torch.randn(2, 3, 6, 16)
    with torch.no_grad():
        torch.testing.assert_close(from_pretrained(tmp_path)(media), theirs(media),
                                   atol=1e-5, rtol=0)


def test_time_embeddings_per_item_and_per_frame_are_refused():
    helpers = open_flamingo_helpers()
    theirs = helpers.PerceiverResampler(dim=8, depth=1, dim_head=4, heads=2, num_latents=2,
                                        max_num_media=2, max_num_frames=2)
    with pytest.raises(ConfigError, match="both max_num_media and max_num_frames"):
        from_flamingo_resampler(theirs)
