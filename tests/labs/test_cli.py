"""The `shipshape` CLI against a live server: submit, follow to the end, status, and its error paths."""

from __future__ import annotations

import io
import threading
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from labs import cli
from labs.models import CheckResult, GradingRun, Revision
from labs.services.tokens import api_token_create

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
