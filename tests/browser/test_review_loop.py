"""The whole revision and review loop in Debian's chromium, against the live server (issue 9):

1. ada submits revision 1; it is graded. A reviewer opens the course's queue, claims her work, clicks a line
   number to comment on that line in place, and requests changes.
2. ada sees the unread count in the header, opens the notification, and finds the comment under its line on her
   revision page. She resubmits through the lab page's upload form; revision 2 fixes one check and breaks none,
   which her timeline shows.
3. The reviewer claims again from the queue, sees the diff against the last reviewed revision, comments on a line
   of the new code and approves.
4. The instructor's gradebook shows the final grade, and the CSV its "Export CSV" link downloads contains it; the
   lab's analytics render; a regrade preview started from the regrade page lists the one learner whose results
   would change, check by check.

Grading is not run in Docker here: revisions are stored by labs.services.submissions.revision_submit (or the upload
form) and graded by writing results through labs.grading.state (revision_claim, run_start, result_store,
revision_finish), as a worker would and as tests/labs/test_regrades.py does; the message that would wake a worker is
recorded rather than sent. The grading itself is tested end to end, in Docker, in tests/labs/test_e2e_grading.py
and tests/labs/test_regrades.py.

Screenshots (artifacts/screenshots/): review-page.png, learner-timeline.png, gradebook.png, analytics.png and
regrade-preview.png; docs/images/ holds a copy of each.
"""

from __future__ import annotations

import copy
import csv
import io
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client
from playwright.sync_api import expect

from courses.models import Enrollment
from labs.gradebook.cells import percent_text
from labs.gradebook.export import csv_cell
from labs.models import LabWork, Regrade, Review, Revision
from labs.services.submissions import revision_submit
from notifications.models import Notification
from tests.labs.factories import DEFAULT_SPEC, enroll, grade_through_state, make_course, make_lab, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHECKS = [
    ("has-service", "files.required", "correctness", "service.py is there."),
    ("logs-json", "tests.pytest", "observability", "Logs go through logging as JSON."),
    ("health", "tests.pytest", "correctness", "GET /health answers 200."),
]
SPEC = copy.deepcopy(DEFAULT_SPEC)
SPEC["checks"] = [
    {"id": check_id, "kind": kind, "category": category, "points": 5, "visibility": "visible", "args": {}}
    for check_id, kind, category, _ in CHECKS
]
SPEC["review"] = {
    "required": True,
    "rubric": [
        {"id": "clarity", "title": "Clear code", "points": 5},
        {"id": "ops", "title": "Operability", "description": "Logs and health checks.", "points": 3},
    ],
}
HELLO_SPEC = {**copy.deepcopy(SPEC), "review": {"required": False}}
REVISION_1 = {"has-service": "pass", "logs-json": "fail", "health": "fail"}
REVISION_2 = {"has-service": "pass", "logs-json": "pass", "health": "fail"}  # fixes logs-json, breaks none
SERVICE_V1 = b"""import sys


def main():
    print('quote service up')
    return 0


sys.exit(main())
"""
SERVICE_V2 = b"""import logging
import sys

log = logging.getLogger(__name__)


def main():
    log.info('quote service up')
    return 0


sys.exit(main())
"""
README = b"# The quote service\n\nServes quotes over HTTP.\n"
LINE_COMMENT = "Use logging here, not print: the check reads JSON logs."
APPROVAL_COMMENT = "Good: a module logger."
SCREENSHOTS = ("review-page.png", "learner-timeline.png", "gradebook.png", "analytics.png", "regrade-preview.png")


@pytest.fixture(autouse=True)
def root(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def sent(monkeypatch) -> list[int]:
    """The revisions the code queued for grading (ids), recorded instead of published: no worker grades here."""
    queued: list[int] = []
    monkeypatch.setattr("labs.services.grading.revision_send", lambda revision: queued.append(revision.pk))
    return queued


def grade(revision: Revision, statuses: dict[str, str]) -> Revision:
    """Grade `revision` through labs.grading.state as the worker does: claim, run, one result per check, finish."""
    return grade_through_state(
        revision,
        [
            {
                "check_id": check_id,
                "kind": kind,
                "category": category,
                "status": statuses[check_id],
                "points": Decimal(5 if statuses[check_id] == "pass" else 0),
                "max_points": Decimal(5),
                "message": message if statuses[check_id] == "pass" else f"{check_id} failed.",
                "hint": "" if statuses[check_id] == "pass" else f"Run the {check_id} check locally.",
            }
            for check_id, kind, category, message in CHECKS
        ],
        worker="browser-test",
        log="$ python service.py\nquote service up\n",
    )


def page_for(browser, live_server, user, problems: list[str]):
    """A page logged in as `user` (a session cookie from Django's test client), recording page errors."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()
    page.on("pageerror", lambda error: problems.append(f"{user.username}: uncaught {error}"))
    page.on(
        "console",
        lambda message: message.type == "error"
        and not message.location.get("url", "").endswith("/favicon.ico")
        and problems.append(f"{user.username} {page.url}: console error: {message.text}"),
    )
    return page


def opened(page, url: str):
    response = page.goto(url)
    assert response is not None and response.ok, (url, response and response.status)
    return page


def zip_of(files: dict[str, bytes], path: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())
    return path


def work_of(lab, user) -> LabWork:
    return LabWork.objects.select_related("revision").get(lab=lab, user=user)


def test_the_whole_loop_from_submission_to_approval_gradebook_and_regrade_preview(
    browser, live_server, screenshots, tmp_path, sent
):
    course = make_course("ops-101")
    course.title = "Production systems"
    course.save(update_fields=["title"])
    lab = make_lab(course=course, slug="quote-service", spec=SPEC, title="The quote service")
    ada, bob, cy = make_user("ada"), make_user("bob"), make_user("cy")
    reviewer, instructor = make_user("rita"), make_user("ina")
    enroll(reviewer, course, Enrollment.Role.REVIEWER)
    enroll(instructor, course, Enrollment.Role.INSTRUCTOR)
    base = live_server.url
    problems: list[str] = []

    # --- 1. ada submits; the grader finishes; a reviewer claims, comments on a line and requests changes --------
    first = revision_submit(lab=lab, user=ada, upload=[("service.py", SERVICE_V1), ("README.md", README)])
    assert sent == [first.pk]
    first = grade(first, REVISION_1)
    # Two classmates, so the queue, the gradebook and the analytics are not a single row.
    grade(revision_submit(lab=lab, user=bob, upload=[("service.py", SERVICE_V2)]), dict.fromkeys(REVISION_1, "pass"))
    grade(revision_submit(lab=lab, user=cy, upload=[("service.py", SERVICE_V1)]), REVISION_1)
    # And a lab without review before it, so the gradebook has more than one column.
    hello = make_lab(course=course, slug="hello", spec=HELLO_SPEC, title="Hello, pinned")
    grade(revision_submit(lab=hello, user=ada, upload=[("service.py", SERVICE_V2)]), dict.fromkeys(REVISION_1, "pass"))
    grade(revision_submit(lab=hello, user=bob, upload=[("service.py", SERVICE_V1)]), REVISION_2)
    work = work_of(lab, ada)
    assert work.state == "awaiting_review" and work_of(hello, ada).state == "autograded"

    rita = page_for(browser, live_server, reviewer, problems)
    opened(rita, f"{base}/review/")
    rita.get_by_role("link", name="Production systems").first.click()
    rita.wait_for_url(f"{base}/review/{course.slug}/")
    row = rita.locator(f"tr[data-work='{work.pk}']")
    expect(row).to_contain_text("ada")
    expect(rita.locator("table.review-queue tbody tr")).to_have_count(3)
    row.get_by_role("button", name="Claim").click()
    rita.wait_for_url(f"{base}/review/revisions/{first.pk}/")
    expect(rita.get_by_text("You hold this until")).to_be_visible()
    expect(rita.locator("h2#changes-heading")).to_have_text("Changes")  # the first revision: nothing to diff

    # Clicking line 5's number opens the comment form under it, in place (review.js; no reload).
    rita.evaluate("window.notReloaded = true")
    rita.locator('a.comment-link[data-path="service.py"][data-line="5"]').click()
    form_row = rita.locator("tr.new-comment-row")
    expect(form_row.locator(".comment-where")).to_have_text("service.py:5")
    assert rita.evaluate("window.notReloaded") is True
    assert rita.evaluate("document.activeElement.name") == "body"
    rita.keyboard.type(LINE_COMMENT)
    form_row.get_by_role("button", name="Add comment").click()
    rita.wait_for_url("**#file-*-L5")
    expect(rita.locator("tr.line-comments")).to_contain_text(LINE_COMMENT)
    rita.fill("#score-clarity", "3")
    rita.fill("#score-ops", "1")
    rita.fill("#review-comment", "Log through logging so the logs-json check passes.")
    rita.get_by_label("Request changes").check()
    rita.get_by_role("button", name="Submit review").click()
    expect(rita.get_by_text("Your review of revision 1 was submitted.")).to_be_visible()
    work = work_of(lab, ada)
    assert work.state == "changes_requested"
    review = Review.objects.get(revision=first, reviewer=reviewer)
    assert review.file_comments == [{"path": "service.py", "line": 5, "body": LINE_COMMENT}]

    # --- 2. ada: the count in the header, the comment in place, a new revision, fixed and broken checks ----------
    page = page_for(browser, live_server, ada, problems)
    opened(page, f"{base}/")
    unread = Notification.objects.filter(user=ada, read_at__isnull=True).count()
    assert unread == 3  # both labs' first revisions graded, the review posted
    expect(page.locator(".site-nav .nav-count")).to_have_text(f"{unread} unread")
    page.get_by_role("link", name="Notifications").click()
    page.get_by_role("link", name="The quote service: review posted").click()
    page.wait_for_url(f"{base}/revisions/{first.pk}/**")
    expect(page.locator(".site-nav .nav-count")).to_have_text(f"{unread - 1} unread")  # opening it read it
    # The comment sits in the row right under line 5 of service.py.
    comments = page.locator("#comments-in-place tr.line-comments")
    expect(comments).to_have_count(1)
    expect(comments).to_contain_text(f"rita: {LINE_COMMENT}")
    assert comments.evaluate("row => row.previousElementSibling.querySelector('td.ln').textContent.trim()") == "5"
    assert "print('quote service up')" in comments.evaluate("row => row.previousElementSibling.textContent")

    opened(page, f"{base}/work/{work.pk}/")
    expect(page.locator(".work-summary .work-state")).to_have_text("Changes requested")
    page.get_by_role("link", name="Submit a new revision").click()
    page.wait_for_url(f"{base}/courses/{course.slug}/labs/{lab.slug}/#submit")
    page.set_input_files("#id_files", str(zip_of({"service.py": SERVICE_V2, "README.md": README}, tmp_path / "v2.zip")))
    page.get_by_role("button", name="Submit for grading").click()
    page.wait_for_url(f"{base}/revisions/*/")
    second = Revision.objects.get(lab=lab, user=ada, number=2)
    assert page.url == f"{base}/revisions/{second.pk}/" and sent[-1] == second.pk
    second = grade(second, REVISION_2)

    opened(page, f"{base}/work/{work.pk}/")
    latest = page.locator("#revision-2")
    expect(latest.locator(".checks-fixed")).to_have_text("Fixed since revision 1: logs-json")
    expect(latest.locator(".checks-broken")).to_have_count(0)
    expect(latest).to_contain_text("Score: 10 / 15")
    expect(page.locator("#revision-1")).to_contain_text("Score: 5 / 15")
    expect(page.locator(".work-summary .work-state")).to_have_text("Awaiting review")

    # --- 3. the reviewer: the diff against the last reviewed revision, a comment on the new code, approval -------
    opened(rita, f"{base}/review/{course.slug}/")
    rita.locator(f"tr[data-work='{work.pk}']").get_by_role("button", name="Claim").click()
    rita.wait_for_url(f"{base}/review/revisions/{second.pk}/")
    expect(rita.locator("h2#changes-heading")).to_have_text("Changes since revision 1 (last reviewed)")
    changes = rita.locator("#changes")
    expect(changes).to_contain_text("log.info('quote service up')")
    assert changes.locator(".diff-add").count() >= 4 and changes.locator(".diff-delete").count() >= 1
    rita.locator('a.comment-link[data-path="service.py"][data-line="4"]').click()
    rita.keyboard.type(APPROVAL_COMMENT)
    rita.locator("tr.new-comment-row").get_by_role("button", name="Add comment").click()
    rita.wait_for_url("**#file-*-L4")
    expect(rita.locator("tr.line-comments")).to_contain_text(APPROVAL_COMMENT)
    rita.fill("#score-clarity", "4")
    rita.fill("#score-ops", "3")
    rita.fill("#review-comment", "Approved. The health check is next.")
    rita.get_by_label("Approve").check()
    # From the top of the page to the end of the files: the grader's results, the diff, the comment in place.
    files_end = rita.locator("section.review-files").evaluate("el => el.getBoundingClientRect().bottom + scrollY")
    rita.screenshot(
        path=str(screenshots / "review-page.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": 1280, "height": files_end + 16},
    )
    rita.get_by_role("button", name="Submit review").click()
    expect(rita.get_by_text("Your review of revision 2 was submitted.")).to_be_visible()
    work = work_of(lab, ada)
    assert work.state == "approved" and work.rubric == Decimal("87.50") and work.autograde == Decimal("66.67")
    assert work.final_grade == Decimal("77.09")  # 0.5 x 66.67 + 0.5 x 87.50, the default review.weight
    grade_text = percent_text(work.final_grade)

    opened(page, f"{base}/work/{work.pk}/")
    expect(page.locator(".work-summary .work-state")).to_have_text("Approved")
    expect(page.locator(".work-grades")).to_contain_text(f"{grade_text}%")
    expect(page.locator(".site-nav .nav-count")).to_have_text("4 unread")  # + revision 2 graded, approved
    page.screenshot(path=str(screenshots / "learner-timeline.png"), full_page=True)

    # --- 4. the instructor: gradebook and its CSV, analytics, a regrade preview ----------------------------------
    ina = page_for(browser, live_server, instructor, problems)
    opened(ina, f"{base}/courses/{course.slug}/gradebook/")
    cell = ina.locator(f"td[data-work='{work.pk}']")
    expect(cell.locator(".gb-state")).to_have_text("Approved")
    expect(cell.locator(".gb-final")).to_have_text(grade_text)
    expect(ina.locator("table.gradebook tbody tr")).to_have_count(3)
    ina.screenshot(path=str(screenshots / "gradebook.png"), full_page=True)
    with ina.expect_download() as download:
        ina.get_by_role("link", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    rows = [r for r in rows if r["lab"] == lab.slug]
    assert [r["username"] for r in rows] == ["ada", "bob", "cy"]
    assert (rows[0]["state"], rows[0]["final_grade"], rows[0]["revisions"]) == (
        "approved",
        csv_cell(work.final_grade),
        "2",
    )

    ina.get_by_role("link", name="analytics of The quote service").click()
    ina.wait_for_url(f"{base}/courses/{course.slug}/labs/{lab.slug}/analytics/")
    expect(ina.locator("h1")).to_contain_text("The quote service")
    assert ina.locator(".chart-section svg").count() >= 4
    ina.screenshot(path=str(screenshots / "analytics.png"), full_page=True)

    # The grader changed: ada's newest revision now passes `health`; bob's and cy's results stay as they were.
    opened(ina, f"{base}/courses/{course.slug}/labs/{lab.slug}/regrades/")
    ina.get_by_role("button", name="Start a preview").click()
    regrade = Regrade.objects.get(lab=lab)
    ina.wait_for_url(f"{base}/regrades/{regrade.pk}/")
    expect(ina.locator("#regrade-progress")).to_contain_text("0 of 3 graded")
    statuses = {"ada": dict.fromkeys(REVISION_2, "pass"), "bob": dict.fromkeys(REVISION_1, "pass"), "cy": REVISION_1}
    for shadow in regrade.shadow_revisions.select_related("regrade_of__user"):
        assert shadow.pk in sent
        grade(shadow, statuses[shadow.regrade_of.user.username])
    regrade.refresh_from_db()
    assert (regrade.status, regrade.changed) == ("ready", 1)
    # The page polls its progress (htmx) and reloads itself once the preview is ready.
    expect(ina.locator("h1")).to_have_text(f"Regrade preview {regrade.pk}: preview ready", timeout=15_000)
    changes = ina.locator("table.regrade-changes tbody")
    expect(changes.locator("tr")).to_have_count(1)
    expect(changes.locator("th")).to_have_text("ada")
    expect(changes).to_contain_text("health")
    expect(changes).to_contain_text("fail → pass")
    expect(changes).to_contain_text("10/15 → 15/15")
    expect(ina.get_by_role("button", name="Apply to 1 learner")).to_be_visible()
    assert "bob" not in changes.inner_text() and "cy" not in changes.inner_text()
    ina.screenshot(path=str(screenshots / "regrade-preview.png"), full_page=True)
    # A preview changes nothing until applied.
    assert work_of(lab, ada).autograde == Decimal("66.67") and work_of(lab, ada).final_grade == Decimal("77.09")

    for shot in SCREENSHOTS:
        assert (screenshots / shot).stat().st_size > 0, shot
    assert problems == [], "\n".join(problems)
