"""The review page in Debian's chromium: the reviewer claims the work, reads the diff against the revision last
reviewed, clicks a line number to comment in place (no reload), submits, and hostile files stay inert text."""

from __future__ import annotations

import pytest
from django.test import Client

from courses.models import Enrollment
from labs.models import Review

from .factories import enroll, make_course, make_lab, make_user
from .test_reviews import RUBRIC_SPEC, SERVICE_PY, make_revision, submit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOSTILE_HTML = b"<script>alert('file')</script>\n<img src=x onerror=\"alert('img')\">\n"


@pytest.fixture(autouse=True)
def root(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    settings.DATA_DIR = tmp_path / "data"
    return settings.SUBMISSIONS_ROOT


def logged_in_page(browser, live_server, user):
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    return context.new_page()


def test_a_reviewer_claims_comments_on_a_line_in_place_and_requests_changes(browser, live_server, artifacts_dir):
    course = make_course()
    lab = make_lab(course=course, spec=RUBRIC_SPEC, title="The quote service")
    learner = make_user("learner")
    reviewer = make_user("reviewer")
    enroll(reviewer, course, Enrollment.Role.REVIEWER)
    first = make_revision(lab=lab, user=learner, files={"service.py": SERVICE_PY, "evil.html": HOSTILE_HTML})
    submit(first, make_instructor(course), decision="changes_requested", comment="Log properly.")
    changed = SERVICE_PY.replace(b"print('hello')", b"logging.info('hello')").replace(b"import sys", b"import logging")
    revision = make_revision(lab=lab, user=learner, files={"service.py": changed, "evil.html": HOSTILE_HTML})

    page = logged_in_page(browser, live_server, reviewer)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{live_server.url}/review/revisions/{revision.pk}/")
    assert page.locator("#file-1-L1 .code").inner_text() == "<script>alert('file')</script>"
    assert page.locator("h2#changes-heading").inner_text() == "Changes since revision 1 (last reviewed)"
    assert page.locator(".diff-add").count() == 2 and page.locator(".diff-delete").count() == 2
    assert page.locator(".review-buttons button[value=submit]").is_disabled()

    page.get_by_role("button", name="Claim", exact=True).click()
    page.wait_for_selector("text=You hold this until")
    assert not page.locator(".review-buttons button[value=submit]").is_disabled()

    # Clicking a line number opens the comment form under that line, in place: the page is not reloaded.
    page.evaluate("window.notReloaded = true")
    page.locator('a.comment-link[data-path="service.py"][data-line="5"]').click()
    form_row = page.locator("#file-2-L5 + tr.new-comment-row")
    form_row.wait_for()
    assert page.evaluate("window.notReloaded") is True
    assert form_row.locator("input[name='path']").input_value() == "service.py"
    assert form_row.locator("input[name='line']").input_value() == "5"
    assert form_row.locator(".comment-where").inner_text() == "service.py:5"
    assert page.evaluate("document.activeElement.name") == "body"
    page.keyboard.type("Name the logger after the module.")
    form_row.get_by_role("button", name="Add comment").click()
    page.wait_for_url("**#file-2-L5")
    comment_row = page.locator("#file-2-L5 + tr.line-comments")
    assert "Name the logger after the module." in comment_row.inner_text()
    assert "draft · only you" in comment_row.inner_text()

    page.fill("#score-clarity", "4")
    page.fill("#score-ops", "1.5")
    page.locator("#file-2-L5").scroll_into_view_if_needed()
    shots = artifacts_dir / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    # review-page.png is the whole loop's (tests/browser/test_review_loop.py); this one is the claim's.
    page.screenshot(path=str(shots / "review-page-claim.png"), full_page=True)

    page.get_by_label("Request changes").check()
    page.get_by_role("button", name="Submit review").click()
    page.wait_for_selector("text=Your review of revision 2 was submitted.")
    assert page.locator("#file-2-L5 + tr.line-comments").inner_text().strip() == (
        "reviewer: Name the logger after the module."
    )
    assert dialogs == []
    review = Review.objects.get(revision=revision)
    assert review.decision == "changes_requested" and review.submitted_at is not None
    assert review.file_comments == [{"path": "service.py", "line": 5, "body": "Name the logger after the module."}]


def make_instructor(course):
    instructor = make_user("instructor")
    enroll(instructor, course, Enrollment.Role.INSTRUCTOR)
    return instructor
