"""Repo-root bootstrap.

The sam2 wheel installs a top-level package named ``training`` that would shadow ours.
Every CLI script therefore starts with these two lines, before any project import::

    import sys, pathlib
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

(pytest gets the same from ``pythonpath = .`` in pytest.ini). :func:`ensure_repo_root_first`
is the importable form for code that is already running from the repo.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def ensure_repo_root_first() -> Path:
    root = str(REPO_ROOT)
    if not sys.path or sys.path[0] != root:
        if root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)
    return REPO_ROOT
