"""Every page under the real Content-Security-Policy (config/security.py) in Debian's chromium: nothing is
refused, nothing logs an error, and what uses JavaScript still works without inline script or style.

A `securitypolicyviolation` listener is added to every document before its own scripts run (add_init_script);
console errors and uncaught exceptions are recorded too. Each persona walks its pages: anonymous, a learner, a
reviewer and staff. The learner also exercises what the policy could break: KaTeX (including the constructs
where KaTeX writes a style attribute), the quiz reveal and the graded quiz (htmx), mark complete (htmx), the
theme toggle, the drag-and-drop upload script (fetch), the revision page's live status (htmx polling, swapped
without a reload) and the tokens page. The reviewer walks the review loop's pages: the queues, a claim, the review
page (review.js opens a line comment form in place), a second revision's diff, the timeline and notifications;
the learner comes back for the comment in place, the timeline, the diff and the notifications; staff walk the
gradebook, the analytics (SVG), the override form and a regrade preview (htmx polling, then ready). Grading is
written through labs.grading.state as a worker would (no worker runs here). Screenshots go to
artifacts/screenshots/csp-*.png.
"""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from config.security import CONTENT_SECURITY_POLICY
from courses.markdown import render_markdown
from courses.models import Enrollment, Lesson, Quiz
from courses.services.importing import course_import
from labs.models import Lab, LabWork, Regrade, Revision
from labs.services.submissions import revision_submit
from tests.courses import factories
from tests.labs.factories import grade_through_state

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

REPO_ROOT = Path(__file__).resolve().parents[2]
COURSE_DIR = REPO_ROOT / "courses" / "content" / "production-systems"
STARTER_DIR = COURSE_DIR / "week-05-containers" / "lab-quote-service" / "starter"
PASSWORD = "a-long-csp-password-42"
COURSE = "/courses/production-systems/"
LAB = COURSE + "labs/quote-service/"
MATH_LESSON_SLUG = "surviving-a-flaky-upstream"  # the sample course's lesson with display and inline math
EDGE_LESSON = COURSE + "essays/csp-edge-cases/"

# What KaTeX renders with setAttribute("style", …) rather than through the CSSOM: the MathML of \boldsymbol and
# \fcolorbox, and the error text of TeX that does not parse (an unclosed \left). math.js must keep each from
# being refused. Also an unknown macro and a colour (KaTeX colours those through the CSSOM), a non-graded quiz
# (reveal) and a graded one (htmx).
EDGE_SOURCE = r"""## Math the policy could refuse

Bold vectors $\boldsymbol{v} = \boldsymbol{a} + \boldsymbol{b}$, a boxed answer $\fcolorbox{red}{white}{42}$,
colour $\color{green}{x^2}$, a typo $\nosuchmacro{y}$ and a broken formula $\left( x$.

$$\sum_{i=1}^{n} \frac{1}{2^i} < 1$$

## Check yourself

```quiz
questions:
  - prompt: Which header refuses inline script?
    choices:
      - text: Content-Security-Policy
        correct: true
      - text: Referrer-Policy
    explanation: script-src without 'unsafe-inline' refuses every inline script.
  - prompt: Where do the styles live?
    choices:
      - text: In static files
        correct: true
      - text: In style attributes
    explanation: The policy allows stylesheets from the site only.
```

```quiz
id: csp-check
title: Policy check
graded: true
max_attempts: 3
questions:
  - prompt: Which directive forbids being framed?
    choices:
      - text: frame-ancestors
        correct: true
      - text: form-action
    explanation: frame-ancestors 'none' is the modern X-Frame-Options DENY.
```
"""

# Recorded into the page's own window before any of its scripts run; read back after each page.
LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push({
    directive: event.effectiveDirective,
    blocked: event.blockedURI,
    sample: event.sample,
    source: event.sourceFile + ":" + event.lineNumber,
  });
}, true);
"""


@pytest.fixture
def queue_purged(redis_server):
    """The upload publishes a grading task and no worker runs here: drop it once the test is over."""
    yield redis_server
    from config.celery import app

    app.control.purge()


@pytest.fixture
def site(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    course_import(path=COURSE_DIR)
    user_model = get_user_model()
    learner = user_model.objects.create_user(username="ada", password=PASSWORD)
    reviewer = user_model.objects.create_user(username="rita", password=PASSWORD)
    user_model.objects.create_superuser(username="ina", password=PASSWORD)
    lab = Lab.objects.get(course__slug="production-systems", slug="quote-service")
    Enrollment.objects.create(user=reviewer, course=lab.course, role=Enrollment.Role.REVIEWER)

    essays = lab.course.units.get(slug="essays")
    rendered = render_markdown(EDGE_SOURCE)
    assert not rendered.problems, rendered.problems
    lesson = factories.lesson_create(
        unit=essays, position=99, slug="csp-edge-cases", title="Policy edge cases", html=rendered.html,
        toc=rendered.toc,
    )  # fmt: skip
    for position, quiz in enumerate(rendered.quizzes, start=1):
        Quiz.objects.create(
            lesson=lesson, key=quiz["key"], title=quiz["title"], graded=quiz["graded"],
            max_attempts=quiz["max_attempts"], questions=quiz["questions"], position=position,
        )  # fmt: skip
    rows = Lesson.objects.filter(course=lab.course).select_related("unit").order_by("unit__position", "position")
    lessons = [f"{COURSE}{row.unit.slug}/{row.slug}/" for row in rows]
    math_lesson = next(url for url in lessons if url.endswith(f"/{MATH_LESSON_SLUG}/"))
    return {"learner": learner, "reviewer": reviewer, "lab": lab, "lessons": lessons, "math_lesson": math_lesson}


class Watched:
    """One browser context for one persona, with every violation, console error and page error it saw."""

    def __init__(self, browser, live_server, screenshots: Path, persona: str) -> None:
        self.live_server = live_server
        self.screenshots = screenshots
        self.persona = persona
        self.problems: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
        self.context.add_init_script(LISTENER)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"{self._where()}: uncaught {error}"))
        self.page.on("request", self._request)
        self.offsite: list[str] = []

    def _where(self) -> str:
        return f"{self.persona} {urlsplit(self.page.url).path}"

    def _console(self, message) -> None:
        # The browser asks for /favicon.ico on its own and the site has none: that 404 is not the page's doing.
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            self.problems.append(f"{self._where()}: console error: {message.text}")

    def _request(self, request) -> None:
        if urlsplit(request.url).netloc not in ("", urlsplit(self.live_server.url).netloc):
            self.offsite.append(request.url)

    def visit(self, path: str, name: str):
        response = self.page.goto(self.live_server.url + path)
        assert response is not None and response.ok, (path, response and response.status)
        # The policy the page was served with is the one under test, not a laxer one set by a view.
        assert response.header_value("content-security-policy") == CONTENT_SECURITY_POLICY, path
        self.settle(name)
        return self.page

    def settle(self, name: str) -> None:
        """Collect this document's violations (they are lost on the next navigation) and take a screenshot."""
        self.page.wait_for_load_state("networkidle")
        for violation in self.page.evaluate("window.__cspViolations || []"):
            self.problems.append(f"{self._where()}: CSP violation {violation}")
        self.page.screenshot(path=str(self.screenshots / f"csp-{self.persona}-{name}.png"), full_page=True)

    def log_in(self, username: str) -> None:
        self.visit("/accounts/login/", "login")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(self.live_server.url + "/")
        self.settle("after-login")

    def close(self) -> list[str]:
        self.context.close()
        return self.problems + [f"{self.persona}: request off the site: {url}" for url in self.offsite]


def _starter_zip(path: Path) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file in sorted(STARTER_DIR.iterdir()):
            archive.write(file, file.name)
    path.write_bytes(buffer.getvalue())
    return path


def _grade(revision: Revision, *, passed: bool = False) -> None:
    """Store a result through labs.grading.state, as the worker would (the loop moves on: the work waits for a
    review), while the revision page is open and polling. `passed`: the first check passes."""
    check = revision.lab.spec["checks"][0]
    grade_through_state(
        revision,
        [
            {
                "check_id": check["id"], "kind": check["kind"], "category": check["category"],
                "status": "pass" if passed else "fail", "points": check["points"] if passed else 0,
                "max_points": check["points"], "message": "Pinned with hashes." if passed else "Pinned without a hash.",
                "hint": "" if passed else "Regenerate the lock with hashes.", "evidence": {"lines": ["flask==3.0.3"]},
            }
        ],
        worker="csp",
        log="$ python service.py\n",
    )  # fmt: skip


def _assert_math_typeset(page) -> None:
    page.wait_for_selector(".math[data-typeset] .katex")
    untypeset = page.locator(".lesson-body .math:not([data-typeset])").count()
    assert untypeset == 0, f"{untypeset} formulas left as TeX"
    assert page.locator(".math-display .katex-display").count() >= 1


def test_every_page_runs_under_the_policy_without_a_violation_or_console_error(
    browser, live_server, site, screenshots, tmp_path, queue_purged
):
    problems: list[str] = []

    # Anonymous: the public pages and the account forms.
    anonymous = Watched(browser, live_server, screenshots, "anonymous")
    anonymous.visit("/", "catalog")
    anonymous.visit(COURSE, "course")
    _assert_math_typeset(anonymous.visit(site["math_lesson"], "math-lesson"))
    anonymous.visit(LAB, "lab")
    anonymous.visit("/accounts/login/", "login")
    anonymous.visit("/accounts/signup/", "signup")
    anonymous.visit("/accounts/password/reset/", "password-reset")
    problems += anonymous.close()

    # The learner: every lesson of the sample course, then everything with a script behind it.
    learner = Watched(browser, live_server, screenshots, "learner")
    learner.log_in("ada")
    page = learner.page
    for number, url in enumerate(site["lessons"], start=1):
        learner.visit(url, f"lesson-{number:02d}")
    _assert_math_typeset(learner.visit(site["math_lesson"], "math-lesson"))

    # KaTeX constructs that write a style attribute: rendered, and the error colour still applied (via the CSSOM).
    learner.visit(EDGE_LESSON, "edge-lesson")
    _assert_math_typeset(page)
    assert page.locator(".katex-error").count() == 1
    assert page.locator(".katex-error").evaluate("el => getComputedStyle(el).color") == "rgb(204, 0, 0)"
    assert page.locator(".katex .fbox, .katex .boxpad").count() >= 1

    # The quiz: revealing an answer updates the counter (quiz.js).
    quiz = page.locator(".quiz").first
    counter = quiz.locator(".quiz-progress")
    expect(counter).to_have_text("0 of 2 opened")
    quiz.locator("details.quiz-reveal summary").first.click()
    expect(counter).to_have_text("1 of 2 opened")
    expect(page.get_by_text("script-src without 'unsafe-inline' refuses every inline script.")).to_be_visible()

    # The graded quiz and mark complete, both swapped in by htmx without a reload.
    page.evaluate("window.notReloaded = true")
    graded = page.locator("#quiz-csp-check")
    graded.get_by_label("frame-ancestors").check()
    graded.get_by_role("button", name="Submit answers").click()
    expect(page.locator(".quiz-score")).to_have_text("Your score: 1 / 1")
    page.get_by_role("button", name="Mark complete").click()
    expect(page.get_by_text("You completed this lesson.")).to_be_visible()
    assert page.evaluate("window.notReloaded") is True
    learner.settle("edge-lesson-answered")

    # The theme toggle (site.js) switches, and the choice survives a reload.
    toggle = page.locator("#theme-toggle")
    expect(toggle).to_be_visible()
    toggle.click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert toggle.get_attribute("aria-pressed") == "true"
    learner.settle("edge-lesson-dark")
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    learner.settle("edge-lesson-dark-reloaded")
    toggle.click()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"

    # Progress bars are <progress> elements now (no style attribute): one on the catalog, one on the course.
    learner.visit("/", "catalog")
    assert page.locator(".course-card progress.progress-bar").count() == 1
    learner.visit(COURSE, "course")
    assert page.locator("#course-progress progress.progress-bar").get_attribute("value") != "0"

    # The upload goes through upload.js (fetch, then a redirect it follows itself).
    learner.visit(LAB, "lab")
    expect(page.locator("[data-dropzone-note]")).to_be_visible()  # shown by upload.js only
    page.set_input_files("#id_files", str(_starter_zip(tmp_path / "quote-service.zip")))
    page.get_by_role("button", name="Submit for grading").click()
    page.wait_for_url("**/revisions/*/")
    learner.settle("revision-queued")
    revision = Revision.objects.get(user=site["learner"])
    status = page.locator("#revision-status")
    expect(status).to_contain_text("Queued")

    # The live status: htmx polls the fragment and swaps it in place; the page itself is not reloaded.
    page.evaluate(
        """() => {
          window.notReloaded = true;
          window.statusSwaps = 0;
          document.body.addEventListener("htmx:afterSwap", () => { window.statusSwaps += 1; });
        }"""
    )
    _grade(revision)
    expect(status).to_contain_text("Graded", timeout=10_000)
    expect(page.locator(".score-total")).to_contain_text("Score:")
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate("window.statusSwaps") >= 1
    assert page.locator("#revision-status[hx-get]").count() == 0  # finished: the polling stopped
    learner.settle("revision-graded")

    learner.visit("/account/tokens/", "tokens")
    page.get_by_role("button", name="Create a token").click()
    expect(page.locator(".new-token")).to_contain_text("SHIPSHAPE_TOKEN=ss_")
    learner.settle("tokens-created")
    learner.visit("/accounts/password/change/", "password-change")
    problems += learner.close()

    # The reviewer: the queues, a claim, a line comment opened in place by review.js, changes requested.
    work = LabWork.objects.get(lab=site["lab"], user=site["learner"])
    assert work.state == "awaiting_review"
    reviewer = Watched(browser, live_server, screenshots, "reviewer")
    reviewer.log_in("rita")
    page = reviewer.page
    reviewer.visit("/review/", "queues")
    expect(page.locator("tr[data-course='production-systems']")).to_be_visible()
    reviewer.visit(f"/review/production-systems/?lab={site['lab'].pk}&state=awaiting_review", "course-queue")
    page.locator(f"tr[data-work='{work.pk}']").get_by_role("button", name="Claim").click()
    page.wait_for_url(f"**/review/revisions/{revision.pk}/")
    expect(page.get_by_text("You hold this until")).to_be_visible()
    reviewer.settle("review-claimed")
    page.evaluate("window.notReloaded = true")
    page.locator('.source-lines a.comment-link[data-path="service.py"][data-line="1"]').click()
    form_row = page.locator("tr.new-comment-row")
    expect(form_row.locator(".comment-where")).to_have_text("service.py:1")
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate("document.activeElement.name") == "body"
    page.keyboard.type("Pin flask with a hash.")
    reviewer.settle("review-comment-form")
    form_row.get_by_role("button", name="Add comment").click()
    page.wait_for_url("**#file-*-L1")
    expect(page.locator("tr.line-comments")).to_contain_text("Pin flask with a hash.")
    reviewer.settle("review-comment-drafted")
    for criterion in page.locator(".rubric input[type=number]").all():
        criterion.fill("1")
    page.get_by_label("Request changes").check()
    page.get_by_role("button", name="Submit review").click()
    page.wait_for_url("**#your-review")
    expect(page.get_by_text("Your review of revision 1 was submitted.")).to_be_visible()
    reviewer.settle("review-saved")

    # The learner resubmits (stored here; the upload form ran above) once the lab's cooldown has passed (revision
    # 1 is moved back in time for that), and revision 2 is graded: the review page now diffs against revision 1.
    Revision.objects.filter(pk=revision.pk).update(created_at=revision.created_at - timedelta(hours=1))
    service = (STARTER_DIR / "service.py").read_bytes()
    files = [(f.name, f.read_bytes()) for f in sorted(STARTER_DIR.iterdir()) if f.name != "service.py"]
    second = revision_submit(
        lab=site["lab"], user=site["learner"], upload=[*files, ("service.py", service + b"\n# revised\n")]
    )
    _grade(second, passed=True)
    reviewer.visit("/review/production-systems/", "course-queue-again")
    page.locator(f"tr[data-work='{work.pk}']").get_by_role("button", name="Claim").click()
    page.wait_for_url(f"**/review/revisions/{second.pk}/")
    expect(page.locator("h2#changes-heading")).to_have_text("Changes since revision 1 (last reviewed)")
    assert page.locator("#changes .diff-add").count() >= 1
    reviewer.settle("review-diff")
    reviewer.visit(f"/revisions/{revision.pk}/", "revision")
    expect(page.locator("#comments-in-place")).to_contain_text("Pin flask with a hash.")
    reviewer.visit(f"/revisions/{revision.pk}/diff/{second.pk}/", "diff")
    reviewer.visit(f"/work/{work.pk}/", "timeline")
    reviewer.visit("/notifications/", "notifications")
    problems += reviewer.close()

    # The learner again: the count in the header, the comment in place, the fixed check, the diff.
    learner = Watched(browser, live_server, screenshots, "learner-loop")
    learner.log_in("ada")
    page = learner.page
    expect(page.locator(".site-nav .nav-count")).to_be_visible()
    learner.visit("/notifications/", "notifications")
    learner.visit(f"/revisions/{revision.pk}/", "revision-commented")
    expect(page.locator("#comments-in-place tr.line-comments")).to_contain_text("Pin flask with a hash.")
    learner.visit(f"/work/{work.pk}/", "timeline")
    expect(page.locator("#revision-2 .checks-fixed")).to_contain_text(site["lab"].spec["checks"][0]["id"])
    learner.visit(f"/revisions/{revision.pk}/diff/{second.pk}/", "diff")
    learner.visit("/notifications/", "notifications-again")
    page.get_by_role("button", name="Mark all read").click()
    page.wait_for_url("**/notifications/")
    expect(page.locator(".site-nav .nav-count")).to_have_count(0)
    learner.settle("notifications-read")
    problems += learner.close()

    # Staff: the gradebook, analytics, an override form, a regrade preview (htmx polling, then ready), the admin.
    staff = Watched(browser, live_server, screenshots, "staff")
    staff.log_in("ina")
    page = staff.page
    staff.visit(f"/revisions/{revision.pk}/", "revision")
    staff.visit("/courses/production-systems/gradebook/", "gradebook")
    expect(page.locator(f"td[data-work='{work.pk}']")).to_be_visible()
    staff.visit("/courses/production-systems/gradebook/?lab=quote-service&state=in_review&learner=ad", "gradebook-lab")
    expect(page.locator(f"td[data-work='{work.pk}']")).to_be_visible()
    staff.visit(f"{LAB}analytics/", "analytics")
    assert page.locator(".chart-section svg").count() >= 1  # server-rendered charts (one per section with data)
    staff.visit(f"/courses/production-systems/work/{work.pk}/override/", "override")
    staff.visit(f"{LAB}regrades/", "regrades")
    page.get_by_role("button", name="Start a preview").click()
    regrade = Regrade.objects.get(lab=site["lab"])
    page.wait_for_url(f"**/regrades/{regrade.pk}/")
    expect(page.locator("#regrade-progress")).to_contain_text("0 of 1 graded")
    staff.settle("regrade-running")
    for shadow in regrade.shadow_revisions.all():
        _grade(shadow)  # the changed grader fails the check revision 2 passed
    expect(page.locator("h1")).to_contain_text("preview ready", timeout=15_000)  # htmx polled, then reloaded
    expect(page.locator("table.regrade-changes")).to_contain_text("ada")
    staff.settle("regrade-ready")
    staff.visit(f"{LAB}regrades/", "regrades-history")
    staff.visit("/admin/", "admin")
    staff.visit("/admin/labs/revision/", "admin-revisions")
    staff.visit(f"/admin/labs/revision/{revision.pk}/change/", "admin-revision")
    problems += staff.close()

    assert problems == [], "\n".join(problems)


def test_the_policy_refuses_injected_inline_script_and_style_and_the_listener_reports_it(
    browser, live_server, screenshots
):
    """The control for the test above: were something inline to slip into a page, it would be refused and seen."""
    course = factories.course_with_lessons_create(slug="control", units=1, lessons_per_unit=1)
    lesson = Lesson.objects.get(course=course)
    watched = Watched(browser, live_server, screenshots, "control")
    page = watched.visit(f"/courses/control/{lesson.unit.slug}/{lesson.slug}/", "lesson")
    seen = page.evaluate(
        r"""async () => {
          const body = document.querySelector(".lesson-body");
          body.insertAdjacentHTML("beforeend", '<p id="styled" style="color: rgb(255, 0, 0)">styled</p>');
          const script = document.createElement("script");
          script.textContent = "window.inlineRan = true;";
          body.appendChild(script);
          // KaTeX called directly, without math.js's care, on TeX that does not parse: a style attribute.
          const formula = document.createElement("span");
          body.appendChild(formula);
          window.katex.render("\\left( x", formula, {throwOnError: false});
          await new Promise((resolve) => setTimeout(resolve, 100));
          return {
            directives: window.__cspViolations.map((v) => v.directive).sort(),
            inlineRan: window.inlineRan === true,
            color: getComputedStyle(document.getElementById("styled")).color,
          };
        }"""
    )
    assert seen["directives"] == ["script-src-elem", "style-src-attr", "style-src-attr"]
    assert seen["inlineRan"] is False
    assert seen["color"] != "rgb(255, 0, 0)"
    problems = watched.close()
    assert len(problems) == 3 and all("console error" in p for p in problems), problems
