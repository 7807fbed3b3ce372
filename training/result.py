"""What ``train(cfg)`` returns: the validation metric, a float that carries the run summary."""

from __future__ import annotations

import math


class TrainResult(float):
    """The run's best validation mean Dice, as a ``float``; NaN when no validation ran
    (``trainer.val_every=0``, no ``data.val``) or every validation was NaN.

    It is a float, so sweepers and ``math`` take it as is; it also carries the
    :class:`training.trainer.TrainSummary` as ``.summary``, and attribute access falls
    through to it (``result.state.step``, ``result.model``, ``result.run_dir``), so code
    written for the summary keeps working. Pickling keeps only the number.
    """

    __slots__ = ("summary",)

    def __new__(cls, summary) -> "TrainResult":
        state = summary.state
        value = float(state.best_dice) if state.best_epoch >= 0 else math.nan
        result = super().__new__(cls, value)
        result.summary = summary
        return result

    def __getattr__(self, name: str):
        if name == "summary":  # not set yet (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.summary, name)

    def __reduce__(self):
        return float, (float(self),)

    def __repr__(self) -> str:
        return f"TrainResult({float(self)!r}, run_dir={str(self.summary.run_dir)!r})"
