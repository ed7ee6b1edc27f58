"""The rendered lesson in Debian's chromium: KaTeX typesets math from the vendored files, quiz.js counts the
answers a reader opened, and the page fetches nothing from the network."""

from __future__ import annotations

from pathlib import Path

import pytest

from courses.markdown import render_markdown

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


def _page_html(body: str) -> str:
    def url(rel: str) -> str:
        return (STATIC / rel).as_uri()

    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>lesson</title>
<link rel="stylesheet" href="{url("vendor/katex/katex.min.css")}">
<link rel="stylesheet" href="{url("css/content.css")}">
<script defer src="{url("vendor/katex/katex.min.js")}"></script>
<script defer src="{url("js/math.js")}"></script>
<script defer src="{url("js/quiz.js")}"></script>
</head><body><main class="lesson-body">{body}</main></body></html>"""


@pytest.mark.browser
def test_math_is_typeset_and_the_quiz_counter_follows_reveals_without_network(tmp_path, browser):
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
    page.wait_for_function("document.querySelector('.quiz [data-opened]').textContent === '1'")
    summaries.nth(0).click()  # closing an answer again keeps it counted
    summaries.nth(1).click()
    page.wait_for_function("document.querySelector('.quiz [data-opened]').textContent === '2'")
    assert page.locator(".quiz-progress").inner_text() == "2 of 2 opened"

    assert requested, "the page made no requests at all: the test did not load it"
    assert all(url.startswith("file://") for url in requested), [u for u in requested if not u.startswith("file://")]
    assert any(url.endswith(".woff2") for url in requested), "KaTeX fonts did not load from the vendored files"
