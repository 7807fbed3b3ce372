"""The ablation as a Hydra multirun over rows x seeds, on any dataset the toolkit prepares.

    python eval/ablation_run.py -m data=synthetic seed=1,2,3 row=sam2,ts,ms,tsms,tsms_fast
    python eval/ablation_run.py -m data=endovis17 seed=1,2,3 row=sam2,tsms \\
        hydra/launcher=joblib hydra.launcher.n_jobs=2                   # jobs side by side
    python eval/ablation_run.py -m data=endovis17 seed=1,2,3 row=sam2,tsms out=runs/ablation_ev17 \\
        hydra/launcher=submitit_slurm hydra.launcher.partition=gpu hydra.launcher.gpus_per_node=1 \\
        hydra.launcher.cpus_per_task=8 hydra.launcher.mem_gb=64 hydra.launcher.timeout_min=720

One job = one (row, seed) (eval/ablation_jobs.py); Hydra's launcher schedules them: the
basic launcher (one after another, in this process), hydra-joblib-launcher (side by side
on this machine), hydra-submitit-launcher (SLURM, or ``submitit_local``). Config:
configs/ablation/ablation.yaml (rows, recipe) and configs/ablation/data/ (datasets).

Before the first job starts, every job's config is composed and checked (rows, training
configs through the allowlists of models/safe_config.py, the data), ``settings.json`` is
checked against ``out`` (other settings: refused with one line) and synthetic data is
generated. After the last, the table, plot and statistics are rebuilt from every score
under ``out`` (eval/ablation_report.py). Everything is written under ``out`` (Hydra's own
files under ``out/hydra/``, which cannot be moved); rerunning the command skips finished
jobs and resumes interrupted trainings.
"""

import sys, pathlib  # noqa: E401  (repo root first: sam2's wheel ships its own `training`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import contextlib  # noqa: E402
import importlib.util  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator, List, Optional, Sequence, Tuple  # noqa: E402

from utils.bootstrap import REPO_ROOT  # noqa: E402
from utils.cli import run_cli  # noqa: E402
from utils.errors import UserError  # noqa: E402
from utils.logging import setup_logging  # noqa: E402

log = logging.getLogger("ablation_run")

MULTIRUN_FLAGS = ("-m", "--multirun")
PASS_THROUGH_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve")
LAUNCHERS = ("basic", "joblib", "submitit_local", "submitit_slurm")
PLUGINS = {"joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
           "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
           "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher")}


def split_overrides(overrides: Sequence[str]) -> Tuple[List[str], List[str]]:
    """``(the ablation's overrides, Hydra's)``. Of Hydra's own settings only the launcher
    may be chosen and tuned: the run and sweep folders stay under ``out``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from models.safe_config import check_config

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as exc:  # Hydra's grammar errors come in several types
        raise UserError(f"cannot parse the overrides: {' '.join(str(exc).split())}") from exc
    app, hydra = [], []
    for text, override in zip(overrides, parsed):
        key = override.key_or_group
        if key != "hydra" and not key.startswith(("hydra.", "hydra/")):
            app.append(text)
            continue
        if key == "hydra/launcher":
            if override.is_sweep_override() or override.value() not in LAUNCHERS:
                raise UserError(f"hydra/launcher must be one of {', '.join(LAUNCHERS)}, got {override.value()!r}")
            module, package = PLUGINS.get(override.value(), (None, None))
            if module and importlib.util.find_spec(module) is None:
                raise UserError(f"hydra/launcher={override.value()} needs the {package} package "
                                f"(pip install {package}; it is in requirements.txt)")
        elif not (key.startswith("hydra.launcher.") or key == "hydra.verbose") or "_target_" in key:
            raise UserError(f"{key} cannot be set here: the ablation writes only under out= (Hydra's files in "
                            f"out/hydra/); choose hydra/launcher=<{'|'.join(LAUNCHERS)}> and its hydra.launcher.* "
                            f"options")
        if override.is_sweep_override():
            raise UserError(f"{key} cannot be swept")
        check_config({"value": override.value()}, source=f"the override {text}", allowed=frozenset())
        hydra.append(text)
    return app, hydra


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


@contextlib.contextmanager
def hydra_app_state() -> Iterator[None]:
    """Hydra's global state cleared for the app (sam2 set it up on import), then put back;
    the repo root on the children's PYTHONPATH (joblib workers, submitit jobs import the
    task function from eval/)."""
    import sam2  # noqa: F401  (its import initialises Hydra: save that state)
    from hydra.core.global_hydra import GlobalHydra

    saved = GlobalHydra.instance().hydra
    GlobalHydra.instance().clear()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # Hydra configures logging for its jobs
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *([path] if path else [])])
    argv = sys.argv
    try:
        yield
    finally:
        sys.argv = argv
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()  # the jobs' log files
        root.handlers[:] = handlers
        root.setLevel(level)
        if path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = path
        GlobalHydra.instance().clear()
        if saved is not None:
            GlobalHydra.instance().initialize(saved)


def run_hydra(args: Sequence[str]) -> Optional[int]:
    """Run the Hydra app with ``args`` (as its command line); the exit code if it stopped."""
    import hydra

    from eval import ablation_jobs
    from eval.ablation_setup import CONFIG_DIR, CONFIG_NAME

    app = hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")(ablation_jobs.job)
    with hydra_app_state():
        sys.argv = [str(Path(__file__).resolve()), *args]
        try:
            app()
        except SystemExit as exc:  # Hydra reports a crashed job (its traceback) and exits
            return exc.code if isinstance(exc.code, int) else 1
    return None


def plan(app: Sequence[str], multirun: bool):
    """Compose and check every job before the first starts; returns ``(out, configs,
    the overrides with an absolute out)``."""
    from eval import ablation_setup as setup
    from training.multirun import expand_sweep

    _, jobs = expand_sweep(app)
    if any(_key(o) == "out" for job in jobs for o in job.swept):
        raise UserError("out cannot be swept: one ablation writes into one out folder")
    if len(jobs) > 1 and not multirun:
        raise UserError("these overrides sweep several jobs; add -m (--multirun)")
    out = setup.out_dir(setup.compose_ablation(jobs[0].overrides))
    absolute = f"out={setup.quoted(out)}"
    app = [o for o in app if _key(o) != "out"] + [absolute]
    configs = [setup.compose_ablation([*(o for o in job.overrides if _key(o) != "out"), absolute]) for job in jobs]
    return out, configs, app


def prepare(configs) -> Tuple[Path, list]:
    """Rows, training configs, data and settings of every job; returns ``(out, [(row, seed)])``."""
    from eval import ablation_setup as setup
    from eval.ablation import default_rows

    first = configs[0]
    out = setup.out_dir(first)
    rows, requested, trained = {}, [], {}
    for cfg in configs:
        row = setup.resolve_row(cfg.row, cfg)
        weights = setup.weights_row(row, cfg)
        rows.setdefault(weights.key, weights)
        rows.setdefault(row.key, row)
        if (row.key, int(cfg.seed)) in requested:
            raise UserError(f"the sweep runs row {row.key} seed {cfg.seed} more than once; sweep row= and seed= only "
                            f"(other settings go to their own out=)")
        requested.append((row.key, int(cfg.seed)))
        trained.setdefault(weights.key, (cfg, weights))
    for cfg, weights in trained.values():  # one compose per trained row: the seed changes nothing else
        setup.compose_training(cfg, weights, int(cfg.seed))
    if not setup.generated_splits(first):
        setup.prepare_data(first)  # prepared data: checked before settings.json is read or written
    order = list(default_rows())
    keys = sorted(rows, key=lambda k: (order.index(k) if k in order else len(order), list(rows).index(k)))
    settings = [setup.settings_of(cfg, []) for cfg in configs]
    changed = sorted({k for s in settings[1:] for k in setup.changed_keys(settings[0], s)})
    if changed:
        raise UserError(f"the sweep changes {', '.join(changed)} between jobs; scores made with other settings do not "
                        f"compare: run each setting into its own out=")
    setup.check_settings(out, setup.settings_of(first, [rows[k] for k in keys]))
    setup.prepare_data(first)
    setup.write_groups(out, setup.test_groups(first))
    return out, requested


def device_name(device: str, launcher: str) -> str:
    """What the caption calls the device the jobs tracked on."""
    if device == "auto" and launcher != "submitit_slurm":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return {"cpu": "CPU", "auto": "device (auto)"}.get(device, "GPU" if device.startswith("cuda") else device)


def launch(argv: Optional[Sequence[str]] = None, command: Optional[str] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a.split("=", 1)[0] in PASS_THROUGH_FLAGS for a in argv):
        if any(a in MULTIRUN_FLAGS for a in argv):
            raise UserError("--help, --cfg and --info show one job's config: leave out -m (--multirun)")
        return run_hydra(argv) or 0  # help or config display: nothing runs
    bad = [a for a in argv if a.startswith("-") and a not in MULTIRUN_FLAGS]
    if bad:
        raise UserError(f"unknown flag {bad[0]}: eval/ablation_run.py takes -m/--multirun and key=value overrides")
    multirun = any(a in MULTIRUN_FLAGS for a in argv)
    app, hydra_overrides = split_overrides([a for a in argv if a not in MULTIRUN_FLAGS])
    from eval import ablation_jobs
    from eval.ablation_report import write_report

    out, configs, app = plan(app, multirun)
    out, requested = prepare(configs)
    kept = sum(ablation_jobs.score_path(out, r, s).is_file() for r, s in requested)
    log.info("%d job(s) (%d scored before, kept); out: %s; logs: %s", len(requested), kept, out, out / "hydra")
    crashed = run_hydra([*(["--multirun"] if multirun else []), *app, *hydra_overrides])
    launcher = next((o.split("=", 1)[1] for o in hydra_overrides if _key(o) == "hydra/launcher"), "basic")
    jobs = next((o.split("=", 1)[1] for o in hydra_overrides if _key(o) == "hydra.launcher.n_jobs"), None)
    meta = {"launcher": launcher + (f" (n_jobs {jobs})" if jobs else ""), "device": device_name(configs[0].device,
                                                                                           launcher)}
    text = write_report(out, reference=str(configs[0].reference), bootstrap=int(configs[0].bootstrap),
                        command=command or "python eval/ablation_run.py " + shlex.join(argv), meta=meta)
    failed = []
    for row, seed in requested:
        if not ablation_jobs.score_path(out, row, seed).is_file():
            error = ablation_jobs.error_path(out, row, seed)
            failed.append(f"{row} seed {seed}" + (f" ({error.read_text().strip()})" if error.is_file() else ""))
    if text is not None:
        print(text)
        log.info("results: %s", out / "results.md")
    if failed or crashed:
        why = "; a job crashed, Hydra printed its error above" if crashed else ""
        raise UserError(f"{len(failed)} of {len(requested)} jobs did not finish: {'; '.join(failed)}{why}; rerun the "
                        f"same command to retry them, the finished ones are kept")
    return 0


def main(argv=None) -> int:
    setup_logging()
    return launch(argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
