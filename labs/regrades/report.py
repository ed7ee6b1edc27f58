"""A regrade preview's report: every copy's new results against its learner revision's current ones, check by
check, and the step that makes a preview `ready` once its last copy finished.

labs.grading.state calls `regrade_finish_if_done` when a copy finishes or is parked (after its transaction
commits), so this module must not import anything that queues work (the queue imports labs.grading.state).
The pages and `manage.py regrade --wait` call it too: it is idempotent, and catches up if that call was lost.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db.models import Q
from django.utils import timezone

from labs.models import CheckResult, GradingRun, Regrade, Revision

S = Revision.State
UNFINISHED = (S.QUEUED, S.RUNNING)
MISSING = "missing"  # a check one of the two runs does not have (the changed grader added or removed it)


def regrade_finish_if_done(*, regrade_id: int) -> bool:
    """running -> ready once no copy is queued or running, with the report; True if this call made it ready."""
    regrade = Regrade.objects.select_related("lab").filter(pk=regrade_id, status=Regrade.Status.RUNNING).first()
    if regrade is None or regrade.shadow_revisions.filter(state__in=UNFINISHED).exists():
        return False
    report = {**regrade.report, **regrade_report_build(regrade=regrade)}
    updated = Regrade.objects.filter(pk=regrade.pk, status=Regrade.Status.RUNNING).update(
        status=Regrade.Status.READY, report=report, changed=len(report["learners"]), finished_at=timezone.now()
    )
    return bool(updated)


def regrade_report_build(*, regrade: Regrade) -> dict[str, Any]:
    """Per learner whose results would change: old and new state and score, and each check whose status or
    points changed. Copies that failed on our side are listed under `errors` and never count as a change;
    copies not graded (a cancelled preview) under `not_graded`. Hidden checks are included and marked: the
    report is for the course's instructors only."""
    shadows = list(
        regrade.shadow_revisions.select_related("regrade_of", "regrade_of__user").order_by(
            "regrade_of__user__username", "pk"
        )
    )
    runs, results = _latest_runs_and_results(regrade)
    learners: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    not_graded: list[dict[str, Any]] = []
    unchanged = 0
    for shadow in shadows:
        original = shadow.regrade_of
        if original is None:  # the learner's revision was deleted meanwhile
            continue
        who = {
            "user_id": original.user_id,
            "username": original.user.get_username(),
            "revision_id": original.pk,
            "revision_number": original.number,
            "shadow_id": shadow.pk,
        }
        if shadow.state == S.ERROR:
            run = runs.get(shadow.pk)
            errors.append({**who, "detail": (run.error_detail if run else "")[:500]})
            continue
        if shadow.state in UNFINISHED:
            not_graded.append(who)
            continue
        old_run, new_run = runs.get(original.pk), runs.get(shadow.pk)
        checks = _check_changes(
            results.get(old_run.pk, {}) if old_run else {}, results.get(new_run.pk, {}) if new_run else {}
        )
        old, new = _verdict(original), _verdict(shadow)
        if not checks and old == new:
            unchanged += 1
            continue
        learners.append(
            {**who, "old_run_id": old_run.pk if old_run else None, "old": old, "new": new, "checks": checks}
        )
    return {
        "learners": learners,
        "errors": errors,
        "not_graded": not_graded,
        "unchanged": unchanged,
        "graders_mixed": regrade.lab.grader_digest != regrade.grader_digest,
    }


def _latest_runs_and_results(regrade: Regrade) -> tuple[dict[int, GradingRun], dict[int, dict[str, CheckResult]]]:
    """The newest run (the attempt that counts) of every copy and of every learner revision copied, and those
    runs' results by check id. Subqueries rather than id lists: a big course has thousands of revisions."""
    revisions = Revision.objects.filter(Q(regrade=regrade) | Q(regrade_copies__regrade=regrade)).values("pk")
    latest: dict[int, GradingRun] = {}
    for run in GradingRun.objects.filter(revision__in=revisions).defer("log", "hidden_log").order_by("attempt"):
        latest[run.revision_id] = run
    wanted = {run.pk for run in latest.values()}
    by_run: dict[int, dict[str, CheckResult]] = defaultdict(dict)
    results = CheckResult.objects.filter(run__revision__in=revisions).defer("message", "hint", "evidence")
    for result in results.order_by("run_id", "position"):
        if result.run_id in wanted:
            by_run[result.run_id][result.check_id] = result
    return latest, by_run


def _check_changes(old: dict[str, CheckResult], new: dict[str, CheckResult]) -> list[dict[str, Any]]:
    order = [*new, *(check_id for check_id in old if check_id not in new)]
    changes = []
    for check_id in order:
        before, after = old.get(check_id), new.get(check_id)
        old_status = before.status if before else MISSING
        new_status = after.status if after else MISSING
        old_points = _number(before.points) if before else None
        new_points = _number(after.points) if after else None
        if old_status == new_status and old_points == new_points:
            continue
        shown = after or before
        changes.append(
            {
                "check_id": check_id,
                "hidden": bool(shown.hidden_until_due),
                "old_status": old_status,
                "new_status": new_status,
                "old_points": old_points,
                "new_points": new_points,
                "max_points": _number(shown.max_points),
            }
        )
    return changes


def _verdict(revision: Revision) -> dict[str, Any]:
    return {
        "state": revision.state,
        "score": _number(revision.score),
        "max_score": _number(revision.max_score),
        "failure_reason": revision.failure_reason,
    }


def _number(value: Decimal | float | None) -> float | None:
    return None if value is None else round(float(value), 2)
