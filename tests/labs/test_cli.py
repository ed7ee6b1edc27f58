"""The `shipshape` CLI against a live server: submit, follow to the end, status, and its error paths."""

from __future__ import annotations

import io
import threading
import zipfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path

import pytest

from config import throttle
from labs import cli
from labs.models import ApiToken, CheckResult, GradingRun, Revision
from labs.services.tokens import api_token_create, token_hash
from tests.test_throttling import FrozenClock, use_private_throttle_cache

from .factories import make_lab, make_user


@pytest.fixture
def sent(monkeypatch, settings, tmp_path) -> list[int]:
    """Record what would be published to the broker: these tests stop at the queued state, without a worker."""
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    published: list[int] = []
    monkeypatch.setattr("labs.services.grading.revision_send", lambda revision: published.append(revision.pk))
    return published


@pytest.fixture
def project(tmp_path) -> Path:
    folder = tmp_path / "quote"
    (folder / "pkg").mkdir(parents=True)
    (folder / "service.py").write_text("print('quote')\n")
    (folder / "pkg" / "util.py").write_text("X = 1\n")
    for junk in (".git/config", "__pycache__/service.cpython-311.pyc", ".venv/bin/python"):
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_text("junk")
    return folder


@pytest.fixture
def env(live_server, transactional_db) -> dict[str, str]:
    user = make_user("cli-learner")
    _token, raw = api_token_create(user=user)
    return {"SHIPSHAPE_URL": live_server.url, "SHIPSHAPE_TOKEN": raw}


def run(argv: list[str], env: dict[str, str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv, env=env)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_zip_folder_is_deterministic_and_skips_caches(project):
    first = cli.zip_folder(project)
    (project / "service.py").touch()  # a new mtime must not change the bytes
    assert cli.zip_folder(project) == first
    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        assert zf.namelist() == ["pkg/util.py", "service.py"]


@pytest.mark.django_db(transaction=True)
def test_submit_prints_the_queued_revision(env, project, sent, capsys):
    lab = make_lab()
    code, out, _ = run(["submit", f"{lab.course.slug}/{lab.slug}", str(project), "--no-follow"], env, capsys)
    revision = Revision.objects.get()
    assert code == 0
    assert f"revision 1 (id {revision.pk}) queued: {env['SHIPSHAPE_URL']}/revisions/{revision.pk}/" in out
    assert [f["path"] for f in revision.files] == ["pkg/util.py", "service.py"]
    assert sent == [revision.pk], "the revision is published once, after its transaction committed"


@pytest.mark.django_db(transaction=True)
def test_submit_follows_checks_until_graded(env, project, sent, capsys):
    lab = make_lab()
    result: dict[str, int] = {}
    argv = ["submit", f"{lab.course.slug}/{lab.slug}", str(project), "--poll", "0.05", "--timeout", "60"]
    thread = threading.Thread(target=lambda: result.setdefault("code", cli.main(argv, env=env)))
    thread.start()
    for _ in range(2000):
        revision = Revision.objects.filter(lab=lab).first()
        if revision is not None:
            break
        thread.join(0.01)
    assert revision is not None
    # Play the grading engine's part: a run, one check, then the final state.
    run_row = GradingRun.objects.create(revision=revision, attempt=1, phase="checks_running")
    CheckResult.objects.create(
        run=run_row,
        position=0,
        check_id="has-service",
        kind="files.required",
        category="correctness",
        status="pass",
        points=Decimal(5),
        max_points=Decimal(5),
        message="service.py is present",
    )
    Revision.objects.filter(pk=revision.pk).update(
        state="graded", score=5, max_score=5, scores_by_category={"correctness": {"score": "5", "max": "5"}}
    )
    thread.join(60)
    out = capsys.readouterr().out
    assert result["code"] == 0
    assert "[pass] has-service (5/5): service.py is present" in out
    assert "graded: 5/5" in out


@pytest.mark.django_db(transaction=True)
def test_a_rejected_upload_prints_every_problem_and_exits_1(env, tmp_path, sent, capsys):
    lab = make_lab()
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.py", "x")
    code, _, err = run(["submit", f"{lab.course.slug}/{lab.slug}", str(bad)], env, capsys)
    assert code == 1
    assert "error: The upload was rejected (2 problems)." in err
    assert "  - '../escape.py' points outside the submission's root ('..')." in err
    assert "hint: Fix every problem listed" in err
    assert not Revision.objects.exists()
    assert sent == []


@pytest.mark.django_db(transaction=True)
def test_status_shows_a_failed_revision_and_exits_1(env, sent, capsys):
    lab = make_lab()
    user = make_user()
    revision = Revision.objects.create(
        lab=lab, user=user, number=1, state="failed", tree_sha256="a" * 64, failure_reason="timeout"
    )
    code, _, err = run(["status", str(revision.pk)], env, capsys)
    assert code == 1
    assert err.startswith(f"error: There is no revision {revision.pk} that you can see."), "not the token owner's"
    _token, raw = api_token_create(user=user)
    code, out, _ = run(["status", str(revision.pk)], {**env, "SHIPSHAPE_TOKEN": raw}, capsys)
    assert code == 1
    assert "failed: It ran past the wall-clock limit of 60 seconds and was stopped." in out


def test_missing_configuration_is_a_usage_error_that_says_how_to_get_a_token(capsys):
    code, _, err = run(["submit", "c/l", "."], {}, capsys)
    assert code == 2
    assert "SHIPSHAPE_URL and SHIPSHAPE_TOKEN are not set" in err
    assert "/account/tokens/" in err


def test_bad_arguments_are_usage_errors(capsys, tmp_path):
    env = {"SHIPSHAPE_URL": "http://127.0.0.1:9", "SHIPSHAPE_TOKEN": "x"}
    assert run(["submit", "no-slash", str(tmp_path)], env, capsys)[0] == 2
    (tmp_path / "a.tar").write_bytes(b"x")
    code, _, err = run(["submit", "c/l", str(tmp_path / "a.tar")], env, capsys)
    assert (code, "is not a .zip" in err) == (2, True)
    assert run(["frobnicate"], env, capsys)[0] == 2


# --- 429 and Retry-After while following ------------------------------------------------------------------------


@pytest.fixture
def throttled(settings, monkeypatch) -> FrozenClock:
    """The API allows one call per minute per token, in a cache of this test's own, at a frozen time."""
    use_private_throttle_cache(settings)
    settings.THROTTLE_API_CALLS, settings.THROTTLE_API_CALLS_SECONDS = 1, 60
    clock = FrozenClock()
    monkeypatch.setattr(throttle, "clock", clock)
    return clock


def queued_revision(env: dict[str, str]) -> Revision:
    owner = ApiToken.objects.get(key_sha256=token_hash(env["SHIPSHAPE_TOKEN"])).user
    return Revision.objects.create(lab=make_lab(), user=owner, number=1, state="queued", tree_sha256="a" * 64)


@pytest.mark.django_db(transaction=True)
def test_following_waits_out_a_429_and_carries_on(env, throttled, monkeypatch, capsys):
    revision = queued_revision(env)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the grading finishes while the CLI waits as told
        waits.append(seconds)
        throttled.advance(seconds)
        if seconds >= 60:
            Revision.objects.filter(pk=revision.pk).update(state="graded", score=5, max_score=5)

    monkeypatch.setattr(cli, "sleep", sleep)
    code, out, _ = run(["status", str(revision.pk), "--follow", "--poll", "0.5"], env, capsys)

    assert code == 0
    assert waits == [0.5, 60.0], "one poll, then the wait the server asked for"
    assert "the server asks to wait 60 s (Too many API calls with this token.); following again after that" in out
    assert "graded: 5/5" in out


@pytest.mark.django_db(transaction=True)
def test_following_stops_when_the_wait_would_pass_the_timeout(env, throttled, monkeypatch, capsys):
    revision = queued_revision(env)
    waits: list[float] = []
    monkeypatch.setattr(cli, "sleep", waits.append)

    code, out, _ = run(["status", str(revision.pk), "--follow", "--timeout", "30"], env, capsys)

    assert code == 1
    assert waits == [1.0], "it polled once and did not sit out the 60 s"
    assert "the server asks to wait 60 s (Too many API calls with this token.), past --timeout" in out
    assert f"/revisions/{revision.pk}/" in out


class Answer:
    def __init__(self, status_code: int, headers: dict[str, str]) -> None:
        self.status_code = status_code
        self.headers = headers


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (429, {"Retry-After": "12"}, {}, 12.0),
        (429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, {}, 0.0),  # a date in the past: ask again now
        (429, {}, {"retry_in_seconds": 7}, 7.0),
        (429, {"Retry-After": "soon"}, {}, cli.DEFAULT_RETRY_SECONDS),
        (503, {"Retry-After": "30"}, {}, 30.0),
        (503, {}, {}, None),  # trouble without a time to come back: reported, not waited on
        (404, {"Retry-After": "5"}, {}, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(status, headers, body, expected):
    assert cli.retry_after_seconds(Answer(status, headers), body) == expected


def test_a_retry_after_date_in_the_future_is_waited_until():
    when = datetime.now(UTC) + timedelta(seconds=90)
    wait = cli.retry_after_seconds(Answer(429, {"Retry-After": format_datetime(when, usegmt=True)}), {})
    assert 85 <= wait <= 90
