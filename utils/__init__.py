"""Small shared helpers: repo-root bootstrap, logging, atomic IO and CLI error handling."""

from utils.cli import ArgumentParser, run_cli
from utils.errors import UserError
from utils.io import atomic_dir, atomic_torch_save, atomic_write
from utils.logging import get_logger, setup_logging

__all__ = [
    "ArgumentParser",
    "UserError",
    "run_cli",
    "atomic_dir",
    "atomic_torch_save",
    "atomic_write",
    "get_logger",
    "setup_logging",
]
