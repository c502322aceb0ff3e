"""Models in Hugging Face Hub repositories: read one by its repository id, publish one.

Wherever a model folder is taken (:func:`omniperceiver.from_pretrained`,
:func:`omniperceiver.convert.from_transformers`, ``--model.pretrained``, ``predict``,
``convert``, ``export``), a Hub repository id ``"user/name"`` is taken too, pinned to a
revision (a branch, a tag or a commit hash) by ``"user/name@revision"`` or ``revision=``.
A local path that exists always wins. The repository's files are downloaded once into
huggingface_hub's cache (``HF_HUB_CACHE``, or ``cache_dir``) and read from there like a local
folder; ``local_files_only=True`` or ``HF_HUB_OFFLINE=1`` read the cache only.

huggingface_hub is imported when a repository is read or written, never before.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from torch import nn

from .errors import ConfigError, HubError
from .files import set_aside

#: ``user/name`` or ``user/name@revision``; what the Hub allows in a name is checked by
#: huggingface_hub itself.
REPO_ID = re.compile(r"(?P<repo_id>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)"
                     r"(?:@(?P<revision>[^@\s]+))?")

_TRUE = {"1", "ON", "YES", "TRUE"}


def parse_repo_id(source: object) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` of the text ``"user/name"`` or ``"user/name@revision"``
    (revision None when not pinned); None for anything else, including a :class:`Path`
    (always a local path) and text with more or fewer than two parts."""
    if not isinstance(source, str):
        return None
    match = REPO_ID.fullmatch(source)
    if match is None or ".." in match["repo_id"] or "--" in match["repo_id"]:
        return None
    return match["repo_id"], match["revision"]


def import_hub(purpose: str) -> ModuleType:
    """The huggingface_hub module, or a :class:`HubError` saying how to install it."""
    try:
        import huggingface_hub
    except ImportError as error:
        raise HubError(f"{purpose} needs the package huggingface_hub: pip install "
                       f"huggingface_hub (or pip install \"omniperceiver[hub]\")") from error
    return huggingface_hub


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set, read at each call (huggingface_hub reads it once,
    when it is imported)."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def locate(source: str | os.PathLike, files: Sequence[str], *, revision: str | None = None,
           cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
           local_files_only: bool = False) -> Path:
    """The local path of the model ``source`` names.

    ``source`` itself when it exists (or a save interrupted there left the previous model
    beside it, see :func:`~omniperceiver.files.set_aside`); else, when it is a repository id,
    the folder of the repository's ``files`` (names or glob patterns) in huggingface_hub's
    cache, downloaded unless they are there; else ``Path(source)``, for the caller to report
    as missing.

    A :class:`HubError` names the id and the revision when the repository cannot be read
    (no such repository or revision, not in the cache while offline, huggingface_hub
    missing); a :class:`ConfigError` when ``revision`` is given for a local path or differs
    from the one pinned in ``source``.
    """
    path = Path(source)
    if path.exists() or set_aside(path).is_dir():
        if revision is not None:
            raise ConfigError(f"revision={revision!r} pins a Hugging Face Hub repository's "
                              f"version, but {source} is a local path; leave revision out")
        return path
    parsed = parse_repo_id(source)
    if parsed is None:
        return path
    repo_id, pinned = parsed
    if pinned is not None and revision is not None and pinned != revision:
        raise ConfigError(f"{source!r} pins the revision {pinned!r}, and revision={revision!r} "
                          f"asks for another; give one of them")
    return download(repo_id, files, revision=pinned or revision, cache_dir=cache_dir,
                    token=token, local_files_only=local_files_only, source=str(source))


def download(repo_id: str, files: Sequence[str], *, revision: str | None = None,
             cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
             local_files_only: bool = False, source: str | None = None) -> Path:
    """The folder in huggingface_hub's cache holding ``files`` (names or glob patterns) of
    the model repository ``repo_id`` at ``revision`` (default: main), downloaded unless they
    are there (``local_files_only`` or ``HF_HUB_OFFLINE=1``: never downloaded)."""
    hub = import_hub(f"reading {repo_id!r} from the Hugging Face Hub")
    cache_only = local_files_only or offline()
    try:
        folder = hub.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                       token=token, local_files_only=cache_only,
                                       allow_patterns=list(files))
    except (OSError, ValueError) as error:
        where = f"{source}: no such file or folder here, and the" if source else "The"
        raise HubError(f"{where} Hugging Face Hub repository {repo_id!r} (revision "
                       f"{revision or 'main'}) cannot be read: "
                       f"{_reason(error, revision, cache_dir, cache_only)}") from error
    return Path(folder)


def _reason(error: Exception, revision: str | None, cache_dir: str | os.PathLike | None,
            cache_only: bool) -> str:
    from huggingface_hub import constants
    from huggingface_hub.utils import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, RevisionNotFoundError):
        return f"the repository has no revision {revision!r}"
    if isinstance(error, RepositoryNotFoundError):
        return ("no such repository, or it is private or gated (pass token=, set HF_TOKEN or "
                "log in with `hf auth login`)")
    if isinstance(error, LocalEntryNotFoundError):
        cache = cache_dir or constants.HF_HUB_CACHE
        how = ("and downloads are off (local_files_only=True or HF_HUB_OFFLINE=1)" if cache_only
               else "and the Hub cannot be reached")
        return f"it is not in the cache {cache} {how}"
    if isinstance(error, HFValidationError):
        return f"not a valid repository id or revision ({error})"
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def push_to_hub(model: nn.Module, repo_id: str, *, extra: dict | None = None,
                revision: str | None = None, commit_message: str | None = None,
                private: bool | None = None, token: str | bool | None = None,
                create_pr: bool = False):
    """Publish ``model`` to the Hub model repository ``repo_id`` (created if missing, private
    if ``private``): the ``config.json`` and ``model.safetensors`` that
    :func:`~omniperceiver.save_pretrained` writes (with ``extra``), in one commit to the
    branch ``revision`` (created if missing; default main), or a pull request against it
    (``create_pr``). :func:`~omniperceiver.from_pretrained` reads the repository back.

    Returns huggingface_hub's ``CommitInfo`` (``commit_url``, ``oid``). A :class:`HubError`
    names the repository when the Hub refuses (no permission, no token, offline).
    """
    from .hub import recipe_version, save_pretrained

    if parse_repo_id(repo_id) is None or "@" in repo_id:
        raise ConfigError(f"push_to_hub: repo_id must be a Hugging Face Hub repository id "
                          f"'user/name' (the branch goes to revision=), got {repo_id!r}")
    hub = import_hub(f"publishing to the Hugging Face Hub repository {repo_id!r}")
    message = commit_message or f"Upload model (omniperceiver {recipe_version()})"
    with tempfile.TemporaryDirectory(prefix="omniperceiver-push-") as tmp:
        folder = save_pretrained(model, Path(tmp) / "model", extra=extra)
        api = hub.HfApi(token=token)
        try:
            api.create_repo(repo_id, exist_ok=True,
                            **({} if private is None else {"private": private}))
            if revision is not None and not create_pr:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            return api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                                     revision=revision, commit_message=message,
                                     create_pr=create_pr)
        except (OSError, ValueError) as error:
            raise HubError(f"cannot publish to the Hugging Face Hub repository {repo_id!r} "
                           f"(revision {revision or 'main'}): {type(error).__name__}: "
                           f"{' '.join(str(error).split())}") from error


__all__ = ["REPO_ID", "parse_repo_id", "import_hub", "offline", "locate", "download",
           "push_to_hub"]
