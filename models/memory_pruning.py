"""MS, the TSMS memory rule: split the attended memory frames and prune redundant ones.

SAM2 attends memory frames in a fixed order: conditioning frames first, then
non-conditioning frames from oldest to newest (then object-pointer tokens, which are not
frames and are never pruned). Call those frames ``m_0 ... m_{n-1}``.

The rule (faithful to the paper's code):

* Pruning acts only when ``n > memory_bank_size - prune_frames``.
* With ``use_mem_split``, ``h = n // 2``:

  - long-term candidates ``m_1 ... m_{h-1}``, reference ``m_0`` (the prompted frame);
  - short-term candidates ``m_h ... m_{n-2}``, reference ``m_{n-1}`` (the newest);
  - each half with more than ``prune_frames // 2`` candidates drops its
    ``prune_frames // 2`` candidates most similar to its reference.

* Without the split (SurgSAM-2's rule): candidates ``m_1 ... m_{n-2}``, reference
  ``m_{n-1}``; drop the ``n + prune_frames - memory_bank_size`` most similar.
* With ``pruning_threshold`` set, only candidates scoring ``>= threshold`` may be dropped
  (still at most the counts above).
* With ``pruning_threshold="auto"`` (the dynamic threshold, beyond the paper) each half's
  threshold is the ``auto_quantile`` quantile of that half's candidate scores seen earlier
  in the same video (:class:`SimilarityHistory`): a frame is dropped only if it is more
  redundant than usual for this video, so static phases drop up to ``prune_frames`` and
  fast motion keeps more. The halves keep separate histories because long-term candidates
  (judged against the prompted frame) score lower than short-term ones by construction.
  Until a half's history holds ``MIN_HISTORY`` scores, the count rule applies to it.

``m_0`` and ``m_{n-1}`` are never dropped. Ties in similarity drop the earlier frame.

A decision is taken per video: at inference per batch element (one object, when objects
are tracked as one batch), in training per clip, from the similarities averaged over the
clip's objects (:func:`clips_in_batch`), so a clip prunes the same frames whatever other
clips share its batch, and K DDP ranks prune as one process does.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

# the rule's decisions are shared with the torch-free onnxruntime loop (inference/onnx_memory.py)
from utils.ms_rule import (AUTO, PruneGroup, SimilarityHistory, drops_for, group_thresholds, plan_pruning_groups,
                           record_scores)

SIMILARITIES = ("cosine_spatial", "cosine")
_HISTORY: contextvars.ContextVar[Optional[SimilarityHistory]] = contextvars.ContextVar(
    "tsms_similarity_history", default=None
)


@contextlib.contextmanager
def similarity_history(history: SimilarityHistory) -> Iterator[SimilarityHistory]:
    """Make ``history`` the one the dynamic threshold reads and extends inside the block."""
    token = _HISTORY.set(history)
    try:
        yield history
    finally:
        _HISTORY.reset(token)


def active_similarity_history() -> Optional[SimilarityHistory]:
    return _HISTORY.get()


@dataclass(frozen=True)
class ClipRows:
    """The batch elements (object rows) of each clip of a training batch, and each clip's
    similarity history (a clip is its own video)."""

    rows: Tuple[Tuple[int, ...], ...]
    histories: Tuple[SimilarityHistory, ...]

    @property
    def num_rows(self) -> int:
        return sum(len(r) for r in self.rows)


_CLIPS: contextvars.ContextVar[Optional[ClipRows]] = contextvars.ContextVar("tsms_clip_rows", default=None)


@contextlib.contextmanager
def clips_in_batch(clip_of_row: Sequence[int]) -> Iterator[ClipRows]:
    """Inside the block, memory attention in training mode prunes each clip on its own;
    ``clip_of_row[i]`` is the clip of batch element ``i`` (``obj_batch_idx``)."""
    rows: Dict[int, List[int]] = {}
    for i, clip in enumerate(clip_of_row):
        rows.setdefault(int(clip), []).append(i)
    clips = ClipRows(tuple(tuple(r) for r in rows.values()), tuple(SimilarityHistory() for _ in rows))
    token = _CLIPS.set(clips)
    try:
        yield clips
    finally:
        _CLIPS.reset(token)


def active_clip_rows() -> Optional[ClipRows]:
    return _CLIPS.get()


@contextlib.contextmanager
def clip_rows_subset(rows: Sequence[int]) -> Iterator[Optional[ClipRows]]:
    """Inside the block, the active clip rows restricted to batch elements ``rows`` (renumbered
    in that order, same histories): for a memory call on some rows only (a memory-selection
    group, :mod:`models.memory_selection`). A no-op outside a training forward."""
    clips = _CLIPS.get()
    if clips is None:
        yield None
        return
    position = {r: i for i, r in enumerate(rows)}
    kept = [(tuple(position[r] for r in clip if r in position), history)
            for clip, history in zip(clips.rows, clips.histories)]
    kept = [(clip, history) for clip, history in kept if clip]
    subset = ClipRows(tuple(c for c, _ in kept), tuple(h for _, h in kept))
    token = _CLIPS.set(subset)
    try:
        yield subset
    finally:
        _CLIPS.reset(token)


def frame_similarity(candidates: torch.Tensor, reference: torch.Tensor, kind: str,
                     per_element: bool = False) -> torch.Tensor:
    """Similarity of each candidate memory frame to a reference frame, in [-1, 1].

    Args:
        candidates: ``[K, HW, B, C]`` memory tokens of K frames (SAM2's seq-first layout).
        reference: ``[HW, B, C]``.
        kind: ``"cosine_spatial"``: per channel, the cosine between the two spatial maps
            (over HW), averaged over channels; ``"cosine"``: per token, the cosine over
            channels, averaged over tokens.
        per_element: keep one score per batch element instead of averaging over the batch.

    Returns:
        ``[K]`` (or ``[K, B]``) float32 scores.
    """
    cand = candidates.float()  # no copy when already fp32
    ref = reference.float().unsqueeze(0).expand_as(cand)
    if kind == "cosine_spatial":
        sim = F.cosine_similarity(cand, ref, dim=1)  # [K, B, C]
    elif kind == "cosine":
        sim = F.cosine_similarity(cand, ref, dim=3).transpose(1, 2)  # [K, B, HW]
    else:
        raise ValueError(f"unknown similarity {kind!r}; expected one of {SIMILARITIES}")
    return sim.mean(dim=2) if per_element else sim.flatten(1).mean(dim=1)


def _group_scores(frames: torch.Tensor, groups: Sequence[PruneGroup], similarity: str, per_element: bool):
    """Scores of every group, moved to the host in one transfer (one sync on GPU)."""
    scores = [frame_similarity(frames[list(g.candidates)], frames[g.reference], similarity, per_element)
              for g in groups]
    flat = torch.cat(scores).tolist()
    out, start = [], 0
    for g in groups:
        out.append(flat[start: start + len(g.candidates)])
        start += len(g.candidates)
    return out


def select_frames_to_prune(
    frames: torch.Tensor,
    *,
    memory_bank_size: int = 7,
    prune_frames: int = 2,
    use_mem_split: bool = True,
    similarity: str = "cosine_spatial",
    pruning_threshold: Union[None, float, str] = None,
    auto_quantile: float = 0.5,
    history: Optional[SimilarityHistory] = None,
    per_element: bool = False,
):
    """Indices (sorted) of the memory frames the MS rule drops.

    Args:
        frames: ``[n, HW, B, C]`` memory tokens of the n attended frames, in SAM2's order.
        pruning_threshold: ``None``, a number, or ``"auto"`` (see the module doc); with
            ``"auto"``, ``history`` (default: the active one, if any) is read, then extended
            by this call's scores.
        per_element: decide for each batch element on its own (one list per element);
            otherwise one decision for the batch, from batch-averaged similarities.
    """
    groups = plan_pruning_groups(frames.shape[0], memory_bank_size, prune_frames, use_mem_split)
    batch = frames.shape[2]
    if not groups:
        return [[] for _ in range(batch)] if per_element else []
    scores = _group_scores(frames, groups, similarity, per_element)
    dynamic = pruning_threshold == AUTO
    if dynamic and history is None:
        history = active_similarity_history()
    thresholds = group_thresholds(groups, pruning_threshold, auto_quantile, history)
    if not per_element:
        drops = drops_for(groups, scores, thresholds)
    else:  # scores[g][candidate][element]
        drops = [drops_for(groups, [[r[b] for r in sc] for sc in scores], thresholds) for b in range(batch)]
    if dynamic and history is not None:
        record_scores(history, groups, [[x for row in sc for x in (row if per_element else [row])] for sc in scores])
    return drops


def select_frames_to_prune_per_clip(frames: torch.Tensor, clips: ClipRows, **rule) -> List[List[int]]:
    """One :func:`select_frames_to_prune` decision per clip (similarities averaged over the
    clip's objects, the clip's own history); returns the dropped frames of every batch
    element. ``rule``: the rule's keyword arguments."""
    batch = frames.shape[2]
    if clips.num_rows != batch:
        raise ValueError(f"the clip rows cover {clips.num_rows} batch elements, the memory has {batch}")
    dropped: List[List[int]] = [[] for _ in range(batch)]
    for rows, history in zip(clips.rows, clips.histories):
        part = frames if len(rows) == batch else frames[:, :, list(rows)]  # one clip: no copy
        drops = select_frames_to_prune(part, history=history, per_element=False, **rule)
        for r in rows:
            dropped[r] = drops
    return dropped


def gather_kept_frames(x: torch.Tensor, keep: Sequence[int], tokens_per_frame: int, num_frames: int) -> torch.Tensor:
    """``x[:n*HW]`` restricted to the kept frames, then the trailing tokens (object
    pointers): one copy, from contiguous runs of kept frames (no index tensor)."""
    hw, parts, run_start = tokens_per_frame, [], None
    for i, k in enumerate(keep):
        if run_start is None:
            run_start = k
        if i + 1 == len(keep) or keep[i + 1] != k + 1:
            parts.append(x[run_start * hw: (k + 1) * hw])
            run_start = None
    parts.append(x[num_frames * hw:])
    return torch.cat(parts, dim=0)
