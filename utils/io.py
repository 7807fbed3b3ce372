"""Atomic file and directory writes, and path safety: never leave half-written outputs behind,
never write outside the output root the user named, never replace a file we did not write,
never write over our own inputs, one writer per folder, and one-line disk errors."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import fcntl
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Union

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
    return printable_name(text, what)


def has_control_characters(text: str) -> bool:
    """Newlines, tabs, carriage returns, escapes...: characters that split or rewrite log lines and table rows."""
    return any(ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029" for c in str(text))


def shown(text) -> str:
    """``text`` for a log line: as is, or quoted with escapes when it holds control characters."""
    return repr(str(text)) if has_control_characters(text) else str(text)


def printable_name(name: str, what: str = "name") -> str:
    """``name`` unless it holds control characters (shown escaped in the one-line error)."""
    if has_control_characters(name):
        raise UserError(f"{what} {str(name)!r} holds control characters (newline, tab, carriage return ...), which "
                        f"would split log lines and table rows; rename it")
    return str(name)


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


def check_replaceable(path: PathLike, what: str, is_ours: Callable[[Path], bool], tool: str) -> None:
    """A one-line :class:`UserError` when ``path`` exists and is not a file ``tool`` wrote
    (``is_ours``: a format or marker check). A symlink is never ours: replacing it would
    replace the user's link, and writing through it would write elsewhere."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    ours = False
    if not path.is_symlink() and path.is_file():
        try:
            ours = bool(is_ours(path))
        except (OSError, ValueError, UnicodeDecodeError):
            ours = False
    if not ours:
        raise UserError(f"{what} {path} exists and was not written by {tool}; move it away or choose another path")


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or b in a.parents


def check_not_input(output: PathLike, inputs: Iterable[Optional[PathLike]], what: str,
                    input_names: Optional[Iterable[str]] = None) -> None:
    """A one-line :class:`UserError` when ``output`` is, or lies inside, one of ``inputs``
    (files or folders this run reads; symlinks followed), or when a folder ``output``
    contains one of them: a writer never writes over what it reads."""
    out_r = Path(output).resolve()
    names = list(input_names) if input_names is not None else None
    for k, item in enumerate(inputs):
        if item is None:
            continue
        in_r = Path(item).resolve()
        if _overlaps(out_r, in_r) or _overlaps(in_r, out_r):
            name = names[k] if names else "an input"
            where = "is" if out_r == in_r else ("lies inside" if in_r in out_r.parents else "contains")
            raise UserError(f"{what} {output} {where} {name} {item}, which this run reads; write it elsewhere")


def name_path(exc: BaseException, path: PathLike, staging: Optional[PathLike] = None) -> None:
    """Give a disk error the destination's name: errors raised by ``write()`` carry none, and
    one in a hidden staging file or folder (``staging``, or a sibling whose name starts with
    its name) would name that, not the output."""
    if not isinstance(exc, OSError):
        return
    named = exc.filename
    if named and staging is not None:
        named_p, staging_p = Path(os.fsdecode(named)), Path(staging)
        inside_staging = named_p == staging_p or staging_p in named_p.parents
        if inside_staging or (named_p.parent == staging_p.parent and named_p.name.startswith(staging_p.name)):
            named = None
    if not named:
        exc.filename = str(path)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file next to ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        name_path(exc, path, path.parent / f".{path.name}.")
        raise
    os.close(fd)
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        normal_permissions(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        name_path(exc, path, tmp)
        raise


class _RecordingWriter:
    """A file wrapper that keeps the ``OSError`` a write raised: torch.save turns it into
    a ``RuntimeError`` ("unexpected pos ...") that no longer says the disk is full."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self):
        return self.f.flush()


def atomic_torch_save(obj, path: PathLike) -> None:
    """``torch.save`` through a temporary file and an atomic rename."""
    import torch

    with atomic_write(path, "wb") as f:
        writer = _RecordingWriter(f)
        try:
            torch.save(obj, writer)
        except RuntimeError as exc:
            if writer.error is not None:
                raise writer.error from exc
            raise


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        name_path(exc, path, path.parent / f".{path.name}.")
        raise
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
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        name_path(exc, path, tmp)
        raise


# --------------------------------------------------------------------------- processes and folders


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_dirs(parent: PathLike, pattern: str) -> List[Path]:
    """Remove folders of ``parent`` whose name fully matches ``pattern`` (a regex whose first
    group is a pid) and whose process is gone: staging or work folders of killed runs."""
    removed, regex = [], re.compile(pattern)
    if not Path(parent).is_dir():
        return removed
    for entry in Path(parent).iterdir():
        match = regex.fullmatch(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def work_dir(parent: PathLike, label: str) -> Iterator[Path]:
    """A hidden scratch folder ``<parent>/.<label>-<pid>``, removed when the block ends
    (error and Ctrl-C included); one left by a killed run is removed at the next start."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_dirs(parent, rf"\.{re.escape(label)}-(\d+)")
    path = parent / f".{label}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


LOCK_NAME = ".tsms.lock"


def _lock_holder(lock_path: Path) -> tuple:
    """``(pid, host, what)`` as the holder wrote them (``"?"`` while it has not yet)."""
    try:
        text = lock_path.read_text().split()
    except OSError:
        text = []
    return (text[0] if text else "?", text[1] if len(text) > 1 else "?",
            " ".join(text[2:]) if len(text) > 2 else "run")


@contextlib.contextmanager
def hold_lock(folder: PathLike, what: str, reentrant: bool = True) -> Iterator[Path]:
    """Hold ``<folder>/.tsms.lock`` while the block runs: a second writer of the same folder
    gets a one-line :class:`UserError` naming the holder (pid, host). ``flock`` locks die
    with their process, so a killed run never blocks the next one. Creates ``folder``;
    removes it again if it was created here and is left empty. Re-entrant unless
    ``reentrant=False``: a block of the process that holds the lock passes (the outer block
    releases it); the annotator refuses a second session in its own process too."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} exists and is a file, not a folder")
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        name_path(exc, folder)
        raise
    lock_path = folder / LOCK_NAME
    if lock_path.is_symlink() or (lock_path.exists() and not lock_path.is_file()):
        raise UserError(f"{lock_path} exists and is not a lock file written by this tool; move it away")
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as exc:
            name_path(exc, lock_path)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            fd = None
        if fd is None:
            pid, host, holder = _lock_holder(lock_path)
            if reentrant and pid == str(os.getpid()) and host == socket.gethostname():
                yield lock_path  # this process holds it already
                return
            raise UserError(f"{folder} is in use by another {holder} (pid {pid} on {host}); wait for it to finish "
                            f"or choose another folder")
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we opened it: lock the new one
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()} {what}\n".encode())
        except OSError as exc:  # a full disk: name the folder, not "the output"
            name_path(exc, lock_path)
            raise
        yield lock_path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty


# --------------------------------------------------------------------------- disk errors


DISK_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system",
               errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}
_WRITE_ONLY = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG)


def disk_error_message(exc: OSError) -> Optional[str]:
    """One line naming the folder and the cause of a full disk, a read-only folder or a
    permission error (``None`` for other errors)."""
    cause = DISK_ERRNOS.get(getattr(exc, "errno", None))
    if cause is None:
        return None
    verb = "write" if exc.errno in _WRITE_ONLY else "access"
    if exc.filename:
        path = Path(os.fsdecode(exc.filename))
        where = f"{path.parent} ({path.name})" if not path.is_dir() else str(path)
    else:
        where = "the output folder"
    return f"cannot {verb} in {where}: {cause} (errno {exc.errno}); free space, fix permissions or choose another folder"


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
