"""The review loop: every change of a learner's work on a lab (`LabWork`) goes through `work_transition`, which
checks the move against `ALLOWED`, makes it only if nobody moved the work meanwhile, and records a `WorkEvent`
(who, when, why) for the timeline.

    submitted -> autograded                      review.required: false (final: the autograde)
              -> below_threshold                 autograde under review.min_autograde: resubmit
              -> awaiting_review -> in_review -> changes_requested -> (a new revision) submitted -> ...
                                             -> approved            (final: autograde and rubric combined)

Claims: one reviewer at a time holds `in_review` until they decide, release it, or the claim expires
(settings.REVIEW_CLAIM_MINUTES); an expired claim may be taken by anyone, and `work_claims_expire` (beat) puts
it back in the queue. Grades are percentages; see `final_grade_compute` for the formula.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from labs.errors import LearnerError
from labs.models import LabWork, Review, Revision, WorkEvent
from labs.reviews.rubric import ReviewSpec, review_spec_for_lab

logger = logging.getLogger(__name__)

W = LabWork.State
K = WorkEvent.Kind

ALLOWED: dict[str, set[str]] = {
    W.SUBMITTED: {W.SUBMITTED, W.AUTOGRADED, W.BELOW_THRESHOLD, W.AWAITING_REVIEW},
    W.AUTOGRADED: {W.SUBMITTED},
    W.BELOW_THRESHOLD: {W.SUBMITTED, W.AWAITING_REVIEW},
    W.AWAITING_REVIEW: {W.SUBMITTED, W.IN_REVIEW, W.BELOW_THRESHOLD},
    W.IN_REVIEW: {W.SUBMITTED, W.AWAITING_REVIEW, W.IN_REVIEW, W.CHANGES_REQUESTED, W.APPROVED},
    W.CHANGES_REQUESTED: {W.SUBMITTED},
    W.APPROVED: set(),  # the end of the loop: no more revisions (revision_policy_check refuses them)
}
HUNDRED = Decimal(100)
CENT = Decimal("0.01")


class WorkStateRefused(LearnerError):
    """A reviewer or learner asked for a move the loop does not allow now; the message says why."""

    http_status = 409


# --- the one writer ------------------------------------------------------------------------------------------------


def work_transition(
    *,
    work: LabWork,
    to_state: str,
    kind: str,
    actor: AbstractBaseUser | None = None,
    revision: Revision | None = None,
    reason: str = "",
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> WorkEvent:
    """Move `work` to `to_state` (setting `fields`) and record the event. Raises WorkStateRefused when the move
    is not allowed from the work's state, or when someone else moved the work since it was read."""
    from_state = work.state
    if to_state not in ALLOWED[from_state]:
        raise WorkStateRefused(
            f"This work is {W(from_state).label.lower()}; it cannot become {W(to_state).label.lower()}.",
            "Reload the page to see where it stands now.",
        )
    updated = LabWork.objects.filter(pk=work.pk, state=from_state).update(
        state=to_state, updated_at=timezone.now(), **fields
    )
    if not updated:
        raise WorkStateRefused("Someone else changed this work a moment ago.", "Reload the page and try again.")
    work.refresh_from_db()
    return work_event_record(
        work=work, kind=kind, actor=actor, revision=revision, reason=reason, data=data, from_state=from_state
    )


def work_event_record(
    *,
    work: LabWork,
    kind: str,
    actor: AbstractBaseUser | None = None,
    revision: Revision | None = None,
    reason: str = "",
    data: dict[str, Any] | None = None,
    from_state: str | None = None,
) -> WorkEvent:
    """A timeline entry; state changes come through work_transition, which calls this."""
    event = WorkEvent.objects.create(
        work=work,
        kind=K(kind),
        actor=actor if actor is not None and actor.is_authenticated else None,
        revision=revision,
        from_state=work.state if from_state is None else from_state,
        to_state=work.state,
        reason=reason[:5000],
        data=data or {},
    )
    logger.info(
        "work event",
        extra={"work_id": work.pk, "kind": kind, "from_state": event.from_state, "to_state": event.to_state},
    )
    return event


# --- grades --------------------------------------------------------------------------------------------------------


def percent(points: Decimal | float | None, maximum: Decimal | float | None) -> Decimal | None:
    """points / maximum as a percentage rounded to 0.01; None when there is nothing to grade."""
    if points is None or maximum is None:
        return None
    maximum = Decimal(str(maximum))
    if maximum <= 0:
        return None
    return (Decimal(str(points)) * HUNDRED / maximum).quantize(CENT, rounding=ROUND_HALF_UP)


def final_grade_compute(
    *, spec: ReviewSpec, state: str, autograde: Decimal | None, rubric: Decimal | None
) -> Decimal | None:
    """The loop's grade (an override, kept apart, wins over it):

    - review.required false: the autograde, once graded;
    - approved: (1 - review.weight) x autograde + review.weight x rubric;
    - review.required optional, not approved: the autograde (a review may still raise or lower it);
    - otherwise none yet: the work is still waiting for its review.
    """
    if autograde is None:
        return None
    if spec.mode == "off":
        return autograde if state == W.AUTOGRADED else None
    if state == W.APPROVED and rubric is not None:
        grade = (1 - spec.weight) * autograde + spec.weight * rubric
        return grade.quantize(CENT, rounding=ROUND_HALF_UP)
    if spec.mode == "optional" and state != W.SUBMITTED:
        return autograde
    return None


def work_grades_refresh(*, work: LabWork) -> None:
    """Recompute the final grade from the work's stored autograde and rubric (after any change to them)."""
    spec = review_spec_for_lab(work.lab)
    grade = final_grade_compute(spec=spec, state=work.state, autograde=work.autograde, rubric=work.rubric)
    if grade != work.final_grade:
        LabWork.objects.filter(pk=work.pk).update(final_grade=grade)
        work.final_grade = grade


# --- learners' revisions -----------------------------------------------------------------------------------------


def work_for(*, revision: Revision, lock: bool = False) -> LabWork | None:
    query = LabWork.objects.select_related("lab", "lab__course", "user")
    if lock:
        query = query.select_for_update(of=("self",))
    return query.filter(lab_id=revision.lab_id, user_id=revision.user_id).first()


def work_revision_submitted(*, revision: Revision) -> LabWork | None:
    """A learner stored a new revision (inside revision_submit's transaction): the loop starts again from
    `submitted`, and any reviewer's claim on the older revision is dropped."""
    if not revision.is_learner_work:
        return None
    work = work_for(revision=revision, lock=True)
    if work is None:
        work = LabWork.objects.create(
            lab=revision.lab, user=revision.user, revision=revision, revision_count=1, is_late=revision.is_late
        )
        work_event_record(work=work, kind=K.SUBMITTED, actor=revision.user, revision=revision, from_state="")
        return work
    reason = ""
    if work.state == W.IN_REVIEW:
        reason = "A newer revision arrived; the reviewer's claim on the older one was dropped."
    work_transition(
        work=work,
        to_state=W.SUBMITTED,
        kind=K.SUBMITTED,
        actor=revision.user,
        revision=revision,
        reason=reason,
        revision_id=revision.pk,
        revision_count=work.revision_count + 1,
        is_late=work.is_late or revision.is_late,
        claimed_by=None,
        claimed_at=None,
        claim_expires_at=None,
        waiting_since=None,
    )
    return work


def work_revision_graded(*, revision: Revision, notify: bool = True) -> LabWork | None:
    """Grading of `revision` finished (graded or failed, inside revision_finish's transaction). A failed
    revision's checks scored what they scored; it goes through the same gate as a graded one."""
    if not revision.is_learner_work:
        return None
    work = work_for(revision=revision, lock=True)
    if work is None:
        # Stored before the loop existed (or by a tool that skipped revision_submit): start its work now.
        work = work_revision_submitted(revision=revision)
    if work.revision_id != revision.pk:
        # An older revision, finished after a newer one was submitted: the timeline notes it, the loop moves on.
        work_event_record(work=work, kind=K.AUTOGRADED, revision=revision, data=_score_data(revision))
        return work
    spec = review_spec_for_lab(work.lab)
    autograde = percent(revision.score, revision.max_score)
    if autograde is None:
        autograde = Decimal(0)
    if not spec.reviewed:
        to_state, reason = W.AUTOGRADED, ""
    elif (visible := visible_autograde(revision=revision, fallback=autograde)) < spec.min_autograde:
        to_state = W.BELOW_THRESHOLD
        reason = (
            f"The visible checks scored {visible}%, under the {spec.min_autograde}% this lab needs before review: "
            "fix the failing checks and submit again."
        )
    else:
        to_state, reason = W.AWAITING_REVIEW, ""
    work_transition(
        work=work,
        to_state=to_state,
        kind=K.AUTOGRADED if to_state == W.AUTOGRADED else K(to_state),
        revision=revision,
        reason=reason,
        data=_score_data(revision),
        autograde=autograde,
        waiting_since=timezone.now() if to_state == W.AWAITING_REVIEW else None,
    )
    work_grades_refresh(work=work)
    if notify:
        _notify(
            work=work,
            kind="grading_finished",
            title=f"{work.lab.title}: revision {revision.number} graded" + _percent_if_public(work, autograde),
            url=reverse("revision_detail", args=[revision.pk]),
            body=reason,
        )
    return work


def visible_autograde(*, revision: Revision, fallback: Decimal) -> Decimal:
    """The percentage the revision's visible checks scored: the review threshold is measured on what the learner
    can see and fix, so being held back never tells them anything about hidden checks. `fallback` (the whole
    autograde) when the revision has no stored results."""
    from django.db.models import Sum

    from labs.models import CheckResult, GradingRun

    run = GradingRun.objects.filter(revision=revision).order_by("-attempt").first()
    if run is None:
        return fallback
    totals = CheckResult.objects.filter(run=run, hidden_until_due=False).aggregate(
        points=Sum("points"), maximum=Sum("max_points")
    )
    visible = percent(totals["points"], totals["maximum"])
    return fallback if visible is None else visible


def _percent_if_public(work: LabWork, autograde: Decimal) -> str:
    """ ", 80%" unless the lab has hidden checks learners cannot see yet: the whole autograde counts them."""
    from labs.selectors import hidden_checks_public

    if work.lab.labspec.hidden_check_ids() and not hidden_checks_public(lab=work.lab):
        return ""
    return f", {autograde}%"


def work_revision_needs_attention(*, revision: Revision) -> None:
    """Grading failed on our side after every retry: noted on the timeline; the work waits for staff."""
    if not revision.is_learner_work:
        return
    work = work_for(revision=revision)
    if work is not None:
        work_event_record(
            work=work,
            kind=K.NEEDS_ATTENTION,
            revision=revision,
            reason="Grading stopped on a problem on our side; staff will grade it again. Nothing is charged.",
        )


def _score_data(revision: Revision) -> dict[str, Any]:
    return {
        "number": revision.number,
        "state": revision.state,
        "score": float(revision.score) if revision.score is not None else None,
        "max_score": float(revision.max_score) if revision.max_score is not None else None,
    }


# --- claims ----------------------------------------------------------------------------------------------------


def claim_lifetime() -> timedelta:
    return timedelta(minutes=int(settings.REVIEW_CLAIM_MINUTES))


def claim_is_live(*, work: LabWork, now: datetime | None = None) -> bool:
    if work.state != W.IN_REVIEW or work.claimed_by_id is None or work.claim_expires_at is None:
        return False
    return work.claim_expires_at > (now or timezone.now())


@transaction.atomic
def work_claim(*, work: LabWork, reviewer: AbstractBaseUser, now: datetime | None = None) -> LabWork:
    """Take `work` for review (or renew one's own claim). One reviewer at a time: the update only matches work
    that is waiting, claimed by this reviewer, or whose claim has expired, so two reviewers claiming at once
    cannot both win, on any database."""
    from labs.permissions import can_review

    now = now or timezone.now()
    if not can_review(user=reviewer, revision=work.revision):
        raise WorkStateRefused("You cannot review this work.", "Only the course's reviewers can, never their own.")
    claimable = Q(state=W.AWAITING_REVIEW) | Q(state=W.IN_REVIEW, claimed_by=reviewer)
    claimable |= Q(state=W.IN_REVIEW, claim_expires_at__lte=now)
    before = LabWork.objects.filter(pk=work.pk).values("state", "claimed_by_id").first() or {}
    expires = now + claim_lifetime()
    updated = LabWork.objects.filter(claimable, pk=work.pk).update(
        state=W.IN_REVIEW, claimed_by=reviewer, claimed_at=now, claim_expires_at=expires, updated_at=now
    )
    work.refresh_from_db()
    if not updated:
        raise _claim_refusal(work=work, now=now)
    renewed = before.get("claimed_by_id") == reviewer.pk and before.get("state") == W.IN_REVIEW
    if before.get("state") == W.IN_REVIEW and not renewed:
        work_event_record(work=work, kind=K.CLAIM_EXPIRED, revision=work.revision, from_state=W.IN_REVIEW)
    work_event_record(
        work=work,
        kind=K.CLAIMED,
        actor=reviewer,
        revision=work.revision,
        from_state=W.IN_REVIEW if renewed else W.AWAITING_REVIEW,
        data={"expires_at": expires.isoformat(), "renewed": renewed},
    )
    return work


def _claim_refusal(*, work: LabWork, now: datetime) -> WorkStateRefused:
    if claim_is_live(work=work, now=now):
        until = timezone.localtime(work.claim_expires_at).strftime("%H:%M")
        return WorkStateRefused(
            f"{work.claimed_by.get_username()} is reviewing this work (their claim lasts until {until}).",
            "Pick another item from the queue.",
        )
    return WorkStateRefused(f"This work is {W(work.state).label.lower()}, not waiting for review.", "Reload the queue.")


@transaction.atomic
def work_release(*, work: LabWork, reviewer: AbstractBaseUser, reason: str = "") -> LabWork:
    """Give the work back to the queue, keeping its place (waiting_since)."""
    work = LabWork.objects.select_for_update(of=("self",)).select_related("revision", "lab").get(pk=work.pk)
    if work.state != W.IN_REVIEW or work.claimed_by_id != reviewer.pk:
        raise WorkStateRefused("You do not hold a claim on this work.", "Nothing to release.")
    work_transition(
        work=work,
        to_state=W.AWAITING_REVIEW,
        kind=K.RELEASED,
        actor=reviewer,
        revision=work.revision,
        reason=reason,
        claimed_by=None,
        claimed_at=None,
        claim_expires_at=None,
    )
    return work


def work_claims_expire(*, now: datetime | None = None) -> int:
    """Put work whose claim expired back in the queue (beat runs this every minute)."""
    now = now or timezone.now()
    count = 0
    for work in LabWork.objects.filter(state=W.IN_REVIEW, claim_expires_at__lte=now).select_related("revision"):
        with transaction.atomic():
            updated = LabWork.objects.filter(pk=work.pk, state=W.IN_REVIEW, claim_expires_at__lte=now).update(
                state=W.AWAITING_REVIEW, claimed_by=None, claimed_at=None, claim_expires_at=None, updated_at=now
            )
            if updated:
                work.refresh_from_db()
                work_event_record(work=work, kind=K.CLAIM_EXPIRED, revision=work.revision, from_state=W.IN_REVIEW)
                count += 1
    return count


def work_for_review(*, revision: Revision) -> LabWork:
    """The work `revision` belongs to, locked, for a reviewer's decision; refused when the loop has none."""
    # of=self: PostgreSQL cannot lock the nullable side of an outer join (claimed_by), and only the work is locked.
    work = (
        LabWork.objects.select_for_update(of=("self",))
        .select_related("claimed_by", "lab")
        .filter(lab_id=revision.lab_id, user_id=revision.user_id)
        .first()
    )
    if work is None:
        raise WorkStateRefused("This revision is not waiting for review.", "Pick an item from the review queue.")
    return work


def work_claim_check(*, work: LabWork, reviewer: AbstractBaseUser, revision: Revision, now: datetime | None = None):
    """Raise unless `reviewer` holds a live claim on `work` and `revision` is the one under review."""
    now = now or timezone.now()
    if work.state != W.IN_REVIEW or work.claimed_by_id is None:
        raise WorkStateRefused(
            "Claim this work before reviewing it: nobody holds it.", "Press “Claim” on the review page."
        )
    if work.claimed_by_id != reviewer.pk:
        raise WorkStateRefused(
            f"{work.claimed_by.get_username()} holds this work; only they can decide on it.", "Pick another item."
        )
    if work.claim_expires_at is None or work.claim_expires_at <= now:
        raise WorkStateRefused(
            "Your claim on this work expired; your draft is kept.", "Claim it again, then submit the review."
        )
    if work.revision_id != revision.pk:
        raise WorkStateRefused(
            f"Revision {revision.number} is no longer the newest; the learner submitted again.",
            "Review the newest revision.",
        )


# --- decisions -----------------------------------------------------------------------------------------------------


def work_review_decide(*, work: LabWork, review: Review, reviewer: AbstractBaseUser) -> LabWork:
    """A submitted review decides the loop (inside review_submit's transaction, work locked and claim checked)."""
    spec = review_spec_for_lab(work.lab)
    rubric = percent(review.rubric_total, spec.max_total)
    to_state = W.APPROVED if review.decision == Review.Decision.APPROVE else W.CHANGES_REQUESTED
    work_transition(
        work=work,
        to_state=to_state,
        kind=K(to_state),
        actor=reviewer,
        revision=review.revision,
        reason=review.comment[:2000],
        data={"review_id": review.pk, "rubric": float(rubric) if rubric is not None else None},
        rubric=rubric,
        reviewed_revision=review.revision,
        claimed_by=None,
        claimed_at=None,
        claim_expires_at=None,
        waiting_since=None,
    )
    work_grades_refresh(work=work)
    verdict = "approved" if to_state == W.APPROVED else "changes requested"
    _notify(
        work=work,
        kind="approved" if to_state == W.APPROVED else "changes_requested",
        title=f"{work.lab.title}: review posted, {verdict}",
        url=reverse("revision_detail", args=[review.revision_id]) + "#reviews",
        body=review.comment[:1000],
    )
    return work


# --- instructors ---------------------------------------------------------------------------------------------------

MAX_OVERRIDE_REASON = 2000


@transaction.atomic
def work_grade_override(*, work: LabWork, grade: Decimal | None, reason: str, by: AbstractBaseUser) -> LabWork:
    """Set (or, with grade None, remove) an instructor's grade for `work`. It wins over the loop's grade and
    over later regrades; every override is kept in GradeOverride and on the timeline."""
    from labs.models import GradeOverride

    reason = (reason or "").strip()
    problems = []
    if not reason:
        problems.append("Give a reason: the learner and other staff read it on the timeline.")
    elif len(reason) > MAX_OVERRIDE_REASON:
        problems.append(f"Keep the reason under {MAX_OVERRIDE_REASON} characters.")
    if grade is not None and not (Decimal(0) <= grade <= HUNDRED):
        problems.append(f"The grade is a percentage from 0 to 100, got {grade}.")
    if grade is not None and grade.as_tuple().exponent < -2:
        problems.append("Use at most two decimal places.")
    if problems:
        raise LearnerError("The override was not saved.", "Fix what is listed and save again.", problems=problems)
    work = LabWork.objects.select_for_update(of=("self",)).select_related("lab", "revision").get(pk=work.pk)
    previous = work.override_grade
    GradeOverride.objects.create(work=work, grade=grade, previous_grade=previous, reason=reason, by=by)
    LabWork.objects.filter(pk=work.pk).update(override_grade=grade, updated_at=timezone.now())
    work.override_grade = grade
    work_event_record(
        work=work,
        kind=K.OVERRIDDEN if grade is not None else K.OVERRIDE_REMOVED,
        actor=by,
        revision=work.revision,
        reason=reason,
        data={"grade": float(grade) if grade is not None else None, "previous": _float(previous)},
    )
    return work


def work_regraded(
    *, work: LabWork, revision: Revision, by: AbstractBaseUser, regrade_id: int, before: dict[str, Any]
) -> LabWork:
    """A regrade replaced `revision`'s results (revision already updated): refresh the autograde and the final
    grade, and let work held back by the threshold into the queue if it now passes. An override still wins."""
    work = LabWork.objects.select_for_update(of=("self",)).select_related("lab", "revision").get(pk=work.pk)
    data = {"regrade_id": regrade_id, "before": before, "after": _score_data(revision)}
    if work.revision_id != revision.pk:
        work_event_record(work=work, kind=K.REGRADED, actor=by, revision=revision, data=data)
        return work
    autograde = percent(revision.score, revision.max_score) or Decimal(0)
    LabWork.objects.filter(pk=work.pk).update(autograde=autograde)
    work.autograde = autograde
    spec = review_spec_for_lab(work.lab)
    if work.state == W.BELOW_THRESHOLD and autograde >= spec.min_autograde:
        work_transition(
            work=work,
            to_state=W.AWAITING_REVIEW,
            kind=K.REGRADED,
            actor=by,
            revision=revision,
            reason="The regrade lifted it over the review threshold.",
            data=data,
            waiting_since=timezone.now(),
        )
    else:
        work_event_record(work=work, kind=K.REGRADED, actor=by, revision=revision, data=data)
    work_grades_refresh(work=work)
    _notify(
        work=work,
        kind="grading_finished",
        title=f"{work.lab.title}: revision {revision.number} regraded, now {autograde}%",
        url=reverse("revision_detail", args=[revision.pk]),
        body="The lab's grader was corrected and your newest revision was graded again.",
    )
    return work


def _float(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


# --- notifications -------------------------------------------------------------------------------------------------


def _notify(*, work: LabWork, kind: str, title: str, url: str, body: str = "") -> None:
    from notifications.services import notification_send

    notification_send(user=work.user, kind=kind, title=title, url=url, body=body)
