"""Atomic file and directory writes: never leave half-written outputs behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


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
