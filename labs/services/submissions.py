"""Turning an upload into a queued revision: access, revision policy, validation, storage, enqueue."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from courses.models import Enrollment
from courses.services.learning import enrollment_create
from labs import storage
from labs.errors import LearnerError, SubmissionLimitReached, SubmissionNotAllowed, SubmissionTooSoon
from labs.models import Lab, LabWork, Revision
from labs.reviews.loop import work_revision_submitted
from labs.selectors import revision_next_allowed_at
from labs.uploads import UploadRules, validate_upload

logger = logging.getLogger(__name__)


def lab_submit_access_check(*, lab: Lab, user: AbstractBaseUser | AnonymousUser) -> None:
    """Who may submit: any active, logged-in user. Changes nothing: a user with no enrollment yet is enrolled
    by revision_submit, in the transaction that stores the revision, so a refused upload leaves no trace."""
    if not user.is_authenticated:
        raise SubmissionNotAllowed("You need to log in to submit.", "Log in, or use an API token with the CLI.")
    if not user.is_active:
        raise SubmissionNotAllowed("This account is disabled.", "Ask the course staff to re-enable it.")


def revision_policy_check(*, lab: Lab, user: AbstractBaseUser, now: datetime) -> bool:
    """Raise a LearnerError if the policy refuses a new revision now; return whether it would be late."""
    policy = lab.labspec.policy
    if LabWork.objects.filter(lab=lab, user=user, state=LabWork.State.APPROVED).exists():
        raise SubmissionNotAllowed(
            "Your work on this lab is approved: the review loop is finished.",
            "There is nothing more to submit. Ask the course staff if you want to improve it further.",
        )
    is_late = policy.due is not None and now > policy.due
    if is_late and policy.late == "reject":
        raise SubmissionNotAllowed(
            f"The due date ({_fmt(policy.due)}) has passed and this lab does not accept late submissions.",
            "Ask the course staff if you think you should be given an extension.",
        )
    if policy.max_revisions is not None:
        used = Revision.objects.filter(lab=lab, user=user).count()
        if used >= policy.max_revisions:
            raise SubmissionLimitReached(
                f"You have used all {used} of the {policy.max_revisions} revisions this lab allows.",
                "Your last revision's result stands. Ask the course staff if you need another attempt.",
            )
    next_at = revision_next_allowed_at(lab=lab, user=user, now=now)
    if next_at is not None:
        seconds = max(1, math.ceil((next_at - now).total_seconds()))
        raise SubmissionTooSoon(
            f"You can submit again at {_fmt(next_at)}, in {seconds} second{'s' if seconds != 1 else ''}.",
            f"This lab has a cooldown of {policy.cooldown_seconds} seconds between submissions. "
            "Use the time to run the checks locally.",
            retry_at=next_at,
            retry_in_seconds=seconds,
        )
    return is_late


def revision_submit(*, lab: Lab, user: AbstractBaseUser, upload: Any) -> Revision:
    """Validate and store an upload as the learner's next revision, queued for grading.

    `upload` is a zip (bytes or a binary file) or a list of (path, bytes | file) pairs. A refused or rejected
    upload raises LearnerError and changes nothing: no revision number, no file written, no enrollment. A first
    submission enrolls the user as a learner in the same transaction that stores the revision.
    """
    lab_submit_access_check(lab=lab, user=user)
    # Checked before the (costly) validation so a learner in cooldown gets the cooldown message.
    revision_policy_check(lab=lab, user=user, now=timezone.now())
    tree = validate_upload(upload, rules=UploadRules.for_files(lab.labspec.files))
    try:
        with transaction.atomic():
            # Enrolled inside the transaction: if anything below refuses or fails, the enrollment is rolled back
            # with the revision. The row then serialises concurrent submits of one learner in one course
            # (SQLite: the IMMEDIATE transaction already does).
            enrollment_create(user=user, course=lab.course)
            Enrollment.objects.select_for_update().filter(user=user, course=lab.course).first()
            now = timezone.now()
            is_late = revision_policy_check(lab=lab, user=user, now=now)
            number = (Revision.objects.filter(lab=lab, user=user).aggregate(n=Max("number"))["n"] or 0) + 1
            storage.tree_store(tree=tree)
            revision = Revision.objects.create(
                lab=lab,
                user=user,
                number=number,
                state=Revision.State.QUEUED,
                queued_at=now,
                tree_sha256=tree.tree_sha256,
                files=tree.manifest(),
                total_bytes=tree.total_bytes,
                is_late=is_late,
            )
            work_revision_submitted(revision=revision)
            _enqueue(revision)
    except IntegrityError:
        # Only reachable on a database without row locks; the unique constraint kept the numbers apart.
        raise LearnerError(
            "Another submission of yours was being stored at the same moment.", "Submit again in a few seconds."
        ) from None
    logger.info(
        "revision submitted",
        extra={"revision_id": revision.pk, "lab": lab.slug, "number": number, "tree_sha256": tree.tree_sha256},
    )
    return revision


def _enqueue(revision: Revision) -> None:
    # Imported here: the grading engine pulls in the sandbox stack, which the web side rarely needs.
    from labs.services.grading import revision_enqueue

    revision_enqueue(revision=revision)


def _fmt(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""
