"""The training bar shows the budget that will end the run (both trainers use it)."""

import io

from training.progress import BudgetBar


def _shown(bar: BudgetBar, out: io.StringIO) -> str:
    bar.bar.refresh()
    return out.getvalue().split("\r")[-1]


def test_a_time_budgeted_run_shows_its_minutes_not_its_step_budget():
    out = io.StringIO()
    bar = BudgetBar(1_000_000, 40, 0, 0.0, "train detector", file=out)
    bar.update(100, 10.0)  # 10 steps/s: a million steps would take 28 h, the 40 minutes end it
    line = _shown(bar, out)
    assert "ends at the 40-min time budget" in line and "10/2400" in line and "step 100/1,000,000" in line, line
    assert "1000000" not in line


def test_the_bar_switches_to_steps_when_the_steps_end_the_run_first():
    out = io.StringIO()
    bar = BudgetBar(500, 40, 0, 0.0, "train", file=out)
    bar.update(100, 10.0)  # 10 steps/s: 500 steps end after 50 s, long before 40 minutes
    line = _shown(bar, out)
    assert "ends at 500 steps" in line and "100/500" in line, line


def test_a_resumed_run_starts_its_bar_where_it_stopped():
    out = io.StringIO()
    line = _shown(BudgetBar(1_000_000, 10, 3000, 300.0, "train", file=out), out)
    assert "300/600" in line, line
    out = io.StringIO()
    line = _shown(BudgetBar(6000, None, 3000, 300.0, "train", file=out), out)
    assert "3000/6000" in line and "ends at 6,000 steps" in line, line
