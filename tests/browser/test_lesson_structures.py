"""The lesson page's new structures in Debian's chromium, served by the site: the answer counter goes up and down,
opened answers and ticked items survive a reload (kept on the server for a learner, in the browser for an anonymous
reader), and screenshots of a page holding every new structure in light and dark.

Content goes through the real Markdown renderer, the figure through the real /course-assets/ view.
"""

import hashlib
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from courses.coursefs.spec import asset_url
from courses.markdown import render_markdown
from courses.models import CourseAsset, LessonMark, Quiz
from tests.courses import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FIGURE = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 360 80" width="720" height="160">'
    b'<rect x="4" y="20" width="100" height="40" rx="6" fill="#0b5cad"/>'
    b'<rect x="256" y="20" width="100" height="40" rx="6" fill="#1a7f37"/>'
    b'<path d="M110 40 H250" stroke="#888" stroke-width="4"/></svg>'
)
FIGURE_URL = asset_url(hashlib.sha256(FIGURE).hexdigest(), "flow.svg")

LESSON = """::: epigraph
A build you cannot repeat is a rumour, not a release.

— Notes from an on-call rotation
:::

## Why pin

A tag moves; a digest names one image for ever.

::: key-idea
Pin what you ship and update it on purpose.
:::

::: assumptions Before we start
You can run a container locally.
:::

::: in-practice
Teams pin the base image and refresh it weekly in one reviewed change.
:::

::: myth
"Latest" is a version.
:::

::: warning
A lock file without hashes still trusts the index.
:::

::: pullquote
The fastest rollback is the one you rehearsed.

-- A release engineer
:::

![How a request reaches the service](figures/flow.svg)

## Check yourself

```quiz
id: check-yourself
questions:
  - prompt: What does a digest name?
    answer: Exactly one image, byte for byte.
    explanation: Its bytes are hashed, so any change gives a new digest.
  - prompt: Why refresh pins on a schedule?
    answer: To take security fixes without surprise.
  - prompt: Which reference never moves?
    choices:
      - text: "`python:3.11`"
      - text: "`python@sha256:…`"
        correct: true
```

## Your checklist

- [ ] Pin the base image by digest
- [ ] Lock dependencies with hashes
- [ ] Rebuild and compare digests
"""


@pytest.fixture
def lesson(db):
    CourseAsset.objects.create(
        sha256=hashlib.sha256(FIGURE).hexdigest(), media_type="image/svg+xml", size=len(FIGURE), data=FIGURE
    )
    result = render_markdown(LESSON, asset_resolver=lambda path, *, image, line: FIGURE_URL)
    assert not result.problems, result.problems
    course = factories.course_create(slug="shipping", title="Shipping Production Systems", unit_label="Week")
    unit = factories.unit_create(course=course, position=1, slug="containers", title="Containers")
    unit.label, unit.track, unit.number = "Module", "Advanced mastery", 3
    unit.save()
    lesson = factories.lesson_create(
        unit=unit,
        position=1,
        slug="pinning",
        title="Pinning what you ship",
        html=result.html,
        toc=result.toc,
        tagline="Same inputs, same image.",
        objective="Rebuild an image and get the same digest.",
        objective_detail="Twice, on two machines, a day apart.",
        deliverable="A Dockerfile and lock file that rebuild byte for byte.",
        deliverable_detail="Committed with the digests you compared.",
        reflection="Which of your services would you least like to rebuild from scratch today, and why?",
        estimated_minutes=35,
        references=[
            {
                "kind": "official-doc",
                "title": "Dockerfile reference",
                "url": "https://docs.docker.com/reference/",
                "description": "Every instruction, with what each one caches.",
            }
        ],
    )
    for position, quiz in enumerate(result.quizzes, start=1):
        Quiz.objects.create(lesson=lesson, key=quiz["key"], title=quiz["title"], graded=False, position=position,
                            questions=quiz["questions"])  # fmt: skip
    return lesson


def _page(browser, live_server, *, color_scheme="light"):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme=color_scheme)
    page = context.new_page()
    page.errors = []
    page.posts = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    # A failed load shows as a console error without its URL: failed responses are recorded with theirs instead.
    page.on(
        "console",
        lambda message: message.type == "error"
        and not message.text.startswith("Failed to load resource")
        and page.errors.append(message.text),
    )
    page.on(
        "response",
        lambda response: response.status >= 400
        and urlsplit(response.url).path != "/favicon.ico"  # no favicon on this site, which chromium asks for
        and page.errors.append(f"{response.status} {response.url}"),
    )
    page.on("request", lambda request: request.method == "POST" and page.posts.append(urlsplit(request.url).path))
    return page


def _log_in(page, live_server, username: str) -> None:
    factories.user_create(username=username)
    page.goto(live_server.url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + "/")
    page.posts.clear()  # the login form's


LESSON_PATH = "/courses/shipping/containers/pinning/"


def _answer(page, number: int):
    return page.locator(f"details[data-question='q{number}']")


def _toggle(page, number: int, *, wait_for_save: bool) -> None:
    summary = _answer(page, number).locator("summary")
    if wait_for_save:
        with page.expect_response(lambda response: response.request.method == "POST" and "/marks/" in response.url):
            summary.click()
    else:
        summary.click()


def _tick(page, item: int, *, wait_for_save: bool) -> None:
    box = page.locator(f"[data-checklist='1'] input[data-item='{item}']")
    if wait_for_save:
        with page.expect_response(lambda response: response.request.method == "POST" and "/marks/" in response.url):
            box.click()
    else:
        box.click()


def test_a_learner_opens_and_closes_answers_and_finds_them_and_their_ticks_after_reload(browser, live_server, lesson):
    page = _page(browser, live_server)
    _log_in(page, live_server, "ada")
    page.goto(live_server.url + LESSON_PATH)
    counter = page.locator(".quiz .quiz-progress")
    expect(counter).to_have_text("0 of 3 opened")

    _toggle(page, 1, wait_for_save=True)
    expect(counter).to_have_text("1 of 3 opened")
    _toggle(page, 3, wait_for_save=True)
    expect(counter).to_have_text("2 of 3 opened")
    _toggle(page, 1, wait_for_save=True)  # closing an answer lowers the count
    expect(counter).to_have_text("1 of 3 opened")
    _tick(page, 0, wait_for_save=True)
    _tick(page, 2, wait_for_save=True)

    marks = dict(LessonMark.objects.filter(user__username="ada").values_list("key", "value"))
    assert marks == {"quiz:check-yourself": ["q3"], "checklist:1": [0, 2]}

    page.reload()
    expect(counter).to_have_text("1 of 3 opened")
    assert _answer(page, 3).evaluate("el => el.open") is True
    assert _answer(page, 1).evaluate("el => el.open") is False
    boxes = page.locator("[data-checklist='1'] input[data-item]")
    assert [boxes.nth(i).is_checked() for i in range(3)] == [True, False, True]
    # Restoring the page posted nothing: only the five changes above were sent.
    assert page.posts == [LESSON_PATH + "marks/"] * 5
    # Kept on the server, not in this browser: another browser of the same learner sees them too.
    assert page.evaluate("localStorage.length") == 0
    assert page.errors == []


def test_an_anonymous_reader_keeps_opened_answers_and_ticks_in_the_browser(browser, live_server, lesson):
    page = _page(browser, live_server)
    page.goto(live_server.url + LESSON_PATH)
    counter = page.locator(".quiz .quiz-progress")
    _toggle(page, 2, wait_for_save=False)
    _toggle(page, 1, wait_for_save=False)
    expect(counter).to_have_text("2 of 3 opened")
    _toggle(page, 2, wait_for_save=False)
    expect(counter).to_have_text("1 of 3 opened")
    _tick(page, 1, wait_for_save=False)
    page.wait_for_function(
        "() => localStorage.getItem('shipshape-marks:" + LESSON_PATH + "') !== null"
        " && JSON.parse(localStorage.getItem('shipshape-marks:" + LESSON_PATH + "'))['checklist:1'] !== undefined"
    )

    page.reload()
    expect(counter).to_have_text("1 of 3 opened")
    assert _answer(page, 1).evaluate("el => el.open") is True
    assert _answer(page, 2).evaluate("el => el.open") is False
    assert page.locator("[data-checklist='1'] input[data-item='1']").is_checked()
    stored = page.evaluate(f"JSON.parse(localStorage.getItem('shipshape-marks:{LESSON_PATH}'))")
    assert stored == {"quiz:check-yourself": ["q1"], "checklist:1": [1]}
    assert page.posts == []  # nothing sent for a reader who is not logged in
    assert not LessonMark.objects.exists()
    assert page.errors == []


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_lesson_structures_page_in_both_themes(browser, live_server, lesson, screenshots, theme):
    page = _page(browser, live_server, color_scheme=theme)
    page.goto(live_server.url + LESSON_PATH)
    assert page.locator(".lesson-header .unit-label").inner_text().startswith("ADVANCED MASTERY · MODULE 3")
    assert page.locator(".fact-detail").first.inner_text() == "Twice, on two machines, a day apart."
    assert page.locator(".reference-description").inner_text() == "Every instruction, with what each one caches."
    expect(page.locator(".reflection")).to_contain_text("Artefact: A Dockerfile and lock file")
    figure = page.locator(f".lesson-body img[src='{FIGURE_URL}']")
    figure.scroll_into_view_if_needed()
    page.wait_for_function(f"() => document.querySelector(\"img[src='{FIGURE_URL}']\").naturalWidth > 0")
    _toggle(page, 1, wait_for_save=False)
    _tick(page, 0, wait_for_save=False)
    page.locator(".lesson-header").scroll_into_view_if_needed()
    path = screenshots / f"lesson-structures-page-{theme}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0
    assert page.errors == []
