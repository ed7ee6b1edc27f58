"""Lab page, revision page and its live fragment: rendering, escaping, hidden checks, authorization."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from courses.models import Enrollment
from labs.models import ApiToken, CheckResult, GradingRun, Revision

from .factories import enroll, make_lab, make_user
from .test_uploads import GOOD, make_zip

pytestmark = pytest.mark.django_db

HOSTILE_TEXT = "<script>alert('pwned')</script>"


@pytest.fixture(autouse=True)
def root(settings, tmp_path):
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    settings.DATA_DIR = tmp_path / "data"
    return settings.SUBMISSIONS_ROOT


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def lab_url(lab) -> str:
    return f"/courses/{lab.course.slug}/labs/{lab.slug}/"


def test_the_lab_page_shows_instructions_the_upload_form_and_my_revisions():
    lab = make_lab(instructions_html="<h2>Build the quote service</h2>")
    user = make_user()
    Revision.objects.create(
        lab=lab, user=user, number=1, state="graded", tree_sha256="a" * 64, score=Decimal(5), max_score=Decimal(5)
    )
    html = logged_in(user).get(lab_url(lab)).content.decode()
    assert "<h2>Build the quote service</h2>" in html
    assert 'type="file" name="files"' in html
    assert "multiple" in html
    assert "Revision 1" in html
    assert "labs/upload.js" in html


def test_anonymous_visitors_see_the_lab_but_are_asked_to_log_in_to_submit():
    lab = make_lab()
    html = Client().get(lab_url(lab)).content.decode()
    assert "to submit your work" in html
    assert 'name="files"' not in html


def test_uploading_files_with_folder_paths_redirects_to_the_revision_page():
    lab = make_lab()
    user = make_user()
    response = logged_in(user).post(
        lab_url(lab),
        {
            "files": [SimpleUploadedFile("service.py", GOOD[1]), SimpleUploadedFile("a.py", b"A = 1\n")],
            "paths": ["quote/service.py", "quote/pkg/a.py"],
        },
    )
    revision = Revision.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/revisions/{revision.pk}/"
    assert [f["path"] for f in revision.files] == ["pkg/a.py", "service.py"]


def test_a_rejected_upload_lists_every_problem_escaped_on_the_page(root):
    lab = make_lab()
    evil = make_zip(("../<b>x</b>.py", b"x"))
    response = logged_in(make_user()).post(lab_url(lab), {"files": [SimpleUploadedFile("w.zip", evil)]})
    html = response.content.decode()
    assert response.status_code == 400
    assert "The upload was rejected (2 problems)." in html
    assert "&#x27;../&lt;b&gt;x&lt;/b&gt;.py&#x27; points outside the submission&#x27;s root" in html
    assert "The required file &#x27;service.py&#x27; is missing." in html
    assert not Revision.objects.exists()
    assert not root.exists() or not any(root.iterdir())


def test_the_upload_answers_json_to_the_drag_and_drop_script():
    lab = make_lab()
    client = logged_in(make_user())
    bad = client.post(lab_url(lab), {"files": [SimpleUploadedFile("x.sh", b"x")]}, HTTP_ACCEPT="application/json")
    assert bad.status_code == 400
    assert "'x.sh' is not one of the files this lab accepts (*.py, requirements.lock, *.md)." in bad.json()["problems"]
    good = client.post(
        lab_url(lab), {"files": [SimpleUploadedFile("service.py", b"x")]}, HTTP_ACCEPT="application/json"
    )
    assert good.json() == {"redirect": f"/revisions/{Revision.objects.get().pk}/"}


def test_the_lab_page_says_when_the_next_submission_is_possible():
    lab = make_lab(cooldown_seconds=300)
    user = make_user()
    client = logged_in(user)
    client.post(lab_url(lab), {"files": [SimpleUploadedFile("service.py", b"x")]})
    response = client.post(lab_url(lab), {"files": [SimpleUploadedFile("service.py", b"y")]})
    html = response.content.decode()
    assert response.status_code == 429
    assert "You can submit again at" in html
    assert 'class="cooldown"' in html  # the page says it too, in place of the form
    assert "data-upload-form" not in html
    assert Revision.objects.count() == 1


def _revision_with_results(lab, user, *, state="graded", message=HOSTILE_TEXT, log=HOSTILE_TEXT):
    revision = Revision.objects.create(
        lab=lab,
        user=user,
        number=1,
        state=state,
        tree_sha256="a" * 64,
        queued_at=timezone.now(),
        files=[{"path": "service.py", "size": 3, "sha256": "b" * 64}],
        score=Decimal(15) if state == "graded" else None,
        max_score=Decimal(15) if state == "graded" else None,
    )
    run = GradingRun.objects.create(
        revision=revision,
        attempt=1,
        phase="results_stored",
        log=log,
        queued_at=timezone.now(),
        started_at=timezone.now(),
        resources={"wall_seconds": 1.5, "peak_memory_bytes": 50 * 1024 * 1024},
    )
    CheckResult.objects.create(
        run=run,
        position=0,
        check_id="has-service",
        kind="files.required",
        category="correctness",
        status="fail",
        points=Decimal(0),
        max_points=Decimal(5),
        message=message,
        hint="Add service.py",
        hint_url="javascript:alert(1)",
        evidence={"stdout": HOSTILE_TEXT},
    )
    CheckResult.objects.create(
        run=run,
        position=1,
        check_id="secret-tests",
        kind="tests.pytest",
        category="correctness",
        status="pass",
        points=Decimal(10),
        max_points=Decimal(10),
        message="all 12 hidden tests passed",
        hidden_until_due=True,
    )
    return revision


def test_the_revision_page_escapes_check_messages_evidence_and_logs():
    lab = make_lab()
    user = make_user()
    revision = _revision_with_results(lab, user)
    html = logged_in(user).get(f"/revisions/{revision.pk}/").content.decode()
    assert "<script>alert(" not in html
    assert html.count("&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;") == 3  # message, evidence and log
    assert "&lt;script&gt;alert(" in html.split("<summary>Evidence</summary>")[1]
    assert "javascript:alert" not in html
    assert "Wall time" in html and "1.50 s" in html and "60 s" in html
    assert "50.0 MB" in html and "256 MB" in html


def test_hidden_checks_show_only_hidden_until_the_due_date_to_learners():
    due = timezone.now() + timedelta(days=3)
    lab = make_lab(due_at=due)
    learner = make_user()
    revision = _revision_with_results(lab, learner)
    html = logged_in(learner).get(f"/revisions/{revision.pk}/").content.decode()
    assert "all 12 hidden tests passed" not in html
    assert f"hidden until <time datetime=\"{due.isoformat(timespec='seconds')[:19]}" in html.replace("+00:00", "")
    assert "Score: <strong>0</strong> / 5" in html
    reviewer = make_user()
    enroll(reviewer, lab.course, Enrollment.Role.REVIEWER)
    assert "all 12 hidden tests passed" in logged_in(reviewer).get(f"/revisions/{revision.pk}/").content.decode()


def test_hidden_checks_are_revealed_once_the_due_date_has_passed():
    lab = make_lab(due_at=timezone.now() - timedelta(minutes=1))
    learner = make_user()
    revision = _revision_with_results(lab, learner)
    assert "all 12 hidden tests passed" in logged_in(learner).get(f"/revisions/{revision.pk}/").content.decode()


def test_the_status_fragment_polls_until_the_revision_is_finished():
    lab = make_lab()
    user = make_user()
    client = logged_in(user)
    queued = Revision.objects.create(
        lab=lab, user=user, number=1, state="queued", tree_sha256="a" * 64, queued_at=timezone.now()
    )
    fragment = client.get(f"/revisions/{queued.pk}/status/").content.decode()
    assert 'hx-trigger="every 1s"' in fragment
    assert "Next in the queue." in fragment
    Revision.objects.filter(pk=queued.pk).update(state="graded", score=1, max_score=1)
    fragment = client.get(f"/revisions/{queued.pk}/status/").content.decode()
    assert "hx-trigger" not in fragment
    assert "Score: <strong>1</strong> / 1" in fragment


def test_the_queue_position_counts_queued_revisions_ahead():
    lab = make_lab()
    me = make_user()
    now = timezone.now()
    for minutes in (3, 2):
        Revision.objects.create(
            lab=lab,
            user=make_user(),
            number=1,
            state="queued",
            tree_sha256="a" * 64,
            queued_at=now - timedelta(minutes=minutes),
        )
    Revision.objects.create(
        lab=lab, user=make_user(), number=1, state="running", tree_sha256="a" * 64, queued_at=now - timedelta(minutes=5)
    )
    mine = Revision.objects.create(lab=lab, user=me, number=1, state="queued", tree_sha256="a" * 64, queued_at=now)
    fragment = logged_in(me).get(f"/revisions/{mine.pk}/status/").content.decode()
    assert "2 revisions ahead of yours in the queue." in fragment


def test_a_failed_revision_says_which_limit_it_hit():
    lab = make_lab()
    user = make_user()
    revision = _revision_with_results(lab, user, state="failed")
    Revision.objects.filter(pk=revision.pk).update(failure_reason="oom")
    html = logged_in(user).get(f"/revisions/{revision.pk}/").content.decode()
    assert "It used more memory than the limit of 256 MB and was stopped." in html


def test_other_people_get_404_and_anonymous_visitors_are_sent_to_log_in():
    lab = make_lab()
    revision = _revision_with_results(lab, make_user())
    assert logged_in(make_user()).get(f"/revisions/{revision.pk}/").status_code == 404
    assert logged_in(make_user()).get(f"/revisions/{revision.pk}/status/").status_code == 404
    anonymous = Client().get(f"/revisions/{revision.pk}/")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")
    assert Client().get(f"/revisions/{revision.pk}/status/").status_code == 404


def test_the_starter_archive_is_served_from_the_data_dir(settings):
    digest = "c" * 64
    (settings.DATA_DIR / "starters").mkdir(parents=True)
    (settings.DATA_DIR / "starters" / f"{digest}.zip").write_bytes(b"PK-starter")
    lab = make_lab(starter_digest=digest)
    response = Client().get(lab_url(lab) + "starter.zip")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"PK-starter"
    assert f'filename="{lab.slug}-starter.zip"' in response["Content-Disposition"]
    assert Client().get(lab_url(make_lab()) + "starter.zip").status_code == 404


def test_the_token_page_shows_a_new_token_once_and_stores_its_hash():
    user = make_user()
    client = logged_in(user)
    html = client.post("/account/tokens/", {"action": "create"}).content.decode()
    raw = html.split("export SHIPSHAPE_TOKEN=")[1].split("<")[0].strip()
    token = ApiToken.objects.get(user=user)
    assert raw.startswith("ss_") and token.key_sha256 != raw
    assert raw not in client.get("/account/tokens/").content.decode()
    client.post("/account/tokens/", {"action": "revoke", "token_id": token.pk})
    assert not ApiToken.objects.exists()


def test_an_instructor_finds_the_gradebook_analytics_and_regrades_from_the_lab_page():
    lab = make_lab()
    instructor, learner = make_user("teacher"), make_user("student")
    enroll(instructor, lab.course, Enrollment.Role.INSTRUCTOR)
    enroll(learner, lab.course)
    page = logged_in(instructor).get(lab_url(lab)).content.decode()
    for link in (
        f"/courses/{lab.course.slug}/gradebook/?lab={lab.slug}",
        f"/courses/{lab.course.slug}/labs/{lab.slug}/analytics/",
        f"/courses/{lab.course.slug}/labs/{lab.slug}/regrades/",
    ):
        assert link in page
        assert logged_in(instructor).get(link).status_code == 200
    assert "/gradebook/" not in logged_in(learner).get(lab_url(lab)).content.decode()
