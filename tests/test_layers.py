"""The layers of docs/ARCHITECTURE (docs/usage.md "Repository layout"): which package may import which."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("utils", "data", "models", "training", "inference", "eval")
# eval/ holds scoring (pure: utils + data) and orchestration (benchmarks, ablation, pipeline).
EVAL_ORCHESTRATION = {"benchmark_speed", "benchmark_memory", "benchmark_evaluate", "ablation_synthetic",
                      "ablation_run", "ablation_jobs", "ablation_setup", "ablation_report",
                      "synthetic_pipeline", "onnx_parity", "benchmark_annotator"}
ALLOWED = {
    "utils": {"utils"},
    "data": {"utils", "data"},
    "models": {"utils", "models"},
    "training": {"utils", "data", "models", "training", "eval"},
    "inference": {"utils", "data", "models", "inference"},
    "eval": {"utils", "data", "eval"},  # scoring
    "eval_orchestration": set(PACKAGES),
}


def _project_imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                yield node.lineno, name


def _layer(path: Path) -> str:
    package = path.relative_to(REPO).parts[0]
    if package == "eval" and path.stem in EVAL_ORCHESTRATION:
        return "eval_orchestration"
    return package


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_only_the_layers_below_it(package):
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        layer = _layer(path)
        for line, name in _project_imports(path):
            if name.split(".")[0] not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not bad, bad


def test_the_check_can_fail(tmp_path):
    probe = REPO / "models" / "memory_spec.py"
    assert any(name.startswith("utils") for _, name in _project_imports(probe))
    fake = tmp_path / "x.py"
    fake.write_text("from training.trainer import train\n")
    assert [n for _, n in _project_imports(fake)] == ["training.trainer"]
    assert "training" not in ALLOWED["models"]
