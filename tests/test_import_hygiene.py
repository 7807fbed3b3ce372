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


def _sam2_site() -> str:
    site = [p for p in sys.path if (Path(p) / "training" / "__init__.py").exists() and "site-packages" in p]
    assert site, "sam2's competing `training` package not found"
    return site[0]


def test_real_cli_from_another_cwd_with_sam2_training_first_on_the_path(tmp_path):
    """The training CLI, run from elsewhere with sam2's `training` ahead on PYTHONPATH, still
    composes our config; the same script with the repo appended (not first) fails, so the
    bootstrap is what makes it work."""
    env = {**__import__("os").environ, "PYTHONPATH": _sam2_site()}
    cli = REPO / "training" / "train_tsms_sam2.py"
    ok = subprocess.run([sys.executable, str(cli), "--print_config", "experiment=synthetic_tiny"], cwd=tmp_path,
                        env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "name: synthetic_tiny" in ok.stdout
    broken = tmp_path / "train_appended.py"
    broken.write_text(cli.read_text().replace("sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))",
                                              f"sys.path.append({str(REPO)!r})"))
    bad = subprocess.run([sys.executable, str(broken), "--print_config"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "training" in bad.stderr
