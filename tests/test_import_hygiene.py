"""sam2's wheel ships a top-level `training` package; ours must win, in tests and scripts."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_training_resolves_to_this_repo():
    import training

    assert Path(training.__file__).resolve().parent == REPO / "training"


def test_sam2_really_ships_a_competing_training_package():
    """Otherwise the test above could not fail."""
    site = [p for p in sys.path if "site-packages" in p]
    found = [Path(p) / "training" / "__init__.py" for p in site if (Path(p) / "training" / "__init__.py").exists()]
    assert found, "sam2's wheel no longer installs a top-level `training`; this guard may be obsolete"


def test_bootstrap_puts_repo_first_from_any_cwd(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(
        "import sys, pathlib\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from utils.bootstrap import ensure_repo_root_first\n"
        "ensure_repo_root_first()\n"
        "import training, models\n"
        "print(training.__file__)\n"
    )
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).resolve().parent == REPO / "training"
    assert importlib.util.find_spec("models").origin.startswith(str(REPO))
