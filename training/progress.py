"""Training progress bars that tell the truth about what ends a run."""

from __future__ import annotations

from tqdm import tqdm


class BudgetBar:
    """The training bar, in the budget that will end the run: steps, or seconds of a time budget when that
    comes first (a 40-minute run of "1,000,000 steps" shows its 40 minutes, not 166 hours), and it says which
    budget ends it."""

    def __init__(self, steps: int, max_minutes: float | None, step: int, elapsed: float, desc: str,
                 disable: bool = False, file=None):
        self.steps, self.budget_s = int(steps), (60.0 * max_minutes if max_minutes else None)
        self.start_step, self.start_s, self.desc = step, elapsed, desc
        self.by_time = self.budget_s is not None
        total, initial, unit = ((round(self.budget_s), min(round(elapsed), round(self.budget_s)), "s")
                                if self.by_time else (self.steps, step, "step"))
        self.bar = tqdm(total=total, initial=initial, unit=unit, desc=self._desc(), disable=disable,
                        mininterval=5, file=file)

    def _desc(self) -> str:
        if self.by_time:
            return f"{self.desc} (ends at the {self.budget_s / 60:g}-min time budget)"
        return f"{self.desc} (ends at {self.steps:,} steps)"

    def update(self, step: int, elapsed: float) -> None:
        if self.budget_s is not None and step - self.start_step >= 20:
            rate = (step - self.start_step) / max(1e-6, elapsed - self.start_s)
            by_time = (self.steps - step) / rate > self.budget_s - elapsed
            if by_time != self.by_time:  # the other budget will end the run: show that one
                self.by_time = by_time
                self.bar.reset(total=round(self.budget_s) if by_time else self.steps)
                self.bar.unit = "s" if by_time else "step"
                self.bar.set_description(self._desc(), refresh=False)
                self.bar.set_postfix_str("", refresh=False)
        self.bar.n = min(round(elapsed), self.bar.total) if self.by_time else step
        if self.by_time:
            self.bar.set_postfix_str(f"step {step:,}/{self.steps:,}", refresh=False)
        self.bar.update(0)

    def set_postfix(self, **kw) -> None:
        if not self.by_time:
            self.bar.set_postfix(**kw, refresh=False)

    def close(self) -> None:
        self.bar.close()
