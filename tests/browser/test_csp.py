"""Every page under the real Content-Security-Policy (config/security.py) in Debian's chromium: nothing is
refused, nothing logs an error, and what uses JavaScript still works without inline script or style.

A `securitypolicyviolation` listener is added to every document before its own scripts run (add_init_script);
console errors and uncaught exceptions are recorded too. Each persona walks its pages: anonymous, a learner, a
reviewer and staff. The learner also exercises what the policy could break: KaTeX (including the constructs
where KaTeX writes a style attribute), the quiz reveal and the graded quiz (htmx), mark complete (htmx), the
theme toggle, the drag-and-drop upload script (fetch), the revision page's live status (htmx polling, swapped
without a reload) and the tokens page. Screenshots go to artifacts/screenshots/csp-*.png.
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

from config.security import CONTENT_SECURITY_POLICY
from courses.markdown import render_markdown
from courses.models import Enrollment, Lesson, Quiz
from courses.services.importing import course_import
from labs.models import CheckResult, GradingRun, Lab, Revision
from tests.courses import factories

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


def _grade(revision: Revision) -> None:
    """Store a result as the worker would, while the revision page is open and polling."""
    now = timezone.now()
    run = GradingRun.objects.create(
        revision=revision, attempt=1, worker="csp", phase="results_stored", outcome="graded",
        queued_at=revision.queued_at, started_at=now, sandbox_ready_at=now, checks_finished_at=now,
        results_stored_at=now, log="$ python service.py\n",
    )  # fmt: skip
    check = revision.lab.spec["checks"][0]
    CheckResult.objects.create(
        run=run, position=1, check_id=check["id"], kind=check["kind"], category=check["category"],
        status="fail", points=0, max_points=check["points"], message="Pinned without a hash.",
        hint="Regenerate the lock with hashes.", evidence={"lines": ["flask==3.0.3"]},
    )  # fmt: skip
    Revision.objects.filter(pk=revision.pk).update(state="graded", score=Decimal(0), max_score=Decimal(check["points"]))


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

    # The reviewer: the queue, the review page (review.js fills a line comment), the saved review.
    reviewer = Watched(browser, live_server, screenshots, "reviewer")
    reviewer.log_in("rita")
    page = reviewer.page
    reviewer.visit("/review/", "queue")
    expect(page.locator(f"tr[data-revision='{revision.pk}']")).to_be_visible()
    reviewer.visit(f"/review/revisions/{revision.pk}/", "review")
    page.locator(".source-lines .ln a[data-path]").first.click()
    row = page.locator(".file-comment-row").first
    assert row.locator("select[name='fc-path']").input_value() != ""
    assert page.evaluate("document.activeElement.name") == "fc-body"
    page.keyboard.type("Pin flask with a hash.")
    for criterion in page.locator(".rubric input[type=number]").all():
        criterion.fill("1")
    page.get_by_label("Request changes").check()
    page.get_by_role("button", name="Submit review").click()
    page.wait_for_url("**#your-review")
    reviewer.settle("review-saved")
    reviewer.visit(f"/revisions/{revision.pk}/", "revision")
    expect(page.locator(".reviews")).to_contain_text("Pin flask with a hash.")
    problems += reviewer.close()

    # Staff: the same pages are fine; the admin runs under the policy too.
    staff = Watched(browser, live_server, screenshots, "staff")
    staff.log_in("ina")
    staff.visit(f"/revisions/{revision.pk}/", "revision")
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
