"""The review loop's states (labs.reviews.loop): every transition, the illegal ones, claims, grades, overrides.

Revisions are created directly and finished through the loop's hooks, as revision_submit and grading call them.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from courses.models import Enrollment
from labs.errors import LearnerError, SubmissionNotAllowed
from labs.models import GradeOverride, LabWork, Review, Revision, WorkEvent
from labs.reviews import loop
from labs.reviews.rubric import parse_review
from labs.reviews.services import review_submit
from labs.services.submissions import revision_policy_check
from notifications.models import Notification

from .factories import DEFAULT_SPEC, enroll, grade_through_state, make_course, make_lab, make_user

pytestmark = pytest.mark.django_db

W = LabWork.State
RUBRIC = [{"id": "clarity", "title": "Clear code", "points": 10}]


def spec_with(**review) -> dict:
    return {**DEFAULT_SPEC, "review": {"rubric": RUBRIC, **review}}


@pytest.fixture
def people():
    course = make_course()
    learner, reviewer, other_reviewer = make_user("learner"), make_user("reviewer"), make_user("second-reviewer")
    enroll(learner, course)
    enroll(reviewer, course, Enrollment.Role.REVIEWER)
    enroll(other_reviewer, course, Enrollment.Role.REVIEWER)
    return {"course": course, "learner": learner, "reviewer": reviewer, "other_reviewer": other_reviewer}


def submit(lab, user) -> Revision:
    number = Revision.objects.filter(lab=lab, user=user).count() + 1
    revision = Revision.objects.create(lab=lab, user=user, number=number, tree_sha256="a" * 64, files=[])
    loop.work_revision_submitted(revision=revision)
    return revision


def grade(revision: Revision, points: int, maximum: int = 15, state: str = "graded") -> LabWork:
    Revision.objects.filter(pk=revision.pk).update(state=state, score=Decimal(points), max_score=Decimal(maximum))
    revision.refresh_from_db()
    return loop.work_revision_graded(revision=revision)


def work_of(revision: Revision) -> LabWork:
    return LabWork.objects.select_related("lab", "revision").get(lab=revision.lab, user=revision.user)


def decide(revision, reviewer, decision="approved", clarity=8, comment="Fine."):
    return review_submit(
        revision=revision,
        reviewer=reviewer,
        decision=decision,
        rubric_scores={"clarity": clarity},
        comment=comment,
        file_comments=[],
    )


def kinds(work: LabWork) -> list[str]:
    return list(WorkEvent.objects.filter(work=work).order_by("created_at", "pk").values_list("kind", flat=True))


# --- the happy paths -----------------------------------------------------------------------------------------------


def test_the_whole_loop_records_every_step_on_the_timeline(people):
    lab = make_lab(course=people["course"], spec=spec_with(weight=0.4))
    first = submit(lab, people["learner"])
    assert work_of(first).state == W.SUBMITTED
    grade(first, 15)
    assert work_of(first).state == W.AWAITING_REVIEW
    loop.work_claim(work=work_of(first), reviewer=people["reviewer"])
    assert work_of(first).state == W.IN_REVIEW
    decide(first, people["reviewer"], decision="changes_requested", comment="Add a health check.")
    assert work_of(first).state == W.CHANGES_REQUESTED
    second = submit(lab, people["learner"])
    grade(second, 12)
    loop.work_claim(work=work_of(second), reviewer=people["reviewer"])
    decide(second, people["reviewer"], clarity=5)
    work = work_of(second)
    assert work.state == W.APPROVED
    assert kinds(work) == [
        "submitted", "awaiting_review", "claimed", "changes_requested",
        "submitted", "awaiting_review", "claimed", "approved",
    ]  # fmt: skip
    # (1 - 0.4) x 80 % autograde + 0.4 x 50 % rubric
    assert work.autograde == Decimal("80.00")
    assert work.rubric == Decimal("50.00")
    assert work.final_grade == Decimal("68.00")
    assert work.reviewed_revision_id == second.pk
    assert work.revision_count == 2


def test_every_event_names_who_did_it_and_the_reason(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    grade(revision, 15)
    loop.work_claim(work=work_of(revision), reviewer=people["reviewer"])
    decide(revision, people["reviewer"], decision="changes_requested", comment="Pin the dependencies.")
    events = list(WorkEvent.objects.filter(work=work_of(revision)).order_by("pk"))
    assert [e.actor for e in events] == [people["learner"], None, people["reviewer"], people["reviewer"]]
    assert events[-1].reason == "Pin the dependencies."
    assert (events[-1].from_state, events[-1].to_state) == (W.IN_REVIEW, W.CHANGES_REQUESTED)


def test_a_lab_without_review_is_final_once_autograded(people):
    lab = make_lab(course=people["course"], spec=spec_with(required=False))
    revision = submit(lab, people["learner"])
    work = grade(revision, 9)
    assert work.state == W.AUTOGRADED
    assert work.final_grade == Decimal("60.00")
    with pytest.raises(loop.WorkStateRefused):
        loop.work_claim(work=work, reviewer=people["reviewer"])


def test_an_optional_review_grades_with_the_autograde_until_approved(people):
    lab = make_lab(course=people["course"], spec=spec_with(required="optional", weight=0.5))
    revision = submit(lab, people["learner"])
    work = grade(revision, 15)
    assert (work.state, work.final_grade) == (W.AWAITING_REVIEW, Decimal("100.00"))
    loop.work_claim(work=work, reviewer=people["reviewer"])
    decide(revision, people["reviewer"], clarity=6)
    assert work_of(revision).final_grade == Decimal("80.00")


def test_a_required_review_has_no_final_grade_before_approval(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    work = grade(submit(lab, people["learner"]), 15)
    assert work.final_grade is None


def test_below_the_threshold_the_work_waits_for_a_better_revision(people):
    lab = make_lab(course=people["course"], spec=spec_with(min_autograde=60))
    first = submit(lab, people["learner"])
    work = grade(first, 6)  # 40 %
    assert work.state == W.BELOW_THRESHOLD
    assert "under the 60% this lab needs" in WorkEvent.objects.filter(work=work).last().reason
    with pytest.raises(loop.WorkStateRefused):
        loop.work_claim(work=work, reviewer=people["reviewer"])
    second = submit(lab, people["learner"])
    assert grade(second, 9).state == W.AWAITING_REVIEW  # exactly 60 %


def test_a_failed_revision_goes_through_the_same_gate(people):
    lab = make_lab(course=people["course"], spec=spec_with(min_autograde=50))
    work = grade(submit(lab, people["learner"]), 3, state="failed")
    assert work.state == W.BELOW_THRESHOLD
    assert work.autograde == Decimal("20.00")


def test_a_revision_needing_attention_is_noted_and_never_graded(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    Revision.objects.filter(pk=revision.pk).update(state="error")
    revision.refresh_from_db()
    loop.work_revision_needs_attention(revision=revision)
    work = work_of(revision)
    assert work.state == W.SUBMITTED
    assert work.autograde is None
    assert kinds(work)[-1] == "needs_attention"


def test_an_older_revision_finishing_late_does_not_move_the_loop(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    first = submit(lab, people["learner"])
    second = submit(lab, people["learner"])
    work = grade(first, 15)
    assert work.state == W.SUBMITTED
    assert work.revision_id == second.pk
    assert kinds(work)[-1] == "autograded"


def test_late_revisions_mark_the_work_late(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = Revision.objects.create(
        lab=lab, user=people["learner"], number=1, tree_sha256="a" * 64, files=[], is_late=True
    )
    assert loop.work_revision_submitted(revision=revision).is_late


# --- illegal moves -----------------------------------------------------------------------------------------------


def test_approving_an_unclaimed_item_is_refused(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    grade(revision, 15)
    with pytest.raises(loop.WorkStateRefused, match="Claim this work before reviewing it"):
        decide(revision, people["reviewer"])
    assert work_of(revision).state == W.AWAITING_REVIEW
    assert not Review.objects.exists()


def test_a_reviewer_cannot_claim_their_own_work(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["reviewer"])
    grade(revision, 15)
    with pytest.raises(loop.WorkStateRefused, match="You cannot review this work"):
        loop.work_claim(work=work_of(revision), reviewer=people["reviewer"])


def test_a_second_reviewer_is_told_who_holds_the_claim(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    grade(revision, 15)
    loop.work_claim(work=work_of(revision), reviewer=people["reviewer"])
    with pytest.raises(loop.WorkStateRefused, match="reviewer is reviewing this work"):
        loop.work_claim(work=work_of(revision), reviewer=people["other_reviewer"])
    with pytest.raises(loop.WorkStateRefused, match="only they can decide"):
        decide(revision, people["other_reviewer"])
    assert work_of(revision).claimed_by == people["reviewer"]


def test_two_reviewers_claiming_from_stale_copies_never_both_win(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    grade(revision, 15)
    # Both read the work while it was waiting; the conditional update lets exactly one through.
    copy_a, copy_b = work_of(revision), work_of(revision)
    loop.work_claim(work=copy_a, reviewer=people["reviewer"])
    with pytest.raises(loop.WorkStateRefused):
        loop.work_claim(work=copy_b, reviewer=people["other_reviewer"])
    assert WorkEvent.objects.filter(kind="claimed").count() == 1


def test_an_expired_claim_can_be_taken_and_the_first_reviewer_is_refused(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    grade(revision, 15)
    past = timezone.now() - timedelta(hours=2)
    loop.work_claim(work=work_of(revision), reviewer=people["reviewer"], now=past)
    with pytest.raises(loop.WorkStateRefused, match="expired"):
        decide(revision, people["reviewer"])
    loop.work_claim(work=work_of(revision), reviewer=people["other_reviewer"])
    assert kinds(work_of(revision))[-2:] == ["claim_expired", "claimed"]
    decide(revision, people["other_reviewer"])
    assert work_of(revision).state == W.APPROVED


def test_expired_claims_go_back_to_the_queue(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    grade(revision, 15)
    loop.work_claim(work=work_of(revision), reviewer=people["reviewer"], now=timezone.now() - timedelta(hours=2))
    assert loop.work_claims_expire() == 1
    work = work_of(revision)
    assert (work.state, work.claimed_by) == (W.AWAITING_REVIEW, None)
    assert loop.work_claims_expire() == 0


def test_a_claim_lasts_as_long_as_the_setting_says(people, settings):
    settings.REVIEW_CLAIM_MINUTES = 7
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    grade(revision, 15)
    now = timezone.now()
    work = loop.work_claim(work=work_of(revision), reviewer=people["reviewer"], now=now)
    assert work.claim_expires_at == now + timedelta(minutes=7)


def test_releasing_keeps_the_place_in_the_queue(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    waiting_since = grade(revision, 15).waiting_since
    loop.work_claim(work=work_of(revision), reviewer=people["reviewer"])
    with pytest.raises(loop.WorkStateRefused):
        loop.work_release(work=work_of(revision), reviewer=people["other_reviewer"])
    work = loop.work_release(work=work_of(revision), reviewer=people["reviewer"])
    assert (work.state, work.waiting_since) == (W.AWAITING_REVIEW, waiting_since)


def test_a_new_revision_drops_the_claim_on_the_old_one(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    first = submit(lab, people["learner"])
    grade(first, 15)
    loop.work_claim(work=work_of(first), reviewer=people["reviewer"])
    submit(lab, people["learner"])
    work = work_of(first)
    assert (work.state, work.claimed_by) == (W.SUBMITTED, None)
    assert "claim on the older one was dropped" in WorkEvent.objects.filter(work=work).last().reason
    with pytest.raises(loop.WorkStateRefused):
        decide(first, people["reviewer"])


def test_approved_work_takes_no_more_revisions(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    grade(revision, 15)
    loop.work_claim(work=work_of(revision), reviewer=people["reviewer"])
    decide(revision, people["reviewer"])
    with pytest.raises(SubmissionNotAllowed, match="approved"):
        revision_policy_check(lab=lab, user=people["learner"], now=timezone.now())
    with pytest.raises(loop.WorkStateRefused):
        loop.work_transition(work=work_of(revision), to_state=W.SUBMITTED, kind="submitted")


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    [
        (W.SUBMITTED, W.APPROVED),
        (W.SUBMITTED, W.IN_REVIEW),
        (W.AWAITING_REVIEW, W.APPROVED),
        (W.AWAITING_REVIEW, W.CHANGES_REQUESTED),
        (W.CHANGES_REQUESTED, W.APPROVED),
        (W.BELOW_THRESHOLD, W.IN_REVIEW),
        (W.AUTOGRADED, W.AWAITING_REVIEW),
        (W.APPROVED, W.CHANGES_REQUESTED),
    ],
)
def test_the_loop_refuses_moves_it_does_not_allow(people, from_state, to_state):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    LabWork.objects.filter(lab=lab).update(state=from_state)
    work = work_of(revision)
    with pytest.raises(loop.WorkStateRefused):
        loop.work_transition(work=work, to_state=to_state, kind="approved")
    assert work_of(revision).state == from_state


def test_a_move_from_a_stale_copy_is_refused(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    stale = work_of(revision)
    grade(revision, 15)
    with pytest.raises(loop.WorkStateRefused, match="Someone else changed"):
        loop.work_transition(work=stale, to_state=W.AWAITING_REVIEW, kind="awaiting_review")


# --- grades, overrides, notifications --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("review", "state", "autograde", "rubric", "expected"),
    [
        ({"required": False}, W.AUTOGRADED, "70", None, "70"),
        ({"required": True}, W.AWAITING_REVIEW, "70", None, None),
        ({"required": True, "weight": 0.25}, W.APPROVED, "80", "40", "70.00"),
        ({"required": True, "weight": 1}, W.APPROVED, "80", "40", "40.00"),
        ({"required": True, "weight": 0}, W.APPROVED, "80", "40", "80.00"),
        ({"required": "optional"}, W.CHANGES_REQUESTED, "55", None, "55"),
        ({"required": "optional"}, W.SUBMITTED, "55", None, None),
        ({"required": True}, W.APPROVED, "33.33", "66.67", "50.00"),
    ],
)
def test_the_final_grade_formula(review, state, autograde, rubric, expected):
    spec, problems = parse_review({**review, "rubric": RUBRIC})
    assert problems == []
    grade_ = loop.final_grade_compute(
        spec=spec,
        state=state,
        autograde=Decimal(autograde),
        rubric=Decimal(rubric) if rubric is not None else None,
    )
    assert grade_ == (Decimal(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"required": "sometimes"}, "must be true, false or optional"),
        ({"weight": 1.5}, "must be from 0 to 1"),
        ({"weight": "half"}, "must be a number"),
        ({"required": False, "weight": 0.3}, "weight must be 0"),
        ({"min_autograde": 101}, "must be from 0 to 100"),
        ({"min_autograde": 33.333}, "at most two decimal places"),
    ],
)
def test_review_settings_are_validated_with_a_hint(raw, problem):
    _spec, problems = parse_review(raw)
    assert any(problem in p for p in problems), problems


def test_an_override_wins_is_audited_and_can_be_removed(people):
    instructor = make_user("instructor")
    enroll(instructor, people["course"], Enrollment.Role.INSTRUCTOR)
    lab = make_lab(course=people["course"], spec=spec_with(required=False))
    work = grade(submit(lab, people["learner"]), 9)
    work = loop.work_grade_override(
        work=work, grade=Decimal("85"), reason="Regraded by hand: flaky check.", by=instructor
    )
    assert (work.grade, work.final_grade) == (Decimal("85"), Decimal("60.00"))
    work = loop.work_grade_override(work=work, grade=None, reason="The check was fixed.", by=instructor)
    assert work.grade == Decimal("60.00")
    log = list(GradeOverride.objects.filter(work=work).values_list("grade", "previous_grade", "reason"))
    assert log == [
        (Decimal("85.00"), None, "Regraded by hand: flaky check."),
        (None, Decimal("85.00"), "The check was fixed."),
    ]
    assert kinds(work)[-2:] == ["overridden", "override_removed"]


@pytest.mark.parametrize(
    ("grade_", "reason", "problem"),
    [
        (Decimal("85"), "", "Give a reason"),
        (Decimal("101"), "x", "from 0 to 100"),
        (Decimal("-1"), "x", "from 0 to 100"),
        (Decimal("50.125"), "x", "two decimal places"),
    ],
)
def test_a_bad_override_is_refused_and_changes_nothing(people, grade_, reason, problem):
    lab = make_lab(course=people["course"], spec=spec_with(required=False))
    work = grade(submit(lab, people["learner"]), 9)
    with pytest.raises(LearnerError) as refused:
        loop.work_grade_override(work=work, grade=grade_, reason=reason, by=people["reviewer"])
    assert any(problem in p for p in refused.value.problems)
    assert work_of(work.revision).override_grade is None
    assert not GradeOverride.objects.exists()


def test_the_learner_is_notified_of_grading_and_of_each_decision(people):
    lab = make_lab(course=people["course"], spec=spec_with())
    revision = submit(lab, people["learner"])
    grade(revision, 15)
    loop.work_claim(work=work_of(revision), reviewer=people["reviewer"])
    decide(revision, people["reviewer"], decision="changes_requested", comment="Log as JSON.")
    second = submit(lab, people["learner"])
    grade(second, 15)
    loop.work_claim(work=work_of(second), reviewer=people["reviewer"])
    decide(second, people["reviewer"])
    notes = list(Notification.objects.filter(user=people["learner"]).order_by("pk").values_list("kind", "url"))
    assert [kind for kind, _url in notes] == ["grading_finished", "changes_requested", "grading_finished", "approved"]
    assert all(url.startswith("/revisions/") for _kind, url in notes)
    assert not Notification.objects.exclude(user=people["learner"]).exists()


def test_self_test_and_regrade_copies_never_start_a_work(people):
    from labs.models import LabSelfTest

    lab = make_lab(course=people["course"], spec=spec_with())
    selftest = LabSelfTest.objects.create(lab=lab)
    example = Revision.objects.create(
        lab=lab, user=people["learner"], number=1, tree_sha256="a" * 64, files=[], selftest=selftest
    )
    assert loop.work_revision_submitted(revision=example) is None
    assert loop.work_revision_graded(revision=example) is None
    assert not LabWork.objects.exists()


def graded_with_results(lab, user, results) -> Revision:
    """A revision graded through grading.state with the given (check_id, hidden, points, max_points) results."""
    revision = submit(lab, user)
    return grade_through_state(
        revision,
        [
            {
                "check_id": check_id, "kind": "command", "category": "correctness",
                "status": "pass" if points == maximum else "fail", "points": points, "max_points": maximum,
                "hidden_until_due": hidden,
            }
            for check_id, hidden, points, maximum in results
        ],
    )  # fmt: skip


def test_the_threshold_is_measured_on_the_visible_checks_only(people):
    lab = make_lab(course=people["course"], spec=spec_with(min_autograde=80))
    # Visible checks all pass (100 %); the hidden one fails, so the whole autograde is 50 %.
    revision = graded_with_results(lab, people["learner"], [("visible", False, 5, 5), ("hidden", True, 0, 5)])
    work = work_of(revision)
    assert (work.state, work.autograde) == (W.AWAITING_REVIEW, Decimal("50.00"))


def test_held_back_by_visible_checks_the_reason_quotes_only_them(people):
    lab = make_lab(course=people["course"], spec=spec_with(min_autograde=80))
    revision = graded_with_results(lab, people["learner"], [("visible", False, 2, 5), ("hidden", True, 5, 5)])
    work = work_of(revision)
    assert work.state == W.BELOW_THRESHOLD
    assert "visible checks scored 40.00%" in WorkEvent.objects.filter(work=work).last().reason


def test_the_grading_notification_names_no_percentage_while_hidden_checks_are_concealed(people):
    lab = make_lab(course=people["course"], spec=spec_with())  # DEFAULT_SPEC has a hidden check, no due date
    graded_with_results(lab, people["learner"], [("visible", False, 5, 5), ("hidden", True, 0, 5)])
    note = Notification.objects.get(user=people["learner"])
    assert "%" not in note.title
    lab.hidden_revealed_at = timezone.now()
    lab.save(update_fields=["hidden_revealed_at"])
    graded_with_results(lab, people["learner"], [("visible", False, 5, 5), ("hidden", True, 0, 5)])
    assert Notification.objects.filter(user=people["learner"]).first().title.endswith(", 50.00%")
