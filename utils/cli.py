"""Uniform error handling for command-line entry points.

Library code raises :class:`utils.errors.UserError` for bad input (a missing file, a malformed prompt,
a size mismatch). Entry points wrap their ``main`` in :func:`run_cli`, which turns such an
error into one line on stderr and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional, Sequence

from utils.errors import UserError
from utils.io import disk_error_message

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as a one-line :class:`UserError` (exit 2)."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def run_cli(main: Callable[[Optional[Sequence[str]]], Optional[int]], argv=None) -> int:
    """Run ``main(argv)`` and map failures to exit codes.

    ``UserError`` (and missing files) print ``error: <message>`` and return 2, and so does a
    full disk, a read-only folder or a permission error (one line naming the folder and
    the cause); Ctrl-C returns 130. Anything else is a bug and keeps its traceback.
    """
    try:
        code = main(argv)
    except UserError as exc:
        for line in getattr(exc, "lines", None) or [exc]:  # UserErrors: one line per problem
            print(f"error: {_one_line(line)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except FileNotFoundError as exc:
        name = exc.filename if exc.filename else exc
        print(f"error: file not found: {name}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        message = disk_error_message(exc)
        if message is None:
            raise
        print(f"error: {_one_line(message)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        logging.getLogger(__name__).warning("interrupted")
        return EXIT_INTERRUPTED
    return int(code or 0)
