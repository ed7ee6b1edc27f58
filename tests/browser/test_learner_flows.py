"""A learner's path through the site in Debian's chromium: read, reveal, sign up, quiz, complete, theme.

Content goes through the real Markdown renderer, so the page under test is the page learners get.
"""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from courses.markdown import render_markdown
from courses.models import Course, Lesson, Quiz, Unit
from tests.courses import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


READING = """## Why pin

A tag such as `python:3.11` moves; a digest does not. The chance two unpinned builds match falls as
$p^n$ with the number of dependencies $n$.

::: tip Rule of thumb
Pin what you ship, update on purpose.
:::

```dockerfile
FROM python:3.11.9-slim@sha256:0123
RUN pip install --require-hashes -r requirements.lock
```

## Check yourself

```quiz
questions:
  - prompt: Which reference names exactly one image?
    choices:
      - text: "`python:latest`"
      - text: "`python@sha256:…`"
        correct: true
    explanation: A digest is the hash of the image itself.
  - prompt: What does a lock file record?
    kind: multiple
    choices:
      - text: Exact versions
        correct: true
      - text: Hashes
        correct: true
      - text: The author's name
    explanation: Versions and hashes; names do not make builds repeatable.
  - prompt: Is `latest` a version?
    choices:
      - text: "Yes"
      - text: "No"
        correct: true
    explanation: It is a label that moves.
```
"""

GRADED = """## Unit check

Answer both questions; you have three attempts.

```quiz
id: unit-check
title: Week 1 graded check
graded: true
max_attempts: 3
questions:
  - prompt: Which file pins Python dependencies with hashes?
    choices:
      - text: requirements.lock
        correct: true
      - text: setup.cfg
    explanation: The lock carries a hash for every wheel.
  - prompt: Which of these make a build drift?
    kind: multiple
    choices:
      - text: An unpinned base image
        correct: true
      - text: A floating dependency range
        correct: true
      - text: A pinned digest
    explanation: Anything that resolves differently tomorrow makes the build drift.
```
"""


def _lesson(unit: Unit, position: int, slug: str, title: str, source: str, **fields) -> Lesson:
    result = render_markdown(source)
    assert not result.problems, result.problems
    lesson = factories.lesson_create(
        unit=unit, position=position, slug=slug, title=title, html=result.html, toc=result.toc, **fields
    )
    for index, quiz in enumerate(result.quizzes, start=1):
        Quiz.objects.create(
            lesson=lesson,
            key=quiz["key"],
            title=quiz["title"],
            graded=quiz["graded"],
            max_attempts=quiz["max_attempts"],
            questions=quiz["questions"],
            position=index,
        )
    return lesson


@pytest.fixture
def course(db) -> Course:
    course = factories.course_create(
        slug="shipping",
        title="Shipping Production Systems",
        summary="Build, package and run services you can reproduce, observe and roll back.",
        unit_label="Week",
    )
    week1 = factories.unit_create(course=course, position=1, slug="containers", title="Containers")
    week2 = factories.unit_create(course=course, position=2, slug="deployment", title="Deployment")
    _lesson(
        week1,
        1,
        "pinning",
        "Pinning what you ship",
        READING,
        tagline="Same inputs, same image, every time.",
        objective="Rebuild an image and get the same digest.",
        deliverable="A Dockerfile and lock file that rebuild byte for byte.",
        outcomes=["Pin a base image by digest", "Lock dependencies with hashes"],
        prerequisites=["A shell and Docker"],
        estimated_minutes=35,
        references=[
            {"kind": "official-doc", "title": "Dockerfile reference", "url": "https://docs.docker.com/reference/"},
            {"kind": "paper", "title": "Reproducible builds", "url": "https://example.org/paper"},
        ],
    )
    _lesson(week1, 2, "unit-check", "Week 1 check", GRADED, estimated_minutes=10)
    factories.lesson_create(unit=week2, position=1, slug="rollouts", title="Rollouts and rollbacks")
    return course


def _new_page(browser, live_server, *, color_scheme="light", **options):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=color_scheme, **options)
    page = context.new_page()
    offsite: list[str] = []
    server = urlsplit(live_server.url).netloc

    def record(request):
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https") and parts.netloc != server:
            offsite.append(request.url)

    page.on("request", record)
    page.offsite = offsite
    return page


def test_reader_reads_a_lesson_and_reveals_answers(browser, live_server, course, screenshots):
    page = _new_page(browser, live_server)
    page.goto(live_server.url + "/")
    assert page.get_by_role("link", name="Shipping Production Systems").is_visible()
    page.screenshot(path=str(screenshots / "catalog.png"), full_page=True)

    page.get_by_role("link", name="Shipping Production Systems").click()
    page.get_by_role("link", name="Pinning what you ship").click()
    assert page.locator("h1").inner_text() == "Pinning what you ship"
    assert page.get_by_text("Rebuild an image and get the same digest.").is_visible()
    assert page.locator(".toc a[href='#why-pin']").is_visible()
    page.wait_for_selector(".math[data-typeset] .katex")  # vendored KaTeX ran

    counter = page.locator(".quiz .quiz-progress")
    assert counter.inner_text() == "0 of 3 opened"
    page.locator(".quiz details.quiz-reveal summary").first.click()
    expect(counter).to_have_text("1 of 3 opened")  # the toggle event fires after the click returns
    assert page.get_by_text("A digest is the hash of the image itself.").is_visible()

    page.locator("a[rel=next]").click()
    assert page.locator("h1").inner_text() == "Week 1 check"
    assert "Week 2" in page.locator("a[rel=next]").inner_text()
    page.locator("a[rel=next]").click()
    assert page.locator("h1").inner_text() == "Rollouts and rollbacks"
    assert page.offsite == []


def test_keyboard_users_can_skip_to_content_with_a_visible_focus(browser, live_server, course):
    page = _new_page(browser, live_server)
    page.goto(live_server.url + "/courses/shipping/")
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Skip to content"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_theme_toggle_switches_to_dark_and_is_remembered(browser, live_server, course, screenshots):
    page = _new_page(browser, live_server)
    page.goto(live_server.url + "/courses/shipping/containers/pinning/")
    page.wait_for_selector(".math[data-typeset] .katex")
    page.screenshot(path=str(screenshots / "lesson-light.png"), full_page=True)
    light_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")

    toggle = page.locator("#theme-toggle")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert toggle.get_attribute("aria-pressed") == "true"
    dark_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert dark_bg != light_bg
    page.screenshot(path=str(screenshots / "lesson-dark.png"), full_page=True)

    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == dark_bg


def test_dark_theme_follows_the_system_without_javascript(browser, live_server, course):
    page = _new_page(browser, live_server, color_scheme="dark", java_script_enabled=False)
    page.goto(live_server.url + "/")
    # Playwright can still evaluate here; only the page's own scripts are off.
    background = page.locator("body").evaluate("el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(15, 20, 25)"  # --bg of the dark palette
    assert page.locator("#theme-toggle").is_hidden()  # the toggle needs JS, so it stays hidden


def test_learner_signs_up_takes_the_graded_quiz_and_completes_a_lesson(browser, live_server, course, screenshots):
    page = _new_page(browser, live_server)
    page.goto(live_server.url + "/courses/shipping/containers/unit-check/")
    quiz = page.locator("#quiz-unit-check")
    assert "to take this quiz" in quiz.inner_text()
    assert "The lock carries a hash" not in page.content()

    quiz.get_by_role("link", name="sign up").click()
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Email address").fill("ada@example.com")
    page.get_by_label("Password", exact=True).fill(factories.PASSWORD)
    page.get_by_label("Password confirmation").fill(factories.PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/courses/shipping/containers/unit-check/#quiz-unit-check")

    # Set on this document only: still there after the submit means htmx swapped the quiz, no page reload.
    page.evaluate("window.notReloaded = true")
    quiz = page.locator("#quiz-unit-check")
    quiz.get_by_label("requirements.lock").check()
    quiz.get_by_label("An unpinned base image").check()
    quiz.get_by_label("A floating dependency range").check()
    quiz.get_by_role("button", name="Submit answers").click()
    score = page.locator(".quiz-score")
    score.wait_for()
    assert score.inner_text() == "Your score: 2 / 2"
    assert page.get_by_text("The lock carries a hash for every wheel.").is_visible()
    assert "2 attempts left" in page.locator("#quiz-unit-check").inner_text()
    page.locator("#quiz-unit-check").screenshot(path=str(screenshots / "quiz.png"))

    page.get_by_role("button", name="Mark complete").click()
    page.get_by_text("You completed this lesson.").wait_for()
    assert page.evaluate("window.notReloaded") is True
    # Focus moves to the new status once htmx has settled the swap, so keyboard users hear what changed.
    # A function, not an expression: Playwright polls an expression through eval, which the page's CSP refuses.
    page.wait_for_function("() => document.activeElement.textContent.trim() === '✓ You completed this lesson.'")
    page.goto(live_server.url + "/courses/shipping/")
    assert "1 of 3 lessons (33%)" in page.locator("#course-progress").inner_text()
    assert "Enrolled as learner" in page.content()
    assert page.offsite == []


def test_mark_complete_works_without_javascript(browser, live_server, course):
    factories.user_create(username="grace")
    page = _new_page(browser, live_server, java_script_enabled=False)
    page.goto(live_server.url + "/accounts/login/?next=/courses/shipping/deployment/rollouts/")
    page.get_by_label("Username").fill("grace")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/courses/shipping/deployment/rollouts/")
    page.get_by_role("button", name="Mark complete").click()
    expect(page.get_by_text("You completed this lesson.")).to_be_visible()
    assert page.url.endswith("/courses/shipping/deployment/rollouts/#lesson-progress")  # a full post + redirect
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("link", name="Log in")).to_be_visible()
