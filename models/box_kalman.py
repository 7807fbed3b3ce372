"""A constant-velocity Kalman filter on boxes, and mask boxes: SAMURAI's motion model.

SAMURAI (yangchris11/samurai, ``sam2/sam2/modeling/sam2_base.py``) tracks the target box
with the filter SORT-style trackers use: state ``(cx, cy, a, h)`` (centre, aspect ratio
w/h, height) plus their velocities, noise scaled by the box height (1/20 for positions,
1/160 for velocities). Its motion score of a mask is the IoU between the filter's
predicted box and the mask's box. Written here from that description; NumPy, float64,
one object per call (the callers loop over objects).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160
_MOTION = np.eye(8) + np.eye(8, k=4)  # x_{t+1} = x_t + v_t
_OBSERVE = np.eye(4, 8)


def xyxy_to_xyah(box) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    return np.array([x1 + w / 2, y1 + h / 2, w / h, h])


def xyah_to_xyxy(xyah) -> np.ndarray:
    cx, cy, a, h = (float(v) for v in xyah[:4])
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``xyxy`` box with each of ``boxes`` ``[M, 4]`` (0 where the union is 0)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def mask_boxes(masks: torch.Tensor) -> np.ndarray:
    """``xyxy`` pixel boxes (inclusive extremes, as SAMURAI takes them) of bool masks
    ``[..., H, W]``; ``[0, 0, 0, 0]`` for an empty mask. Returns ``[..., 4]`` float64."""
    lead = masks.shape[:-2]
    flat = masks.reshape(-1, *masks.shape[-2:])
    rows, cols = flat.any(dim=2), flat.any(dim=1)  # [N, H], [N, W]
    h, w = flat.shape[-2:]
    ar_h = torch.arange(h, device=flat.device)
    ar_w = torch.arange(w, device=flat.device)
    big = max(h, w) + 1
    y1 = torch.where(rows, ar_h, big).min(dim=1).values
    y2 = torch.where(rows, ar_h, -1).max(dim=1).values
    x1 = torch.where(cols, ar_w, big).min(dim=1).values
    x2 = torch.where(cols, ar_w, -1).max(dim=1).values
    boxes = torch.stack([x1, y1, x2, y2], dim=1).cpu().double().numpy()
    boxes[~rows.any(dim=1).cpu().numpy()] = 0.0
    return boxes.reshape(*lead, 4)


def is_empty_box(box) -> bool:
    return not (box[2] > box[0] and box[3] > box[1])


class BoxKalmanFilter:
    """``initiate`` / ``predict`` / ``update`` on ``(mean [8], covariance [8, 8])``."""

    @staticmethod
    def initiate(xyah: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        h = xyah[3]
        std = [2 * STD_POSITION * h, 2 * STD_POSITION * h, 1e-2, 2 * STD_POSITION * h,
               10 * STD_VELOCITY * h, 10 * STD_VELOCITY * h, 1e-5, 10 * STD_VELOCITY * h]
        return np.concatenate([xyah, np.zeros(4)]), np.diag(np.square(std))

    @staticmethod
    def predict(mean: np.ndarray, cov: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        std = [STD_POSITION * h, STD_POSITION * h, 1e-2, STD_POSITION * h,
               STD_VELOCITY * h, STD_VELOCITY * h, 1e-5, STD_VELOCITY * h]
        return _MOTION @ mean, _MOTION @ cov @ _MOTION.T + np.diag(np.square(std))

    @staticmethod
    def update(mean: np.ndarray, cov: np.ndarray, xyah: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        h = mean[3]
        noise = np.diag(np.square([STD_POSITION * h, STD_POSITION * h, 1e-1, STD_POSITION * h]))
        projected_cov = _OBSERVE @ cov @ _OBSERVE.T + noise
        gain = np.linalg.solve(projected_cov, (cov @ _OBSERVE.T).T).T  # cov H^T S^-1 (S symmetric)
        mean = mean + gain @ (xyah - _OBSERVE @ mean)
        return mean, cov - gain @ projected_cov @ gain.T

    @staticmethod
    def predicted_box(mean: Optional[np.ndarray]) -> Optional[np.ndarray]:
        return None if mean is None else xyah_to_xyxy(mean[:4])
