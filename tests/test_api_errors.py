"""Every error of the JSON API is JSON with `error` and `hint`, and the right status: Django's own limits on a
request's body (413/400), bodies it cannot parse (400), wrong and unusual methods (405, never 200), throttling
(429), missing tokens (401), unknown paths (404).

Persona: Lea, a learner whose script talks to the API with her token.
"""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from config import throttle
from labs.models import Revision
from labs.services.tokens import api_token_create
from tests.labs.factories import make_lab, make_user
from tests.test_throttling import FrozenClock, use_private_throttle_cache

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def isolated(settings, tmp_path, monkeypatch) -> FrozenClock:
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    use_private_throttle_cache(settings)
    frozen = FrozenClock()
    monkeypatch.setattr(throttle, "clock", frozen)
    return frozen


@pytest.fixture
def lea() -> Client:
    _token, raw = api_token_create(user=make_user("lea"))
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


@pytest.fixture
def submit_url() -> str:
    lab = make_lab()
    return f"/api/labs/{lab.course.slug}/{lab.slug}/revisions"


def zip_upload(name: str = "work.zip") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"PK\x05\x06" + b"\x00" * 18, content_type="application/zip")


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"], body
    assert body["hint"], body
    return body


def test_form_fields_over_djangos_memory_limit_answer_413_in_json(lea, submit_url, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024

    response = lea.post(submit_url, {"archive": zip_upload(), "paths": "x" * 4096})

    body = assert_json_error(response, 413)
    assert body["error"] == "The request's form fields are too large (at most 1024 bytes besides the files)."
    assert "'archive'" in body["hint"]
    assert not Revision.objects.exists()


def test_more_files_than_django_accepts_answer_400_in_json(lea, submit_url, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2

    response = lea.post(submit_url, {"files": [zip_upload(f"f{n}.py") for n in range(3)]})

    body = assert_json_error(response, 400)
    assert body["error"] == "The request holds too many files (at most 2)."
    assert not Revision.objects.exists()


def test_more_fields_than_django_accepts_answer_400_in_json(lea, submit_url, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3

    response = lea.post(submit_url, {"archive": zip_upload(), "paths": [f"p{n}.py" for n in range(5)]})

    body = assert_json_error(response, 400)
    assert body["error"] == "The request holds too many form fields (at most 3)."


def test_a_body_django_cannot_parse_answers_400_in_json(lea, submit_url):
    response = lea.post(submit_url, b"--x\r\nnot a part", content_type="multipart/form-data; boundary=")

    body = assert_json_error(response, 400)
    assert body["error"] == "The request's body could not be read."


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS", "PATCH", "PUT", "DELETE", "PROPFIND", "TRACK"])
@pytest.mark.parametrize("path", ["/api/revisions/1", "submit"])
def test_wrong_and_unusual_methods_answer_405_in_json_never_200(lea, submit_url, method, path):
    response = lea.generic(method, submit_url if path == "submit" else path)

    assert_json_error(response, 405)
    assert response["Allow"]
    assert method not in response["Allow"].replace(" ", "").split(",")


def test_a_throttled_call_answers_429_in_json_with_retry_after(lea, settings, isolated):
    settings.THROTTLE_API_CALLS, settings.THROTTLE_API_CALLS_SECONDS = 1, 60
    lea.get("/api/revisions/1")
    isolated.advance(20)

    response = lea.get("/api/revisions/1")

    body = assert_json_error(response, 429)
    assert body["retry_in_seconds"] == 40
    assert response["Retry-After"] == "40"


def test_no_token_answers_401_in_json():
    body = assert_json_error(Client().get("/api/revisions/1"), 401)
    assert "/account/tokens/" in body["hint"]


def test_an_unknown_api_path_answers_404_in_json(lea):
    assert_json_error(lea.get("/api/nowhere"), 404)
