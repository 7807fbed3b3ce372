"""The MS rule's decisions, in plain Python and NumPy (no torch), shared by the PyTorch
model (models/memory_pruning.py) and the torch-free onnxruntime loop
(inference/onnx_memory.py): which frames are candidates in each half, how many may go,
which go given their similarity scores, and the dynamic threshold's per-video history.
The similarity scores themselves are computed by each side in its own array library."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

AUTO = "auto"
MIN_HISTORY = 8  # scores needed before the dynamic threshold acts
HISTORY_WINDOW = 512  # the most recent scores it is computed from


@dataclass
class SimilarityHistory:
    """The candidate similarity scores of one video so far, per half (0: long-term or the
    only group, 1: short-term); plain per-video data kept by the tracking session."""

    scores: Dict[int, deque] = field(default_factory=dict)

    def threshold(self, half: int, quantile: float) -> Optional[float]:
        seen = self.scores.get(half)
        if seen is None or len(seen) < MIN_HISTORY:
            return None
        return float(np.quantile(np.fromiter(seen, dtype=np.float64), quantile))

    def add(self, half: int, scores: Sequence[float]) -> None:
        self.scores.setdefault(half, deque(maxlen=HISTORY_WINDOW)).extend(float(x) for x in scores)

    def __len__(self) -> int:
        return sum(len(d) for d in self.scores.values())


@dataclass(frozen=True)
class PruneGroup:
    """One half of the memory: candidate frame indices judged against one reference."""

    candidates: tuple
    reference: int
    max_drop: int


def plan_pruning_groups(num_frames: int, memory_bank_size: int, prune_frames: int,
                        use_mem_split: bool) -> List[PruneGroup]:
    """Which frames are candidates, against which reference, and how many may go.

    Returns an empty list when the rule does not act (too few frames, or nothing to drop).
    """
    n = num_frames
    if prune_frames <= 0 or n <= memory_bank_size - prune_frames:
        return []
    groups = []
    if use_mem_split:
        per_half, h = prune_frames // 2, n // 2
        for candidates, reference in ((tuple(range(1, h)), 0), (tuple(range(h, n - 1)), n - 1)):
            if per_half > 0 and len(candidates) > per_half:
                groups.append(PruneGroup(candidates, reference, per_half))
    else:
        candidates = tuple(range(1, n - 1))
        max_drop = min(n + prune_frames - memory_bank_size, len(candidates))
        if max_drop > 0:
            groups.append(PruneGroup(candidates, n - 1, max_drop))
    return groups


def choose_drops(scores: List[float], group: PruneGroup, threshold: Optional[float]) -> List[int]:
    """The group's candidates to drop: the most similar first, at most ``max_drop``, and
    with a threshold only those scoring at least it."""
    # Python's sort is stable: ties keep candidate order, so the earlier frame goes first.
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    dropped = []
    for pos in order[: group.max_drop]:
        if threshold is not None and scores[pos] < threshold:
            break  # sorted descending: nothing further qualifies either
        dropped.append(group.candidates[pos])
    return dropped


def half_key(group: PruneGroup) -> int:
    """The history a group's scores go to: 0 for the long-term half (judged against m_0) or
    the only group, 1 for the short-term half (judged against the newest frame)."""
    return 0 if group.reference == 0 else 1


def group_thresholds(groups: Sequence[PruneGroup], pruning_threshold, auto_quantile: float,
                     history: Optional[SimilarityHistory]) -> List[Optional[float]]:
    """Each group's threshold: the fixed one (or None), or under ``"auto"`` the quantile of
    that half's history (None until the history holds enough scores, or without one)."""
    if pruning_threshold != AUTO:
        return [pruning_threshold] * len(groups)
    return [history.threshold(half_key(g), auto_quantile) if history is not None else None for g in groups]


def drops_for(groups: Sequence[PruneGroup], scores: Sequence[List[float]],
              thresholds: Sequence[Optional[float]]) -> List[int]:
    """The frames every group drops given its candidates' scores, sorted."""
    return sorted(d for g, sc, t in zip(groups, scores, thresholds) for d in choose_drops(sc, g, t))


def record_scores(history: SimilarityHistory, groups: Sequence[PruneGroup], scores: Sequence[List[float]]) -> None:
    """Extend each half's history with this call's scores (after deciding: a call never
    judges itself)."""
    for g, sc in zip(groups, scores):
        history.add(half_key(g), sc)


def keep_indices(num_frames: int, dropped: Sequence[int]) -> List[int]:
    gone = set(dropped)
    return [i for i in range(num_frames) if i not in gone]
