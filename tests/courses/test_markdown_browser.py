"""The rendered lesson in Debian's chromium: KaTeX typesets math from the vendored files, quiz.js counts the
answers a reader has open, the page fetches nothing from the network, and the lesson structures of issue 13
(callout kinds, quotations, reveal-only questions, checklists, course images) render in both themes
(screenshots: artifacts/screenshots/lesson-structures-light.png and -dark.png)."""

from __future__ import annotations

from pathlib import Path

import pytest

from courses.markdown import CALLOUT_TITLES, render_markdown

STATIC = Path(__file__).resolve().parents[2] / "courses" / "static" / "courses"

LESSON = """## Variance

The spread is $\\sigma^2 = \\frac{1}{n}\\sum_i (x_i - \\mu)^2$ for a sample.

$$
P(\\text{same output}) = 1
$$

```quiz
questions:
  - prompt: First?
    choices:
      - text: yes
        correct: true
      - text: no
    explanation: Because.
  - prompt: Second?
    choices:
      - text: a
      - text: b
        correct: true
```
"""


def _page_html(body: str, theme: str = "light") -> str:
    def url(rel: str) -> str:
        return (STATIC / rel).as_uri()

    return f"""<!doctype html><html lang="en" data-theme="{theme}"><head><meta charset="utf-8"><title>lesson</title>
<link rel="stylesheet" href="{url("css/site.css")}">
<link rel="stylesheet" href="{url("vendor/katex/katex.min.css")}">
<link rel="stylesheet" href="{url("css/content.css")}">
<script defer src="{url("vendor/katex/katex.min.js")}"></script>
<script defer src="{url("js/math.js")}"></script>
<script defer src="{url("js/quiz.js")}"></script>
</head><body><main class="lesson-body">{body}</main></body></html>"""


@pytest.mark.browser
def test_math_is_typeset_and_the_quiz_counter_counts_the_answers_open_now_without_network(tmp_path, browser):
    page_file = tmp_path / "lesson.html"
    page_file.write_text(_page_html(render_markdown(LESSON).html), encoding="utf-8")
    requested: list[str] = []

    page = browser.new_page()
    page.on("request", lambda request: requested.append(request.url))
    page.goto(page_file.as_uri())
    page.wait_for_selector(".math-inline .katex")

    assert page.locator(".math-display .katex-display").count() == 1
    assert page.locator(".math[data-typeset]").count() == 2
    counter = page.locator(".quiz [data-opened]")
    assert counter.inner_text() == "0"
    summaries = page.locator("details.quiz-reveal > summary")

    summaries.nth(0).click()
    assert page.locator(".quiz-explanation").first.is_visible()
    page.wait_for_function("() => document.querySelector('.quiz [data-opened]').textContent === '1'")
    summaries.nth(1).click()
    page.wait_for_function("() => document.querySelector('.quiz [data-opened]').textContent === '2'")
    summaries.nth(0).click()  # closing an answer again lowers the count
    page.wait_for_function("() => document.querySelector('.quiz [data-opened]').textContent === '1'")
    assert page.locator(".quiz-progress").inner_text() == "1 of 2 opened"

    assert requested, "the page made no requests at all: the test did not load it"
    assert all(url.startswith("file://") for url in requested), [u for u in requested if not u.startswith("file://")]
    assert any(url.endswith(".woff2") for url in requested), "KaTeX fonts did not load from the vendored files"


STRUCTURES = (
    """## Structures

::: epigraph
What can run once is possible; what runs every day is durable.

— A course author, *Notes*
:::

"""
    + "".join(f"::: {kind}\nA short body for the {kind} callout.\n:::\n\n" for kind in CALLOUT_TITLES)
    + """::: pullquote
Pin what you ship, or you ship something new each time.

-- Field notes
:::

![The request flow](figures/flow.svg)

- [ ] pin the base image
- [ ] lock the dependencies

```quiz
questions:
  - prompt: Why pin by digest?
    answer: |
      A tag can move; a **digest** names one image.
    explanation: Tags are pointers.
  - prompt: Which file holds exact versions?
    choices:
      - text: uv.lock
        correct: true
      - text: README.md
```
"""
)

# Far wider than any page: the stylesheet must scale it down to the text column.
WIDE_SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="3000" height="300"><rect width="3000" height="300" fill="#0b5cad"/></svg>'


@pytest.mark.browser
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_new_lesson_structures_render_in_both_themes(tmp_path, browser, screenshots, theme):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "flow.svg").write_text(WIDE_SVG, encoding="utf-8")
    result = render_markdown(STRUCTURES, asset_resolver=lambda path, *, image, line: path)
    assert result.problems == []
    page_file = tmp_path / "lesson.html"
    page_file.write_text(_page_html(result.html, theme), encoding="utf-8")

    page = browser.new_page(viewport={"width": 900, "height": 900})
    page.goto(page_file.as_uri())

    accents = [
        page.locator(f".callout-{kind} .callout-title").evaluate("el => getComputedStyle(el).color")
        for kind in CALLOUT_TITLES
    ]
    assert len(set(accents)) == len(CALLOUT_TITLES), accents
    assert page.locator("figure.pullquote figcaption").inner_text().endswith("Field notes")
    assert page.locator("figure.epigraph figcaption").is_visible()

    image = page.locator(".lesson-body img")
    image.wait_for()
    assert page.evaluate("document.querySelector('.lesson-body img').complete")
    width = image.evaluate("el => el.getBoundingClientRect().width")
    column = page.locator(".lesson-body").evaluate("el => el.clientWidth")
    assert 0 < width <= column

    box = page.locator("[data-checklist='1'] input[data-item='1']")
    assert box.is_enabled()
    box.click()
    assert box.is_checked()

    reveal_only = page.locator(".quiz-reveal-only")
    assert "Choose one" not in reveal_only.inner_text()
    reveal_only.locator("summary").click()
    assert reveal_only.locator(".quiz-answer-text strong").inner_text() == "digest"
    page.wait_for_function("() => document.querySelector('.quiz [data-opened]').textContent === '1'")

    page.screenshot(path=str(screenshots / f"lesson-structures-{theme}.png"), full_page=True)
    assert (screenshots / f"lesson-structures-{theme}.png").stat().st_size > 0
