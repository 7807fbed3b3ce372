"""The TS/MS ablation: its rows, and the statistics and table of its results.

A row is a training recipe (sampler, memory, overrides) and the memory used at inference;
the rows are data (``configs/ablation/ablation.yaml: rows``). Rows that only change
inference reuse the checkpoints of the row they name (``weights_of``), so every seed of
``tsms_fast`` is the ``tsms`` model of that seed, tracked with another memory.

Statistics (docs/method.md, "The ablation"): the unit is a held-out video, scored as the
mean Dice over its objects (first frame excluded).

* **Dice of a row, per seed**: mean over the videos of a group (or all videos); the table
  gives mean ± sample std (ddof=1) over the seeds.
* **Difference from the reference row** (SAM2 by default): per video, the row's Dice averaged over its
  seeds minus the reference's averaged over its seeds; the mean of those differences, with
  a 95% percentile interval from a paired bootstrap over videos (videos resampled with
  replacement, the same draw for both rows).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from utils.errors import UserError
from utils.io import atomic_write


@dataclass(frozen=True)
class Row:
    """One row of the table: the recipe it is trained with and the memory it tracks with.

    ``overrides``: more training overrides for this row; ``weights_of``: the row whose
    checkpoints (same seed) it tracks with instead of training its own.
    """

    key: str
    label: str
    sampler: str
    memory: str                      # trained with
    infer_memory: str                # tracked with
    pruning_threshold: Optional[str] = None  # at inference, e.g. "auto"
    weights_of: Optional[str] = None  # reuse this row's checkpoints (inference-only row)
    overrides: Tuple[str, ...] = ()

    @property
    def trains(self) -> bool:
        return self.weights_of is None

    @property
    def run_key(self) -> str:
        return self.weights_of or self.key

    def definition(self) -> dict:
        """What its scores depend on (the label is only shown)."""
        return {"sampler": self.sampler, "memory": self.memory, "infer_memory": self.infer_memory,
                "pruning_threshold": self.pruning_threshold, "weights_of": self.weights_of,
                "overrides": list(self.overrides)}

    @classmethod
    def from_mapping(cls, key: str, node: Mapping) -> "Row":
        """From a row of the ablation config (``configs/ablation/ablation.yaml: rows``)."""
        unknown = sorted(set(node) - ROW_FIELDS)
        if unknown:
            raise UserError(f"row {key!r}: unknown field(s) {', '.join(unknown)}; a row has "
                            f"{', '.join(sorted(ROW_FIELDS))}")
        for name in ("sampler", "memory"):
            if not isinstance(node.get(name), str):
                raise UserError(f"row {key!r} needs a {name} (a name from configs/{name}/)")
        threshold = node.get("pruning_threshold")
        overrides = node.get("overrides") or []
        if isinstance(overrides, str) or not all(isinstance(o, str) and "=" in o for o in overrides):
            raise UserError(f"row {key!r}: overrides must be a list of key=value strings, got {overrides!r}")
        return cls(key=key, label=str(node.get("label") or key), sampler=node["sampler"], memory=node["memory"],
                   infer_memory=node.get("infer_memory") or node["memory"],
                   pruning_threshold=None if threshold is None else str(threshold),
                   weights_of=node.get("weights_of"), overrides=tuple(overrides))


ROW_FIELDS = frozenset({"label", "sampler", "memory", "infer_memory", "pruning_threshold", "weights_of", "overrides"})
ROWS_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ablation" / "ablation.yaml"


def default_rows() -> Dict[str, Row]:
    """The rows of ``configs/ablation/ablation.yaml``."""
    from omegaconf import OmegaConf

    rows = OmegaConf.to_container(OmegaConf.load(ROWS_CONFIG).rows)
    return {key: Row.from_mapping(key, node) for key, node in rows.items()}


REFERENCE = "sam2"
PAPER_ROWS = ("sam2", "ts", "ms", "tsms")


def seed_means(per_seed: Mapping[int, Mapping[str, float]], videos: Sequence[str]) -> List[float]:
    """For each seed, the mean Dice over ``videos`` (NaN-free videos only)."""
    out = []
    for scores in per_seed.values():
        values = [scores[v] for v in videos if v in scores and not math.isnan(scores[v])]
        out.append(float(np.mean(values)) if values else math.nan)
    return out


def mean_std(values: Sequence[float]) -> tuple:
    """``(mean, sample std)``; the std is NaN for fewer than two values."""
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


def video_means(per_seed: Mapping[int, Mapping[str, float]], videos: Sequence[str]) -> np.ndarray:
    """Each video's Dice averaged over the seeds (one value per video, in ``videos`` order)."""
    return np.array([np.nanmean([scores.get(v, math.nan) for scores in per_seed.values()]) for v in videos])


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 10000, seed: int = 0) -> tuple:
    """``(mean(a - b), low, high)``: the 95% percentile interval of the mean paired
    difference, resampling the pairs with replacement ``n_boot`` times."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    diff = diff[~np.isnan(diff)]
    if diff.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_boot, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def two_level_bootstrap(row: Mapping[int, Mapping[str, float]], ref: Mapping[int, Mapping[str, float]],
                        videos: Sequence[str], n_boot: int = 10000, seed: int = 0) -> tuple:
    """``(mean difference, low, high, se)`` over videos *and* seeds.

    Each resample draws the videos with replacement and, independently, the seeds with
    replacement (seed k of the row is paired with seed k of the reference: same data order
    and initialisation); the difference is the mean over the drawn videos of the row's Dice
    averaged over the drawn seeds minus the reference's. ``se`` is the bootstrap standard
    error, from which :func:`detectable_effect` gives the design's power figure. Seeds
    missing from either row are left out.
    """
    seeds = sorted(set(row) & set(ref))
    if not seeds or not videos:
        return math.nan, math.nan, math.nan, math.nan
    a = np.array([[row[s].get(v, math.nan) for v in videos] for s in seeds], dtype=float)
    b = np.array([[ref[s].get(v, math.nan) for v in videos] for s in seeds], dtype=float)
    diff = a - b  # [seeds, videos]
    keep = ~np.isnan(diff).any(axis=0)
    diff = diff[:, keep]
    if diff.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    n_s, n_v = diff.shape
    s_idx = rng.integers(0, n_s, size=(n_boot, n_s))
    v_idx = rng.integers(0, n_v, size=(n_boot, n_v))
    means = np.empty(n_boot)
    for i in range(n_boot):  # the mean of a [seeds x videos] resample of the difference table
        means[i] = diff[s_idx[i]][:, v_idx[i]].mean()
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high), float(means.std(ddof=1))


def detectable_effect(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a two-sided test at ``alpha`` detects with ``power``,
    given the standard error of the estimate: ``(z_{1-alpha/2} + z_power) * se``."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf
    return float((z(1 - alpha / 2) + z(power)) * se)


def summarize(scores: Mapping[str, Mapping[int, Mapping[str, float]]], groups: Mapping[str, Sequence[str]],
              reference: str = REFERENCE, n_boot: int = 10000) -> Dict[str, dict]:
    """Per row: ``{"seeds", "all": (mean, std), <group>: (mean, std), "delta": (d, low, high)}``.

    ``scores[row][seed][video]`` is a video's Dice; ``groups`` maps a group name to its
    videos (``all`` is every video of every group).
    """
    every = [v for videos in groups.values() for v in videos]
    out = {}
    for key, per_seed in scores.items():
        entry = {"seeds": sorted(per_seed), "all": mean_std(seed_means(per_seed, every))}
        for group, videos in groups.items():
            entry[group] = mean_std(seed_means(per_seed, videos))
        if reference in scores and key != reference:
            entry["delta"] = paired_bootstrap(video_means(per_seed, every), video_means(scores[reference], every),
                                              n_boot=n_boot)
            d, low, high, se = two_level_bootstrap(per_seed, scores[reference], every, n_boot=n_boot)
            entry["delta_videos_seeds"] = (d, low, high)
            entry["detectable"] = detectable_effect(se) if not math.isnan(se) else math.nan
        out[key] = entry
    return out


def fmt_mean_std(pair: tuple) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def fmt_delta(delta: Optional[tuple]) -> str:
    if delta is None or math.isnan(delta[0]):
        return "n/a"
    d, low, high = (100 * x for x in delta)
    return f"{d:+.1f} [{low:+.1f}, {high:+.1f}]"


def write_plot(summary: Mapping[str, dict], groups: Sequence[str], labels: Mapping[str, str], path,
               reference: str = "SAM2") -> None:
    """Left: each row's difference from the reference with its 95% interval; right: Dice per
    group and row (bars: mean over seeds, whiskers: std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(summary)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.5 * len(keys) + 3.5),
                                      gridspec_kw={"width_ratios": [1, 2.2]})
    y = np.arange(len(keys))[::-1]
    for yi, key in zip(y, keys):
        delta = summary[key].get("delta")
        if delta is None or math.isnan(delta[0]):
            left.plot([0], [yi], "ks")
            continue
        d, low, high = (100 * x for x in delta)
        left.errorbar([d], [yi], xerr=[[d - low], [high - d]], fmt="o", color="C0", capsize=4)
    left.axvline(0, color="grey", lw=1)
    left.set_yticks(y, [labels[k] for k in keys])
    left.set_xlabel(f"Dice points vs {reference} (95% paired bootstrap)")
    width = 0.8 / len(keys)
    x = np.arange(len(groups))
    for i, key in enumerate(keys):
        means = [summary[key][g][0] for g in groups]
        stds = [0.0 if math.isnan(summary[key][g][1]) else summary[key][g][1] for g in groups]
        right.bar(x + (i - (len(keys) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=labels[key])
    right.set_xticks(x, groups, rotation=30, ha="right")  # group names are long enough to collide
    right.set_ylabel("Dice (mean over seeds)")
    finite = [summary[k][g][0] for k in keys for g in groups if not math.isnan(summary[k][g][0])]
    right.set_ylim(max(0.0, min(finite, default=0.0) - 0.1), 1.0)
    right.legend(fontsize=8, ncol=min(len(keys), 3), loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png", bbox_inches="tight")  # keeps the legend below the axes
    plt.close(fig)


def _json_safe(x):
    """NaN becomes null, tuples lists, keys strings: strict JSON."""
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def _median(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else math.nan


def cost(per_seed: Mapping[int, dict]) -> tuple:
    """``(attended tokens per frame, ms per frame)``: mean over videos and seeds of each
    video's mean tokens; the median over seeds of the median ms per frame over videos."""
    tokens = [t for result in per_seed.values() for t in result["tokens"].values() if t is not None]
    ms = _median([_median(result["ms"].values()) for result in per_seed.values()])
    return (float(np.mean(tokens)) if tokens else math.nan), ms


def caption(meta: Mapping) -> str:
    """The table's title and caption from ``meta`` (see :func:`write_results`)."""
    videos = ", ".join(f"{g} {n}" for g, n in meta["videos_per_group"].items())
    trained = (f" ({meta['n_trained']} trainings, median {meta['train_minutes']:.1f} min each)"
               if meta.get("n_trained") else "")
    base = meta.get("base")
    if base:
        title = f"Ablation on {meta.get('title', meta['dataset'])}"
        size = f", {meta['size']} px" if meta.get("size") else ""
        recipe = (f"Fine-tuned from the pretrained base {base['file']} (sha256 {base['sha256'][:12]}…) with "
                  f"`experiment={meta['experiment']}`{size}, {meta['train_videos']} training videos")
    elif meta.get("dataset", "synthetic") == "synthetic":
        title = "TS/MS ablation on synthetic video"
        recipe = (f"Mini model from scratch, {meta['size']} px, the quickstart's recipe (`experiment=synthetic_tiny`, "
                  f"{meta['train_videos']} training videos)")
    else:
        title = f"Ablation on {meta.get('title', meta['dataset'])}"
        size = f", {meta['size']} px" if meta.get("size") else ""
        n = meta["train_videos"]
        recipe = f"Training recipe `experiment={meta['experiment']}`{size}, {n} training video{'s' * (n != 1)}"
    if "jobs" in meta:
        where = f", {meta['jobs']} job(s) side by side"
    else:
        where = f", launcher {meta['launcher']}" if meta.get("launcher") else ""
    return (f"# {title} ({meta['date']})\n\n"
            f"{recipe}; one training per seed and trained row. Held-out videos "
            f"({videos}) tracked from first-frame masks; a video's Dice is the mean over its objects, first frame "
            f"excluded. Dice: mean ± std over seeds of the mean over videos. Δ: paired bootstrap over the "
            f"{meta['n_videos']} videos of the per-video Dice averaged over seeds; Δ, videos × seeds: the same "
            f"difference with videos and seeds both resampled (seed k paired with seed k); detectable Δ: the smallest "
            f"true difference a two-sided 5% test finds with 80% power, (1.96 + 0.84) × that bootstrap's standard "
            f"error. Tokens: memory tokens attended per frame; ms / frame: median over videos{where} on a shared {meta.get('device', 'CPU')} (compare within "
            f"the column only). Command: `{meta['command']}`{trained}.\n\n")


def to_markdown(rows: Sequence[Row], summary: Mapping[str, dict], costs: Mapping[str, tuple],
                groups: Sequence[str], meta: Mapping, reference: str = REFERENCE) -> str:
    ref_label = next((r.label for r in rows if r.key == reference), reference)
    header = ["row", "sampler", "memory (train → track)", "seeds", "Dice all", f"Δ vs {ref_label}, points [95% CI]",
              "Δ, videos × seeds [95% CI]", "detectable Δ (80% power)", *groups, "tokens / frame", "ms / frame"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 4 + "---:|" * (len(header) - 4)]
    for row in rows:
        s = summary[row.key]
        memory = row.memory if row.memory == row.infer_memory else f"{row.memory} → {row.infer_memory}"
        if row.pruning_threshold:
            memory += f", threshold {row.pruning_threshold}"
        cells = [row.label, row.sampler, memory, str(len(s["seeds"])), fmt_mean_std(s["all"]),
                 "(reference)" if row.key == reference else fmt_delta(s.get("delta")),
                 "" if row.key == reference else fmt_delta(s.get("delta_videos_seeds")),
                 "" if row.key == reference or math.isnan(s.get("detectable", math.nan))
                 else f"{100 * s['detectable']:.1f} points",
                 *[fmt_mean_std(s[g]) for g in groups],
                 f"{costs[row.key][0]:.0f}", f"{costs[row.key][1]:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return caption(meta) + "\n".join(lines) + "\n"


def events_markdown(rows: Sequence[Row], scores: Mapping[str, Mapping[int, dict]]) -> str:
    """Dice inside the scenario event windows (eval/scenarios.py), mean ± std over seeds."""
    events = sorted({e for r in rows for result in scores[r.key].values() for e in result.get("events", {})})
    if not events:
        return ""
    lines = ["| row | " + " | ".join(events) + " |", "|---|" + "---:|" * len(events)]
    for row in rows:
        cells = [fmt_mean_std(mean_std([result["events"].get(e, math.nan) for result in scores[row.key].values()
                                        if result.get("events")])) for e in events]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return ("\nDice inside event windows (eval/scenarios.py: the event's span, or the 10 frames from a "
            "point event on; inside `occluded` the truth is empty, so Dice is the share of frames without a false "
            "positive), mean over the (event, object) pairs, then mean ± std over seeds:\n\n" + "\n".join(lines) + "\n")


def write_results(out, rows: Sequence[Row], scores: Mapping[str, Mapping[int, dict]], groups: Mapping[str, list],
                  settings: Mapping, reference: str = REFERENCE) -> str:
    """``results.json``, ``results.md`` and ``ablation.png`` under ``out``; returns the markdown.
    ``settings``: what the caption shows (:func:`caption`: dataset, size, train_videos,
    bootstrap, the command, n_trained and train_minutes, jobs or launcher ...)."""
    out = Path(out)
    dice = {key: {seed: r["dice"] for seed, r in per_seed.items()} for key, per_seed in scores.items()}
    summary = summarize(dice, groups, reference=reference, n_boot=settings["bootstrap"])
    costs = {key: cost(per_seed) for key, per_seed in scores.items()}
    meta = {"date": date.today().isoformat(), **settings, "reference": reference,
            "videos_per_group": {g: len(v) for g, v in groups.items()},
            "n_videos": sum(len(v) for v in groups.values())}
    text = to_markdown(rows, summary, costs, list(groups), meta, reference) + events_markdown(rows, scores)
    with atomic_write(out / "results.json", "w") as f:
        json.dump(_json_safe({"meta": meta, "groups": groups, "summary": summary, "costs": costs, "scores": scores}),
                  f, indent=1)
    with atomic_write(out / "results.md", "w") as f:
        f.write(text)
    ref_label = next((r.label for r in rows if r.key == reference), reference)
    with atomic_write(out / "ablation.png", "wb") as f:
        write_plot(summary, list(groups), {r.key: r.label for r in rows}, f, ref_label)
    return text
