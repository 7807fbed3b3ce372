"""Which past frames SAM2 attends: the published memory-selection rules, per object.

SAM2 attends its conditioning (prompted) frames plus the ``num_maskmem - 1`` frames right
before the current one, and the object pointers of the last ``max_obj_ptrs_in_encoder - 1``
frames. The rules here pick other frames (``MemorySpec.selection``):

* ``quality`` - SAM 3's memory selection (facebookresearch/sam3,
  ``sam3/model/sam3_tracker_base.py``: ``cal_mem_score``, ``frame_filter``; after SAM2Long):
  a frame's score is ``max IoU prediction x (2 sigmoid(object score) - 1)`` (0 when the
  object score is not positive); scanning back from the previous frame, frames scoring
  above ``quality_threshold`` (0.01) are kept until ``max_obj_ptrs - 1`` are found; the
  previous frame is always kept. The newest ``num_maskmem - 1`` kept frames are the
  spatial memory, ranked (the newest gets SAM2's newest temporal encoding), and the kept
  frames give the object pointers, ranked too.
* ``samurai`` - SAMURAI's (yangchris11/samurai, ``sam2/sam2/modeling/sam2_base.py``,
  ``_prepare_memory_conditioned_features`` with ``samurai_mode``): a frame is kept if its
  chosen mask's IoU prediction > 0.5, its object score > 0 and its Kalman motion score
  (IoU of the filter's predicted box with the mask's box, where the filter is stable)
  > 0; same scan, same "previous frame always"; pointers stay SAM2's (the last frames).
* ``dam4sam`` - DAM4SAM's distractor-aware memory (jovanavidenovic/DAM4SAM): a recent
  appearance memory (RAM, FIFO of ``ram_size`` frames, a frame enters at most every
  ``ram_every`` frames and never with an empty mask; the previous frame is attended when
  its mask is not empty) and a distractor-resolving memory (DRM, FIFO of ``drm_size``
  anchor frames added when a distractor is detected, attended like the prompted frame:
  SAM2's conditioning-frame encoding, no temporal order). Pointers stay SAM2's.

Every decision is per object (per batch row): each frame's output carries small CPU
tensors (``RECORD_KEYS``, first dim = objects) with its scores and the rule's running
state (Kalman filter, RAM/DRM buffers), so the state lives in sam2's per-object output
dicts of the session (evicted, batched, reset with them) and nothing on the modules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from models.box_kalman import BoxKalmanFilter, box_iou, is_empty_box, mask_boxes, xyxy_to_xyah

if TYPE_CHECKING:  # models.memory_spec imports SELECTIONS from here
    from models.memory_spec import MemorySpec

SELECTIONS = ("recent", "quality", "samurai", "dam4sam")
INFERENCE_ONLY = ("samurai", "dam4sam")  # training-free rules: their authors never train with them

# SAMURAI's fixed hyper-parameters (sam2_base.py defaults / its configs).
STABLE_FRAMES_THRESHOLD = 15
STABLE_IOUS_THRESHOLD = 0.3
# DAM4SAM's DRM trigger (dam4sam_tracker.py, ``track``).
DRM_MIN_IOU = 0.8
DRM_SIZE_RATIO = (0.8, 1.2)
DRM_MIN_GAP = 5
DRM_MAX_BOX_IOU = 0.7
DRM_SIZE_HISTORY = 10
# SAM 3 trims non-conditioning outputs older than 20 x max_obj_ptrs frames: the selection horizon.
HORIZON_PER_POINTER = 20

# Per-frame, per-object records (CPU tensors, first dim = objects).
RECORD_KEYS = ("mem_iou", "mem_obj", "mem_eff", "mem_area", "mem_kf", "kf_mean", "kf_cov", "kf_stable",
               "dam_ram", "dam_drm", "dam_last_ram", "dam_last_drm", "dam_sizes")
_NONE = -(10 ** 9)  # "no frame yet" in the RAM/DRM buffers


@dataclass(frozen=True)
class MemoryPlan:
    """One object's memory on one frame.

    ``slots[k-1]`` = (frame whose memory features fill SAM2's k-th newest slot or None,
    frame whose object pointer is read at distance k or None); ``anchors``: frames attended
    like the prompted frame (DAM4SAM's DRM)."""

    slots: Tuple[Tuple[Optional[int], Optional[int]], ...]
    anchors: Tuple[int, ...] = ()


def rule_settings(model) -> MemorySpec:
    """The memory spec whose rule fields (``selection`` ...) drive the rules here; SAM2's own
    memory module carries none: the default spec, ``selection: recent``."""
    from models.memory_spec import MemorySpec

    rule = getattr(model, "memory_rule", None)
    if isinstance(rule, MemorySpec):
        return rule
    spec = getattr(getattr(model, "memory_attention", None), "spec", None)
    return spec if isinstance(spec, MemorySpec) else MemorySpec()


def horizon(model) -> int:
    return HORIZON_PER_POINTER * int(model.max_obj_ptrs_in_encoder)


# ---------------------------------------------------------------------- records
def _prev_entry(output_dict, frame_idx: int, reverse: bool) -> Optional[dict]:
    t = frame_idx + 1 if reverse else frame_idx - 1
    return output_dict["non_cond_frame_outputs"].get(t) or output_dict["cond_frame_outputs"].get(t)


def _rows(entry: Optional[dict], key: str, batch: int) -> Optional[torch.Tensor]:
    value = None if entry is None else entry.get(key)
    return value if value is not None and value.shape[0] == batch else None


@dataclass
class MotionContext:
    """SAMURAI's filter state before this frame's decoder, per row, and what the decoder
    hook saw (``original_ious``, ``kf_ious``) when it weighted the mask choice."""

    means: List[Optional[np.ndarray]]
    covs: List[Optional[np.ndarray]]
    stable: List[int]
    weight: float
    choose: bool
    image_size: int
    original_ious: Optional[torch.Tensor] = None
    kf_ious: Optional[np.ndarray] = None

    def weighting_rows(self) -> List[int]:
        return [r for r, s in enumerate(self.stable) if s >= STABLE_FRAMES_THRESHOLD and self.means[r] is not None]


def motion_context(settings: MemorySpec, output_dict, frame_idx: int, reverse: bool, batch: int,
                   image_size: int, prompted: bool) -> MotionContext:
    """Predict each row's filter one step (SAMURAI predicts before the decoder)."""
    prev = None if prompted else _prev_entry(output_dict, frame_idx, reverse)
    means, covs, stable = [None] * batch, [None] * batch, [0] * batch
    m, c, s = _rows(prev, "kf_mean", batch), _rows(prev, "kf_cov", batch), _rows(prev, "kf_stable", batch)
    if m is not None:
        for r in range(batch):
            stable[r] = int(s[r])
            if stable[r] > 0 and not math.isnan(float(m[r, 0])):
                means[r], covs[r] = BoxKalmanFilter.predict(m[r].numpy(), c[r].numpy())
    return MotionContext(means, covs, stable, settings.kf_score_weight, settings.motion_mask_choice, image_size)


def weight_ious_by_motion(ctx: MotionContext, masks: torch.Tensor, ious: torch.Tensor,
                          object_scores: torch.Tensor) -> Optional[torch.Tensor]:
    """SAMURAI's mask choice: ``w * kf_iou + (1 - w) * iou`` for the rows whose filter is
    stable (``masks``: the decoder's low-res multimask logits ``[B, M, h, w]``). Returns the
    weighted IoUs, or None when nothing changes."""
    rows = ctx.weighting_rows()
    if not rows or masks.shape[1] < 2:
        return None
    high = F.interpolate(masks.float(), size=(ctx.image_size, ctx.image_size), mode="bilinear", align_corners=False)
    present = (object_scores.reshape(-1) > 0)[:, None, None, None]
    boxes = mask_boxes((high > 0) & present)  # [B, M, 4]
    kf = np.zeros(tuple(ious.shape), dtype=np.float64)
    for r in rows:
        kf[r] = box_iou(BoxKalmanFilter.predicted_box(ctx.means[r]), boxes[r])
    ctx.original_ious, ctx.kf_ious = ious, kf
    if not ctx.choose:
        return None
    weighted = ious.clone()
    idx = torch.tensor(rows, device=ious.device)
    kf_t = torch.from_numpy(kf[rows]).to(ious)
    weighted[idx] = ctx.weight * kf_t + (1 - ctx.weight) * ious[idx]
    return weighted


def frame_records(settings: MemorySpec, sam_outputs, output_dict, frame_idx: int, reverse: bool,
                  prompted: bool, motion: Optional[MotionContext]) -> Dict[str, torch.Tensor]:
    """This frame's records for every row (see the module doc)."""
    _, high_multi, ious, _, high_res, _, obj_score = sam_outputs
    batch = high_res.shape[0]
    original = motion.original_ious if motion is not None and motion.original_ious is not None else ious
    if original.shape[1] > 1:
        chosen = torch.argmax(ious, dim=-1)
    else:
        chosen = torch.zeros(batch, dtype=torch.long, device=ious.device)
    mask = high_res[:, 0].detach() > 0
    obj_dev = obj_score.detach().reshape(batch, -1)[:, 0].float()
    scores = torch.stack([original.gather(1, chosen[:, None])[:, 0].detach().float(), obj_dev,
                          original.detach().float().max(dim=-1).values, mask.flatten(1).sum(1).float()])
    chosen_iou, obj, best_iou, area = scores.cpu()  # one transfer (one sync on GPU)
    present = torch.where(obj > 0, obj.sigmoid() * 2 - 1, torch.zeros_like(obj))
    rec = {"mem_iou": chosen_iou, "mem_obj": obj, "mem_eff": present * best_iou, "mem_area": area}
    if settings.uses_motion:
        rec.update(_kalman_records(motion, mask, chosen.cpu(), chosen_iou, prompted))
    if settings.selection == "dam4sam":
        rec.update(_dam_records(settings, output_dict, frame_idx, reverse, prompted, high_multi.detach(), mask,
                                chosen.cpu(), chosen_iou, obj))
    return rec


def _kalman_records(ctx: MotionContext, mask: torch.Tensor, chosen: torch.Tensor, chosen_iou: torch.Tensor,
                    prompted: bool) -> Dict[str, torch.Tensor]:
    """SAMURAI's three filter phases (``_forward_sam_heads`` with ``samurai_mode``), per row."""
    batch = mask.shape[0]
    boxes = mask_boxes(mask)
    means, covs = torch.full((batch, 8), float("nan"), dtype=torch.float64), torch.zeros(batch, 8, 8, dtype=torch.float64)
    stable = torch.zeros(batch, dtype=torch.long)
    kf_score = torch.full((batch,), float("nan"))
    kf = BoxKalmanFilter
    for r in range(batch):
        if prompted:
            continue  # a prompted frame restarts the filter at the next tracked frame
        box, mean, cov, s = boxes[r], ctx.means[r], ctx.covs[r], ctx.stable[r]
        good = float(chosen_iou[r]) > STABLE_IOUS_THRESHOLD and not is_empty_box(box)
        if mean is None or s == 0:  # (re)start on this frame's mask
            if not is_empty_box(box):
                mean, cov = kf.initiate(xyxy_to_xyah(box))
                s = 1
        elif s < STABLE_FRAMES_THRESHOLD:  # warming up: predict (done), update while confident
            if good:
                mean, cov = kf.update(mean, cov, xyxy_to_xyah(box))
                s += 1
            else:
                s = 0
        else:  # stable: the motion score of the chosen mask
            if ctx.kf_ious is not None:
                kf_score[r] = float(ctx.kf_ious[r, int(chosen[r])])
            else:
                kf_score[r] = float(box_iou(kf.predicted_box(mean), box[None])[0])
            if float(chosen_iou[r]) < STABLE_IOUS_THRESHOLD:
                s = 0
            elif not is_empty_box(box):
                mean, cov = kf.update(mean, cov, xyxy_to_xyah(box))
        if mean is not None:
            means[r], covs[r] = torch.from_numpy(mean), torch.from_numpy(cov)
        stable[r] = s
    return {"kf_mean": means, "kf_cov": covs, "kf_stable": stable, "mem_kf": kf_score}


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum(mask, labels, index=range(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def _box_of(mask: np.ndarray) -> np.ndarray:
    return mask_boxes(torch.from_numpy(mask))


def distractor_present(chosen: np.ndarray, alternatives: Sequence[np.ndarray]) -> bool:
    """DAM4SAM's test: an alternative mask's largest part outside the chosen mask, joined to
    the chosen mask, gives a box overlapping the chosen box by at most 0.7 IoU."""
    grown = []
    for alt in alternatives:
        extra = alt & ~chosen
        if extra.sum() >= 1:
            grown.append(_largest_component(extra) | chosen)
    if not grown:
        return False
    box = _box_of(chosen)
    return min(float(box_iou(box, _box_of(g)[None])[0]) for g in grown) <= DRM_MAX_BOX_IOU


def _push(buffer: torch.Tensor, frame: int) -> torch.Tensor:
    return torch.cat([buffer[1:], torch.tensor([frame], dtype=buffer.dtype)])


def _dam_records(settings: MemorySpec, output_dict, frame_idx: int, reverse: bool, prompted: bool,
                 high_multi: torch.Tensor, mask: torch.Tensor, chosen: torch.Tensor, chosen_iou: torch.Tensor,
                 obj: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Carry DAM4SAM's RAM/DRM buffers and size history forward by one frame, per row."""
    batch = mask.shape[0]
    prev = None if prompted else _prev_entry(output_dict, frame_idx, reverse)
    ram = _rows(prev, "dam_ram", batch)
    ram = ram.clone() if ram is not None else torch.full((batch, settings.ram_size), _NONE, dtype=torch.long)
    drm = _rows(prev, "dam_drm", batch)
    drm = drm.clone() if drm is not None else torch.full((batch, settings.drm_size), _NONE, dtype=torch.long)
    last_ram = _rows(prev, "dam_last_ram", batch)
    last_ram = last_ram.clone() if last_ram is not None else torch.full((batch,), _NONE, dtype=torch.long)
    last_drm = _rows(prev, "dam_last_drm", batch)
    last_drm = last_drm.clone() if last_drm is not None else torch.full((batch,), _NONE, dtype=torch.long)
    sizes = _rows(prev, "dam_sizes", batch)
    sizes = sizes.clone() if sizes is not None else torch.full((batch, DRM_SIZE_HISTORY), float("nan"))
    if prompted:  # DAM4SAM starts its buffers after the initialisation frame
        return {"dam_ram": ram, "dam_drm": drm, "dam_last_ram": last_ram, "dam_last_drm": last_drm,
                "dam_sizes": sizes}
    area = mask.flatten(1).sum(1).cpu()  # (DAM4SAM's rule is host-side, like its authors')
    multi = None
    for r in range(batch):
        n = int(area[r])
        since_ram = abs(frame_idx - int(last_ram[r]))
        if n >= 1 and since_ram >= settings.ram_every:  # RAM: every few frames, never an empty mask
            ram[r], last_ram[r] = _push(ram[r], frame_idx), frame_idx
        if n >= 1:
            sizes[r] = torch.cat([sizes[r, 1:], torch.tensor([float(n)])])
        known = sizes[r][~torch.isnan(sizes[r])]
        ratio = n / float(known.median()) if n >= 1 and len(known) > 1 else -1.0
        since_drm = abs(frame_idx - int(last_drm[r]))
        if (float(chosen_iou[r]) > DRM_MIN_IOU and DRM_SIZE_RATIO[0] <= ratio <= DRM_SIZE_RATIO[1]
                and since_drm > DRM_MIN_GAP and high_multi.shape[1] > 1):
            if multi is None:
                multi = (high_multi > 0).cpu().numpy()
            k = int(chosen[r])
            alternatives = [multi[r, i] for i in range(multi.shape[1]) if i != k]
            if distractor_present(multi[r, k], alternatives):
                drm[r], last_drm[r] = _push(drm[r], frame_idx), frame_idx
    return {"dam_ram": ram, "dam_drm": drm, "dam_last_ram": last_ram, "dam_last_drm": last_drm, "dam_sizes": sizes}


# ---------------------------------------------------------------------- plans
def _has_features(entry: Optional[dict]) -> bool:
    return entry is not None and entry.get("maskmem_features") is not None


def _value(entry: dict, key: str, row: int) -> Optional[float]:
    value = entry.get(key)
    return None if value is None else float(value[row].reshape(-1)[0])


def passes_gate(settings: MemorySpec, entry: dict, row: int) -> bool:
    """Whether a past frame may enter the memory (quality / samurai)."""
    if settings.selection == "quality":
        eff = _value(entry, "mem_eff", row)
        return eff is not None and eff > settings.quality_threshold
    if settings.selection == "samurai":
        iou, obj, kf = _value(entry, "mem_iou", row), _value(entry, "mem_obj", row), _value(entry, "mem_kf", row)
        if iou is None or obj is None:
            return False
        return (iou > settings.samurai_iou_threshold and obj > settings.samurai_obj_threshold
                and (kf is None or math.isnan(kf) or kf > settings.samurai_kf_threshold))
    return True


def _behind(non_cond: dict, frame_idx: int, reverse: bool) -> List[int]:
    """Frames already tracked behind ``frame_idx``, nearest first."""
    if reverse:
        return sorted(t for t in non_cond if t > frame_idx)
    return sorted((t for t in non_cond if t < frame_idx), reverse=True)


def plan_memory(settings: MemorySpec, model, output_dict, frame_idx: int, reverse: bool, num_frames: int,
                row: int) -> MemoryPlan:
    """The frames row ``row`` attends on ``frame_idx`` (see the module doc)."""
    non_cond = output_dict["non_cond_frame_outputs"]
    sign = 1 if reverse else -1
    nearest = frame_idx + sign
    num_mem = model.num_maskmem - 1
    max_ptrs = min(num_frames, model.max_obj_ptrs_in_encoder)  # SAM2's pointer range
    scan = max_ptrs if settings.selection == "quality" else model.max_obj_ptrs_in_encoder
    anchors: Tuple[int, ...] = ()
    if settings.selection in ("quality", "samurai"):
        valid: List[int] = []  # nearest first
        limit = horizon(model)
        for t in _behind(non_cond, frame_idx, reverse):
            if abs(t - frame_idx) > limit:
                break
            if _has_features(non_cond[t]) and passes_gate(settings, non_cond[t], row):
                valid.append(t)
            if len(valid) >= scan - 1:
                break
        if nearest not in valid and _has_features(non_cond.get(nearest)):
            valid.insert(0, nearest)
        spatial = valid[:num_mem]
        if settings.selection == "quality":  # pointers follow the selection, ranked
            pointers = valid[: max_ptrs - 1]
        else:
            pointers = None
    else:  # dam4sam: RAM (ranked, temporal encodings) + DRM anchors (no temporal order)
        prev = non_cond.get(nearest) or output_dict["cond_frame_outputs"].get(nearest)
        ram = [] if prev is None or prev.get("dam_ram") is None else \
            [int(t) for t in prev["dam_ram"][row] if int(t) != _NONE]
        drm = [] if prev is None or prev.get("dam_drm") is None else \
            [int(t) for t in prev["dam_drm"][row] if int(t) != _NONE]
        if _has_features(non_cond.get(nearest)) and (_value(non_cond[nearest], "mem_area", row) or 0) >= 1:
            ram.append(nearest)
        ram = sorted({t for t in ram if _has_features(non_cond.get(t))}, key=lambda t: abs(frame_idx - t))
        spatial = ram[: settings.ram_size]
        anchors = tuple(sorted(t for t in set(drm) if _has_features(non_cond.get(t)) and t not in spatial))
        pointers = None
    slots = []
    for k in range(1, max(max_ptrs, num_mem + 1)):
        feat = spatial[k - 1] if k <= len(spatial) else None
        if pointers is not None:
            ptr = pointers[k - 1] if k <= len(pointers) else None
        else:  # SAM2's pointers: the real frame k back
            t = frame_idx + k if reverse else frame_idx - k
            ptr = t if k < max_ptrs and 0 <= t < num_frames and t in non_cond else None
        if feat is not None and ptr is None:
            ptr = feat  # SAM2 reads a pointer from every memory slot it fills
        slots.append((feat, ptr))
    while slots and slots[-1] == (None, None):
        slots.pop()
    return MemoryPlan(tuple(slots), anchors)


def pinned_frames(settings: MemorySpec, out: dict, frame_idx: int) -> set:
    """Frames a rule may attend next however old: DAM4SAM's RAM/DRM buffers as of
    ``frame_idx`` and its neighbours (what tracking on, or prompting, the next frames reads)."""
    if settings.selection != "dam4sam":
        return set()
    pinned = set()
    for t in (frame_idx - 1, frame_idx, frame_idx + 1):
        entry = out["non_cond_frame_outputs"].get(t) or out["cond_frame_outputs"].get(t)
        for key in ("dam_ram", "dam_drm"):
            if entry is not None and entry.get(key) is not None:
                pinned.update(int(x) for x in entry[key].flatten() if int(x) != _NONE)
    return pinned


def keep_for_selection(settings: MemorySpec, model, entry: dict, behind: int) -> bool:
    """Whether eviction must keep this entry's memory features (a gate rule may select it)."""
    if settings.selection not in ("quality", "samurai") or behind > horizon(model):
        return False
    batch = entry["obj_ptr"].shape[0]
    return any(passes_gate(settings, entry, r) for r in range(batch))
