"""The predicted IoU of each object's mask, which sam2's mask decoder computes and its video
predictor then drops. A forward hook on the decoder hands it to whoever is recording in
the current thread (the annotator's prompt and tracking calls)."""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, List, Optional

import torch

_local = threading.local()


def _record(module, args, output) -> None:
    calls = getattr(_local, "calls", None)
    if calls is not None:  # the chosen mask is the best-scored one when several are made
        calls.append(output[1].detach().float().amax(dim=1).cpu())


def watch_decoder(predictor) -> None:
    """Install the hook once per predictor (it does nothing unless someone records)."""
    decoder = predictor.sam_mask_decoder
    if not getattr(decoder, "_iou_hook_installed", False):
        decoder.register_forward_hook(_record)
        decoder._iou_hook_installed = True


@contextlib.contextmanager
def recording() -> Iterator[List[torch.Tensor]]:
    """Collect ``[num_objects]`` IoU predictions of the decoder calls made in this thread."""
    _local.calls = calls = []
    try:
        yield calls
    finally:
        _local.calls = None


def take_last(calls: List[torch.Tensor], obj_ids) -> Optional[dict]:
    """IoU per object id of the frame just produced, and clear; None if the decoder did not
    run (a prompted frame). sam2 1.1.0 decodes the objects one by one, in ``obj_ids`` order;
    a batched decoder call ``[num_objects]`` is read as well."""
    n = len(obj_ids)
    if calls and calls[-1].numel() == n:
        values = calls[-1]
    elif len(calls) >= n and all(c.numel() == 1 for c in calls[-n:]):
        values = torch.cat([c.reshape(1) for c in calls[-n:]])
    else:
        values = None
    calls.clear()
    return None if values is None or n == 0 else {int(o): float(v) for o, v in zip(obj_ids, values)}
