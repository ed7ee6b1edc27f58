"""The gradebook, its CSV export (web and command), grade overrides, and who may use them."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from courses.models import Enrollment
from labs.gradebook.export import csv_cell
from labs.gradebook.selectors import LEARNERS_PER_PAGE
from labs.models import GradeOverride, LabWork, Revision, WorkEvent
from labs.reviews import loop
from labs.reviews.services import review_submit

from .factories import enroll, loop_record, make_course, make_lab, make_user

pytestmark = pytest.mark.django_db

EVIL_NAME = "=cmd|' /C calc'!A0"


@pytest.fixture(autouse=True)
def fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def submit(lab, user, *, score: int = 10, max_score: int = 15, state: str = "graded", late: bool = False) -> Revision:
    number = Revision.objects.filter(lab=lab, user=user).count() + 1
    revision = Revision.objects.create(
        lab=lab,
        user=user,
        number=number,
        state=state,
        tree_sha256="0" * 64,
        score=Decimal(score),
        max_score=Decimal(max_score),
        is_late=late,
    )
    loop_record(revision)
    return revision


def approve(revision: Revision, reviewer, points: int = 8) -> LabWork:
    work = LabWork.objects.get(lab=revision.lab, user=revision.user)
    loop.work_claim(work=work, reviewer=reviewer)
    review_submit(
        revision=revision,
        reviewer=reviewer,
        decision="approved",
        rubric_scores={"overall": points},
        comment="Good.",
        file_comments=[],
    )
    return LabWork.objects.get(pk=work.pk)


@pytest.fixture
def world():
    course = make_course("ops-101")
    lab = make_lab(course=course, slug="quote-service", title="The quote service")
    lab2 = make_lab(course=course, slug="hello", title="Hello")
    instructor = make_user("instructor")
    enroll(instructor, course, Enrollment.Role.INSTRUCTOR)
    reviewer = make_user("reviewer")
    enroll(reviewer, course, Enrollment.Role.REVIEWER)
    learner = make_user("alice", email="alice@example.org")
    enroll(learner, course)
    idle = make_user("bob")
    enroll(idle, course)
    outsider = make_user("outsider")
    other_instructor = make_user("other-instructor")
    enroll(other_instructor, make_course("other"), Enrollment.Role.INSTRUCTOR)
    return {
        "course": course,
        "lab": lab,
        "lab2": lab2,
        "instructor": instructor,
        "reviewer": reviewer,
        "learner": learner,
        "idle": idle,
        "outsider": outsider,
        "other_instructor": other_instructor,
    }


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def gradebook_url(world, **query) -> str:
    url = reverse("gradebook:gradebook", args=[world["course"].slug])
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return url


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# --- the gradebook page ----------------------------------------------------------------------------------------------


def test_it_shows_every_learner_and_lab_with_grades(world):
    submit(world["lab"], world["learner"], score=12, max_score=15, late=True)
    approve(Revision.objects.get(lab=world["lab"], user=world["learner"]), world["reviewer"], points=9)
    response = client_for(world["instructor"]).get(gradebook_url(world))
    assert response.status_code == 200
    body = response.content.decode()
    assert "alice" in body and "alice@example.org" in body
    assert "bob" in body  # enrolled, nothing submitted
    assert "not submitted" in body
    assert "The quote service" in body and "Hello" in body
    assert "Approved" in body
    assert "80" in body  # autograde 12/15
    assert "90" in body  # rubric 9/10
    assert "late" in body
    assert "reviewer" not in [row.learner.username for row in response.context["book"].rows]
    assert "instructor" not in [row.learner.username for row in response.context["book"].rows]


def test_it_lists_someone_with_work_who_is_not_enrolled_as_learner(world):
    stranger = make_user("left-the-course")
    submit(world["lab"], stranger)
    response = client_for(world["instructor"]).get(gradebook_url(world))
    assert "left-the-course" in [row.learner.username for row in response.context["book"].rows]


def test_it_shows_an_override_distinctly(world):
    submit(world["lab"], world["learner"])
    work = LabWork.objects.get(lab=world["lab"], user=world["learner"])
    loop.work_grade_override(work=work, grade=Decimal(85), reason="Reviewed by hand.", by=world["instructor"])
    response = client_for(world["instructor"]).get(gradebook_url(world))
    assert "85 (override)" in response.content.decode()


def test_it_filters_by_lab(world):
    response = client_for(world["instructor"]).get(gradebook_url(world, lab="hello"))
    assert [lab.slug for lab in response.context["book"].labs] == ["hello"]
    assert "The quote service</th>" not in response.content.decode()


def test_it_filters_by_state(world):
    submit(world["lab"], world["learner"])
    response = client_for(world["instructor"]).get(gradebook_url(world, state="awaiting_review"))
    assert [row.learner.username for row in response.context["book"].rows] == ["alice"]
    response = client_for(world["instructor"]).get(gradebook_url(world, state="approved"))
    assert response.context["book"].rows == []


def test_it_filters_by_learner_name(world):
    response = client_for(world["instructor"]).get(gradebook_url(world, learner="LIC"))
    assert [row.learner.username for row in response.context["book"].rows] == ["alice"]


def test_it_paginates_by_learners(world):
    for n in range(LEARNERS_PER_PAGE + 5):
        enroll(make_user(f"learner-{n:03d}"), world["course"])
    client = client_for(world["instructor"])
    first = client.get(gradebook_url(world))
    assert len(first.context["book"].rows) == LEARNERS_PER_PAGE
    second = client.get(gradebook_url(world, page=2))
    assert len(second.context["book"].rows) == LEARNERS_PER_PAGE + 5 + 2 - LEARNERS_PER_PAGE
    assert 'rel="prev"' in second.content.decode()


def _gradebook_queries(world, learners: int) -> int:
    for n in range(learners):
        user = make_user(f"many-{learners}-{n:03d}")
        enroll(user, world["course"])
        submit(world["lab"], user, score=n % 16)
        submit(world["lab2"], user)
    client = client_for(world["instructor"])
    client.get(gradebook_url(world))  # warm: session, content types
    with CaptureQueriesContext(connection) as queries:
        response = client.get(gradebook_url(world))
    assert response.status_code == 200
    return len(queries)


def test_it_runs_as_many_queries_for_60_learners_as_for_5(world):
    few = _gradebook_queries(world, 5)
    many = _gradebook_queries(world, 60)
    assert few == many
    assert many <= 12, many  # 8 of them the page's; the rest the header (review link, unread count)


# --- CSV -------------------------------------------------------------------------------------------------------------


def test_it_escapes_formula_cells_and_keeps_numbers_plain():
    assert csv_cell(EVIL_NAME) == "'" + EVIL_NAME
    for text in ("+1", "-2", "@SUM(A1)", "\tx", "\rx", "=1+1"):
        assert csv_cell(text) == "'" + text
    assert csv_cell("alice") == "alice"
    assert csv_cell(Decimal("85.00")) == "85"
    assert csv_cell(Decimal("100.00")) == "100"
    assert csv_cell(Decimal("66.67")) == "66.67"
    assert csv_cell(3) == "3"
    assert csv_cell(None) == ""
    assert csv_cell(True) == "yes"


@pytest.fixture
def evil_world(world):
    lab = make_lab(course=world["course"], slug="evil", title="=HYPERLINK(1)")
    evil = make_user(EVIL_NAME, email="-bad@example.org")
    enroll(evil, world["course"])
    submit(lab, evil, score=15)
    submit(world["lab"], world["learner"], score=12, late=True)
    work = LabWork.objects.get(lab=world["lab"], user=world["learner"])
    loop.work_grade_override(work=work, grade=Decimal("85.5"), reason="Hand check.", by=world["instructor"])
    return world


def test_it_exports_csv_from_the_web_with_escaping(evil_world):
    world = evil_world
    response = client_for(world["instructor"]).get(reverse("gradebook:csv", args=[world["course"].slug]))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    rows = read_csv(text)
    assert list(rows[0]) == [
        "username",
        "email",
        "lab",
        "state",
        "autograde",
        "rubric",
        "final_grade",
        "override",
        "late",
        "revisions",
    ]
    evil_rows = [r for r in rows if r["username"] == "'" + EVIL_NAME]
    assert len(evil_rows) == 3  # one per lab
    assert all(r["email"] == "'-bad@example.org" for r in evil_rows)
    assert not any(r["username"].startswith(("=", "+", "-", "@")) for r in rows)
    alice = next(r for r in rows if r["username"] == "alice" and r["lab"] == "quote-service")
    assert alice["autograde"] == "80"
    assert alice["override"] == "85.50"
    assert alice["final_grade"] == "85.50"
    assert alice["late"] == "yes"
    assert alice["revisions"] == "1"
    assert alice["state"] == "awaiting_review"
    bob = next(r for r in rows if r["username"] == "bob" and r["lab"] == "hello")
    assert bob["state"] == "not_submitted" and bob["final_grade"] == ""


def test_it_exports_csv_with_the_same_filters(evil_world):
    world = evil_world
    url = reverse("gradebook:csv", args=[world["course"].slug]) + "?lab=quote-service&state=awaiting_review"
    response = client_for(world["instructor"]).get(url)
    rows = read_csv(b"".join(response.streaming_content).decode())
    assert [(r["username"], r["lab"]) for r in rows] == [("alice", "quote-service")]


def test_it_exports_csv_with_the_command(evil_world, capsys):
    call_command("gradebook_export", "ops-101")
    rows = read_csv(capsys.readouterr().out)
    assert {r["lab"] for r in rows} == {"quote-service", "hello", "evil"}
    assert any(r["username"] == "'" + EVIL_NAME for r in rows)
    call_command("gradebook_export", "ops-101", "--lab", "evil")
    rows = read_csv(capsys.readouterr().out)
    assert {r["lab"] for r in rows} == {"evil"}
    evil = next(r for r in rows if r["username"] == "'" + EVIL_NAME)
    assert evil["autograde"] == "100"


def test_it_refuses_an_unknown_course_or_lab_naming_what_to_pass(world):
    with pytest.raises(CommandError, match="No course 'nope'.*COURSE.*ops-101"):
        call_command("gradebook_export", "nope")
    with pytest.raises(CommandError, match="No lab 'nope'.*--lab.*quote-service"):
        call_command("gradebook_export", "ops-101", "--lab", "nope")


def test_the_command_exits_non_zero_for_an_unknown_course(world):
    from django.core.management import ManagementUtility

    utility = ManagementUtility(["manage.py", "gradebook_export", "nope"])
    with pytest.raises(SystemExit) as exited:
        utility.execute()
    assert exited.value.code != 0


# --- overrides -------------------------------------------------------------------------------------------------------


@pytest.fixture
def work(world):
    submit(world["lab"], world["learner"], score=12)
    return LabWork.objects.get(lab=world["lab"], user=world["learner"])


def override_url(world, work) -> str:
    return reverse("gradebook:override", args=[world["course"].slug, work.pk])


def test_it_overrides_a_grade_with_a_reason(world, work):
    client = client_for(world["instructor"])
    response = client.post(override_url(world, work), {"grade": "92.5", "reason": "Oral exam."})
    assert response.status_code == 302
    work.refresh_from_db()
    assert work.override_grade == Decimal("92.5")
    assert work.grade == Decimal("92.5")
    log = GradeOverride.objects.get(work=work)
    assert (log.reason, log.by, log.previous_grade) == ("Oral exam.", world["instructor"], None)
    assert WorkEvent.objects.filter(work=work, kind=WorkEvent.Kind.OVERRIDDEN).exists()
    page = client.get(override_url(world, work)).content.decode()
    assert "Oral exam." in page and "92.5" in page and "instructor" in page


def test_it_refuses_an_override_without_a_reason(world, work):
    response = client_for(world["instructor"]).post(override_url(world, work), {"grade": "90", "reason": "  "})
    assert response.status_code == 400
    assert "Give a reason" in response.content.decode()
    work.refresh_from_db()
    assert work.override_grade is None
    assert not GradeOverride.objects.exists()


@pytest.mark.parametrize("grade", ["101", "-1", "abc", "NaN", "50.123"])
def test_it_refuses_an_out_of_range_or_garbled_grade(world, work, grade):
    response = client_for(world["instructor"]).post(override_url(world, work), {"grade": grade, "reason": "x"})
    assert response.status_code == 400
    assert "not saved" in response.content.decode()
    work.refresh_from_db()
    assert work.override_grade is None


def test_it_removes_an_override_with_an_empty_grade(world, work):
    client = client_for(world["instructor"])
    client.post(override_url(world, work), {"grade": "70", "reason": "First."})
    response = client.post(override_url(world, work), {"grade": "", "reason": "Back to the loop's grade."})
    assert response.status_code == 302
    work.refresh_from_db()
    assert work.override_grade is None
    last = GradeOverride.objects.filter(work=work).last()
    assert (last.grade, last.previous_grade) == (None, Decimal(70))
    assert "removed" in client.get(override_url(world, work)).content.decode()


def test_it_escapes_the_reason_on_the_history(world, work):
    client = client_for(world["instructor"])
    client.post(override_url(world, work), {"grade": "70", "reason": "<script>alert(1)</script>"})
    page = client.get(override_url(world, work)).content.decode()
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;" in page


def test_it_answers_404_for_a_work_of_another_course_under_this_slug(world):
    other = make_course("elsewhere")
    enroll(world["instructor"], other, Enrollment.Role.INSTRUCTOR)
    lab = make_lab(course=other)
    submit(lab, world["learner"])
    work = LabWork.objects.get(lab=lab)
    url = reverse("gradebook:override", args=[world["course"].slug, work.pk])
    assert client_for(world["instructor"]).get(url).status_code == 404


# --- who may use them ------------------------------------------------------------------------------------------------


def _urls(world, work) -> list[str]:
    slug = world["course"].slug
    return [
        reverse("gradebook:gradebook", args=[slug]),
        reverse("gradebook:csv", args=[slug]),
        reverse("gradebook:analytics", args=[slug, world["lab"].slug]),
        reverse("gradebook:override", args=[slug, work.pk]),
    ]


@pytest.mark.parametrize("persona", ["learner", "reviewer", "outsider", "other_instructor", "idle"])
def test_it_answers_404_to_everyone_but_the_instructor(world, work, persona):
    client = client_for(world[persona])
    for url in _urls(world, work):
        assert client.get(url).status_code == 404, url
    response = client.post(_urls(world, work)[3], {"grade": "100", "reason": "mine"})
    assert response.status_code == 404
    assert not GradeOverride.objects.exists()


def test_it_answers_200_to_the_instructor(world, work):
    client = client_for(world["instructor"])
    for url in _urls(world, work):
        assert client.get(url).status_code == 200, url


def test_it_sends_anonymous_visitors_to_log_in(world, work):
    for url in _urls(world, work):
        response = Client().get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_it_answers_404_for_a_missing_course(world):
    client = client_for(world["instructor"])
    assert client.get(reverse("gradebook:gradebook", args=["missing"])).status_code == 404
    assert client.get(reverse("gradebook:csv", args=["missing"])).status_code == 404


def test_it_escapes_names_and_titles_on_the_page(world):
    hostile = "<img src=x onerror=alert(1)>"
    lab = make_lab(course=world["course"], slug="hostile", title=hostile)
    user = make_user("<b>x</b>", email="a@example.org")
    enroll(user, world["course"])
    submit(lab, user)
    body = client_for(world["instructor"]).get(gradebook_url(world)).content.decode()
    assert hostile not in body and "<b>x</b>" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "&lt;b&gt;x&lt;/b&gt;" in body


def test_it_exports_every_learner_across_chunks_in_order(world, monkeypatch, capsys):
    from labs.gradebook import selectors

    for n in range(7):
        enroll(make_user(f"chunk-{n}"), world["course"])
    enroll(make_user("chunk-dup"), world["course"])
    monkeypatch.setattr(selectors, "CSV_CHUNK", 3)
    call_command("gradebook_export", "ops-101", "--lab", "hello")
    names = [r["username"] for r in read_csv(capsys.readouterr().out)]
    assert names == sorted(names)
    assert len(names) == len(set(names)) == 2 + 8  # alice, bob and the eight above


def test_the_csv_export_runs_a_bounded_number_of_queries(world):
    url = reverse("gradebook:csv", args=[world["course"].slug])
    client = client_for(world["instructor"])

    def count(learners: int) -> int:
        for n in range(learners):
            user = make_user(f"csv-{learners}-{n}")
            enroll(user, world["course"])
            submit(world["lab"], user)
        with CaptureQueriesContext(connection) as queries:
            b"".join(client.get(url).streaming_content)
        return len(queries)

    assert count(3) == count(40)
