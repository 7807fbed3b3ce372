"""Atomic file and directory writes, and path safety: never leave half-written outputs behind,
never write outside the output root the user named."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator, Union

from utils.errors import UserError

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; restored at once
    os.umask(mask)
    return mask


def normal_permissions(path: PathLike) -> None:
    """Give a file/dir made by ``mkstemp``/``mkdtemp`` (0600/0700) the mode ``open``/``mkdir`` would."""
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~_umask())


def plain_name(name: str, what: str = "name") -> str:
    """``name`` if it is a plain file name (not empty, ``.``, ``..``, hidden, or with separators)."""
    text = str(name)
    if not text or text in (".", "..") or text.startswith(".") or "/" in text or "\\" in text or "\0" in text:
        raise UserError(f"{what} {text!r} is not a plain name (empty, '.', '..', hidden or with a path "
                        f"separator); rename it")
    return text


def inside(root: PathLike, path: PathLike) -> Path:
    """``path``, after checking that it resolves inside ``root`` (symlinks followed)."""
    root_r, path_r = Path(root).resolve(), Path(path).resolve()
    if path_r != root_r and root_r not in path_r.parents:
        raise UserError(f"refusing to write {path}: it resolves to {path_r}, outside the output folder {root_r}")
    return Path(path)


def check_writable(path: PathLike, what: str, directory: bool = False) -> None:
    """A one-line :class:`UserError` unless ``path`` can be written (as a file, or a folder with
    ``directory``): not the wrong kind of entry, not under a file, and in a writable place."""
    path = Path(path)
    if path.exists() and path.is_dir() != directory:
        kind = "a file" if directory else "a folder"
        raise UserError(f"{what} {path} exists and is {kind}; give a {'folder' if directory else 'file'} path")
    existing = path if directory else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{what} {path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{what} {path} is not writable (no write permission in {existing})")


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file next to ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        normal_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj, path: PathLike) -> None:
    """``torch.save`` through a temporary file and an atomic rename."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


@contextlib.contextmanager
def atomic_dir(path: PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` only if the block succeeds.

    On failure the temporary directory is removed and ``path`` is left untouched. With
    ``overwrite``, an existing directory at ``path`` is replaced on success; an existing
    *file* at ``path`` is always an error.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"output path exists and is not a directory: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        normal_permissions(tmp)
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"output directory already exists: {path}")
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


LOCK_NAME = ".tsms.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def _lock_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    what = f"pid {holder.get('pid', '?')}"
    if holder.get("host") and holder.get("host") != socket.gethostname():
        what += f" on {holder['host']}"
    return what


@contextlib.contextmanager
def hold_lock(folder: PathLike, what: str) -> Iterator[Path]:
    """Hold ``folder`` for this process: a second holder (another process, or another
    ``hold_lock`` here) gets a one-line :class:`UserError` naming the holder's pid.

    The lock is ``fcntl.flock`` on ``folder/.tsms.lock``, which holds the holder's pid and
    host: the kernel drops it when the holder dies, so a killed run never blocks the next.
    Where flock is not supported, a lock file whose pid is dead (on this host) is taken over.
    Creates ``folder``. Yields the lock file path.
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        raise UserError(f"cannot lock {what} {folder}: {exc.strerror or exc}") from None
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{what} {folder} is in use by {_describe(_lock_holder(path))}; "
                            f"wait for it to finish or stop it, or choose another folder") from None
        except OSError as exc:  # no flock here (some network file systems): trust a live pid
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            holder = _lock_holder(path)
            same_host = holder.get("host") in (None, socket.gethostname())
            if isinstance(holder.get("pid"), int) and holder["pid"] != os.getpid() and (
                    not same_host or _pid_alive(holder["pid"])):
                raise UserError(f"{what} {folder} is in use by {_describe(holder)}; wait for it to finish "
                                f"or stop it, or choose another folder") from None
        held = True
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        except OSError as exc:
            raise UserError(f"cannot lock {what} {folder}: {exc.strerror or exc}") from None
        yield path
    finally:
        if held:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # still ours here: no stale record is left behind
        os.close(fd)  # releases the flock
