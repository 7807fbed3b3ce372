"""Logging setup shared by the entry points (library code only calls ``get_logger``)."""

from __future__ import annotations

import logging
import os

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def setup_logging(level: int | str = logging.INFO, rank_zero_only: bool = True) -> None:
    """Configure the root logger; under DDP, non-zero ranks only log warnings and above."""
    if isinstance(level, str):
        level = getattr(logging, level.upper())
    if rank_zero_only and _rank() != 0:
        level = max(level, logging.WARNING)
    logging.basicConfig(level=level, format=_FORMAT, datefmt="%H:%M:%S", force=True)


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def disable_progress_bars() -> None:
    """Turn off every tqdm bar of this process that does not set ``disable`` itself, sam2's
    "propagate in video" included. (``TQDM_DISABLE`` would do it, but tqdm reads it once, on
    import, which has happened by the time the arguments are parsed.)"""
    import functools

    from tqdm import std

    if not getattr(std.tqdm.__init__, "_tsms_quiet", False):
        init = functools.partialmethod(std.tqdm.__init__, disable=True)
        init._tsms_quiet = True
        std.tqdm.__init__ = init
