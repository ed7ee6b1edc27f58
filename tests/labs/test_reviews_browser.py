"""The review page in Debian's chromium: clicking a line number starts a line comment, the review is saved and
shown beside the code, and hostile submitted files stay inert text."""

from __future__ import annotations

import pytest
from django.test import Client

from courses.models import Enrollment
from labs.models import Review

from .factories import enroll, make_course, make_lab, make_user
from .test_reviews import RUBRIC_SPEC, SERVICE_PY, make_revision
from .test_reviews import urlpatterns as urlpatterns  # this module is the test URLconf too

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]

HOSTILE_HTML = b"<script>alert('file')</script>\n<img src=x onerror=\"alert('img')\">\n"


@pytest.fixture(autouse=True)
def root(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    return settings.SUBMISSIONS_ROOT


def logged_in_page(browser, live_server, user):
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    return context.new_page()


def test_a_reviewer_comments_on_a_line_and_requests_changes(browser, live_server, artifacts_dir):
    course = make_course()
    lab = make_lab(course=course, spec=RUBRIC_SPEC, title="The quote service")
    learner = make_user("learner")
    reviewer = make_user("reviewer")
    enroll(reviewer, course, Enrollment.Role.REVIEWER)
    revision = make_revision(lab=lab, user=learner, files={"service.py": SERVICE_PY, "evil.html": HOSTILE_HTML})

    page = logged_in_page(browser, live_server, reviewer)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{live_server.url}/review/revisions/{revision.pk}/")
    assert page.locator("#file-1-L1 .code").inner_text() == "<script>alert('file')</script>"

    page.locator('a[data-path="service.py"][data-line="5"]').click()
    row = page.locator(".file-comment-row").first
    assert row.locator("select[name='fc-path']").input_value() == "service.py"
    assert row.locator("input[name='fc-line']").input_value() == "5"
    assert page.evaluate("document.activeElement.name") == "fc-body"
    page.keyboard.type("Log through the logging module, not print.")
    page.fill("#score-clarity", "4")
    page.fill("#score-ops", "1.5")
    page.get_by_label("Request changes").check()
    page.get_by_role("button", name="Submit review").click()

    page.wait_for_selector("text=Your review of revision 1 was saved.")
    assert page.locator("#file-2-L5 + tr.line-comments").inner_text().strip() == (
        "reviewer: Log through the logging module, not print."
    )
    shots = artifacts_dir / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "review-page.png"), full_page=True)
    assert dialogs == []
    review = Review.objects.get()
    assert review.decision == "changes_requested"
    assert review.file_comments == [
        {"path": "service.py", "line": 5, "body": "Log through the logging module, not print."}
    ]
