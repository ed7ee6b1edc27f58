"""What a finished grading run adds to the platform's metrics (declared in config.metrics).

The orchestrator calls `grading_run_observe` once a run has ended; it reads the run back from the database (its
outcome, phase stamps, resources and check results), so what is counted is what was stored. Metrics never stop a
grading: a failure here is logged and swallowed.
"""

from __future__ import annotations

import itertools
import logging

from config import metrics
from labs.models import CheckResult, GradingRun

logger = logging.getLogger(__name__)


def grading_run_observe(*, run: GradingRun) -> None:
    """Count one ended run: its outcome, the time between each pair of phase stamps, peak memory, check results."""
    try:
        _observe(GradingRun.objects.get(pk=run.pk))
    except Exception:
        logger.exception("recording the metrics of grading run %s failed", run.pk)


def _observe(run: GradingRun) -> None:
    if run.outcome == GradingRun.Outcome.RUNNING:
        return
    metrics.GRADINGS.labels(outcome=run.outcome).inc()
    stamps = [(phase.value, getattr(run, field)) for phase, field in GradingRun.STAMPED_PHASES]
    for (phase, began), (_, ended) in itertools.pairwise(stamps):
        if began is not None and ended is not None and ended >= began:
            metrics.GRADING_PHASE_SECONDS.labels(phase=phase).observe((ended - began).total_seconds())
    peak = (run.resources or {}).get("peak_memory_bytes")
    if isinstance(peak, int | float) and not isinstance(peak, bool) and peak >= 0:
        metrics.SANDBOX_PEAK_MEMORY_BYTES.observe(peak)
    for kind, status in CheckResult.objects.filter(run=run).values_list("kind", "status"):
        metrics.CHECK_RESULTS.labels(kind=kind, status=status).inc()
