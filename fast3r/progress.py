"""One progress display for a whole run: the stage, its progress and its ETA, on one line.

    [2/5] images + encoder  340/1000 views  12.1 s elapsed, ETA 23 s
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from tqdm import tqdm


@dataclass
class RunProgress:
    """Stages shown one after another on a single tqdm line (nothing when disabled).

    stages: the names, in order, so the display says "[i/n]". `timings` collects each stage's seconds.
    """

    stages: tuple[str, ...]
    enabled: bool = True
    timings: dict[str, float] = field(default_factory=dict)
    _bar: tqdm | None = None
    _stage: str | None = None
    _started: float = 0.0

    def start(self, stage: str, total: int | None = None, unit: str = "step") -> None:
        """End the current stage (recording its time) and show `stage` with `total` units of work."""
        self.finish()
        self._stage, self._started = stage, time.perf_counter()
        if not self.enabled:
            return
        position = self.stages.index(stage) + 1 if stage in self.stages else len(self.stages)
        description = f"[{position}/{len(self.stages)}] {stage}"
        if self._bar is None:
            self._bar = tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True, leave=False)
        else:
            self._bar.set_description(description, refresh=False)
            self._bar.unit = unit
            self._bar.total = total  # reset(total=None) would keep the last stage's total
            self._bar.reset(total=total)  # redraws with the new description

    @property
    def stage(self) -> str | None:
        """The stage shown now (None between stages)."""
        return self._stage

    def advance(self, count: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def finish(self) -> None:
        """Record the current stage's time."""
        if self._stage is not None:
            self.timings[self._stage] = self.timings.get(self._stage, 0.0) + time.perf_counter() - self._started
            self._stage = None

    def close(self) -> None:
        self.finish()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
