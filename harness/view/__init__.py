"""A run as rows: what gates and reports read (neither re-reads records itself).

    rows.py     Row, MetricSummary, EnergySummary, Call: one decoder at one comparison size
    run.py      load_run → RunView: every row of a run, with its cases, notes and judge verdicts
    budget.py   time_budget → TimeBudget: where each invocation's wall time went
"""

from harness.view.budget import TimeBudget, time_budget
from harness.view.rows import (
    ENERGY_KINDS,
    HEADLINE_MEMORY,
    MEMORY_KINDS,
    Call,
    EnergySummary,
    MetricSummary,
    Row,
    ci95_half,
    format_bytes,
)
from harness.view.run import RunView, load_run, registry_direction, registry_metric

__all__ = ["ENERGY_KINDS", "HEADLINE_MEMORY", "MEMORY_KINDS", "Call", "EnergySummary", "MetricSummary", "Row",
           "RunView", "TimeBudget", "ci95_half", "format_bytes", "load_run", "registry_direction",
           "registry_metric", "time_budget"]
