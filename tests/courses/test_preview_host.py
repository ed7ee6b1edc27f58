"""The preview answers only requests addressed to a loopback name: a page on another site that resolves its own
name to 127.0.0.1 (DNS rebinding) must not read the drafts and graded answers the preview shows."""

from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest

from courses.preview.app import PreviewApp
from courses.preview.watch import CoursePreview
from tests.courses.test_preview import make_course


def get(preview: CoursePreview, url: str, *, host: str) -> tuple[int, dict[str, str], bytes]:
    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=url, REQUEST_METHOD="GET", HTTP_HOST=host)
    answer: dict = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=int(status.split()[0]), headers=dict(headers))

    body = b"".join(PreviewApp(preview, poll_timeout=0)(environ, start_response))
    return answer["status"], answer["headers"], body


@pytest.fixture
def preview(tmp_path: Path) -> CoursePreview:
    return CoursePreview(make_course(tmp_path / "course"))


@pytest.mark.parametrize("host", ["127.0.0.1:8008", "localhost:8008", "[::1]:8008", "127.0.0.1"])
def test_it_serves_requests_addressed_to_loopback(preview, host):
    status, _, body = get(preview, "/", host=host)
    assert status == 200
    assert b"Preview course" in body


@pytest.mark.parametrize("host", ["attacker.example:8008", "127.0.0.1.attacker.example", "intranet.example:8008", ""])
def test_it_refuses_requests_addressed_to_another_name(preview, host):
    status, headers, body = get(preview, "/", host=host)
    assert status == 400
    assert b"only requests addressed to 127.0.0.1, localhost or [::1]" in body
    assert headers["X-Content-Type-Options"] == "nosniff"
