"""Who may see and do what with labs, revisions and reviews: every access rule in one place.

The rule: a page a user may not use answers 404, never 403. The id of someone else's revision reveals nothing,
so a missing object and a forbidden one raise the same `Http404`; config/errors.py turns it into the HTML page
or, under /api/, the JSON answer.

Two kinds of functions live here:

- predicates (`is_*`, `can_*`): one condition per line, keyword-only, returning a bool; each condition is tested
  in tests/labs/test_permissions.py;
- access functions (`access_*`, after Zulip's `access_stream_by_id`): fetch an object and authorise the user in
  one call, returning the object or raising `Http404`. Views call these instead of fetching and checking apart.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import Http404

from courses.models import Course, Enrollment
from labs.models import Lab, LabWork, Regrade, Revision

User = AbstractBaseUser | AnonymousUser

REVIEW_ROLES = (Enrollment.Role.REVIEWER, Enrollment.Role.INSTRUCTOR)
REVIEWABLE_STATES = (Revision.State.GRADED, Revision.State.FAILED)


# --- predicates --------------------------------------------------------------------------------------------------


def is_site_staff(*, user: User) -> bool:
    """Django's staff and superusers."""
    if not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    return bool(user.is_superuser)


def is_course_staff(*, user: User, course: Course) -> bool:
    """Site staff, or a reviewer or instructor of the course: they see every revision of the course in full."""
    if not user.is_authenticated:
        return False
    if is_site_staff(user=user):
        return True
    return Enrollment.objects.filter(user=user, course=course, role__in=REVIEW_ROLES).exists()


def is_course_instructor(*, user: User, course: Course) -> bool:
    """Site staff, or an instructor of the course: who runs a lab (reveals hidden checks, grades again)."""
    if not user.is_authenticated:
        return False
    if is_site_staff(user=user):
        return True
    return Enrollment.objects.filter(user=user, course=course, role=Enrollment.Role.INSTRUCTOR).exists()


def can_view_revision(*, user: User, revision: Revision) -> bool:
    """The revision page, its live status and the API: its author, the course's staff (see is_course_staff)."""
    if not user.is_authenticated:
        return False
    if not user.is_active:
        return False
    if revision.user_id == user.pk:
        return True
    return is_course_staff(user=user, course=revision.lab.course)


def can_review(*, user: User, revision: Revision) -> bool:
    """The course's staff (see is_course_staff); never the revision's own author."""
    if not user.is_authenticated:
        return False
    if revision.user_id == user.pk:
        return False
    return is_course_staff(user=user, course=revision.lab.course)


def can_use_review_queue(*, user: User) -> bool:
    """Site staff, or anyone who reviews or teaches at least one course."""
    if not user.is_authenticated:
        return False
    if is_site_staff(user=user):
        return True
    return Enrollment.objects.filter(user=user, role__in=REVIEW_ROLES).exists()


def can_read_reviews(*, user: User, revision: Revision) -> bool:
    """The learner who submitted the revision, and everyone who may review it: whoever may see the revision."""
    return can_view_revision(user=user, revision=revision)


def is_reviewable(*, revision: Revision) -> bool:
    """Grading has finished, so the reviewer has the grader's evidence to read (a failed run is evidence too), and
    it is a learner's work, not a lab self-test's example nor a regrade preview's copy."""
    if not revision.is_learner_work:
        return False
    return revision.state in REVIEWABLE_STATES


# --- access: fetch and authorise in one call; missing and forbidden alike raise Http404 ------------------------------


def access_lab_by_slugs(*, course_slug: str, lab_slug: str) -> Lab:
    """The lab (with its course and unit). Labs are public to read, like lessons: only a missing one is 404."""
    lab = Lab.objects.select_related("course", "unit__course").filter(course__slug=course_slug, slug=lab_slug).first()
    if lab is None:
        raise Http404("No such lab.")
    return lab


def access_revision_by_id(*, revision_id: int, user: User) -> Revision:
    """The revision (with its lab, course and author) if `user` may view it: the revision page, its live status
    fragment and the API."""
    if not user.is_authenticated:
        raise Http404("No such revision.")
    revision = Revision.objects.select_related("lab", "lab__course", "user").filter(pk=revision_id).first()
    if revision is None:
        raise Http404("No such revision.")
    if not can_view_revision(user=user, revision=revision):
        raise Http404("No such revision.")
    return revision


def access_revision_for_review_by_id(*, revision_id: int, user: User) -> Revision:
    """The revision (with its lab, course, unit and author) if `user` may review it: the review page."""
    if not user.is_authenticated:
        raise Http404("No such revision.")
    revision = Revision.objects.select_related("lab", "lab__course", "lab__unit", "user").filter(pk=revision_id).first()
    if revision is None:
        raise Http404("No such revision.")
    if not can_review(user=user, revision=revision):
        raise Http404("No such revision.")
    return revision


def access_lab_for_instructor_by_slugs(*, course_slug: str, lab_slug: str, user: User) -> Lab:
    """The lab if `user` runs it (is_course_instructor); 404 otherwise, as for a missing lab."""
    lab = access_lab_by_slugs(course_slug=course_slug, lab_slug=lab_slug)
    if not is_course_instructor(user=user, course=lab.course):
        raise Http404("No such lab.")
    return lab


def access_revision_for_instructor_by_id(*, revision_id: int, user: User) -> Revision:
    """The revision if `user` runs its lab; 404 otherwise (missing and forbidden alike)."""
    revision = access_revision_by_id(revision_id=revision_id, user=user)
    if not is_course_instructor(user=user, course=revision.lab.course):
        raise Http404("No such revision.")
    return revision


def access_review_queue(*, user: User) -> None:
    """Returns quietly if `user` may use the review queue (see can_use_review_queue); raises Http404 otherwise."""
    if not can_use_review_queue(user=user):
        raise Http404("No such page.")


def access_course_for_review_by_slug(*, course_slug: str, user: User) -> Course:
    """The course if `user` reviews or teaches it (is_course_staff): its review queue. 404 otherwise."""
    course = Course.objects.filter(slug=course_slug).first()
    if course is None:
        raise Http404("No such course.")
    if not is_course_staff(user=user, course=course):
        raise Http404("No such course.")
    return course


def access_course_for_instructor_by_slug(*, course_slug: str, user: User) -> Course:
    """The course if `user` teaches it (is_course_instructor): gradebook, analytics, overrides. 404 otherwise."""
    course = Course.objects.filter(slug=course_slug).first()
    if course is None:
        raise Http404("No such course.")
    if not is_course_instructor(user=user, course=course):
        raise Http404("No such course.")
    return course


def _work_by_id(work_id: int) -> LabWork | None:
    return (
        LabWork.objects.select_related("lab", "lab__course", "lab__unit", "user", "revision", "claimed_by")
        .filter(pk=work_id)
        .first()
    )


def access_work_by_id(*, work_id: int, user: User) -> LabWork:
    """A learner's work on a lab (its timeline) for the learner and the course's staff. 404 otherwise."""
    if not user.is_authenticated:
        raise Http404("No such work.")
    work = _work_by_id(work_id)
    if work is None:
        raise Http404("No such work.")
    if not can_view_revision(user=user, revision=work.revision):
        raise Http404("No such work.")
    return work


def access_work_for_review_by_id(*, work_id: int, user: User) -> LabWork:
    """The work if `user` may review it (can_review: course staff, never the author): claim and release."""
    if not user.is_authenticated:
        raise Http404("No such work.")
    work = _work_by_id(work_id)
    if work is None:
        raise Http404("No such work.")
    if not can_review(user=user, revision=work.revision):
        raise Http404("No such work.")
    return work


def access_work_for_instructor_by_id(*, work_id: int, user: User) -> LabWork:
    """The work if `user` teaches its course: grade overrides."""
    work = access_work_by_id(work_id=work_id, user=user)
    if not is_course_instructor(user=user, course=work.lab.course):
        raise Http404("No such work.")
    return work


def access_revision_pair_by_ids(*, old_id: int, new_id: int, user: User) -> tuple[Revision, Revision]:
    """Two revisions to diff: both visible to `user`, of the same learner on the same lab. 404 otherwise."""
    old = access_revision_by_id(revision_id=old_id, user=user)
    new = access_revision_by_id(revision_id=new_id, user=user)
    if old.lab_id != new.lab_id:
        raise Http404("No such revision.")
    if old.user_id != new.user_id:
        raise Http404("No such revision.")
    return old, new


def access_regrade_by_id(*, regrade_id: int, user: User) -> Regrade:
    """A regrade (preview, history) for the instructors of its lab's course. 404 otherwise."""
    if not user.is_authenticated:
        raise Http404("No such regrade.")
    regrade = Regrade.objects.select_related("lab", "lab__course", "requested_by").filter(pk=regrade_id).first()
    if regrade is None:
        raise Http404("No such regrade.")
    if not is_course_instructor(user=user, course=regrade.lab.course):
        raise Http404("No such regrade.")
    return regrade
