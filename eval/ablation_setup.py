"""The ablation's configuration: composing a job's config, its rows, its data, its settings.

A job's config is ``configs/ablation/ablation.yaml`` with its overrides (Hydra's compose
API before the sweep starts, Hydra itself inside a job). Everything here is shared by the
launch (eval/ablation_run.py: checks every job before the first starts) and the jobs
(eval/ablation_jobs.py).

``settings.json`` under ``out`` records what makes two scores comparable: the data (the
synthetic generator's arguments, or the videos and frame counts of a prepared dataset; no
paths, so an out folder can move), the training recipe, and each row's definition. An out
folder made with other settings is refused with one line; new rows may join it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from eval.ablation import Row
from models.memory_spec import preset_names
from models.safe_config import TRAINING_RESOLVERS, check_config
from utils.bootstrap import REPO_ROOT
from utils.errors import UserError
from utils.io import atomic_write, file_sha256, plain_name

log = logging.getLogger(__name__)

CONFIG_DIR = REPO_ROOT / "configs" / "ablation"
CONFIG_NAME = "ablation"
SETTINGS = "settings.json"
GROUPS = "groups.json"
SETTINGS_FORMAT = 2


# --------------------------------------------------------------------------- the config

def compose_ablation(overrides: Sequence[str]) -> DictConfig:
    """The config of one job (no sweep in ``overrides``), checked and resolved."""
    from hydra import compose

    from training.config import _one_line, hydra_config_dir

    try:
        with hydra_config_dir(CONFIG_DIR):
            cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    except Exception as exc:  # Hydra raises several exception types for bad overrides
        raise UserError(f"cannot compose configs/ablation/{CONFIG_NAME}.yaml: {_one_line(exc)}") from exc
    return check_job_config(cfg)


def check_job_config(cfg: DictConfig) -> DictConfig:
    """The ablation's config names no callable (it builds nothing itself; what the training
    builds is checked again by ``compose_train_config``) and calls no resolver but the
    training YAMLs' lookups (``oc.env``, ``oc.select``); then it is resolved."""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))  # a plain, writable copy
    check_config(cfg, source="the ablation config", allowed=frozenset(), resolvers=TRAINING_RESOLVERS)
    try:
        OmegaConf.resolve(cfg)
    except Exception as exc:
        raise UserError(f"cannot resolve the ablation config: {' '.join(str(exc).split())}") from exc
    for key in ("out", "row", "seed", "data", "train", "rows"):
        if OmegaConf.select(cfg, key) is None:
            raise UserError(f"the ablation config needs {key}=")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise UserError(f"seed must be an integer, got {cfg.seed!r}")
    if cfg.threads is not None and (not isinstance(cfg.threads, int) or cfg.threads < 1):
        raise UserError(f"threads must be null or an integer >= 1, got {cfg.threads!r}")
    if not isinstance(cfg.bootstrap, int) or cfg.bootstrap < 1:
        raise UserError(f"bootstrap must be an integer >= 1, got {cfg.bootstrap!r}")
    return cfg


def out_dir(cfg: DictConfig) -> Path:
    return Path(cfg.out).expanduser().resolve()


# --------------------------------------------------------------------------- rows

def _plain_key(key: str, what: str) -> str:
    plain_name(key, what)
    if any(c in key for c in " ,=:'\"$*?[]{}()"):
        raise UserError(f"{what} {key!r} may not contain spaces or any of ,=:'\"$*?[]{{}}()")
    return key


def row_table(cfg: DictConfig) -> Dict[str, Row]:
    rows = OmegaConf.to_container(cfg.rows)
    if not isinstance(rows, dict):
        raise UserError("rows must be a mapping of row keys to rows")
    return {_plain_key(str(key), "row key"): Row.from_mapping(str(key), node or {}) for key, node in rows.items()}


def resolve_row(key: str, cfg: DictConfig) -> Row:
    """A row of ``rows``; else ``<preset>`` (trained and tracked with a memory preset) or
    ``<preset>@<row>`` (``<row>``'s weights tracked with the preset)."""
    key = _plain_key(str(key), "row")
    table = row_table(cfg)
    presets = preset_names()
    if key in table:
        row = table[key]
    else:
        preset, _, weights = key.partition("@")
        if preset not in presets:
            raise UserError(f"unknown row {key!r}; choose one of {', '.join(table)}, a memory preset "
                            f"({', '.join(presets)}) or <preset>@<row>")
        if weights:
            base = resolve_row(weights, cfg)
            if not base.trains:
                raise UserError(f"row {key!r}: {weights!r} tracks the weights of {base.weights_of!r}; "
                                f"name {preset}@{base.weights_of} instead")
            row = Row(key, f"{base.label}, {preset} at inference", base.sampler, base.memory, preset,
                      weights_of=base.key, overrides=base.overrides)
        else:
            row = Row(key, preset, str(cfg.preset_sampler), preset, preset)
    for memory in (row.memory, row.infer_memory):
        if memory not in presets:
            raise UserError(f"row {key!r}: unknown memory {memory!r}; choose one of: {', '.join(presets)}")
    if row.pruning_threshold not in (None, "auto"):
        try:
            float(row.pruning_threshold)
        except ValueError:
            raise UserError(f"row {key!r}: pruning_threshold must be a number or auto, "
                            f"got {row.pruning_threshold!r}") from None
    if row.weights_of is not None:
        if row.weights_of == key:
            raise UserError(f"row {key!r} cannot reuse its own weights")
        weights = resolve_row(row.weights_of, cfg)
        if not weights.trains:
            raise UserError(f"row {key!r}: weights_of names {row.weights_of!r}, which trains nothing itself")
    return row


def weights_row(row: Row, cfg: DictConfig) -> Row:
    """The row whose training gives ``row``'s weights (``row`` itself if it trains)."""
    return row if row.trains else resolve_row(row.weights_of, cfg)


# --------------------------------------------------------------------------- training

def quoted(value) -> str:
    """A Hydra override value, quoted (paths may hold ``,``, ``=`` or spaces)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_dir(out: Path, row: Row, seed: int) -> Path:
    return out / "runs" / f"{row.key}_s{seed}"


def base_checkpoint(cfg: DictConfig) -> Optional[Path]:
    """The checkpoint every trained row fine-tunes from (``train.base``; a relative path is
    looked up from the working directory, then from the repository), or ``None``."""
    base = cfg.train.get("base")
    if not base:
        return None
    path = Path(str(base)).expanduser()
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    if not path.is_file():
        raise UserError(f"train.base: checkpoint not found: {base} (the pretrained base: docs/training.md, "
                        f"'Pretraining the base')")
    return path.resolve()


def training_overrides(cfg: DictConfig, row: Row, seed: int) -> List[str]:
    """The training CLI's overrides for ``row`` (a row that trains) and ``seed``."""
    data, train = cfg.data, cfg.train
    overrides = [f"experiment={train.experiment}", f"data={data.train_config}", f"sampler={row.sampler}",
                 f"memory={row.memory}", f"data.train.root={quoted(Path(data.train).resolve())}",
                 f"seed={seed}", f"run_dir={quoted(run_dir(out_dir(cfg), row, seed))}", "resume=auto",
                 "trainer.progress=false"]
    if data.get("val"):
        overrides.append(f"data.val.root={quoted(Path(data.val).resolve())}")
    else:
        overrides.append("trainer.val_every=0")
    if cfg.device != "auto":
        overrides.append(f"device={cfg.device}")
    if cfg.threads is not None:
        overrides.append(f"cpu_threads={cfg.threads}")
    if train.resolution is not None:
        overrides.append(f"resolution={train.resolution}")
    if train.epochs is not None:
        overrides.append(f"epochs={train.epochs}")
    if train.clips_per_video is not None:
        overrides.append(f"data.train.multiplier={train.clips_per_video}")
    base = base_checkpoint(cfg)
    if base is not None:
        overrides.append(f"model.checkpoint={quoted(base)}")
    return overrides + list(train.overrides or []) + list(row.overrides)


def compose_training(cfg: DictConfig, row: Row, seed: int) -> DictConfig:
    """The checked training config (models/safe_config.py allowlists) of ``row`` and ``seed``."""
    from training.config import compose_train_config

    try:
        train_cfg = compose_train_config(overrides=training_overrides(cfg, row, seed))
    except UserError as exc:
        raise UserError(f"row {row.key!r}: {exc}") from exc
    checkpoint = train_cfg.model.get("checkpoint")
    if checkpoint and not Path(checkpoint).is_file():  # the trainer would find out in every job
        raise UserError(f"row {row.key!r}: model.checkpoint not found: {checkpoint} (download the official SAM2.1 "
                        f"weights into checkpoints/, see checkpoints/README.md, or train from scratch with "
                        f"'train.overrides=[model.checkpoint=null]')")
    return train_cfg


# --------------------------------------------------------------------------- data

def test_splits(cfg: DictConfig) -> Dict[str, Path]:
    splits = OmegaConf.to_container(cfg.data.test) if cfg.data.get("test") else {}
    if not splits:
        raise UserError(f"data {cfg.data.name!r} has no test splits (data.test: {{name: folder}})")
    return {_plain_key(str(name), "test split"): Path(folder).resolve() for name, folder in splits.items()}


def _check_vos(folder: Path, what: str, cfg: DictConfig) -> None:
    if not (folder / "JPEGImages").is_dir() or not (folder / "Annotations").is_dir():
        hint = f"; prepare it with: {cfg.data.prepare}" if cfg.data.get("prepare") else ""
        raise UserError(f"{what} {folder} is not a prepared dataset (JPEGImages/ and Annotations/ folders){hint}")


def video_frames(folder: Path) -> Dict[str, int]:
    """``{video: number of frames}`` of a VOS folder."""
    from inference.video_sources import list_video_dirs

    return {d.name: sum(1 for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
            for d in list_video_dirs(folder / "JPEGImages")}


def generated_splits(cfg: DictConfig) -> Dict[str, dict]:
    """``{split: data/synthetic.py arguments}`` of a generated dataset, else ``{}``."""
    generate = cfg.data.get("generate")
    return {} if not generate else {str(k): dict(v) for k, v in OmegaConf.to_container(generate).items()}


def _split_folders(cfg: DictConfig) -> Dict[str, Path]:
    """Every folder the ablation reads: ``train``, ``val`` and ``test/<split>``."""
    folders = {"train": Path(cfg.data.train).resolve()}
    if cfg.data.get("val"):
        folders["val"] = Path(cfg.data.val).resolve()
    folders.update({f"test/{name}": folder for name, folder in test_splits(cfg).items()})
    return folders


def prepare_data(cfg: DictConfig) -> None:
    """Generate a synthetic dataset's splits (a split already there with the same arguments
    is kept), then check that every split is a VOS folder."""
    from data.synthetic_video import write_synthetic_dataset
    from eval.synthetic_pipeline import SyntheticSplit

    out = out_dir(cfg)
    root = Path(cfg.data.root).resolve() if cfg.data.get("root") else None
    for name, args in generated_splits(cfg).items():
        folder = root / _plain_key(name, "generated split") if root else None
        if folder is None or out not in folder.parents:
            raise UserError(f"data.generate: generated data goes under out/ (data.root={cfg.data.get('root')})")
        split = SyntheticSplit(size=int(cfg.data.size), **args)
        meta = folder / "meta.json"
        if meta.is_file() and split.matches(json.loads(meta.read_text())):
            continue
        log.info("generating synthetic split %s (%d videos)", folder, split.num_videos)
        write_synthetic_dataset(folder, split.num_videos, split.num_frames, seed=split.seed, speed=split.speed,
                                size=(split.size, split.size), write_mp4=False, progress=False,
                                scenario=split.scenario, domain=split.domain)
    for what, folder in _split_folders(cfg).items():
        _check_vos(folder, f"data {what}", cfg)


def test_groups(cfg: DictConfig) -> Dict[str, List[str]]:
    """``{group: ["split/video", ...]}``: a split's videos form its group, except videos of a
    synthetic scenario (meta.json), grouped by scenario."""
    groups: Dict[str, List[str]] = {}
    for split, folder in test_splits(cfg).items():
        meta = folder / "meta.json"
        videos = json.loads(meta.read_text()).get("videos", {}) if meta.is_file() else {}
        for video in video_frames(folder):
            scenario = (videos.get(video) or {}).get("scenario", "basic")
            groups.setdefault(split if scenario == "basic" else scenario, []).append(f"{split}/{video}")
    return groups


# --------------------------------------------------------------------------- settings

def settings_of(cfg: DictConfig, rows: Sequence[Row]) -> dict:
    """What the scores of ``out`` depend on (see the module docstring)."""
    generated = generated_splits(cfg)
    data = {"name": cfg.data.name, "title": cfg.data.get("title") or cfg.data.name,
            "size": cfg.data.get("size") if generated else None, "generate": generated or None}
    if not generated:  # a prepared dataset: its videos and their lengths stand for it
        data["videos"] = {what: video_frames(folder) for what, folder in _split_folders(cfg).items()}
    train = OmegaConf.to_container(cfg.train)
    train.pop("base", None)
    base = base_checkpoint(cfg)
    if base is not None:  # the file's content, not its path: an out folder may move, a base may not change
        train["base"] = {"file": base.name, "sha256": file_sha256(base)}
    return {"format": SETTINGS_FORMAT, "data": data, "train": train,
            "rows": {r.key: {"label": r.label, **r.definition()} for r in rows}}


def changed_keys(old, new, prefix: str = "") -> List[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [k for key in dict.fromkeys([*old, *new]) for k in changed_keys(old.get(key), new.get(key),
                                                                          f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def read_settings(out: Path) -> Optional[dict]:
    path = out / SETTINGS
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc


def check_settings(out: Path, settings: dict) -> dict:
    """Refuse an ``out`` made with other settings (one line naming them); record new rows.
    Returns the settings now in ``out``."""
    old = read_settings(out)
    if old is None:
        merged = settings
    else:
        if old.get("format") != SETTINGS_FORMAT:
            raise UserError(f"{out / SETTINGS} was written by an older version of the ablation; choose another out=")
        changed = changed_keys({k: v for k, v in old.items() if k != "rows"},
                           {k: v for k, v in settings.items() if k != "rows"})
        def definition(row: dict) -> dict:
            return {k: v for k, v in row.items() if k != "label"}

        for key, row in settings["rows"].items():
            if key in old["rows"]:
                changed += [f"rows.{key}.{k}" for k in changed_keys(definition(old["rows"][key]), definition(row))]
        if changed:
            shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
            raise UserError(f"{out} holds an ablation made with other settings ({shown}); rerun with the same ones "
                            f"to continue it, or choose another out=")
        merged = {**old, "rows": {**old["rows"], **settings["rows"]}}
        if merged == old:
            return old
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / SETTINGS, "w") as f:
        json.dump(merged, f, indent=2)
    return merged


def write_groups(out: Path, groups: Mapping[str, List[str]]) -> None:
    path = out / GROUPS
    if path.is_file() and json.loads(path.read_text()) == groups:
        return
    with atomic_write(path, "w") as f:
        json.dump(groups, f, indent=1)
