"""The learner's side of the review loop: the timeline of a work (grades, events, revisions with their scores and
the checks each fixed or broke), the diff between two revisions, reviewers' comments shown in place on the code,
and resubmitting after the cooldown. Hidden checks stay concealed from the learner until they are revealed.

Personas: a learner (the work's author), a reviewer and an instructor of the course, a classmate (a learner of
the same course), an outsider, and an anonymous visitor.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from courses.models import Enrollment
from labs import selectors
from labs.models import CheckResult, GradingRun, LabWork, Review, Revision
from labs.reviews import loop

from .factories import DEFAULT_SPEC, enroll, loop_record, make_course, make_lab, make_stored_revision, make_user

pytestmark = pytest.mark.django_db

SPEC = copy.deepcopy(DEFAULT_SPEC)
SPEC["checks"].insert(
    1,
    {
        "id": "lint",
        "kind": "tests.pytest",
        "category": "observability",
        "points": 5,
        "visibility": "visible",
        "args": {},
    },
)
POINTS = {"has-service": 5, "lint": 5, "secret-tests": 10}
CATEGORY = {"has-service": "correctness", "lint": "observability", "secret-tests": "correctness"}
SERVICE_V1 = b"import sys\n\n\ndef main():\n    print('hello')\n\n\nmain()\n"
SERVICE_V2 = b"import sys\n\n\ndef main():\n    print('hello, world')\n\n\nmain()\n"


@pytest.fixture(autouse=True)
def root(settings, tmp_path):
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    settings.DATA_DIR = tmp_path / "data"
    return settings.SUBMISSIONS_ROOT


def submit(lab, user, statuses: dict[str, str] | None, *, state: str = "graded", source: bytes = SERVICE_V1):
    """A stored revision graded with `statuses` ({check id: status}) on its one run, run through the loop."""
    statuses = statuses or {}
    score = sum(POINTS[c] for c, s in statuses.items() if s == "pass")
    revision = make_stored_revision(
        lab=lab,
        user=user,
        files={"service.py": source},
        state=state,
        score=Decimal(score) if state != "error" else None,
        max_score=Decimal(20) if state != "error" else None,
        failure_reason="timeout" if state == "failed" else "",
    )
    outcome = {"graded": "graded", "failed": "failed", "error": "error"}[state]
    run = GradingRun.objects.create(revision=revision, attempt=1, phase="results_stored", outcome=outcome)
    for position, (check_id, status) in enumerate(statuses.items()):
        CheckResult.objects.create(
            run=run,
            position=position,
            check_id=check_id,
            kind="tests.pytest",
            category=CATEGORY[check_id],
            status=status,
            points=Decimal(POINTS[check_id] if status == "pass" else 0),
            max_points=Decimal(POINTS[check_id]),
            message=f"MESSAGE-OF-{check_id}",
            hidden_until_due=check_id == "secret-tests",
        )
    loop_record(revision)
    return revision


@pytest.fixture
def world():
    course = make_course()
    lab = make_lab(course=course, spec=SPEC, title="The quote service", due_at=timezone.now() + timedelta(days=3))
    learner = make_user("learner")
    enroll(learner, course)
    reviewer = make_user("reviewer")
    enroll(reviewer, course, Enrollment.Role.REVIEWER)
    instructor = make_user("instructor")
    enroll(instructor, course, Enrollment.Role.INSTRUCTOR)
    classmate = make_user("classmate")
    enroll(classmate, course)
    return {
        "course": course,
        "lab": lab,
        "learner": learner,
        "reviewer": reviewer,
        "instructor": instructor,
        "classmate": classmate,
        "outsider": make_user("outsider"),
    }


def client_for(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def work_of(lab, user) -> LabWork:
    return LabWork.objects.select_related("lab", "lab__course", "user", "revision").get(lab=lab, user=user)


def entries(timeline) -> list:
    return [item.revision for item in timeline.items if item.revision]


def review_posted(work, reviewer, *, decision="changes_requested", file_comments=(), comment="Please fix."):
    """A reviewer claims the work and submits a review through the loop."""
    loop.work_claim(work=work, reviewer=reviewer)
    review = Review.objects.create(
        revision=work.revision,
        reviewer=reviewer,
        decision=decision,
        rubric_scores={"overall": 8},
        rubric_total=Decimal(8),
        comment=comment,
        file_comments=list(file_comments),
        submitted_at=timezone.now(),
    )
    loop.work_review_decide(work=work_of(work.lab, work.user), review=review, reviewer=reviewer)
    return review


# --- fixed and broken ------------------------------------------------------------------------------------------


def test_a_learner_sees_which_checks_each_revision_fixed_and_broke(world):
    lab, learner = world["lab"], world["learner"]
    submit(lab, learner, {"has-service": "fail", "lint": "pass", "secret-tests": "fail"})
    submit(lab, learner, {"has-service": "pass", "lint": "fail", "secret-tests": "pass"}, source=SERVICE_V2)

    timeline = selectors.work_timeline(work=work_of(lab, learner), viewer=learner)

    first, second = entries(timeline)
    assert first.compared_with is None and first.fixed == first.broken == []
    assert second.compared_with.number == 1
    assert [c.check_id for c in second.fixed] == ["has-service"]
    assert [c.check_id for c in second.broken] == ["lint"]
    assert second.concealed_count == 1
    assert (second.score, second.max_score) == (5.0, 10.0)  # the visible checks only
    assert second.scores_by_category == {
        "correctness": {"score": 5.0, "max": 5.0},
        "observability": {"score": 0.0, "max": 5.0},
    }


def test_a_learner_never_sees_a_concealed_check_on_the_timeline(world):
    lab, learner = world["lab"], world["learner"]
    submit(lab, learner, {"has-service": "pass", "lint": "pass", "secret-tests": "fail"})
    submit(lab, learner, {"has-service": "pass", "lint": "pass", "secret-tests": "pass"}, source=SERVICE_V2)
    work = work_of(lab, learner)

    page = client_for(learner).get(f"/work/{work.pk}/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "secret-tests" not in html and "MESSAGE-OF" not in html
    assert "No check changed its verdict since revision 1." in html
    assert "shown once the hidden checks are revealed" in html
    assert f"{work.autograde}%" not in html  # the autograde counts the hidden check's points
    assert "20 / 20" not in html and "10 / 10" in html


def test_staff_see_hidden_checks_fixed_and_broken_and_the_autograde(world):
    lab, learner = world["lab"], world["learner"]
    submit(lab, learner, {"has-service": "pass", "lint": "pass", "secret-tests": "fail"})
    submit(lab, learner, {"has-service": "pass", "lint": "pass", "secret-tests": "pass"}, source=SERVICE_V2)
    work = work_of(lab, learner)

    html = client_for(world["reviewer"]).get(f"/work/{work.pk}/").content.decode()

    assert "Fixed since revision 1: <code>secret-tests</code>" in html
    assert "100%" in html  # the autograde, hidden checks included
    assert "<h1>learner's work on The quote service</h1>" in html


def test_the_learner_sees_hidden_checks_once_they_are_revealed(world):
    lab, learner = world["lab"], world["learner"]
    submit(lab, learner, {"has-service": "pass", "lint": "pass", "secret-tests": "fail"})
    submit(lab, learner, {"has-service": "pass", "lint": "pass", "secret-tests": "pass"}, source=SERVICE_V2)
    lab.hidden_revealed_at = timezone.now() - timedelta(minutes=1)
    lab.save()

    timeline = selectors.work_timeline(work=work_of(lab, learner), viewer=learner)

    assert [c.check_id for c in entries(timeline)[1].fixed] == ["secret-tests"]
    assert not timeline.grades_concealed


def test_a_failed_revision_is_compared_and_an_errored_one_is_skipped(world):
    lab, learner = world["lab"], world["learner"]
    submit(lab, learner, {"has-service": "pass", "lint": "pass"})
    submit(lab, learner, {"has-service": "fail", "lint": "pass"}, state="failed")
    submit(lab, learner, {"has-service": "pass", "lint": "pass"}, state="error")
    submit(lab, learner, {"has-service": "pass", "lint": "fail"})

    first, failed, errored, last = entries(selectors.work_timeline(work=work_of(lab, learner), viewer=learner))

    assert [c.check_id for c in failed.broken] == ["has-service"]
    assert "wall-clock limit" in failed.note
    assert not errored.has_results and errored.compared_with is None
    assert "our side" in errored.note
    assert last.compared_with.number == 2  # the errored revision is no base for comparison
    assert [c.check_id for c in last.fixed] == ["has-service"]
    assert [c.check_id for c in last.broken] == ["lint"]


def test_the_timeline_takes_a_constant_number_of_queries_however_many_revisions(world):
    lab, learner = world["lab"], world["learner"]
    statuses = {"has-service": "pass", "lint": "fail", "secret-tests": "fail"}

    def count() -> int:
        work = work_of(lab, learner)
        with CaptureQueriesContext(connection) as queries:
            selectors.work_timeline(work=work, viewer=learner)
        return len(queries)

    submit(lab, learner, statuses)
    submit(lab, learner, statuses)
    few = count()
    for _ in range(6):
        submit(lab, learner, statuses)
    assert count() == few

    client = client_for(learner)
    work = work_of(lab, learner)
    client.get(f"/work/{work.pk}/")  # the header's facts are read once, then kept in the shared cache
    with CaptureQueriesContext(connection) as eight:
        assert client.get(f"/work/{work.pk}/").status_code == 200
    submit(lab, learner, statuses)
    client.get(f"/work/{work.pk}/")  # again, in case the submission notified the learner
    with CaptureQueriesContext(connection) as nine:
        assert client.get(f"/work/{work.pk}/").status_code == 200
    assert len(nine) == len(eight), "\n".join(q["sql"][:150] for q in nine.captured_queries)


def test_the_timeline_shows_events_who_when_and_why_and_an_override_with_its_reason(world):
    lab, learner, reviewer = world["lab"], world["learner"], world["reviewer"]
    submit(lab, learner, {"has-service": "pass", "lint": "pass"})
    review_posted(work_of(lab, learner), reviewer, comment="Add a health check.")
    loop.work_grade_override(
        work=work_of(lab, learner),
        grade=Decimal("88.5"),
        reason="Extension granted for illness.",
        by=world["instructor"],
    )

    html = client_for(learner).get(f"/work/{work_of(lab, learner).pk}/").content.decode()

    revision = Revision.objects.get()
    assert f'Changes requested</strong> (<a href="/revisions/{revision.pk}/#reviews">revision 1</a>) · reviewer' in html
    assert "Add a health check." in html
    assert "Waiting for a reviewer</strong> (" in html
    assert "revision 1</a>) · Shipshape" in html  # the platform acts as "Shipshape"
    assert "88.50%" in html and "Extension granted for illness." in html
    assert "Submit a new revision" in html


@pytest.mark.parametrize(
    ("persona", "status"),
    [("learner", 200), ("reviewer", 200), ("instructor", 200), ("classmate", 404), ("outsider", 404)],
)
def test_the_timeline_is_for_the_learner_and_the_course_staff_only(world, persona, status):
    submit(world["lab"], world["learner"], {"has-service": "pass"})
    work = work_of(world["lab"], world["learner"])

    assert client_for(world[persona]).get(f"/work/{work.pk}/").status_code == status


def test_an_anonymous_visitor_is_sent_to_log_in_for_a_timeline(world):
    submit(world["lab"], world["learner"], {"has-service": "pass"})
    response = Client().get(f"/work/{work_of(world['lab'], world['learner']).pk}/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_lab_page_and_each_revision_page_link_to_the_timeline(world):
    lab, learner = world["lab"], world["learner"]
    revision = submit(lab, learner, {"has-service": "pass"})
    work = work_of(lab, learner)
    client = client_for(learner)

    assert f'href="/work/{work.pk}/"' in client.get(f"/courses/{lab.course.slug}/labs/{lab.slug}/").content.decode()
    assert f'href="/work/{work.pk}/"' in client.get(f"/revisions/{revision.pk}/").content.decode()


# --- the diff between two revisions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "status"),
    [("learner", 200), ("reviewer", 200), ("instructor", 200), ("classmate", 404), ("outsider", 404)],
)
def test_the_diff_between_two_revisions_is_for_those_who_may_see_both(world, persona, status):
    old = submit(world["lab"], world["learner"], {"has-service": "pass"})
    new = submit(world["lab"], world["learner"], {"has-service": "pass"}, source=SERVICE_V2)

    response = client_for(world[persona]).get(f"/revisions/{old.pk}/diff/{new.pk}/")

    assert response.status_code == status
    if status == 200:
        html = response.content.decode()
        assert "What changed from revision 1 to revision 2" in html
        assert "hello, world" in html and 'class="diff-add"' in html


def test_revisions_of_two_learners_are_never_diffed(world):
    mine = submit(world["lab"], world["learner"], {"has-service": "pass"})
    theirs = submit(world["lab"], world["classmate"], {"has-service": "pass"})

    assert client_for(world["learner"]).get(f"/revisions/{mine.pk}/diff/{theirs.pk}/").status_code == 404
    assert client_for(world["reviewer"]).get(f"/revisions/{mine.pk}/diff/{theirs.pk}/").status_code == 404
    assert Client().get(f"/revisions/{mine.pk}/diff/{theirs.pk}/").status_code == 302


def test_the_timeline_form_picks_two_revisions_to_compare(world):
    old = submit(world["lab"], world["learner"], {"has-service": "pass"})
    new = submit(world["lab"], world["learner"], {"has-service": "pass"}, source=SERVICE_V2)
    work = work_of(world["lab"], world["learner"])
    client = client_for(world["learner"])

    page = client.get(f"/work/{work.pk}/").content.decode()
    picked = client.get(f"/work/{work.pk}/diff/", {"old": old.pk, "new": new.pk})
    nonsense = client.get(f"/work/{work.pk}/diff/", {"old": "1e3", "new": new.pk})

    assert f'action="/work/{work.pk}/diff/"' in page
    assert picked.status_code == 302 and picked["Location"] == f"/revisions/{old.pk}/diff/{new.pk}/"
    assert nonsense.status_code == 302 and nonsense["Location"] == f"/work/{work.pk}/"
    assert (
        client_for(world["classmate"]).get(f"/work/{work.pk}/diff/", {"old": old.pk, "new": new.pk}).status_code == 404
    )


# --- comments in place -----------------------------------------------------------------------------------------


def test_a_learner_sees_the_reviewers_line_comments_under_the_lines_they_concern(world):
    lab, learner, reviewer = world["lab"], world["learner"], world["reviewer"]
    revision = submit(lab, learner, {"has-service": "pass"})
    review_posted(
        work_of(lab, learner),
        reviewer,
        file_comments=[{"path": "service.py", "line": 5, "body": "Log <this> as JSON."}],
    )

    html = client_for(learner).get(f"/revisions/{revision.pk}/").content.decode()

    assert "The reviewers' comments on the code" in html
    line5 = html.index('-L5"><td class="ln">')
    comment = html.index("Log &lt;this&gt; as JSON.", line5)
    assert comment < html.index('-L6"><td class="ln">')
    assert "<this>" not in html


def test_a_draft_review_is_never_shown_on_the_revision_page(world):
    lab, learner, reviewer = world["lab"], world["learner"], world["reviewer"]
    revision = submit(lab, learner, {"has-service": "pass"})
    Review.objects.create(
        revision=revision,
        reviewer=reviewer,
        comment="DRAFT-OVERALL",
        file_comments=[{"path": "service.py", "line": 2, "body": "DRAFT-LINE"}],
    )

    for persona in ("learner", "reviewer", "instructor"):
        html = client_for(world[persona]).get(f"/revisions/{revision.pk}/").content.decode()
        assert "DRAFT-LINE" not in html and "DRAFT-OVERALL" not in html, persona
    assert client_for(world["classmate"]).get(f"/revisions/{revision.pk}/").status_code == 404


# --- resubmitting ----------------------------------------------------------------------------------------------


def test_during_the_cooldown_the_pages_say_when_the_learner_can_submit_again(world):
    lab = make_lab(course=world["course"], spec=SPEC, cooldown_seconds=600)
    learner = world["learner"]
    submit(lab, learner, {"has-service": "pass"})
    client = client_for(learner)

    lab_page = client.get(f"/courses/{lab.course.slug}/labs/{lab.slug}/").content.decode()
    timeline = client.get(f"/work/{work_of(lab, learner).pk}/").content.decode()

    assert "You can submit again at" in lab_page and "data-upload-form" not in lab_page
    assert "You can submit again at" in timeline


def test_once_the_cooldown_has_passed_the_lab_page_shows_the_form(world):
    lab = make_lab(course=world["course"], spec=SPEC, cooldown_seconds=600)
    revision = submit(lab, world["learner"], {"has-service": "pass"})
    Revision.objects.filter(pk=revision.pk).update(created_at=timezone.now() - timedelta(minutes=11))

    lab_page = client_for(world["learner"]).get(f"/courses/{lab.course.slug}/labs/{lab.slug}/").content.decode()

    assert "data-upload-form" in lab_page and "You can submit again at" not in lab_page


def test_an_approved_work_says_the_loop_is_finished_and_offers_no_form(world):
    lab, learner = world["lab"], world["learner"]
    submit(lab, learner, {"has-service": "pass", "lint": "pass"})
    review_posted(work_of(lab, learner), world["reviewer"], decision="approved", comment="Well done.")
    client = client_for(learner)

    lab_page = client.get(f"/courses/{lab.course.slug}/labs/{lab.slug}/").content.decode()
    timeline = client.get(f"/work/{work_of(lab, learner).pk}/").content.decode()

    assert "the review loop is finished" in lab_page and "data-upload-form" not in lab_page
    assert "the review loop is finished" in timeline and "Submit a new revision" not in timeline
