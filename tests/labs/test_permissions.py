"""labs.permissions: one test per condition of each predicate, and per access function.

Personas: the learner who wrote the revision, another learner of the course, a reviewer and an instructor of the
course, a reviewer of another course, site staff, a superuser, an inactive learner and an anonymous visitor.
A page a user may not use answers 404, never 403: the access functions raise Http404 for missing and forbidden
alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import Http404

from courses.models import Course, Enrollment
from labs import permissions
from labs.models import Lab, Revision
from labs.permissions import (
    access_lab_by_slugs,
    access_review_queue,
    access_revision_by_id,
    access_revision_for_review_by_id,
    can_read_reviews,
    can_review,
    can_use_review_queue,
    can_view_revision,
    is_course_staff,
    is_reviewable,
    is_site_staff,
)

from .factories import enroll, make_course, make_lab, make_user

pytestmark = pytest.mark.django_db

MISSING_ID = 999_999


def make_revision(*, lab: Lab, user, state: str = Revision.State.GRADED) -> Revision:
    number = Revision.objects.filter(lab=lab, user=user).count() + 1
    return Revision.objects.create(
        lab=lab, user=user, number=number, state=state, tree_sha256="a" * 64, files=[], total_bytes=0
    )


@dataclass
class World:
    course: Course
    other_course: Course
    lab: Lab
    revision: Revision  # the learner's
    learner: object
    other_learner: object
    reviewer: object
    instructor: object
    foreign_reviewer: object
    staff: object
    superuser: object
    inactive: object
    anonymous: AnonymousUser

    def revision_of(self, user, *, state: str = Revision.State.GRADED) -> Revision:
        return make_revision(lab=self.lab, user=user, state=state)


@pytest.fixture
def world() -> World:
    course = make_course("shipping")
    other_course = make_course("elsewhere")
    lab = make_lab(course=course, slug="quote-service")
    learner = make_user("learner")
    enroll(learner, course)
    other_learner = make_user("other-learner")
    enroll(other_learner, course)
    reviewer = make_user("reviewer")
    enroll(reviewer, course, Enrollment.Role.REVIEWER)
    instructor = make_user("instructor")
    enroll(instructor, course, Enrollment.Role.INSTRUCTOR)
    foreign_reviewer = make_user("foreign-reviewer")
    enroll(foreign_reviewer, other_course, Enrollment.Role.REVIEWER)
    inactive = make_user("inactive", is_active=False)
    enroll(inactive, course)
    return World(
        course=course,
        other_course=other_course,
        lab=lab,
        revision=make_revision(lab=lab, user=learner),
        learner=learner,
        other_learner=other_learner,
        reviewer=reviewer,
        instructor=instructor,
        foreign_reviewer=foreign_reviewer,
        staff=make_user("staff", is_staff=True),
        superuser=make_user("root", is_superuser=True),
        inactive=inactive,
        anonymous=AnonymousUser(),
    )


def test_the_module_states_the_404_rule():
    assert "a page a user may not use answers 404, never 403" in permissions.__doc__.lower()


# --- is_site_staff -----------------------------------------------------------------------------------------------


def test_an_anonymous_visitor_is_not_site_staff(world):
    assert is_site_staff(user=world.anonymous) is False


def test_a_staff_user_is_site_staff(world):
    assert is_site_staff(user=world.staff) is True


def test_a_superuser_is_site_staff(world):
    assert is_site_staff(user=world.superuser) is True


@pytest.mark.parametrize("persona", ["learner", "reviewer", "instructor"])
def test_course_roles_do_not_make_site_staff(world, persona):
    assert is_site_staff(user=getattr(world, persona)) is False


# --- is_course_staff ---------------------------------------------------------------------------------------------


def test_an_anonymous_visitor_is_not_course_staff(world, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert is_course_staff(user=world.anonymous, course=world.course) is False


@pytest.mark.parametrize("persona", ["staff", "superuser"])
def test_site_staff_are_staff_of_every_course_without_an_enrollment(world, persona):
    assert is_course_staff(user=getattr(world, persona), course=world.course) is True
    assert is_course_staff(user=getattr(world, persona), course=world.other_course) is True


@pytest.mark.parametrize("persona", ["reviewer", "instructor"])
def test_the_courses_reviewers_and_instructors_are_its_staff(world, persona):
    assert is_course_staff(user=getattr(world, persona), course=world.course) is True


@pytest.mark.parametrize("persona", ["learner", "other_learner"])
def test_a_learner_is_not_course_staff(world, persona):
    assert is_course_staff(user=getattr(world, persona), course=world.course) is False


def test_a_reviewer_of_another_course_is_not_staff_of_this_one(world):
    assert is_course_staff(user=world.foreign_reviewer, course=world.course) is False
    assert is_course_staff(user=world.foreign_reviewer, course=world.other_course) is True


# --- can_view_revision -------------------------------------------------------------------------------------------


def test_an_anonymous_visitor_cannot_view_a_revision(world):
    assert can_view_revision(user=world.anonymous, revision=world.revision) is False


def test_an_inactive_user_cannot_view_even_their_own_revision(world):
    own = world.revision_of(world.inactive)
    assert can_view_revision(user=world.inactive, revision=own) is False


def test_the_author_views_their_own_revision(world):
    assert can_view_revision(user=world.learner, revision=world.revision) is True


@pytest.mark.parametrize("persona", ["reviewer", "instructor", "staff", "superuser"])
def test_the_courses_staff_view_a_learners_revision(world, persona):
    assert can_view_revision(user=getattr(world, persona), revision=world.revision) is True


def test_it_hides_another_learners_revision(world):
    assert can_view_revision(user=world.other_learner, revision=world.revision) is False


def test_it_hides_a_revision_from_a_reviewer_of_another_course(world):
    assert can_view_revision(user=world.foreign_reviewer, revision=world.revision) is False


# --- can_review --------------------------------------------------------------------------------------------------


def test_an_anonymous_visitor_cannot_review(world):
    assert can_review(user=world.anonymous, revision=world.revision) is False


@pytest.mark.parametrize("persona", ["reviewer", "staff"])
def test_nobody_reviews_their_own_revision(world, persona):
    user = getattr(world, persona)
    assert can_review(user=user, revision=world.revision_of(user)) is False


def test_the_author_cannot_review_their_own_revision(world):
    assert can_review(user=world.learner, revision=world.revision) is False


@pytest.mark.parametrize("persona", ["staff", "superuser"])
def test_site_staff_review_any_courses_revision(world, persona):
    assert can_review(user=getattr(world, persona), revision=world.revision) is True


@pytest.mark.parametrize("persona", ["reviewer", "instructor"])
def test_the_courses_reviewers_and_instructors_review_its_revisions(world, persona):
    assert can_review(user=getattr(world, persona), revision=world.revision) is True


def test_another_learner_cannot_review(world):
    assert can_review(user=world.other_learner, revision=world.revision) is False


def test_a_reviewer_of_another_course_cannot_review_this_courses_revisions(world):
    assert can_review(user=world.foreign_reviewer, revision=world.revision) is False


# --- can_use_review_queue ----------------------------------------------------------------------------------------


def test_an_anonymous_visitor_has_no_review_queue(world):
    assert can_use_review_queue(user=world.anonymous) is False


@pytest.mark.parametrize("persona", ["staff", "superuser"])
def test_site_staff_use_the_review_queue_without_an_enrollment(world, persona):
    assert can_use_review_queue(user=getattr(world, persona)) is True


@pytest.mark.parametrize("persona", ["reviewer", "instructor", "foreign_reviewer"])
def test_whoever_reviews_or_teaches_some_course_uses_the_review_queue(world, persona):
    assert can_use_review_queue(user=getattr(world, persona)) is True


def test_a_learner_has_no_review_queue(world):
    assert can_use_review_queue(user=world.learner) is False


# --- can_read_reviews --------------------------------------------------------------------------------------------


def test_the_author_reads_the_reviews_of_their_revision(world):
    assert can_read_reviews(user=world.learner, revision=world.revision) is True


@pytest.mark.parametrize("persona", ["reviewer", "instructor", "staff"])
def test_whoever_may_review_reads_the_reviews(world, persona):
    assert can_read_reviews(user=getattr(world, persona), revision=world.revision) is True


@pytest.mark.parametrize("persona", ["other_learner", "foreign_reviewer", "anonymous"])
def test_it_hides_the_reviews_from_whoever_may_not_view_the_revision(world, persona):
    assert can_read_reviews(user=getattr(world, persona), revision=world.revision) is False


def test_an_inactive_author_cannot_read_the_reviews(world):
    assert can_read_reviews(user=world.inactive, revision=world.revision_of(world.inactive)) is False


# --- is_reviewable -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [Revision.State.GRADED, Revision.State.FAILED])
def test_a_finished_revision_is_reviewable(world, state):
    assert is_reviewable(revision=world.revision_of(world.learner, state=state)) is True


@pytest.mark.parametrize("state", [Revision.State.QUEUED, Revision.State.RUNNING, Revision.State.ERROR])
def test_a_revision_still_being_graded_is_not_reviewable(world, state):
    assert is_reviewable(revision=world.revision_of(world.learner, state=state)) is False


# --- access_lab_by_slugs -----------------------------------------------------------------------------------------


def test_it_returns_the_lab_with_its_course_and_unit(world, django_assert_num_queries):
    lab = access_lab_by_slugs(course_slug="shipping", lab_slug="quote-service")
    assert lab == world.lab
    with django_assert_num_queries(0):
        assert (lab.course.slug, lab.unit.slug) == ("shipping", "week-01")


def test_a_missing_lab_is_404(world):
    with pytest.raises(Http404):
        access_lab_by_slugs(course_slug="shipping", lab_slug="nope")


def test_a_lab_under_another_courses_slug_is_404(world):
    with pytest.raises(Http404):
        access_lab_by_slugs(course_slug="elsewhere", lab_slug="quote-service")


# --- access_revision_by_id ---------------------------------------------------------------------------------------


def test_the_author_gets_their_revision_with_its_lab_course_and_author(world, django_assert_num_queries):
    revision = access_revision_by_id(revision_id=world.revision.pk, user=world.learner)
    assert revision == world.revision
    with django_assert_num_queries(0):
        assert (revision.lab.course.slug, revision.user.username) == ("shipping", "learner")


@pytest.mark.parametrize("persona", ["reviewer", "instructor", "staff"])
def test_the_courses_staff_get_a_learners_revision(world, persona):
    assert access_revision_by_id(revision_id=world.revision.pk, user=getattr(world, persona)) == world.revision


def test_an_anonymous_visitor_gets_404_without_a_query(world, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(Http404):
        access_revision_by_id(revision_id=world.revision.pk, user=world.anonymous)


@pytest.mark.parametrize("persona", ["other_learner", "foreign_reviewer"])
def test_it_answers_404_for_another_learners_revision(world, persona):
    with pytest.raises(Http404):
        access_revision_by_id(revision_id=world.revision.pk, user=getattr(world, persona))


def test_an_inactive_author_gets_404_for_their_own_revision(world):
    own = world.revision_of(world.inactive)
    with pytest.raises(Http404):
        access_revision_by_id(revision_id=own.pk, user=world.inactive)


def test_an_outsider_gets_404_for_a_missing_and_a_forbidden_revision_alike(world):
    with pytest.raises(Http404) as missing:
        access_revision_by_id(revision_id=MISSING_ID, user=world.other_learner)
    with pytest.raises(Http404) as forbidden:
        access_revision_by_id(revision_id=world.revision.pk, user=world.other_learner)
    assert str(missing.value) == str(forbidden.value)


def test_a_missing_revision_is_404_for_staff_too(world):
    with pytest.raises(Http404):
        access_revision_by_id(revision_id=MISSING_ID, user=world.staff)


# --- access_revision_for_review_by_id ----------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["reviewer", "instructor", "staff"])
def test_a_reviewer_gets_the_revision_with_its_lab_course_unit_and_author(world, persona, django_assert_num_queries):
    revision = access_revision_for_review_by_id(revision_id=world.revision.pk, user=getattr(world, persona))
    assert revision == world.revision
    with django_assert_num_queries(0):
        assert (revision.lab.course.slug, revision.lab.unit.slug, revision.user.username) == (
            "shipping",
            "week-01",
            "learner",
        )


def test_the_author_gets_404_on_the_review_of_their_own_revision(world):
    with pytest.raises(Http404):
        access_revision_for_review_by_id(revision_id=world.revision.pk, user=world.learner)


@pytest.mark.parametrize("persona", ["other_learner", "foreign_reviewer"])
def test_whoever_may_not_review_gets_404(world, persona):
    with pytest.raises(Http404):
        access_revision_for_review_by_id(revision_id=world.revision.pk, user=getattr(world, persona))


def test_an_anonymous_visitor_gets_404_on_a_review_without_a_query(world, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(Http404):
        access_revision_for_review_by_id(revision_id=world.revision.pk, user=world.anonymous)


def test_a_reviewer_gets_404_for_a_missing_and_a_forbidden_review_alike(world):
    own = world.revision_of(world.reviewer)
    with pytest.raises(Http404) as missing:
        access_revision_for_review_by_id(revision_id=MISSING_ID, user=world.reviewer)
    with pytest.raises(Http404) as forbidden:
        access_revision_for_review_by_id(revision_id=own.pk, user=world.reviewer)
    assert str(missing.value) == str(forbidden.value)


# --- access_review_queue -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["reviewer", "instructor", "foreign_reviewer", "staff"])
def test_reviewers_pass_into_the_review_queue(world, persona):
    assert access_review_queue(user=getattr(world, persona)) is None


@pytest.mark.parametrize("persona", ["learner", "anonymous"])
def test_everyone_else_gets_404_for_the_review_queue(world, persona):
    with pytest.raises(Http404):
        access_review_queue(user=getattr(world, persona))
