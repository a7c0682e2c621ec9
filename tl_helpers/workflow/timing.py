"""One timer for the "where the time went" table at the end of each chapter.

    clock = tl.timing.Stopwatch()
    with clock("phase 1: head"):
        ...
    clock.table()            # seconds per stage, a DataFrame to display

The clock is injectable, so tests need no real waiting.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable


class Stopwatch(dict):
    """Seconds per named stage of a run, in the order the stages first ran (a dict).

    A stage timed twice adds up. Used by chapters 2, 3, 4 and 5.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        super().__init__()
        self.clock = clock

    @contextmanager
    def __call__(self, stage: str):
        """Time the block under `stage` (also when it raises)."""
        started = self.clock()
        try:
            yield self
        finally:
            self.add(stage, self.clock() - started)

    def add(self, stage: str, seconds: float) -> None:
        """Add seconds measured elsewhere (a training loop's own timing, say)."""
        self[stage] = self.get(stage, 0.0) + float(seconds)

    def rounded(self, digits: int = 1) -> dict[str, float]:
        """The stages rounded, for the run card."""
        return {stage: round(seconds, digits) for stage, seconds in self.items()}

    def table(self, sort: bool = False):
        """Seconds per stage as a one-column DataFrame (largest first when `sort`), with the total."""
        import pandas as pd

        spent = pd.Series(dict(self), name="seconds", dtype=float)
        if sort:
            spent = spent.sort_values(ascending=False)
        return pd.concat([spent, pd.Series({"total of these": spent.sum()}, name="seconds")]).round(1).to_frame()
