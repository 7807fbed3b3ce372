"""One job of the ablation: one (row, seed). Hydra's launcher calls :func:`job`.

A job trains the row's recipe for its seed (a row with ``weights_of`` reuses that row's
run, training it first if no job has yet), tracks every held-out split from first-frame
masks with the row's inference memory, scores each video, and writes
``scores/<row>/s<seed>.json``. Everything it writes lies under ``out``::

    runs/<row>_s<seed>/          the training run (checkpoints/last.pt, ablation_done.json)
    predictions/<row>/s<seed>/<split>/   masks and summary.json (tokens, ms per frame)
    eval/<row>/s<seed>_<split>.json      evaluate.py's report
    scores/<row>/s<seed>.json            per video: Dice, tokens / frame, ms / frame; event windows
    hydra/<row>_s<seed>/                 Hydra's config and the job's log

Resumable: a job whose scores exist returns at once; a finished training (its marker) is
reused; an interrupted one resumes from its last checkpoint. Two jobs that need the same
training (``tsms`` and ``tsms_fast`` of one seed, side by side) take turns on its folder
lock (``flock``; on a cluster the out folder must be on a file system that honours it).
A bad input fails the job with one line (logged, and kept in ``logs/<row>_s<seed>.error``
for the launch to report); the other jobs go on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import time
from pathlib import Path
from typing import Dict, Iterator, Optional

from omegaconf import DictConfig

from eval import ablation_setup as setup
from eval.ablation import Row
from utils.errors import UserError
from utils.io import atomic_write, hold_lock

log = logging.getLogger("ablation")

DONE = "ablation_done.json"
LOCK_POLL_S = 1.0  # seconds between two tries of a busy training lock


def score_path(out: Path, row_key: str, seed: int) -> Path:
    return out / "scores" / row_key / f"s{seed}.json"


def error_path(out: Path, row_key: str, seed: int) -> Path:
    return out / "logs" / f"{row_key}_s{seed}.error"


def job(cfg: DictConfig) -> str:
    """Hydra's task function: ``"done"``, ``"kept"`` (scored before) or ``"failed"``."""
    cfg = setup.check_job_config(cfg)
    out = setup.out_dir(cfg)
    errors = error_path(out, str(cfg.row), int(cfg.seed))
    try:
        with _job_environment(cfg.threads):
            status = run_job(cfg)
    except UserError as exc:
        message = " ".join(str(exc).split())
        log.error("%s seed %s failed: %s", cfg.row, cfg.seed, message)
        errors.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(errors, "w") as f:
            f.write(message + "\n")
        return "failed"
    if errors.is_file():
        errors.unlink()  # ours: a failure of an earlier sitting, retried
    return status


@contextlib.contextmanager
def _job_environment(threads: Optional[int]) -> Iterator[None]:
    """The job's torch threads, no progress bars; put back after (the basic launcher runs
    every job in the launching process)."""
    import torch
    from tqdm import std

    from utils.logging import disable_progress_bars

    bars = std.tqdm.__init__
    disable_progress_bars()
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        std.tqdm.__init__ = bars


def run_job(cfg: DictConfig) -> str:
    out, seed = setup.out_dir(cfg), int(cfg.seed)
    row = setup.resolve_row(cfg.row, cfg)
    settings = setup.read_settings(out)
    recorded = (settings or {}).get("rows", {}).get(row.key)
    if recorded is None or {k: v for k, v in recorded.items() if k != "label"} != row.definition():
        raise UserError(f"{out} has no settings for row {row.key!r}; start the ablation with eval/ablation_run.py, "
                        f"which checks and records them before the jobs run")
    path = score_path(out, row.key, seed)
    if path.is_file():
        log.info("%s seed %d: scored before (%s), kept", row.key, seed, path)
        return "kept"
    checkpoint = ensure_trained(cfg, setup.weights_row(row, cfg), seed)
    result = score(cfg, row, seed, checkpoint)
    with atomic_write(path, "w") as f:
        json.dump(result, f, indent=1)
    log.info("%s seed %d: scored %d videos -> %s", row.key, seed, len(result["dice"]), path)
    return "done"


@contextlib.contextmanager
def wait_for_lock(folder: Path, what: str) -> Iterator[None]:
    """:func:`utils.io.hold_lock` on ``folder``, waiting while another process holds it."""
    waited = False
    while True:
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(hold_lock(folder, what))
        except UserError as exc:
            if "in use by another" not in str(exc):
                raise
            if not waited:
                log.info("waiting: %s", exc)
                waited = True
            time.sleep(LOCK_POLL_S)
            continue
        with stack:
            yield
        return


def ensure_trained(cfg: DictConfig, row: Row, seed: int) -> Path:
    """``row``'s last checkpoint for ``seed``: trained now unless a finished run is there."""
    run = setup.run_dir(setup.out_dir(cfg), row, seed)
    checkpoint = run / "checkpoints" / "last.pt"
    done = run / DONE
    if done.is_file() and checkpoint.is_file():
        return checkpoint
    train_cfg = setup.compose_training(cfg, row, seed)  # checked before the lock: a bad row fails at once
    if multiprocessing.parent_process() is not None and train_cfg.get("num_workers"):
        # a launcher's worker process (joblib's loky) cannot fork data-loading workers of its
        # own; jobs side by side keep the cores busy anyway
        log.info("%s seed %d: data loaded in the job's process (num_workers=0) inside a launcher worker",
                 row.key, seed)
        train_cfg.num_workers = 0
    with wait_for_lock(run, "ablation training"):
        if done.is_file() and checkpoint.is_file():  # another job trained it while this one waited
            return checkpoint
        from training.trainer import train

        tick = time.perf_counter()
        log.info("%s seed %d: training -> %s", row.key, seed, run)
        train(train_cfg)
        if not checkpoint.is_file():
            raise UserError(f"training finished without writing {checkpoint}")
        minutes = (time.perf_counter() - tick) / 60
        with atomic_write(done, "w") as f:
            json.dump({"minutes": round(minutes, 2), "overrides": setup.training_overrides(cfg, row, seed)}, f)
        log.info("%s seed %d: trained in %.1f min", row.key, seed, minutes)
    return checkpoint


def event_dice(report: dict) -> Dict[str, float]:
    """``{event type: mean Dice inside its windows}`` from an evaluate.py report (eval/scenarios.py)."""
    return {event: v["dice"]["mean"] for event, v in report["scenarios"]["per_event"].items()}


def score(cfg: DictConfig, row: Row, seed: int, checkpoint: Path) -> dict:
    """``{"dice": {video: Dice}, "tokens": {video: tokens/frame}, "ms": {video: ms/frame},
    "events": {event type: Dice in its windows}}``; videos are ``split/video``."""
    from eval.evaluation import EvaluationConfig, evaluate_predictions
    from eval.report import result_to_dict, write_json
    from eval.synthetic_pipeline import mean_object_dice
    from inference.prompts import PromptSpec
    from inference.runner import PredictOptions, run_predict_video

    out = setup.out_dir(cfg)
    threshold = row.pruning_threshold
    threshold = threshold if threshold in (None, "auto") else float(threshold)
    result: dict = {"dice": {}, "tokens": {}, "ms": {}}
    events: Dict[str, Dict[str, float]] = {}
    for split, folder in setup.test_splits(cfg).items():
        pred = out / "predictions" / row.key / f"s{seed}" / split
        videos = run_predict_video(PredictOptions(
            dataset_dir=str(folder), checkpoint=str(checkpoint), output_dir=str(pred), device=str(cfg.device),
            memory=row.infer_memory, pruning_threshold=threshold, prompt=PromptSpec(prompt_type="mask")))
        evaluation = evaluate_predictions(EvaluationConfig(pred_dir=pred, gt_dir=folder / "Annotations",
                                                           skip_first=True, workers=1, progress=False))
        write_json(evaluation, out / "eval" / row.key / f"s{seed}_{split}.json")
        report = result_to_dict(evaluation)
        for name in report["videos"]:
            result["dice"][f"{split}/{name}"] = mean_object_dice(report, [name])
        if report.get("scenarios"):
            events[split] = event_dice(report)
        for video in videos:
            key = f"{split}/{video.video}"
            result["tokens"][key] = video.attended_memory_tokens_mean
            result["ms"][key] = 1000.0 * video.seconds / video.frames if video.frames else None
    if len(events) == 1:
        result["events"] = next(iter(events.values()))
    elif events:  # events of several splits keep their split's name
        result["events"] = {f"{split}:{event}": dice for split, per in events.items() for event, dice in per.items()}
    return result
