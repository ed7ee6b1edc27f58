"""Who may open what: every URL of the site against every persona, as one table.

Personas: anonymous; the learner who owns the revision; another learner of the same course; an outsider (logged
in, enrolled nowhere); a reviewer and an instructor of the course; a reviewer of ANOTHER course; site staff.
A persona that may not see an object gets 404 (never 403: an id reveals nothing), anonymous visitors of HTML
pages are sent to the login page, and the API answers 401 without a token.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from courses.models import Enrollment
from labs.models import ApiToken, CheckResult, GradingRun, Regrade, Revision
from labs.services.tokens import api_token_create
from notifications.models import Notification
from tests.courses import factories as course_factories
from tests.labs import factories as lab_factories

pytestmark = pytest.mark.django_db

PERSONAS = ["anonymous", "owner", "other_learner", "outsider", "reviewer", "instructor", "foreign_reviewer", "staff"]
LOGIN = "login"  # expected outcome: a redirect to the login page
FILES = [{"path": "service.py", "size": 12, "sha256": "b" * 64}]


@dataclass
class World:
    users: dict
    course: object
    lab: object
    lesson: object
    revision: Revision
    other_revision: Revision
    tokens: dict
    ids: dict

    def client(self, persona: str) -> Client:
        client = Client()
        if persona != "anonymous":
            client.force_login(self.users[persona])
        return client


@pytest.fixture
def world(tmp_path) -> World:
    course = course_factories.course_create(slug="shipping", title="Shipping")
    other_course = course_factories.course_create(slug="elsewhere", title="Elsewhere")
    unit = course_factories.unit_create(course=course, position=1, slug="week-01")
    lesson = course_factories.lesson_create(unit=unit, position=1, slug="pinning")
    course_factories.graded_quiz_create(lesson=lesson, key="final")
    digest = "c" * 64
    lab = lab_factories.make_lab(course=course, slug="quote-service", starter_digest=digest)
    starters = settings.DATA_DIR / "starters"
    starters.mkdir(parents=True, exist_ok=True)
    (starters / f"{digest}.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip

    # No password: force_login does not need one, and hashing eight passwords per test is most of its time.
    users = {name: get_user_model().objects.create(username=name) for name in PERSONAS[1:]}
    users["staff"].is_staff = True
    users["staff"].save()
    course_factories.enrollment_create(user=users["owner"], course=course)
    course_factories.enrollment_create(user=users["other_learner"], course=course)
    course_factories.enrollment_create(user=users["reviewer"], course=course, role=Enrollment.Role.REVIEWER)
    course_factories.enrollment_create(user=users["instructor"], course=course, role=Enrollment.Role.INSTRUCTOR)
    course_factories.enrollment_create(
        user=users["foreign_reviewer"], course=other_course, role=Enrollment.Role.REVIEWER
    )

    def graded(user) -> Revision:
        revision = Revision.objects.create(
            lab=lab, user=user, number=1, state="graded", tree_sha256="a" * 64, files=FILES, total_bytes=12
        )
        run = GradingRun.objects.create(revision=revision, attempt=1, phase="results_stored", outcome="graded")
        CheckResult.objects.create(
            run=run, position=1, check_id="has-service", kind="files.required", category="correctness",
            status="pass", points=5, max_points=5, message="service.py is there.",
        )  # fmt: skip
        return revision

    tokens = {name: api_token_create(user=user)[1] for name, user in users.items()}
    revision = graded(users["owner"])
    other_revision = graded(users["other_learner"])
    work = lab_factories.loop_record(revision)
    lab_factories.loop_record(other_revision)
    note = Notification.objects.create(user=users["owner"], kind="grading_finished", title="t", url="/")
    regrade = Regrade.objects.create(lab=lab, requested_by=users["instructor"], grader_digest="d" * 64)
    return World(
        users=users,
        course=course,
        lab=lab,
        lesson=lesson,
        revision=revision,
        other_revision=other_revision,
        tokens=tokens,
        ids={"rev": revision.pk, "work": work.pk, "note": note.pk, "regrade": regrade.pk},
    )


def _row(url: str, method: str, *outcomes) -> tuple:
    assert len(outcomes) == len(PERSONAS)
    return (url, method, dict(zip(PERSONAS, outcomes, strict=True)))


LESSON = "/courses/shipping/week-01/pinning/"
LAB = "/courses/shipping/labs/quote-service/"
REV = "/revisions/{rev}/"
REVIEW = "/review/revisions/{rev}/"

#                 anonymous owner other outsider reviewer instructor foreign staff
HTML_TABLE = [
    _row("/", "get", 200, 200, 200, 200, 200, 200, 200, 200),
    _row("/courses/shipping/", "get", 200, 200, 200, 200, 200, 200, 200, 200),
    _row("/courses/nowhere/", "get", 404, 404, 404, 404, 404, 404, 404, 404),
    _row("/courses/shipping/enroll/", "post", LOGIN, 302, 302, 302, 302, 302, 302, 302),
    _row(LESSON, "get", 200, 200, 200, 200, 200, 200, 200, 200),
    _row(LESSON + "complete/", "post", LOGIN, 302, 302, 302, 302, 302, 302, 302),
    _row(LESSON + "quiz/final/", "post", LOGIN, 302, 302, 302, 302, 302, 302, 302),
    _row(LESSON + "quiz/nope/", "post", 404, 404, 404, 404, 404, 404, 404, 404),
    _row(LAB, "get", 200, 200, 200, 200, 200, 200, 200, 200),
    _row(LAB, "post", LOGIN, 400, 400, 400, 400, 400, 400, 400),  # logged in: an empty upload is refused
    _row(LAB + "starter.zip", "get", 200, 200, 200, 200, 200, 200, 200, 200),  # public like the lessons
    _row("/courses/shipping/labs/nope/", "get", 404, 404, 404, 404, 404, 404, 404, 404),
    _row(REV, "get", LOGIN, 200, 404, 404, 200, 200, 404, 200),
    _row(REV + "status/", "get", 404, 200, 404, 404, 200, 200, 404, 200),
    _row("/revisions/999999/", "get", LOGIN, 404, 404, 404, 404, 404, 404, 404),
    _row("/account/tokens/", "get", LOGIN, 200, 200, 200, 200, 200, 200, 200),
    _row("/review/", "get", LOGIN, 404, 404, 404, 200, 200, 200, 200),
    _row(REVIEW, "get", LOGIN, 404, 404, 404, 200, 200, 404, 200),  # never one's own revision
    _row(REVIEW, "post", LOGIN, 404, 404, 404, 409, 409, 404, 409),  # reachable, refused: nobody claimed it
    _row("/review/revisions/999999/", "get", LOGIN, 404, 404, 404, 404, 404, 404, 404),
    _row("/review/shipping/", "get", LOGIN, 404, 404, 404, 200, 200, 404, 200),
    _row("/review/elsewhere/", "get", LOGIN, 404, 404, 404, 404, 404, 200, 200),
    _row("/review/work/{work}/claim/", "post", LOGIN, 404, 404, 404, 302, 302, 404, 302),
    _row("/review/work/{work}/release/", "post", LOGIN, 404, 404, 404, 409, 409, 404, 409),  # nothing held
    _row("/review/work/999999/claim/", "post", LOGIN, 404, 404, 404, 404, 404, 404, 404),
    # Reaches the review service: refused there (this test's file is not stored, so it has no line 1).
    _row(REVIEW + "comments/", "post", LOGIN, 404, 404, 404, 400, 400, 404, 400),
    _row(REVIEW + "comments/0/delete/", "post", LOGIN, 404, 404, 404, 409, 409, 404, 409),  # no draft yet
    _row("/work/{work}/", "get", LOGIN, 200, 404, 404, 200, 200, 404, 200),
    _row("/work/999999/", "get", LOGIN, 404, 404, 404, 404, 404, 404, 404),
    _row("/revisions/{rev}/diff/{rev}/", "get", LOGIN, 200, 404, 404, 200, 200, 404, 200),
    _row("/notifications/", "get", LOGIN, 200, 200, 200, 200, 200, 200, 200),
    _row("/notifications/read-all/", "post", LOGIN, 302, 302, 302, 302, 302, 302, 302),
    _row("/notifications/{note}/", "get", LOGIN, 302, 404, 404, 404, 404, 404, 404),  # only its owner, even staff
    _row("/accounts/email/", "get", LOGIN, 200, 200, 200, 200, 200, 200, 200),
    _row("/courses/shipping/gradebook/", "get", LOGIN, 404, 404, 404, 404, 200, 404, 200),
    _row("/courses/shipping/gradebook.csv", "get", LOGIN, 404, 404, 404, 404, 200, 404, 200),
    _row("/courses/elsewhere/gradebook/", "get", LOGIN, 404, 404, 404, 404, 404, 404, 200),
    _row(LAB + "analytics/", "get", LOGIN, 404, 404, 404, 404, 200, 404, 200),
    _row("/courses/shipping/work/{work}/override/", "get", LOGIN, 404, 404, 404, 404, 200, 404, 200),
    _row("/courses/shipping/work/{work}/override/", "post", LOGIN, 404, 404, 404, 404, 400, 404, 400),  # no reason
    _row("/courses/elsewhere/work/{work}/override/", "get", LOGIN, 404, 404, 404, 404, 404, 404, 404),
    _row(LAB + "regrades/", "get", LOGIN, 404, 404, 404, 404, 200, 404, 200),
    _row("/regrades/{regrade}/", "get", LOGIN, 404, 404, 404, 404, 200, 404, 200),
    _row("/regrades/{regrade}/progress/", "get", 404, 404, 404, 404, 404, 200, 404, 200),
    _row("/regrades/{regrade}/discard/", "post", LOGIN, 404, 404, 404, 404, 302, 404, 302),  # refused, said so
    _row("/admin/", "get", LOGIN, LOGIN, LOGIN, LOGIN, LOGIN, LOGIN, LOGIN, 200),
    _row("/accounts/login/", "get", 200, 302, 302, 302, 302, 302, 302, 302),
    _row("/accounts/signup/", "get", 200, 302, 302, 302, 302, 302, 302, 302),
    _row("/accounts/logout/", "post", 302, 302, 302, 302, 302, 302, 302, 302),
    _row("/healthz", "get", 200, 200, 200, 200, 200, 200, 200, 200),
    # The test client calls from 127.0.0.1 and no token is configured: loopback is internal, whoever is logged
    # in. From any other address, or with a token configured and not sent, it is 404 (tests/platform/test_metrics.py).
    _row("/metrics", "get", 200, 200, 200, 200, 200, 200, 200, 200),
]
REVIEW_POST = {"decision": "approved", "score-overall": "8", "comment": "Looks right."}
COMMENT_POST = {"path": "service.py", "line": "1", "body": "Name this function for what it does."}


def _cases(table):
    for url, method, outcomes in table:
        for persona, expected in outcomes.items():
            yield pytest.param(url, method, persona, expected, id=f"{method} {url} as {persona}")


@pytest.mark.parametrize(("url", "method", "persona", "expected"), list(_cases(HTML_TABLE)))
def test_each_page_answers_each_persona_as_the_table_says(world, url, method, persona, expected):
    url = url.format(**world.ids)
    client = world.client(persona)
    data = {}
    if url.startswith("/review/revisions/"):
        data = COMMENT_POST if "/comments/" in url else REVIEW_POST
    response = client.post(url, data) if method == "post" else client.get(url)
    if expected == LOGIN:
        assert response.status_code == 302, response
        assert "/login/" in response["Location"]
        assert "next=" in response["Location"]
    else:
        assert response.status_code == expected, (response.status_code, response.content[:300])


#                 anonymous owner other outsider reviewer instructor foreign staff
API_TABLE = [
    _row("/api/revisions/{rev}", "get", 401, 200, 404, 404, 200, 200, 404, 200),
    _row("/api/revisions/999999", "get", 401, 404, 404, 404, 404, 404, 404, 404),
    # Anyone with a token may submit (a first submission enrols); an empty request is refused before storing.
    _row("/api/labs/shipping/quote-service/revisions", "post", 401, 400, 400, 400, 400, 400, 400, 400),
    _row("/api/labs/shipping/nope/revisions", "post", 401, 404, 404, 404, 404, 404, 404, 404),
]


@pytest.mark.parametrize(("url", "method", "persona", "expected"), list(_cases(API_TABLE)))
def test_each_api_endpoint_answers_each_token_as_the_table_says(world, url, method, persona, expected):
    url = url.format(rev=world.revision.pk)
    headers = {} if persona == "anonymous" else {"Authorization": f"Bearer {world.tokens[persona]}"}
    client = Client()
    response = client.post(url, **{"headers": headers}) if method == "post" else client.get(url, headers=headers)
    assert response.status_code == expected, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_the_api_ignores_a_logged_in_session_without_a_token(world):
    client = world.client("owner")
    response = client.get(f"/api/revisions/{world.revision.pk}")
    assert response.status_code == 401


def test_the_api_refuses_a_revoked_token_and_a_disabled_account(world):
    owner = world.users["owner"]
    ApiToken.objects.filter(user=owner).delete()
    response = Client().get(f"/api/revisions/{world.revision.pk}", headers={"Authorization": "Bearer x"})
    assert response.status_code == 401
    raw = api_token_create(user=owner)[1]
    owner.is_active = False
    owner.save()
    response = Client().get(f"/api/revisions/{world.revision.pk}", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 401


def test_a_learner_cannot_revoke_someone_elses_token(world):
    victim = ApiToken.objects.get(user=world.users["other_learner"])
    response = world.client("owner").post("/account/tokens/", {"action": "revoke", "token_id": victim.pk})
    assert response.status_code == 302
    assert ApiToken.objects.filter(pk=victim.pk).exists()


def test_a_garbled_token_id_is_a_bad_request_not_a_crash(world):
    response = world.client("owner").post("/account/tokens/", {"action": "revoke", "token_id": "abc"})
    assert response.status_code in (302, 400)
    assert ApiToken.objects.filter(user=world.users["owner"]).count() == 1


def test_the_owner_revokes_their_own_token(world):
    own = ApiToken.objects.get(user=world.users["owner"])
    response = world.client("owner").post("/account/tokens/", {"action": "revoke", "token_id": own.pk})
    assert response.status_code == 302
    assert not ApiToken.objects.filter(pk=own.pk).exists()


def test_a_reviewer_of_another_course_sees_none_of_this_courses_work_in_the_queue(world):
    response = world.client("foreign_reviewer").get("/review/")
    assert response.status_code == 200
    assert "Shipping" not in response.content.decode()
    assert world.client("foreign_reviewer").get("/review/shipping/").status_code == 404
    reviewer_page = world.client("reviewer").get("/review/shipping/").content.decode()
    assert f'data-work="{world.ids["work"]}"' in reviewer_page


def test_a_learner_sees_only_their_own_revisions_on_the_lab_page(world):
    page = world.client("owner").get(LAB).content.decode()
    assert f"/revisions/{world.revision.pk}/" in page
    assert f"/revisions/{world.other_revision.pk}/" not in page


def test_the_starter_download_never_serves_the_grader(world):
    response = world.client("owner").get(LAB + "starter.zip")
    assert response["Content-Disposition"].startswith("attachment")
    assert world.client("owner").get(LAB + "grader.zip").status_code == 404
