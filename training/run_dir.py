"""The run directory: resolved config, git SHA, checkpoints and TensorBoard logs.

Layout::

    <run_dir>/config.yaml        the resolved training config
    <run_dir>/git_sha.txt        commit of the code (``+dirty`` with local changes)
    <run_dir>/checkpoints/       last.pt, best.pt, init.pt if asked (our format, embedded model config)
    <run_dir>/tensorboard/       event files

A run directory holds one run. Starting a run in a directory that already holds one
(a ``config.yaml`` or a checkpoint) is refused unless ``resume`` is given, so a second
run never replaces ``last.pt``/``best.pt`` silently. A ``config.yaml`` or ``git_sha.txt``
that training did not write (recognised by their content), or checkpoints without our
``config.yaml``, are never replaced, resume or not. One training writes a run directory at
a time (``.tsms.lock``, :func:`run_dir_lock`); a second is refused naming the holder.
Temporary checkpoint files left by a killed run (``.last.pt.*.tmp``) are removed at the
next start.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml
from omegaconf import DictConfig, OmegaConf

from utils.bootstrap import REPO_ROOT
from utils.errors import UserError
from utils.io import atomic_write, check_not_input, check_replaceable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def initial(self) -> Path:
        return self.checkpoints / "init.pt"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"


def git_sha(repo: Path = REPO_ROOT) -> str:
    """``HEAD``'s commit, with ``+dirty`` if tracked files changed; ``unknown`` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


def holds_run(run: RunDir) -> bool:
    return run.config.is_file() or any(run.checkpoints.glob("*.pt"))


def is_run_config(path: Path) -> bool:
    """A ``config.yaml`` that training wrote: a mapping with the training config's keys."""
    data = yaml.safe_load(Path(path).read_text())
    return isinstance(data, dict) and {"run_dir", "trainer", "model", "epochs"} <= set(data)


def is_git_sha(path: Path) -> bool:
    return re.fullmatch(r"([0-9a-f]{7,64}(\+dirty)?|unknown)\n?", Path(path).read_text()) is not None


def check_run_dir(path, resume) -> None:
    """Refuse (one line, before any write) a fresh start in a directory that already holds a
    run, and any start where a file training would replace is not training's."""
    run = RunDir(Path(path))
    if run.root.exists() and not run.root.is_dir():
        raise UserError(f"run_dir {run.root} exists and is a file")
    if not run.root.is_dir():
        return
    if resume in (None, "", False) and holds_run(run):
        raise UserError(f"run_dir {run.root} already holds a run; pass resume=auto to continue or choose "
                        f"another run_dir")
    check_replaceable(run.config, "run_dir file", is_run_config, "training")
    check_replaceable(run.root / "git_sha.txt", "run_dir file", is_git_sha, "training")
    if run.checkpoints.exists() and (run.checkpoints.is_symlink() or not run.checkpoints.is_dir()):
        raise UserError(f"{run.checkpoints} exists and is not a checkpoint folder written by training")
    ours = [p for p in (run.last, run.best, run.initial) if p.exists() or p.is_symlink()]
    if ours and not run.config.is_file():
        raise UserError(f"run_dir {run.root} holds {ours[0]} but no config.yaml written by training: it is not a run "
                        f"of this tool and its files would be replaced; choose another run_dir (resume=<file> starts "
                        f"from a checkpoint kept elsewhere)")
    for path in ours:
        if path.is_symlink() or not path.is_file():
            raise UserError(f"{path} is not a checkpoint file written by training; move it away")


def check_run_dir_inputs(path, cfg: DictConfig) -> None:
    """The run directory neither is nor lies inside (nor contains) a dataset it trains or
    validates on: training never writes into what it reads."""
    data = cfg.get("data") or {}
    roots = {f"data.{split}.root": (data.get(split) or {}).get("root") for split in ("train", "val")}
    roots = {k: v for k, v in roots.items() if v}
    check_not_input(path, roots.values(), "run_dir", roots.keys())


@contextlib.contextmanager
def run_dir_lock(path, dist=None) -> Iterator[None]:
    """Hold the run directory for this training: rank 0 holds it for every rank, and every
    rank stops with the same one line when another training holds it."""
    from utils.distributed import hold_lock_for_all_ranks

    with hold_lock_for_all_ranks(Path(path), "training", dist):
        yield


def clean_stale_checkpoint_tmp(run: RunDir) -> None:
    """Remove ``.<name>.pt.<random>.tmp`` files that ``atomic_write`` left when a run was killed."""
    for tmp in run.checkpoints.glob(".*.pt.*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            tmp.unlink()
            log.info("removed %s, a partial checkpoint of an earlier, killed run", tmp)


def prepare_run_dir(path, cfg: DictConfig) -> RunDir:
    """Create the run directory and write the resolved config and the git SHA (atomically).

    Refuses, with one line, when ``path`` already holds a run and ``cfg.resume`` is not set.
    """
    run = RunDir(Path(path))
    check_run_dir(run.root, cfg.get("resume"))
    try:
        run.checkpoints.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create run_dir {run.root}: {exc.strerror or exc}") from exc
    clean_stale_checkpoint_tmp(run)
    with atomic_write(run.config) as f:
        f.write(OmegaConf.to_yaml(cfg, resolve=True))
    with atomic_write(run.root / "git_sha.txt") as f:
        f.write(git_sha() + "\n")
    return run
