"""Writing files and folders atomically: a reader never sees half a file or a folder that
mixes two versions, a crash never leaves one. Reading a file whose damage must be reported
as a user error: :func:`read_file`."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from .errors import OmniPerceiverError

T = TypeVar("T")


def read_file(path: str | os.PathLike, read: Callable[[Path], T], *, what: str,
              error: type[OmniPerceiverError]) -> T:
    """``read(path)``. A missing file, a folder, or any failure of ``read`` (a truncated or
    damaged file, whatever the library reading it raises) becomes ``error`` naming ``path``
    and ``what`` it should hold."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path}: is a folder; expected a file: {what}")
    if not path.is_file():
        raise error(f"{path}: no such file; expected {what}")
    try:
        return read(path)
    except OmniPerceiverError:
        raise
    except Exception as exc:  # noqa: BLE001  (any damage, reported with the reader's words)
        detail = " ".join(str(exc).split())  # one line (YAML and JSON errors span several)
        raise error(f"{path}: not {what} ({type(exc).__name__}: {detail})") from exc


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on this platform or file system
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mode(path: Path, default: int) -> int:
    """The permission bits for a new version of ``path``: those of the present version, or
    ``default`` less the umask (what ``open`` and ``mkdir`` give; ``tempfile`` gives 0600 and
    0700)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)
        os.umask(umask)
        return default & ~umask


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(file)`` on a temporary binary file in ``path``'s folder, flush and fsync
    it, rename it to ``path`` and fsync the folder. If ``write`` fails (or the process dies)
    the previous ``path`` is untouched and the temporary file (``.<name>.<random>.tmp``) is
    removed. The file gets the permissions of the previous ``path``, or those of a file made
    with ``open`` (0644 under the usual umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode(path, 0o666)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """:func:`write_atomically` for UTF-8 text."""
    return write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def set_aside(folder: str | os.PathLike) -> Path:
    """Where :func:`write_folder_atomically` keeps the previous ``folder`` while it swaps the
    new one in: ``.<name>.old`` beside it. Only a process killed between the two renames
    leaves it (with ``folder`` missing); it then holds the complete previous folder."""
    folder = Path(folder)
    return folder.parent / f".{folder.name}.old"


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target, follow_symlinks=False)


def write_folder_atomically(folder: str | os.PathLike, files: dict[str, bytes]) -> Path:
    """Make ``folder`` hold ``files`` (name: content), all at once: a reader sees the previous
    folder or the new one, never a mix, and a failure (or a crash) at any step leaves the
    previous folder complete.

    The new folder is written beside ``folder`` (``.<name>.<random>.new``; the previous
    folder's other entries are hard-linked or copied into it), flushed to disk, then swapped in
    with two renames (the previous folder goes to :func:`set_aside`, then is deleted)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    aside = set_aside(folder)
    if aside.is_dir():  # left by a process killed between the two renames
        if folder.exists():
            shutil.rmtree(aside)
        else:
            os.rename(aside, folder)
    new = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".new"))
    try:
        os.chmod(new, _mode(folder, 0o777))
        if folder.is_dir():
            for entry in os.scandir(folder):
                if entry.name in files:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.copytree(entry.path, new / entry.name, symlinks=True,
                                    copy_function=_link_or_copy)
                else:
                    _link_or_copy(entry.path, str(new / entry.name))
        for name, content in files.items():
            with open(new / name, "wb") as f:
                os.fchmod(f.fileno(), _mode(folder / name, 0o666))
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
        _fsync_folder(new)
        if folder.exists():
            os.rename(folder, aside)
        try:
            os.rename(new, folder)
        except BaseException:
            if aside.exists():
                os.rename(aside, folder)
            raise
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    _fsync_folder(folder.parent)
    shutil.rmtree(aside, ignore_errors=True)
    return folder


__all__ = ["read_file", "write_atomically", "write_text_atomically", "write_folder_atomically",
           "set_aside"]
