"""The JSON API used by the CLI: token auth, submission, revision status and object-level authorization."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest
from django.test import Client

from courses.models import Enrollment
from labs.models import ApiToken, CheckResult, GradingRun, Revision
from labs.services.tokens import api_token_create

from .factories import enroll, make_lab, make_user
from .test_uploads import GOOD, make_zip

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def root(settings, tmp_path):
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    return settings.SUBMISSIONS_ROOT


def api_client(user) -> Client:
    _token, raw = api_token_create(user=user)
    # enforce_csrf_checks: token-authenticated API views must work without a CSRF token.
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {raw}")


def submit(client: Client, lab, data: bytes | None = None):
    return client.post(f"/api/labs/{lab.course.slug}/{lab.slug}/revisions", {"archive": _file(data or make_zip(GOOD))})


def _file(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("work.zip", data, content_type="application/zip")


def test_it_requires_a_token():
    lab = make_lab()
    response = Client().post(f"/api/labs/{lab.course.slug}/{lab.slug}/revisions", {"archive": _file(make_zip(GOOD))})
    assert response.status_code == 401
    assert response.json()["error"] == "An API token is required."
    assert "/account/tokens/" in response.json()["hint"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Revision.objects.exists()


def test_it_rejects_a_wrong_token():
    lab = make_lab()
    client = Client(HTTP_AUTHORIZATION="Bearer ss_not-a-real-token")
    assert client.get("/api/revisions/1").status_code == 401
    assert submit(client, lab).status_code == 401


def test_only_the_tokens_hash_is_stored():
    user = make_user()
    token, raw = api_token_create(user=user)
    assert ApiToken.objects.get(pk=token.pk).key_sha256 == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiToken.objects.filter(pk=token.pk).values().get())


def test_it_creates_a_revision_and_reports_it_queued():
    lab = make_lab()
    client = api_client(make_user())
    response = submit(client, lab)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["number"], body["state"]) == (1, "queued")
    assert body["url"].endswith(f"/revisions/{body['id']}/")
    status = client.get(f"/api/revisions/{body['id']}").json()
    assert (status["state"], status["phase"], status["queue_position"], status["checks"]) == ("queued", "queued", 0, [])
    assert status["phases"]["queued"] is not None


def test_it_accepts_several_files_with_paths():
    lab = make_lab()
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = api_client(make_user()).post(
        f"/api/labs/{lab.course.slug}/{lab.slug}/revisions",
        {
            "files": [SimpleUploadedFile("service.py", GOOD[1]), SimpleUploadedFile("a.py", b"A = 1\n")],
            "paths": ["service.py", "pkg/a.py"],
        },
    )
    assert response.status_code == 201, response.content
    assert [f["path"] for f in Revision.objects.get().files] == ["pkg/a.py", "service.py"]


def test_a_hostile_upload_gets_every_problem_and_a_hint(root):
    lab = make_lab()
    response = submit(api_client(make_user()), lab, make_zip(("../../evil.py", b"x"), ("x.sh", b"x")))
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "The upload was rejected (3 problems)."
    assert "'../../evil.py' points outside the submission's root ('..')." in body["problems"]
    assert body["hint"]
    assert not Revision.objects.exists()
    assert not root.exists() or not any(root.iterdir())


def test_the_cooldown_answers_429_with_retry_after():
    lab = make_lab(cooldown_seconds=120)
    client = api_client(make_user())
    assert submit(client, lab).status_code == 201
    response = submit(client, lab)
    assert response.status_code == 429
    assert 119 <= int(response["Retry-After"]) <= 120
    assert response.json()["error"].startswith("You can submit again at ")


def test_an_unknown_lab_is_404():
    lab = make_lab()
    response = api_client(make_user()).post(f"/api/labs/{lab.course.slug}/nope/revisions", {"archive": _file(b"x")})
    assert response.status_code == 404


def _graded_revision(lab, user):
    revision = Revision.objects.create(
        lab=lab,
        user=user,
        number=1,
        state=Revision.State.GRADED,
        tree_sha256="a" * 64,
        score=Decimal(15),
        max_score=Decimal(15),
        scores_by_category={"correctness": {"score": "15", "max": "15"}},
    )
    run = GradingRun.objects.create(revision=revision, attempt=1, phase="results_stored")
    for position, (check_id, hidden) in enumerate([("has-service", False), ("secret-tests", True)]):
        CheckResult.objects.create(
            run=run,
            position=position,
            check_id=check_id,
            kind="k",
            category="correctness",
            status="pass",
            points=Decimal(5 if not hidden else 10),
            max_points=Decimal(5 if not hidden else 10),
            message=f"{check_id} passed",
            hidden_until_due=hidden,
        )
    return revision


def test_a_learner_sees_hidden_checks_only_as_hidden_and_a_partial_score():
    lab = make_lab()
    learner = make_user()
    revision = _graded_revision(lab, learner)
    body = api_client(learner).get(f"/api/revisions/{revision.pk}").json()
    assert body["checks"][0] == {
        "id": "has-service",
        "category": "correctness",
        "status": "pass",
        "points": 5.0,
        "max_points": 5.0,
        "message": "has-service passed",
        "hint": "",
    }
    assert body["checks"][1]["status"] == "hidden"
    assert "message" not in body["checks"][1]
    assert (body["score"], body["max_score"], body["hidden_checks"]) == (5.0, 5.0, 1)


def test_reviewers_and_staff_of_the_course_see_every_revision_in_full():
    lab = make_lab()
    revision = _graded_revision(lab, make_user())
    reviewer = make_user()
    enroll(reviewer, lab.course, Enrollment.Role.REVIEWER)
    for viewer in (reviewer, make_user(is_staff=True)):
        body = api_client(viewer).get(f"/api/revisions/{revision.pk}").json()
        assert body["checks"][1]["message"] == "secret-tests passed"
        assert body["score"] == 15.0


def test_other_learners_outsiders_and_other_courses_reviewers_get_404():
    lab = make_lab()
    revision = _graded_revision(lab, make_user())
    classmate = make_user()
    enroll(classmate, lab.course)
    other_reviewer = make_user()
    enroll(other_reviewer, make_lab().course, Enrollment.Role.REVIEWER)
    for viewer in (classmate, make_user(), other_reviewer):
        response = api_client(viewer).get(f"/api/revisions/{revision.pk}")
        assert response.status_code == 404
        assert "secret" not in response.content.decode()


def test_scores_by_category_are_numbers_with_and_without_concealed_checks():
    lab = make_lab()
    learner = make_user()
    revision = _graded_revision(lab, learner)  # stored as strings, as an earlier version wrote them

    concealed = api_client(learner).get(f"/api/revisions/{revision.pk}").json()
    revealed = api_client(make_user(is_staff=True)).get(f"/api/revisions/{revision.pk}").json()

    assert concealed["hidden_checks"] == 1
    assert concealed["scores_by_category"] == {"correctness": {"score": 5.0, "max": 5.0}}
    assert revealed["scores_by_category"] == {"correctness": {"score": 15.0, "max": 15.0}}
    for body in (concealed, revealed):
        numbers = [body["score"], body["max_score"], *body["scores_by_category"]["correctness"].values()]
        assert all(type(number) is float for number in numbers), numbers
