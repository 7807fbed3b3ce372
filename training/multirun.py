"""Hydra multirun for the training CLI (``-m`` / ``--multirun``), run in-process, one job after another.

    python training/train_tsms_sam2.py -m sampler=uniform,multiscale memory=sam2,tsms seed=1,2,3

The overrides are expanded with Hydra's own sweep grammar (``a=1,2``, ``range(1,4)``,
``choice(...)``, ``glob(...)``: the basic sweeper's cartesian product, last key varying
fastest). Every job gets its own run directory, named by its index and the swept values::

    <run_dir>/multirun/multirun.yaml                 the sweep: overrides, job dirs, metrics
    <run_dir>/multirun/0_sampler=uniform,memory=sam2,seed=1/config.yaml ...

``<run_dir>`` is the one the non-swept overrides give. Names are deterministic, so
``resume=auto`` continues an interrupted sweep (finished jobs return at once); without it a
sweep refuses to start over a job directory that already holds a run.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from utils.errors import UserError
from utils.io import atomic_write

log = logging.getLogger(__name__)

MULTIRUN_FLAGS = ("-m", "--multirun")
MANIFEST = "multirun.yaml"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


def split_multirun_flag(argv: Optional[Sequence[str]]) -> Tuple[bool, Optional[List[str]]]:
    """``(multirun?, argv without -m/--multirun)``; ``None`` stays ``None`` (sys.argv)."""
    if argv is None:
        import sys

        argv = sys.argv[1:]
    rest = [a for a in argv if a not in MULTIRUN_FLAGS]
    return len(rest) != len(argv), rest


@dataclass(frozen=True)
class SweepJob:
    """One job of a sweep: every override it runs with, and the swept ones that name it."""

    index: int
    overrides: Tuple[str, ...]
    swept: Tuple[str, ...]

    @property
    def dir_name(self) -> str:
        label = _UNSAFE.sub("_", ",".join(self.swept))[:120]
        return f"{self.index}_{label}" if label else str(self.index)


def expand_sweep(overrides: Sequence[str]) -> Tuple[List[str], List[SweepJob]]:
    """``(the non-swept overrides, the jobs)`` of Hydra multirun ``overrides``."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        batches = BasicSweeper.split_arguments(parsed, None)[0]
    except Exception as exc:  # Hydra's grammar errors come in several types
        raise UserError(f"cannot expand the sweep: {' '.join(str(exc).split())}") from exc
    swept_keys = {o.get_key_element() for o in parsed if o.is_sweep_override()}
    if swept_keys & {"run_dir", "+run_dir", "++run_dir"}:
        raise UserError("run_dir cannot be swept: every job gets its own directory under <run_dir>/multirun/")
    fixed = [f"{o.get_key_element()}={o.get_value_element_as_str()}" for o in parsed if not o.is_sweep_override()]
    jobs = []
    for index, job in enumerate(batches):
        swept = tuple(o for o in job if o.split("=", 1)[0] in swept_keys)
        jobs.append(SweepJob(index, tuple(job), swept))
    return fixed, jobs


def _quoted(path: Path) -> str:
    """``path`` as a quoted Hydra override value (job names hold ``=`` and ``,``)."""
    return "'" + str(path).replace("'", "\\'") + "'"


def _read_manifest(path: Path) -> Dict:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _write_manifest(path: Path, manifest: Dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        yaml.safe_dump(manifest, f, sort_keys=False)


def run_sweep(config_path, overrides: Sequence[str], train_fn: Optional[Callable] = None) -> List[float]:
    """Compose every job (all checked before the first starts), then train them in order.

    Returns each job's metric (what ``train`` returns: best validation Dice, NaN without
    validation), and rewrites ``<run_dir>/multirun/multirun.yaml`` after each job.
    """
    from training.config import compose_train_config

    if train_fn is None:
        from training.trainer import train as train_fn
    fixed, jobs = expand_sweep(overrides)
    base = compose_train_config(config_path, fixed)
    sweep_dir = Path(base.run_dir) / "multirun"
    resume = str(base.get("resume")) == "auto"
    manifest_path = sweep_dir / MANIFEST
    main = os.environ.get("RANK", "0") == "0"  # under torchrun every rank runs the sweep; rank 0 keeps the books
    if main and manifest_path.exists() and not resume:
        raise UserError(f"{sweep_dir} already holds a sweep ({MANIFEST}); pass resume=auto to continue it, "
                        f"or another run_dir=")
    configs = []
    for job in jobs:
        job_dir = sweep_dir / job.dir_name
        cfg = compose_train_config(config_path, [*job.overrides, f"run_dir={_quoted(job_dir)}"])
        if main and (job_dir / "checkpoints").exists() and str(cfg.get("resume")) != "auto":
            raise UserError(f"{job_dir} already holds a run; pass resume=auto to continue the sweep")
        configs.append(cfg)
    manifest = _read_manifest(manifest_path) if manifest_path.exists() else {}
    entries = {e["dir"]: e for e in manifest.get("jobs", []) if isinstance(e, dict) and "dir" in e}
    manifest = {"config": str(config_path), "overrides": list(overrides), "metric": "best validation mean Dice",
                "jobs": []}
    for job in jobs:
        entries.setdefault(job.dir_name, {"dir": job.dir_name, "overrides": list(job.overrides), "metric": None})
    manifest["jobs"] = list(entries.values())  # written after each job: a sweep whose first job fails leaves none
    metrics = []
    for job, cfg in zip(jobs, configs):
        log.info("multirun job %d/%d: %s -> %s", job.index + 1, len(jobs), " ".join(job.swept), cfg.run_dir)
        metric = float(train_fn(cfg))
        metrics.append(metric)
        entries[job.dir_name]["metric"] = None if math.isnan(metric) else metric
        if main:
            _write_manifest(manifest_path, manifest)
        log.info("multirun job %d/%d done: metric %.4f", job.index + 1, len(jobs), metric)
    return metrics
