"""Per-lab analytics: the figures, the SVG charts (labs/gradebook/charts.py) and a bounded number of queries."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from courses.models import Enrollment
from labs.gradebook import charts
from labs.gradebook.selectors import lab_analytics
from labs.models import CheckResult, GradingRun, LabWork, Revision, WorkEvent
from labs.reviews import loop
from labs.reviews.services import review_submit

from .factories import DEFAULT_SPEC, enroll, loop_record, make_course, make_lab, make_user

HOSTILE = "<script>alert('x')</script>"
NO_REVIEW_SPEC = {**DEFAULT_SPEC, "review": {"required": False}}


@pytest.fixture(autouse=True)
def fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- charts: pure functions ------------------------------------------------------------------------------------------


def test_it_draws_horizontal_bars_proportional_to_their_values():
    svg = charts.hbar_chart(title="Pass", description="d", bars=[("a", 100, "100%"), ("b", 50, "50%"), ("c", 0, "0%")])
    widths = [float(w) for w in re.findall(r'width="([\d.]+)" height="\d+" class="chart-bar"', svg)]
    assert len(widths) == 3
    assert widths[1] == pytest.approx(widths[0] / 2)
    assert widths[2] == 0
    assert "<script" not in svg and "style=" not in svg


def test_it_draws_histogram_bars_proportional_to_their_counts():
    svg = charts.histogram(
        title="Scores", description="d", buckets=[("0-9", 2), ("10-19", 4), ("20-29", 1)], x_label="%"
    )
    heights = [float(h) for h in re.findall(r'height="([\d.]+)" class="chart-bar"', svg)]
    assert heights == pytest.approx([charts.PLOT_H / 2, charts.PLOT_H, charts.PLOT_H / 4])
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg


def test_it_escapes_every_text_in_a_chart():
    svg = charts.hbar_chart(title=HOSTILE, description=HOSTILE, bars=[(HOSTILE, 10, HOSTILE)])
    svg += charts.histogram(title=HOSTILE, description=HOSTILE, buckets=[(HOSTILE, 1)], x_label=HOSTILE)
    assert "<script" not in svg
    assert "&lt;script&gt;" in svg


def test_it_says_no_data_yet_for_an_empty_chart():
    assert "No data yet" in charts.hbar_chart(title="Pass", description="d", bars=[])
    assert "No data yet" in charts.histogram(title="Scores", description="d", buckets=[], x_label="%")
    assert "No data yet" in charts.histogram(title="Scores", description="d", buckets=[("0-9", 0)], x_label="%")


# --- the figures ---------------------------------------------------------------------------------------------------


def submit(lab, user, *, score: int, max_score: int = 15, checks: dict[str, str] | None = None) -> Revision:
    number = Revision.objects.filter(lab=lab, user=user).count() + 1
    revision = Revision.objects.create(
        lab=lab,
        user=user,
        number=number,
        state="graded",
        tree_sha256="0" * 64,
        score=Decimal(score),
        max_score=Decimal(max_score),
    )
    run = GradingRun.objects.create(revision=revision, attempt=1, outcome="graded", phase="results_stored")
    for position, (check_id, status) in enumerate((checks or {}).items()):
        CheckResult.objects.create(
            run=run,
            position=position,
            check_id=check_id,
            kind="files.required",
            category="correctness",
            status=status,
            points=Decimal(5 if status == "pass" else 0),
            max_points=Decimal(5),
            message="",
            hidden_until_due=check_id == "secret-tests",
        )
    loop_record(revision)
    return revision


def decide(revision: Revision, reviewer, decision: str, *, after_hours: float) -> None:
    work = LabWork.objects.get(lab=revision.lab, user=revision.user)
    loop.work_claim(work=work, reviewer=reviewer)
    review_submit(
        revision=revision,
        reviewer=reviewer,
        decision=decision,
        rubric_scores={"overall": 10},
        comment="Fix the retries.",
        file_comments=[],
    )
    submitted = WorkEvent.objects.get(work=work, revision=revision, kind=WorkEvent.Kind.SUBMITTED)
    WorkEvent.objects.filter(work=work, revision=revision, kind=decision).update(
        created_at=submitted.created_at + timedelta(hours=after_hours)
    )


@pytest.fixture
def world(db):
    course = make_course("ops")
    lab = make_lab(course=course, slug="quote", title="Quote")
    instructor = make_user("instructor")
    enroll(instructor, course, Enrollment.Role.INSTRUCTOR)
    reviewer = make_user("reviewer")
    enroll(reviewer, course, Enrollment.Role.REVIEWER)
    learners = [make_user(f"learner-{n}") for n in range(3)]
    for user in learners:
        enroll(user, course)
    return {"course": course, "lab": lab, "instructor": instructor, "reviewer": reviewer, "learners": learners}


def test_it_computes_pass_rates_from_each_learners_newest_finished_revision(world):
    lab, (a, b, c) = world["lab"], world["learners"]
    submit(lab, a, score=0, checks={"has-service": "fail", "secret-tests": "fail"})
    submit(lab, a, score=15, checks={"has-service": "pass", "secret-tests": "pass"})
    submit(lab, b, score=5, checks={"has-service": "pass", "secret-tests": "fail"})
    queued = Revision.objects.create(lab=lab, user=b, number=2, state="queued", tree_sha256="0" * 64)
    loop_record(queued)  # not finished: b's figures still come from revision 1
    data = lab_analytics(lab=lab)
    rates = {r.check_id: (r.passed, r.total, r.hidden) for r in data.checks}
    assert rates == {"has-service": (2, 2, False), "secret-tests": (1, 2, True)}
    assert [r.check_id for r in data.checks] == ["has-service", "secret-tests"]  # the lab's order
    assert c.username  # no revision: not counted


def test_it_counts_revisions_needed_to_pass_and_hours_to_review(world):
    lab, reviewer, (a, b, c) = world["lab"], world["reviewer"], world["learners"]
    first = submit(lab, a, score=5)
    decide(first, reviewer, "changes_requested", after_hours=2.5)
    second = submit(lab, a, score=15)
    decide(second, reviewer, "approved", after_hours=30)
    only = submit(lab, b, score=15)
    decide(only, reviewer, "approved", after_hours=0.5)
    submit(lab, c, score=3)  # waiting
    data = lab_analytics(lab=lab)
    assert data.revisions_to_pass == [("1", 1), ("2", 1)]
    assert data.passed == 2
    assert data.reviews == 3
    assert dict(data.hours_to_review) == {
        "0-1 h": 1,
        "1-4 h": 1,
        "4-12 h": 0,
        "12-24 h": 0,
        "24-48 h": 1,
        "48-96 h": 0,
        "96-168 h": 0,
        "168 h+": 0,
    }
    assert data.median_hours == pytest.approx(2.5)


def test_it_counts_a_pass_without_review_as_the_first_full_autograde(db):
    course = make_course()
    lab = make_lab(course=course, spec=NO_REVIEW_SPEC)
    learner = make_user()
    submit(lab, learner, score=10)
    submit(lab, learner, score=15)
    submit(lab, learner, score=15)
    assert lab_analytics(lab=lab).revisions_to_pass == [("1", 0), ("2", 1)]


def test_it_buckets_scores_by_ten_points_with_overrides_winning(world):
    lab, (a, b, c) = world["lab"], world["learners"]
    submit(lab, a, score=15)  # 100
    submit(lab, b, score=0)  # 0
    submit(lab, c, score=7)  # 46.67
    work = LabWork.objects.get(lab=lab, user=c)
    loop.work_grade_override(work=work, grade=Decimal("95"), reason="Oral.", by=world["instructor"])
    scores = dict(lab_analytics(lab=lab).scores)
    assert scores["0-9"] == 1
    assert scores["90-100"] == 2
    assert sum(scores.values()) == 3


def test_it_says_no_data_yet_on_an_empty_lab(world):
    client = Client()
    client.force_login(world["instructor"])
    response = client.get(reverse("gradebook:analytics", args=["ops", "quote"]))
    assert response.status_code == 200
    assert response.content.decode().count("No data yet") == 4


def _analytics_queries(world, learners: int) -> int:
    lab = world["lab"]
    for n in range(learners):
        user = make_user(f"q-{learners}-{n}")
        revision = submit(lab, user, score=n % 16, checks={"has-service": "pass", "secret-tests": "fail"})
        if n % 2:
            decide(revision, world["reviewer"], "approved", after_hours=n)
    client = Client()
    client.force_login(world["instructor"])
    url = reverse("gradebook:analytics", args=["ops", "quote"])
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    assert "<svg" in response.content.decode()
    return len(queries)


def test_it_runs_as_many_queries_for_40_learners_as_for_4(world):
    few = _analytics_queries(world, 4)
    many = _analytics_queries(world, 40)
    assert few == many
    assert many <= 12, many


def test_the_page_has_no_inline_style_or_script(world):
    submit(world["lab"], world["learners"][0], score=9, checks={"has-service": "pass"})
    client = Client()
    client.force_login(world["instructor"])
    body = client.get(reverse("gradebook:analytics", args=["ops", "quote"])).content.decode()
    main = body[body.index("<main") :]
    assert "style=" not in main
    assert "<script" not in main.split("</main>")[0]
