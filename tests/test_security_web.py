"""The web layer against hostile input: markup in every field a learner, a submission or a course file controls
renders as text; the JSON API answers JSON only; the right headers are set; every POST needs its CSRF token;
`?next=` never leads off the site."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from courses.models import Enrollment
from courses.services import learning
from labs.models import CheckResult, GradingRun, LabWork, Review, Revision
from labs.services.tokens import api_token_create
from tests.courses import factories as course_factories
from tests.labs import factories as lab_factories

pytestmark = pytest.mark.django_db

# Each must come out escaped: `<script>` and a live `<img onerror>` are the two classic ways in.
HOSTILE = '"><script>alert("pwn")</script><img src=x onerror=alert(1)>'
RAW_MARKERS = ("<script>alert(", "<img src=x onerror")
ESCAPED_MARKER = "&lt;script&gt;alert("
HOSTILE_PATH = "<img src=x onerror=alert(1)>.py"


def assert_inert(html: str, *, expect_at_least: int = 1) -> None:
    for marker in RAW_MARKERS:
        assert marker not in html, f"unescaped {marker!r} in the page"
    assert html.count(ESCAPED_MARKER) >= expect_at_least, "the hostile text was not shown at all"


@dataclass
class Hostile:
    owner: object
    reviewer: object
    staff: object
    revision: Revision
    token: str

    def client(self, user) -> Client:
        client = Client()
        client.force_login(user)
        return client


@pytest.fixture
def hostile() -> Hostile:
    user_model = get_user_model()
    owner = user_model.objects.create(username="ada" + HOSTILE[:40])  # usernames are only validated in forms
    reviewer = user_model.objects.create(username="rev" + HOSTILE[:40])
    staff = user_model.objects.create(username="boss", is_staff=True)
    course = course_factories.course_create(slug="shipping", title="Course " + HOSTILE, summary="Sum " + HOSTILE)
    unit = course_factories.unit_create(course=course, position=1, slug="week-01", title="Unit " + HOSTILE)
    lesson = course_factories.lesson_create(
        unit=unit,
        position=1,
        slug="pinning",
        title="Lesson " + HOSTILE,
        tagline="Tag " + HOSTILE,
        objective="Obj " + HOSTILE,
        deliverable="Del " + HOSTILE,
        outcomes=["Out " + HOSTILE],
        prerequisites=["Pre " + HOSTILE],
        toc=[{"level": 2, "id": "intro", "text": "Toc " + HOSTILE}],
        references=[{"kind": "article", "title": "Ref " + HOSTILE, "url": "https://example.org/a"}],
    )
    questions = [
        {
            "prompt": "Q " + HOSTILE,
            "kind": "single",
            "choices": [{"text": "C " + HOSTILE, "correct": True}, {"text": "other"}],
            "explanation": "Why " + HOSTILE,
        }
    ]
    quiz = course_factories.graded_quiz_create(lesson=lesson, key="final", max_attempts=3, questions=questions)
    course_factories.enrollment_create(user=owner, course=course)
    course_factories.enrollment_create(user=reviewer, course=course, role=Enrollment.Role.REVIEWER)
    learning.quiz_attempt_submit(user=owner, quiz=quiz, answers={"0": [0]})

    lab = lab_factories.make_lab(course=course, slug="quote-service", title="Lab " + HOSTILE)
    revision = Revision.objects.create(
        lab=lab,
        user=owner,
        number=1,
        state="failed",
        tree_sha256="a" * 64,
        files=[{"path": HOSTILE_PATH, "size": 5, "sha256": "b" * 64}],
        total_bytes=5,
        failure_reason="crash",
        failure_message="Fail " + HOSTILE,
    )
    run = GradingRun.objects.create(
        revision=revision, attempt=1, phase="results_stored", outcome="failed",
        log="Log " + HOSTILE, error_detail="Err " + HOSTILE,
    )  # fmt: skip
    CheckResult.objects.create(
        run=run, position=1, check_id="has-service", kind="files.required", category="correctness",
        status="fail", points=0, max_points=5, message="Msg " + HOSTILE, hint="Hint " + HOSTILE,
        hint_url="javascript:alert(1)", evidence={"stdout": "Ev " + HOSTILE},
    )  # fmt: skip
    Review.objects.create(
        revision=revision,
        reviewer=reviewer,
        decision="changes_requested",
        rubric_scores={"overall": 3},
        comment="Comment " + HOSTILE,
        file_comments=[{"path": HOSTILE_PATH, "line": 1, "body": "Line " + HOSTILE}],
        submitted_at=timezone.now(),
    )
    lab_factories.loop_record(revision)
    return Hostile(
        owner=owner, reviewer=reviewer, staff=staff, revision=revision, token=api_token_create(user=owner)[1]
    )


def test_course_file_fields_render_as_text_on_catalog_course_and_lesson(hostile):
    anonymous = Client()
    assert_inert(anonymous.get("/").content.decode(), expect_at_least=2)  # title, summary
    assert_inert(anonymous.get("/courses/shipping/").content.decode(), expect_at_least=3)  # + unit, lesson
    lesson = hostile.client(hostile.owner).get("/courses/shipping/week-01/pinning/").content.decode()
    # title, tagline, objective, deliverable, outcome, prerequisite, toc, reference, prompt, choice, explanation
    assert_inert(lesson, expect_at_least=11)


def test_usernames_render_as_text_in_the_header_and_on_staff_pages(hostile):
    assert_inert(hostile.client(hostile.owner).get("/").content.decode())
    queue = hostile.client(hostile.staff).get(f"/review/{hostile.revision.lab.course.slug}/").content.decode()
    assert_inert(queue, expect_at_least=2)  # lab title and learner name (twice, once hidden for screen readers)


def test_revision_page_shows_submission_controlled_text_inert(hostile):
    url = f"/revisions/{hostile.revision.pk}/"
    owner_page = hostile.client(hostile.owner).get(url).content.decode()
    # lab title, failure message, check message, hint, evidence, log, file path, review comment, line comment
    assert_inert(owner_page, expect_at_least=8)
    assert "javascript:" not in owner_page
    assert "Err " not in owner_page  # the error detail is for staff only
    staff_page = hostile.client(hostile.staff).get(url).content.decode()
    assert_inert(staff_page, expect_at_least=9)  # + the learner's name
    status = hostile.client(hostile.owner).get(url + "status/").content.decode()
    assert_inert(status, expect_at_least=4)


def test_review_page_shows_file_names_comments_and_evidence_inert(hostile):
    page = hostile.client(hostile.reviewer).get(f"/review/revisions/{hostile.revision.pk}/").content.decode()
    assert_inert(page, expect_at_least=8)


def test_lab_page_shows_a_hostile_upload_name_inert_in_the_error(hostile):
    upload = SimpleUploadedFile(HOSTILE_PATH.replace(".py", ".exe"), b"MZ")
    response = hostile.client(hostile.owner).post("/courses/shipping/labs/quote-service/", {"files": [upload]})
    assert response.status_code == 400
    page = response.content.decode()
    assert "<img src=x onerror" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_api_answers_json_with_hostile_text_as_data(hostile):
    response = Client().get(
        f"/api/revisions/{hostile.revision.pk}", headers={"Authorization": f"Bearer {hostile.token}"}
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    payload = json.loads(response.content)
    assert payload["checks"][0]["message"] == "Msg " + HOSTILE


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/labs/shipping/quote-service/revisions"),
        ("put", "/api/labs/shipping/quote-service/revisions"),
        ("post", "/api/revisions/{rev}"),
        ("delete", "/api/revisions/{rev}"),
    ],
)
def test_the_api_refuses_a_wrong_method_in_json(hostile, method, url):
    client = Client()
    response = getattr(client, method)(
        url.format(rev=hostile.revision.pk), headers={"Authorization": f"Bearer {hostile.token}"}
    )
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert "Allow" in response
    assert json.loads(response.content)["error"]


def test_every_kind_of_page_sends_nosniff_and_refuses_framing(hostile):
    owner = hostile.client(hostile.owner)
    for url in ("/", "/courses/shipping/week-01/pinning/", f"/revisions/{hostile.revision.pk}/", "/nowhere/"):
        response = owner.get(url)
        assert response["X-Content-Type-Options"] == "nosniff", url
        assert response["X-Frame-Options"] == "DENY", url
        assert response["Content-Type"].startswith("text/html"), url


def test_the_starter_download_is_an_attachment_with_a_safe_name(hostile):
    lab = hostile.revision.lab
    lab.starter_digest = "d" * 64
    lab.save()
    starters = settings.DATA_DIR / "starters"
    starters.mkdir(parents=True, exist_ok=True)
    (starters / f"{lab.starter_digest}.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    response = Client().get("/courses/shipping/labs/quote-service/starter.zip")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="quote-service-starter.zip"'
    assert response["Content-Type"] == "application/zip"
    assert response["X-Content-Type-Options"] == "nosniff"


# --- CSRF ------------------------------------------------------------------------------------------------------

CSRF_POSTS = [
    ("/courses/shipping/enroll/", {}),
    ("/courses/shipping/week-01/pinning/complete/", {}),
    ("/courses/shipping/week-01/pinning/quiz/final/", {"q0": "0"}),
    ("/courses/shipping/labs/quote-service/", {"files": "x"}),
    ("/account/tokens/", {"action": "create"}),
    ("/account/tokens/", {"action": "revoke", "token_id": "1"}),
    ("/accounts/logout/", {}),
]


def _csrf_client(user=None) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    client.get("/accounts/signup/" if user is None else "/account/tokens/")
    return client, client.cookies[settings.CSRF_COOKIE_NAME].value


@pytest.mark.parametrize(("url", "data"), CSRF_POSTS, ids=[f"{u} {d.get('action', '')}" for u, d in CSRF_POSTS])
def test_a_logged_in_post_without_its_csrf_token_is_refused(hostile, url, data):
    client, token = _csrf_client(hostile.owner)
    assert client.post(url, data).status_code == 403
    assert client.post(url, {**data, "csrfmiddlewaretoken": token}).status_code != 403


def test_a_review_post_without_its_csrf_token_is_refused(hostile):
    second = get_user_model().objects.create(username="second-reviewer")
    course_factories.enrollment_create(user=second, course=hostile.revision.lab.course, role=Enrollment.Role.REVIEWER)
    client, token = _csrf_client(second)
    claim = f"/review/work/{LabWork.objects.get(revision=hostile.revision).pk}/claim/"
    assert client.post(claim).status_code == 403
    assert client.post(claim, {"csrfmiddlewaretoken": token}).status_code == 302
    url = f"/review/revisions/{hostile.revision.pk}/"
    data = {"decision": "approved", "score-overall": "9", "action": "submit"}
    assert client.post(url, data).status_code == 403
    assert not Review.objects.filter(reviewer=second).exists()
    assert client.post(url, {**data, "csrfmiddlewaretoken": token}).status_code == 302
    assert Review.objects.get(reviewer=second).decision == "approved"


@pytest.mark.parametrize("url", ["/accounts/login/", "/accounts/signup/"])
def test_login_and_signup_posts_need_the_csrf_token(url):
    client, token = _csrf_client()
    data = {"username": "grace", "password": "x", "password1": "x", "password2": "x"}
    assert client.post(url, data).status_code == 403
    assert client.post(url, {**data, "csrfmiddlewaretoken": token}).status_code == 200  # form errors, not 403


def test_htmx_posts_carry_the_token_in_a_header(hostile):
    client, token = _csrf_client(hostile.owner)
    url = "/courses/shipping/week-01/pinning/complete/"
    response = client.post(url, {}, headers={"HX-Request": "true", "X-CSRFToken": token})
    assert response.status_code == 200
    assert "You completed this lesson" in response.content.decode()


def test_the_api_needs_no_csrf_token_because_it_ignores_cookies(hostile):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/labs/shipping/quote-service/revisions", headers={"Authorization": f"Bearer {hostile.token}"}
    )
    assert response.status_code == 400  # reached the view: no files in the request


# --- open redirects --------------------------------------------------------------------------------------------

OFFSITE = [
    "https://evil.example/",
    "//evil.example/",
    "/\\evil.example/",
    "https:evil.example",
    "javascript:alert(1)",
    " //evil.example",
    "http://testserver@evil.example/",
]


@pytest.mark.parametrize("target", OFFSITE)
def test_login_never_redirects_off_site(target):
    user = get_user_model().objects.create_user(username="grace", password="pw-for-tests-only")
    client = Client()
    page = client.get("/accounts/login/", {"next": target}).content.decode()
    assert "evil.example" not in page
    assert "javascript:" not in page
    response = client.post(
        "/accounts/login/", {"username": user.username, "password": "pw-for-tests-only", "next": target}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.parametrize("target", OFFSITE)
def test_signup_never_redirects_off_site(target):
    client = Client()
    page = client.get("/accounts/signup/", {"next": target}).content.decode()
    assert "evil.example" not in page
    assert "javascript:" not in page
    data = {
        "username": "grace",
        "email": "grace@example.com",
        "password1": "a-long-pw-for-tests-42",
        "password2": "a-long-pw-for-tests-42",
    }
    response = client.post("/accounts/signup/?next=" + target, {**data, "next": target})
    assert response.status_code == 302
    assert response["Location"] == "/"
    # Already logged in: the same refusal.
    again = client.get("/accounts/signup/", {"next": target})
    assert again["Location"] == "/"


def test_login_follows_a_local_next():
    get_user_model().objects.create_user(username="grace", password="pw-for-tests-only")
    response = Client().post(
        "/accounts/login/", {"username": "grace", "password": "pw-for-tests-only", "next": "/courses/x/"}
    )
    assert response["Location"] == "/courses/x/"


def test_an_unknown_api_path_answers_json_not_html(client):
    response = client.get("/api/nope")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "not found"
