"""Per-module time of tracking, from forward hooks (CPU: wall clock; CUDA: events).

    with ModuleTimes(predictor) as times:
        ...track N frames...
    times.per_frame_ms(N)   # {"image_encoder": 480.1, "memory_attention": ..., ...}

Hooks run only inside the block; a separate profiled run is used, so timed runs carry no
hook overhead. Nested calls of the same module (none in SAM2) would be counted twice.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Dict

import torch

MODULES = ("image_encoder", "memory_attention", "sam_mask_decoder", "sam_prompt_encoder", "memory_encoder")


class ModuleTimes:
    def __init__(self, model, modules=MODULES):
        self.model = model
        self.modules = [m for m in modules if hasattr(model, m)]
        self.cuda = torch.device(model.device).type == "cuda"
        self._handles, self._open, self._events = [], {}, defaultdict(list)
        self.seconds: Dict[str, float] = defaultdict(float)
        self.calls: Dict[str, int] = defaultdict(int)

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _pre(self, name):
        def hook(module, args):
            self._open[name] = self._now()
        return hook

    def _post(self, name):
        def hook(module, args, output):
            start, end = self._open.pop(name), self._now()
            self.calls[name] += 1
            if self.cuda:
                self._events[name].append((start, end))
            else:
                self.seconds[name] += end - start
        return hook

    def __enter__(self) -> "ModuleTimes":
        for name in self.modules:
            module = getattr(self.model, name)
            self._handles += [module.register_forward_pre_hook(self._pre(name)),
                              module.register_forward_hook(self._post(name))]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        if self.cuda:
            torch.cuda.synchronize()
            for name, pairs in self._events.items():
                self.seconds[name] += sum(s.elapsed_time(e) for s, e in pairs) / 1000.0
            self._events.clear()

    def per_frame_ms(self, frames: int, total_seconds: float) -> Dict[str, float]:
        """Milliseconds per frame per module, plus ``other`` (the rest of the frame time)."""
        out = {name: round(1000 * self.seconds.get(name, 0.0) / frames, 1) for name in self.modules}
        out["other"] = round(1000 * total_seconds / frames - sum(out.values()), 1)
        return out
