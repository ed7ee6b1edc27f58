"""Regrades with a preview (HackSoft services): a lab's current grader run again over every learner's newest
revision, shown as a preview that changes nothing, then applied or discarded by an instructor.

A preview copies each learner's newest graded (or failed) revision into a shadow revision (`Revision.regrade`,
`Revision.regrade_of`) owned by the system account `shipshape-regrade`, like a lab self-test. The copies are
graded by the normal workers on the Celery queue `regrades` (labs.tasks.revision_send), which the workers take in
turn with the learners' queue, so learners' gradings keep flowing during a big preview. Copies are never a
learner's work: the loop ignores them, and they change no grade and no revision state. A learner revision still
queued, running or in error is not copied; the report lists it as skipped.

Override or regrade: **an instructor's override wins.** Applying a regrade replaces the results, score and
autograde of the learner's revision and recomputes the loop's final grade underneath, all shown on the timeline
(a `regraded` event), but `LabWork.override_grade` stays and is still the grade that counts until an instructor
removes it.

Every Regrade is kept, whatever its end (applied, discarded, cancelled): the lab's regrade history.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from labs.errors import LearnerError
from labs.grading import state as grading_state
from labs.models import GradingRun, Lab, LabWork, Regrade, Revision
from labs.regrades.report import regrade_report_build
from labs.regrades.selectors import regrade_progress
from labs.reviews import loop
from labs.services.grading import revision_enqueue

REGRADE_USERNAME = "shipshape-regrade"
S = Revision.State
R = Regrade.Status
PREVIEWED_STATES = (S.GRADED, S.FAILED)


class RegradeRefused(LearnerError):
    """The regrade cannot do that in its current state (or the lab's); the message says why."""

    http_status = 409


def regrade_user():
    """The system account preview copies belong to (and the default actor of `manage.py regrade`): inactive,
    no usable password, so nobody logs in as it."""
    user, created = get_user_model().objects.get_or_create(
        username=REGRADE_USERNAME, defaults={"is_active": False, "first_name": "Regrade"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def regrade_preview_start(*, lab: Lab, by: AbstractBaseUser) -> Regrade:
    """Copy every learner's newest finished revision of `lab` and queue the copies on the `regrades` queue.
    One running preview per lab at a time."""
    system = regrade_user()
    with transaction.atomic():
        Lab.objects.select_for_update().filter(pk=lab.pk).first()  # serialises two starts of one lab
        running = Regrade.objects.filter(lab=lab, status=R.RUNNING).first()
        if running is not None:
            progress = regrade_progress(regrade=running)
            raise RegradeRefused(
                f"Preview {running.pk} of this lab is still running ({progress.finished} of {progress.total} "
                "graded).",
                "Wait until it is ready, or cancel it, before starting another.",
            )
        works = LabWork.objects.filter(lab=lab).select_related("revision", "user").order_by("user__username")
        to_copy: list[Revision] = []
        skipped = []
        for work in works:
            revision = work.revision
            if revision.state in PREVIEWED_STATES:
                to_copy.append(revision)
                continue
            reason = "grading needs attention (our side)" if revision.state == S.ERROR else "still being graded"
            skipped.append(
                {
                    "user_id": work.user_id,
                    "username": work.user.get_username(),
                    "revision_id": revision.pk,
                    "revision_number": revision.number,
                    "state": revision.state,
                    "reason": reason,
                }
            )
        if not to_copy:
            raise RegradeRefused(
                "No learner has a graded revision of this lab: there is nothing to regrade.",
                "Start a preview once learners' revisions are graded.",
            )
        regrade = Regrade.objects.create(
            lab=lab, requested_by=by, grader_digest=lab.grader_digest, total=len(to_copy), report={"skipped": skipped}
        )
        number = Revision.objects.filter(lab=lab, user=system).aggregate(n=Max("number"))["n"] or 0
        now = timezone.now()
        for original in to_copy:
            number += 1
            shadow = Revision.objects.create(
                lab=lab,
                user=system,
                number=number,
                tree_sha256=original.tree_sha256,
                files=original.files,
                total_bytes=original.total_bytes,
                queued_at=now,
                is_late=original.is_late,
                regrade=regrade,
                regrade_of=original,
            )
            revision_enqueue(revision=shadow)
    return regrade


def regrade_cancel(*, regrade: Regrade, by: AbstractBaseUser) -> Regrade:
    """Stop a running preview. Copies not yet claimed by a worker are never graded (labs.grading.state's claim
    refuses a cancelled preview's copies, and their queued messages then do nothing); copies being graded
    finish, unused. The report keeps what was graded so far."""
    with transaction.atomic():
        regrade = _locked(regrade)
        if regrade.status != R.RUNNING:
            raise _refusal(regrade, action="cancel")
        now = timezone.now()
        report = {**regrade.report, **regrade_report_build(regrade=regrade)}
        Regrade.objects.filter(pk=regrade.pk).update(
            status=R.CANCELLED,
            report=report,
            changed=len(report["learners"]),
            finished_at=now,
            decided_at=now,
            decided_by=by,
        )
    regrade.refresh_from_db()
    return regrade


def regrade_apply(*, regrade: Regrade, by: AbstractBaseUser) -> Regrade:
    """Apply a ready preview, once: for each learner whose results change and whose revision is still the one
    previewed (and not graded again since), the copy's newest run becomes a new attempt of the learner's
    revision, with its verdict and score (labs.grading.state.revision_results_replace), and the loop refreshes
    the work's autograde and final grade and records a `regraded` event (labs.reviews.loop.work_regraded).
    Learners who submitted since the preview are skipped and listed in the report (`apply_skipped`).

    An instructor's override wins over a regrade: `override_grade` is left as it is, while the autograde and
    the loop's final grade underneath change, visible on the timeline."""
    with transaction.atomic():
        regrade = _locked(regrade)
        if regrade.status != R.READY:
            raise _refusal(regrade, action="apply")
        if regrade.lab.grader_digest != regrade.grader_digest:
            raise RegradeRefused(
                "The lab's grader changed again since this preview ran: its results are not the current grader's.",
                "Discard this preview and start a new one.",
            )
        applied, skipped = [], []
        for entry in regrade.report.get("learners", []):
            done, reason = _apply_one(regrade=regrade, entry=entry, by=by)
            who = {key: entry[key] for key in ("user_id", "username", "revision_id", "revision_number")}
            if done:
                applied.append(who)
            else:
                skipped.append({**who, "reason": reason})
        now = timezone.now()
        report = {**regrade.report, "applied": applied, "apply_skipped": skipped}
        Regrade.objects.filter(pk=regrade.pk).update(status=R.APPLIED, report=report, decided_at=now, decided_by=by)
    regrade.refresh_from_db()
    return regrade


def _apply_one(*, regrade: Regrade, entry: dict, by: AbstractBaseUser) -> tuple[bool, str]:
    revision = Revision.objects.select_related("lab").filter(pk=entry["revision_id"], lab=regrade.lab).first()
    shadow = Revision.objects.filter(pk=entry["shadow_id"], regrade=regrade).first()
    if revision is None or shadow is None:
        return False, "the revision no longer exists"
    work = LabWork.objects.select_for_update().filter(lab=regrade.lab, user_id=revision.user_id).first()
    if work is None or work.revision_id != revision.pk:
        newer = work.revision.number if work is not None else "?"
        return False, f"submitted revision {newer} since the preview"
    latest = GradingRun.objects.filter(revision=revision).order_by("-attempt").values_list("pk", flat=True).first()
    if latest != entry.get("old_run_id") or revision.state not in PREVIEWED_STATES:
        return False, "the revision was graded again since the preview"
    before = {
        "number": revision.number,
        "state": revision.state,
        "score": float(revision.score) if revision.score is not None else None,
        "max_score": float(revision.max_score) if revision.max_score is not None else None,
    }
    grading_state.revision_results_replace(revision=revision, source=shadow)
    loop.work_regraded(work=work, revision=revision, by=by, regrade_id=regrade.pk, before=before)
    return True, ""


def regrade_discard(*, regrade: Regrade, by: AbstractBaseUser) -> Regrade:
    """Drop a ready preview: nothing changes for anyone; the preview stays in the history."""
    with transaction.atomic():
        regrade = _locked(regrade)
        if regrade.status != R.READY:
            raise _refusal(regrade, action="discard")
        Regrade.objects.filter(pk=regrade.pk).update(status=R.DISCARDED, decided_at=timezone.now(), decided_by=by)
    regrade.refresh_from_db()
    return regrade


def _locked(regrade: Regrade) -> Regrade:
    return Regrade.objects.select_for_update(of=("self",)).select_related("lab", "lab__course").get(pk=regrade.pk)


def _refusal(regrade: Regrade, *, action: str) -> RegradeRefused:
    """Why `action` (apply, discard, cancel) is not possible in the regrade's state."""
    decided = ""
    if regrade.decided_at is not None:
        who = regrade.decided_by.get_username() if regrade.decided_by else "someone"
        decided = f" on {timezone.localtime(regrade.decided_at):%Y-%m-%d %H:%M} by {who}"
    if regrade.status == R.RUNNING:
        progress = regrade_progress(regrade=regrade)
        return RegradeRefused(
            f"Preview {regrade.pk} is still running ({progress.finished} of {progress.total} graded); "
            f"it cannot be {_past(action)} yet.",
            "Wait until it is ready, or cancel it.",
        )
    if regrade.status == R.READY:
        return RegradeRefused(f"Preview {regrade.pk} is ready: there is nothing to cancel.", "Apply or discard it.")
    label = {R.APPLIED: "applied", R.DISCARDED: "discarded", R.CANCELLED: "cancelled"}[regrade.status]
    return RegradeRefused(
        f"Preview {regrade.pk} was already {label}{decided}; it cannot be {_past(action)}.",
        "Start a new preview to regrade again.",
    )


def _past(action: str) -> str:
    return {"apply": "applied", "discard": "discarded", "cancel": "cancelled"}[action]
