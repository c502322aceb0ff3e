"""Hugging Face Hub repository ids wherever a model folder is taken: read through
huggingface_hub's cache (revision pinning, offline), published with ``push_to_hub``.

Nothing reaches the network: every test runs with ``HF_HUB_OFFLINE=1`` and with sockets that
refuse to connect. The cache is written in huggingface_hub's own layout
(``models--user--name/{refs,snapshots,blobs}``, checked with ``scan_cache_dir``), holding
models saved by ``save_pretrained`` and tiny random transformers checkpoints; publishing runs
against a stand-in for ``HfApi`` that records what it is sent.
"""

import hashlib
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_io

import omniperceiver
from omniperceiver import from_pretrained, push_to_hub, save_pretrained
from omniperceiver.cli import main as cli_main
from omniperceiver.errors import ConfigError, HubError, ModelFileError
from omniperceiver.hub_repos import parse_repo_id

huggingface_hub = pytest.importorskip("huggingface_hub")
hub_constants = pytest.importorskip("huggingface_hub.constants")

OLD, NEW = "a" * 40, "b" * 40  # two commits of one repository


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Offline as a user sets it (the variable), as huggingface_hub saw it at import (its
    constant), and a socket that refuses to connect, in case anything tries anyway."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise AssertionError(f"a test tried to reach the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def downloads(monkeypatch):
    """The keywords of each ``snapshot_download`` call (the real one runs)."""
    calls = []
    real = huggingface_hub.snapshot_download

    def record(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        return real(repo_id, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", record)
    return calls


def put_in_cache(cache: Path, repo_id: str, folder: Path, commit: str,
                 refs: tuple[str, ...] = ("main",)) -> Path:
    """Store ``folder`` as the commit ``commit`` of the model repository ``repo_id`` in the
    huggingface_hub cache ``cache``, as a download leaves it: each file's content once in
    ``blobs/``, the commit's tree in ``snapshots/<commit>/`` as links to the blobs, and each of
    ``refs`` (branches or tags) naming the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return repo / "snapshots" / commit


def model_and_input(seed: int):
    torch.manual_seed(seed)
    return tiny_io(), torch.randn(2, 7, 5)


@pytest.fixture
def cache(tmp_path):
    """``user/tiny`` with two commits: OLD (model 0) and NEW (model 1, branch main)."""
    cache = tmp_path / "cache"
    for seed, commit, refs in ((0, OLD, ()), (1, NEW, ("main",))):
        model, _ = model_and_input(seed)
        put_in_cache(cache, "user/tiny", save_pretrained(model, tmp_path / f"saved{seed}"),
                     commit, refs)
    return cache


def outputs(model, x):
    with torch.no_grad():
        return model(x)


def test_the_cache_is_in_huggingface_hubs_layout(cache):
    info = huggingface_hub.scan_cache_dir(cache)
    assert not info.warnings
    (repo,) = info.repos
    assert repo.repo_id == "user/tiny" and repo.repo_type == "model"
    assert {r.commit_hash for r in repo.revisions} == {OLD, NEW}
    assert {frozenset(r.refs) for r in repo.revisions} == {frozenset(), frozenset({"main"})}


@pytest.mark.parametrize("how", ["main", "default", "pinned", "pinned in the id"])
def test_from_pretrained_by_repository_id(cache, how, downloads):
    seed = 0 if how.startswith("pinned") else 1
    kwargs = {"main": dict(revision="main"), "default": {}, "pinned": dict(revision=OLD),
              "pinned in the id": {}}[how]
    repo_id = f"user/tiny@{OLD}" if how == "pinned in the id" else "user/tiny"
    loaded = from_pretrained(repo_id, cache_dir=cache, token="secret", **kwargs)
    (call,) = downloads
    assert call == {"repo_id": "user/tiny", "revision": kwargs.get("revision", OLD if seed == 0
                                                                     else None),
                    "cache_dir": cache, "token": "secret", "local_files_only": True,
                    "allow_patterns": ["config.json", "model.safetensors"]}
    model, x = model_and_input(seed)
    other, _ = model_and_input(1 - seed)
    torch.testing.assert_close(outputs(loaded, x), outputs(model, x), atol=0, rtol=0)
    assert not torch.allclose(outputs(loaded, x), outputs(other, x))


def test_local_files_only_reads_the_cache_when_online(cache, monkeypatch):
    # Offline mode off: local_files_only alone keeps huggingface_hub off the network (the
    # sockets still refuse, so a request would fail the test).
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    loaded = from_pretrained("user/tiny", cache_dir=cache, local_files_only=True)
    model, x = model_and_input(1)
    torch.testing.assert_close(outputs(loaded, x), outputs(model, x), atol=0, rtol=0)


def test_the_default_cache_is_huggingface_hubs(cache, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    model, x = model_and_input(1)
    torch.testing.assert_close(outputs(from_pretrained("user/tiny"), x), outputs(model, x))


def test_a_local_folder_wins_over_a_repository(cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, x = model_and_input(2)
    save_pretrained(model, "user/tiny")
    loaded = from_pretrained("user/tiny", cache_dir=cache)
    torch.testing.assert_close(outputs(loaded, x), outputs(model, x), atol=0, rtol=0)
    with pytest.raises(ConfigError, match="revision='main'.*local path"):
        from_pretrained("user/tiny", revision="main", cache_dir=cache)
    # A Path is always local: no repository is looked for.
    with pytest.raises(ModelFileError, match="no such folder") as error:
        from_pretrained(Path("nobody/such"), cache_dir=cache)
    assert not isinstance(error.value, HubError)


@pytest.mark.parametrize("repo_id, revision, says", [
    ("nobody/missing", None, "not in the cache"),
    ("user/tiny", "v2", "not in the cache"),
    ("user/tiny", "c" * 40, "not in the cache"),
])
def test_a_repository_that_cannot_be_read_is_named(cache, repo_id, revision, says):
    with pytest.raises(HubError) as error:
        from_pretrained(repo_id, revision=revision, cache_dir=cache)
    message = str(error.value)
    assert f"'{repo_id}' (revision {revision or 'main'})" in message
    assert says in message and str(cache) in message and "HF_HUB_OFFLINE=1" in message


def test_two_revisions_for_one_id_are_refused(cache):
    with pytest.raises(ConfigError, match="pins the revision"):
        from_pretrained(f"user/tiny@{OLD}", revision=NEW, cache_dir=cache)


def test_without_huggingface_hub_the_message_says_how_to_install_it(cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(HubError, match="pip install huggingface_hub"):
        from_pretrained("user/tiny", cache_dir=cache)


@pytest.mark.parametrize("text, parsed", [
    ("user/name", ("user/name", None)),
    ("deepmind/vision-perceiver-fourier", ("deepmind/vision-perceiver-fourier", None)),
    ("user/name@v1.0", ("user/name", "v1.0")),
    ("user/name@refs/pr/1", ("user/name", "refs/pr/1")),
    ("runs/mnist/model", None), ("./user/name", None), ("/abs/name", None), ("name", None),
    ("user/..", None), ("user/a--b", None), ("user/name@", None), (Path("user/name"), None),
])
def test_what_reads_as_a_repository_id(text, parsed):
    assert parse_repo_id(text) == parsed


# --- converted transformers checkpoints --------------------------------------------------------


def tiny_transformers(folder: Path, *, safetensors: bool = True):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.PerceiverConfig(
        num_latents=4, d_latents=16, num_blocks=1, num_self_attends_per_block=1,
        num_self_attention_heads=2, num_cross_attention_heads=1, image_size=8,
        attention_probs_dropout_prob=0.0, id2label={0: "tabby cat", 1: "goldfish", 2: "teapot"},
        label2id={"tabby cat": 0, "goldfish": 1, "teapot": 2})
    model = transformers.PerceiverForImageClassificationLearned(config).eval()
    with torch.no_grad():  # transformers initialises some weights to 0: make them all matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(folder)
    if not safetensors:  # as older transformers saved it (transformers 5 writes safetensors)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    return model


@pytest.mark.parametrize("safetensors", [True, False], ids=["safetensors", "pytorch_model.bin"])
def test_from_transformers_by_repository_id(tmp_path, safetensors, downloads):
    from omniperceiver.convert import from_transformers
    from omniperceiver.convert.transformers import CHECKPOINT_FILES

    hf = tiny_transformers(tmp_path / "hf", safetensors=safetensors)
    put_in_cache(tmp_path / "cache", "deepmind/tiny-learned", tmp_path / "hf", OLD)
    # Offline, huggingface_hub returns the whole cached snapshot; online it fetches only the
    # patterns asked for. Without safetensors, as in deepmind/vision-perceiver-*, the torch
    # weights are asked for next, from the same commit.
    snapshot = tmp_path / "cache" / "models--deepmind--tiny-learned" / "snapshots" / OLD
    if not safetensors:
        (snapshot / "pytorch_model.bin").rename(tmp_path / "bin")
        real = huggingface_hub.snapshot_download

        def online(repo_id, **kwargs):  # the torch weights "arrive" when asked for
            if "pytorch_model.bin" in kwargs["allow_patterns"] and (tmp_path / "bin").is_symlink():
                (tmp_path / "bin").rename(snapshot / "pytorch_model.bin")
            return real(repo_id, **kwargs)

        huggingface_hub.snapshot_download = online  # restored by the downloads fixture
    ours = from_transformers("deepmind/tiny-learned", cache_dir=tmp_path / "cache",
                             semantics="transformers")
    assert [(c["revision"], c["allow_patterns"]) for c in downloads] == (
        [(None, list(CHECKPOINT_FILES))]
        + ([] if safetensors else [(OLD, ["pytorch_model.bin"])]))
    assert "pytorch_model.bin" not in str(CHECKPOINT_FILES)
    pinned = from_transformers(f"deepmind/tiny-learned@{OLD}", cache_dir=tmp_path / "cache",
                               semantics="transformers")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = hf(pixel_values=x).logits
        torch.testing.assert_close(ours(x.permute(0, 2, 3, 1)), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(pinned(x.permute(0, 2, 3, 1)), expected, atol=1e-5, rtol=0)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """huggingface_hub's default cache (what the command line uses), holding the transformers
    checkpoint ``deepmind/tiny-learned`` and its conversion ``user/tiny-classifier``."""
    cache = tmp_path / "cache"
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    hf = tiny_transformers(tmp_path / "hf")
    put_in_cache(cache, "deepmind/tiny-learned", tmp_path / "hf", OLD)
    return cache, hf


def test_the_command_line_takes_repository_ids(hub_cache, tmp_path, capsys):
    cache, hf = hub_cache
    out = tmp_path / "ours"
    assert cli_main(["convert", "--from", "transformers", "--semantics", "transformers",
                     f"deepmind/tiny-learned@{OLD}", str(out)]) == 0
    extra = json.loads((out / "config.json").read_text())["extra"]
    assert extra["source"] == f"deepmind/tiny-learned@{OLD}"
    assert extra["classes"] == ["tabby cat", "goldfish", "teapot"]
    put_in_cache(cache, "user/tiny-classifier", out, NEW)

    pixels = np.random.default_rng(0).random((8, 8, 3), dtype=np.float32)
    np.save(tmp_path / "image.npy", pixels)
    capsys.readouterr()
    assert cli_main(["predict", "user/tiny-classifier", str(tmp_path / "image.npy"),
                     "--top_k", "1"]) == 0
    printed = capsys.readouterr().out
    with torch.no_grad():  # a .npy image is only normalised
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        x = ((torch.from_numpy(pixels) - mean) / std).permute(2, 0, 1)[None]
        top = hf(pixel_values=x).logits[0].argmax().item()
    assert ["tabby cat", "goldfish", "teapot"][top] in printed


def test_the_command_line_reports_a_missing_repository_without_a_traceback(hub_cache, tmp_path,
                                                                          capsys):
    np.save(tmp_path / "image.npy", np.zeros((8, 8, 3), np.float32))
    assert cli_main(["predict", f"nobody/missing@{NEW}", str(tmp_path / "image.npy")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("omniperceiver predict: error: nobody/missing@")
    assert f"'nobody/missing' (revision {NEW})" in err and "Traceback" not in err
    assert cli_main(["convert", "--from", "transformers", "nobody/missing",
                     str(tmp_path / "out")]) == 1
    assert "'nobody/missing' (revision main)" in capsys.readouterr().err


def test_fine_tuning_starts_from_a_repository_id(hub_cache):
    from omniperceiver.training.finetune import pretrained_classifier

    _, hf = hub_cache
    loaded = pretrained_classifier(f"deepmind/tiny-learned@{OLD}", 3,
                                   kwargs={"semantics": "transformers"})
    assert loaded.fresh == [] and loaded.source == f"deepmind/tiny-learned@{OLD}"
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.eval()(x.permute(0, 2, 3, 1)),
                                   hf(pixel_values=x).logits, atol=1e-5, rtol=0)


# --- publishing ------------------------------------------------------------------------------


class FakeHfApi:
    """Records what ``push_to_hub`` sends; ``upload_folder`` stores the folder as a new commit
    in a local cache, as a download of the repository would later find it."""

    calls: list = []
    cache: Path | None = None
    fail: Exception | None = None

    def __init__(self, token=None):
        self.calls.append(("HfApi", {"token": token}))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        if self.fail is not None:
            raise self.fail
        folder = Path(kwargs["folder_path"])
        files = {p.name: p.read_bytes() for p in folder.iterdir()}
        self.calls.append(("upload_folder", {**kwargs, "files": sorted(files)}))
        put_in_cache(self.cache, kwargs["repo_id"], folder, NEW, (kwargs["revision"] or "main",))
        return f"https://huggingface.co/{kwargs['repo_id']}/commit/{NEW}"


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    FakeHfApi.calls, FakeHfApi.cache, FakeHfApi.fail = [], tmp_path / "cache", None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    return FakeHfApi


def test_push_to_hub_uploads_the_saved_model(fake_hub):
    model, x = model_and_input(3)
    url = push_to_hub(model, "me/tiny", revision="v1", commit_message="first model",
                      private=True, token="secret", extra={"classes": ["a", "b", "c"]})
    assert url == f"https://huggingface.co/me/tiny/commit/{NEW}"
    calls = fake_hub.calls
    assert [name for name, _ in calls] == ["HfApi", "create_repo", "create_branch",
                                           "upload_folder"]
    assert calls[0][1] == {"token": "secret"}
    assert calls[1][1] == {"repo_id": "me/tiny", "exist_ok": True, "private": True}
    assert calls[2][1] == {"repo_id": "me/tiny", "branch": "v1", "exist_ok": True}
    upload = calls[3][1]
    assert (upload["repo_id"], upload["revision"], upload["commit_message"],
            upload["create_pr"]) == ("me/tiny", "v1", "first model", False)
    assert upload["files"] == ["config.json", "model.safetensors"]
    assert not Path(upload["folder_path"]).exists()  # a temporary folder, removed

    again = from_pretrained("me/tiny@v1", cache_dir=fake_hub.cache)
    torch.testing.assert_close(outputs(again, x), outputs(model, x), atol=0, rtol=0)
    config = json.loads((fake_hub.cache / "models--me--tiny" / "snapshots" / NEW /
                         "config.json").read_text())
    assert config["extra"] == {"classes": ["a", "b", "c"]}


def test_push_to_hub_defaults(fake_hub):
    push_to_hub(model_and_input(0)[0], "me/tiny")
    names = [name for name, _ in fake_hub.calls]
    assert names == ["HfApi", "create_repo", "upload_folder"]  # no branch to create
    assert fake_hub.calls[1][1] == {"repo_id": "me/tiny", "exist_ok": True}
    upload = fake_hub.calls[2][1]
    assert upload["revision"] is None
    assert upload["commit_message"] == f"Upload model (omniperceiver {omniperceiver.__version__})"


def test_push_to_hub_refusals_are_user_errors(fake_hub):
    model = model_and_input(0)[0]
    for repo_id in ("no-namespace", "me/tiny@v1", "a/b/c"):
        with pytest.raises(ConfigError, match="repo_id must be"):
            push_to_hub(model, repo_id)
    assert fake_hub.calls == []  # refused before anything is sent
    fake_hub.fail = OSError("403 Forbidden: no write access")  # what HfHubHTTPError is
    with pytest.raises(HubError, match=r"'me/tiny' \(revision main\).*403 Forbidden"):
        push_to_hub(model, "me/tiny")
