"""The run directory: resolved config, git SHA, checkpoints and TensorBoard logs.

Layout::

    <run_dir>/config.yaml        the resolved training config
    <run_dir>/git_sha.txt        commit of the code (``+dirty`` with local changes)
    <run_dir>/checkpoints/       last.pt, best.pt, init.pt if asked (our format, embedded model config)
    <run_dir>/tensorboard/       event files
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from utils.bootstrap import REPO_ROOT
from utils.io import atomic_write


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


def prepare_run_dir(path, cfg: DictConfig) -> RunDir:
    """Create the run directory and write the resolved config and the git SHA (atomically)."""
    run = RunDir(Path(path))
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    with atomic_write(run.config) as f:
        f.write(OmegaConf.to_yaml(cfg, resolve=True))
    with atomic_write(run.root / "git_sha.txt") as f:
        f.write(git_sha() + "\n")
    return run
