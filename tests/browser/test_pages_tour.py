"""A tour of every page of the real sample course in Debian's chromium, at desktop and phone widths, in the light
and the dark theme, saving full-page screenshots to artifacts/screenshots/tour-*.png.

Each page is also checked for what a screenshot shows only to a careful eye: nothing wider than the viewport,
nothing loaded from the network. The grading worker does not run here: the uploaded revision stays queued, then
the test stores a grading result directly so the finished revision page and the review page can be seen too.
"""

from __future__ import annotations

import io
import zipfile
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import expect

from courses.models import Enrollment
from courses.services.importing import course_import
from labs.models import CheckResult, GradingRun, Lab, Revision
from tests.labs import factories as lab_factories

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parents[2]
COURSE_DIR = REPO_ROOT / "courses" / "content" / "production-systems"
STARTER_DIR = COURSE_DIR / "week-05-containers" / "lab-quote-service" / "starter"
PASSWORD = "a-long-tour-password-42"
COURSE = "/courses/production-systems/"
LESSON = COURSE + "week-05-containers/containers-and-reproducible-environments/"
LAB = COURSE + "labs/quote-service/"
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
THEMES = ("light", "dark")
MESSAGES = {
    "pass": "Looks right.",
    "fail": "requirements.lock pins flask without a --hash line.",
    "skipped": "Not run: the service did not start, so there was nothing to probe.",
}


@pytest.fixture
def queue_purged(redis_server):
    """Uploads publish a grading task; no worker runs here, so drop what was published once the test is over
    (a later test's worker must not pick up a revision id of this test's flushed database)."""
    yield redis_server
    from config.celery import app

    app.control.purge()


@pytest.fixture
def site(db):
    course_import(path=COURSE_DIR)
    user_model = get_user_model()
    learner = user_model.objects.create_user(username="ada", password=PASSWORD)
    reviewer = user_model.objects.create_user(username="rita", password=PASSWORD)
    lab = Lab.objects.get(course__slug="production-systems", slug="quote-service")
    Enrollment.objects.create(user=reviewer, course=lab.course, role=Enrollment.Role.REVIEWER)
    return {"learner": learner, "reviewer": reviewer, "lab": lab}


def _context(browser, live_server, *, viewport="desktop", theme="light"):
    context = browser.new_context(viewport=VIEWPORTS[viewport], color_scheme=theme)
    server = urlsplit(live_server.url).netloc
    context.offsite = []

    def record(request):
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https") and parts.netloc != server:
            context.offsite.append(request.url)

    context.on("request", record)
    return context


def _log_in(context, live_server, username: str) -> None:
    page = context.new_page()
    page.goto(live_server.url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + "/")
    page.close()


def _starter_zip(path: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(STARTER_DIR.iterdir()):
            archive.write(file, file.name)
    path.write_bytes(buffer.getvalue())
    return path


def _grade(revision: Revision) -> None:
    """Store a grading result as the worker would: one passing, one failing and one skipped check."""
    now = timezone.now()
    run = GradingRun.objects.create(
        revision=revision, attempt=1, worker="tour", phase="results_stored", outcome="graded",
        queued_at=revision.queued_at, started_at=now, sandbox_ready_at=now, checks_finished_at=now,
        results_stored_at=now, log="$ python service.py\nlistening on 127.0.0.1:8000\n",
        resources={"wall_seconds": 4.2, "peak_memory_bytes": 61 * 1024 * 1024},
    )  # fmt: skip
    checks = revision.lab.spec["checks"]
    statuses = ["pass", "fail", "pass", "skipped", "pass", "pass", "fail", "pass", "pass", "pass"]
    score = Decimal(0)
    for position, (check, status) in enumerate(zip(checks, statuses * 3, strict=False), start=1):
        points = Decimal(check["points"]) if status == "pass" else Decimal(0)
        score += points
        CheckResult.objects.create(
            run=run, position=position, check_id=check["id"], kind=check["kind"], category=check["category"],
            status=status, points=points, max_points=check["points"],
            message=MESSAGES[status],
            hint="Regenerate the lock with hashes." if status == "fail" else "",
            hint_url=LESSON + "#dependency-locks" if status == "fail" else "",
            evidence={"lines": ["flask==3.0.3"]} if status == "fail" else {},
        )  # fmt: skip
    max_score = sum(Decimal(c["points"]) for c in checks)
    by_category: dict[str, dict[str, str]] = {}
    for result in run.check_results.all():
        entry = by_category.setdefault(result.category, {"score": Decimal(0), "max": Decimal(0)})
        entry["score"] += result.points
        entry["max"] += result.max_points
    Revision.objects.filter(pk=revision.pk).update(
        state="graded",
        score=score,
        max_score=max_score,
        scores_by_category={k: {"score": str(v["score"]), "max": str(v["max"])} for k, v in by_category.items()},
    )
    revision.refresh_from_db()
    lab_factories.loop_record(revision)  # the review loop moves on, as revision_finish would: awaiting review


def _assert_fits(page, name: str) -> None:
    """Nothing makes the whole page scroll sideways (wide tables and code scroll inside their own box)."""
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    culprits = page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          return [...document.querySelectorAll('body *')]
            .filter(el => el.getBoundingClientRect().right > width + 1)
            .filter(el => !el.parentElement.closest('pre, table, .katex-display, .source'))
            .slice(0, 8)
            .map(el => el.tagName.toLowerCase() + '.' + el.className + ' ' + Math.round(el.getBoundingClientRect().right));
        }"""
    )
    assert overflow <= 1, f"{name}: the page is {overflow}px wider than the viewport: {culprits}"


def _shoot(page, screenshots: Path, name: str, viewport: str, theme: str) -> None:
    page.wait_for_load_state("networkidle")
    _assert_fits(page, f"{name} ({viewport}, {theme})")
    page.screenshot(path=str(screenshots / f"tour-{name}-{viewport}-{theme}.png"), full_page=True)


def test_tour_of_every_page_at_two_widths_in_both_themes(
    browser, live_server, site, screenshots, tmp_path, queue_purged
):
    archive = _starter_zip(tmp_path / "quote-service.zip")

    # The learner uploads once, through the form, at desktop width.
    context = _context(browser, live_server)
    _log_in(context, live_server, "ada")
    page = context.new_page()
    page.goto(live_server.url + LAB)
    page.set_input_files("#id_files", str(archive))
    page.get_by_role("button", name="Submit for grading").click()
    page.wait_for_url("**/revisions/*/")
    revision = Revision.objects.get(user=site["learner"])
    assert revision.state == "queued"
    expect(page.locator("#revision-status")).to_contain_text("Queued")
    queued_url = page.url
    context.close()

    learner_pages = [
        ("catalog", "/"),
        ("course", COURSE),
        ("lesson", LESSON),
        ("lab", LAB),
        ("revision-queued", urlsplit(queued_url).path),
        ("tokens", "/account/tokens/"),
    ]
    for viewport in VIEWPORTS:
        for theme in THEMES:
            context = _context(browser, live_server, viewport=viewport, theme=theme)
            _log_in(context, live_server, "ada")
            page = context.new_page()
            for name, path in learner_pages:
                page.goto(live_server.url + path)
                _shoot(page, screenshots, name, viewport, theme)
            assert context.offsite == []
            context.close()

    _grade(revision)
    reviewer_pages = [
        ("review-queue", "/review/"),
        ("review-course-queue", f"/review/{revision.lab.course.slug}/"),
        ("review", f"/review/revisions/{revision.pk}/"),
    ]
    for viewport in VIEWPORTS:
        for theme in THEMES:
            context = _context(browser, live_server, viewport=viewport, theme=theme)
            _log_in(context, live_server, "rita")
            page = context.new_page()
            for name, path in reviewer_pages:
                page.goto(live_server.url + path)
                _shoot(page, screenshots, name, viewport, theme)
            if viewport == "desktop" and theme == "light":
                # Claim it, then score the quote-service lab's rubric (lab.yaml): every criterion must be scored.
                page.get_by_role("button", name="Claim", exact=True).click()
                page.wait_for_load_state()
                page.get_by_label("Failure handling reads clearly").fill("7")
                page.get_by_label("Logs and metrics help an on-call engineer").fill("4")
                page.get_by_label("The build is reproducible by someone else").fill("5")
                page.get_by_label("Overall comment").fill("Good start. Pin flask with a hash, then resubmit.")
                page.get_by_label("Request changes", exact=False).check()
                page.get_by_role("button", name="Submit review").click()
                page.wait_for_url("**#your-review")
            assert context.offsite == []
            context.close()

    for viewport in VIEWPORTS:
        for theme in THEMES:
            context = _context(browser, live_server, viewport=viewport, theme=theme)
            _log_in(context, live_server, "ada")
            page = context.new_page()
            page.goto(live_server.url + f"/revisions/{revision.pk}/")
            expect(page.locator(".score-total")).to_contain_text("Score:")
            expect(page.locator(".reviews")).to_contain_text("Pin flask with a hash")
            _shoot(page, screenshots, "revision-graded", viewport, theme)
            context.close()
    assert len(list(screenshots.glob("tour-*.png"))) >= 4 * (len(learner_pages) + len(reviewer_pages) + 1)


def _focus_ring(page) -> dict:
    return page.evaluate(
        """() => {
          const el = document.activeElement;
          const style = getComputedStyle(el);
          return {tag: el.tagName, id: el.id, text: (el.textContent || '').trim().slice(0, 60),
                  outline: style.outlineStyle, width: parseFloat(style.outlineWidth), shadow: style.boxShadow};
        }"""
    )


def test_keyboard_reaches_theme_toggle_quiz_reveals_and_mark_complete_with_visible_focus(browser, live_server, site):
    context = _context(browser, live_server)
    _log_in(context, live_server, "ada")
    page = context.new_page()
    page.goto(live_server.url + LESSON)
    reached: list[dict] = []
    for _ in range(400):
        page.keyboard.press("Tab")
        ring = _focus_ring(page)
        if ring["tag"] == "BODY":
            break
        reached.append(ring)
        if ring["text"] == "Mark complete":
            break
    names = [r["text"] for r in reached]
    assert any(r["id"] == "theme-toggle" for r in reached), names[:20]
    reveals = [r for r in reached if r["tag"] == "SUMMARY" and "answer" in r["text"].lower()]
    assert reveals, [n for n in names if n][:80]
    assert reached[-1]["text"] == "Mark complete", names[-10:]
    # Focus is visible on every stop: an outline at least 2px wide, or a box shadow standing in for it.
    invisible = [r for r in reached if not ((r["outline"] != "none" and r["width"] >= 2) or r["shadow"] != "none")]
    assert invisible == [], invisible[:5]

    # Enter on a reveal opens it; Enter on Mark complete completes the lesson.
    page.goto(live_server.url + LESSON)
    page.locator(".quiz details.quiz-reveal summary").first.focus()
    page.keyboard.press("Enter")
    assert page.locator(".quiz details.quiz-reveal").first.evaluate("el => el.open") is True
    page.get_by_role("button", name="Mark complete").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("You completed this lesson.")).to_be_visible()
    assert context.offsite == []
    context.close()
