"""Who may review what. Small named checks, one condition per line, each tested.

A page a user may not use answers 404, never 403: the id of someone else's revision reveals nothing.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from courses.models import Course, Enrollment
from labs.models import Revision

User = AbstractBaseUser | AnonymousUser

REVIEW_ROLES = (Enrollment.Role.REVIEWER, Enrollment.Role.INSTRUCTOR)
REVIEWABLE_STATES = (Revision.State.GRADED, Revision.State.FAILED)


def is_site_staff(*, user: User) -> bool:
    if not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    return bool(user.is_superuser)


def is_course_reviewer(*, user: User, course: Course) -> bool:
    """A reviewer or an instructor of the course (site staff are handled separately)."""
    if not user.is_authenticated:
        return False
    return Enrollment.objects.filter(user=user, course=course, role__in=REVIEW_ROLES).exists()


def can_review(*, user: User, revision: Revision) -> bool:
    """Staff, or a reviewer or instructor of the revision's course; never the revision's own author."""
    if not user.is_authenticated:
        return False
    if revision.user_id == user.pk:
        return False
    if is_site_staff(user=user):
        return True
    return is_course_reviewer(user=user, course=revision.lab.course)


def can_view_revision(*, user: User, revision: Revision) -> bool:
    """The revision page, its live status and the API: its author, the course's reviewers, staff."""
    if not user.is_authenticated:
        return False
    if not user.is_active:
        return False
    if revision.user_id == user.pk:
        return True
    if is_site_staff(user=user):
        return True
    return is_course_reviewer(user=user, course=revision.lab.course)


def can_use_review_queue(*, user: User) -> bool:
    """Staff, or anyone who reviews or teaches at least one course."""
    if not user.is_authenticated:
        return False
    if is_site_staff(user=user):
        return True
    return Enrollment.objects.filter(user=user, role__in=REVIEW_ROLES).exists()


def can_read_reviews(*, user: User, revision: Revision) -> bool:
    """The learner who submitted the revision, and everyone who may review it: whoever may see the revision."""
    return can_view_revision(user=user, revision=revision)


def is_reviewable(*, revision: Revision) -> bool:
    """Grading has finished, so the reviewer has the grader's evidence to read (a failed run is evidence too)."""
    return revision.state in REVIEWABLE_STATES
