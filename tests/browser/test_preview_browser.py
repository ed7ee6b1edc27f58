"""The author's live preview in Debian's chromium: `manage.py preview_course` runs as the author runs it, on a
copy of a small course and with no database; the test edits the lesson file on disk and never reloads the page
itself. Screenshots go to artifacts/screenshots/preview-*.png.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.courses.test_preview import FIRST, LESSON, ctrl_c_default, make_course

pytestmark = [pytest.mark.browser]

REPO_ROOT = Path(__file__).resolve().parents[2]
# Enough text below the first section that the reader can scroll, to see the page come back where it was.
LONG_FIRST = FIRST + "\n## More reading\n\n" + "\n\n".join(f"Paragraph {n} of the long tail." for n in range(60))
# A mistake in the opening section: an unknown callout kind, at a line the test knows.
MISTAKE_LINE = FIRST.split("\n").index("The opening paragraph says hello.") + 1


@pytest.fixture
def preview_url(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    course = make_course(tmp_path / "course")
    (course / "basics/01-first.md").write_text(LONG_FIRST)
    missing = tmp_path / "no-database" / "db.sqlite3"  # any database access would fail: the folder does not exist
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{missing}", "SHIPSHAPE_DEV": "1"}
    process = subprocess.Popen(  # our own manage.py
        [sys.executable, "manage.py", "preview_course", str(course), "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as in a terminal: a shell's background job starts with SIGINT ignored, and children inherit it.
        preexec_fn=ctrl_c_default,
    )
    try:
        process.stdout.readline()
        opened = process.stdout.readline()
        assert "Open http://127.0.0.1:" in opened, opened + process.stderr.read()
        yield opened.split()[1].rstrip("/"), course
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0 and "Preview stopped." in out, err
        assert "Reloaded: Preview course: 2 lessons, 1 labs, 1 problem" in out
        assert not missing.parent.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_open_lesson_reloads_on_save_and_shows_a_saved_mistake_at_its_line(browser, screenshots, preview_url):
    url, course = preview_url
    lesson_file = course / "basics/01-first.md"
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"uncaught {error}"))
    page.on(
        "console",
        lambda message: message.type == "error"
        and not message.location.get("url", "").endswith("/favicon.ico")
        and errors.append(f"console error: {message.text}"),
    )

    page.goto(url + "/")
    expect(page.get_by_role("heading", name="Preview course")).to_be_visible()
    expect(page.get_by_text("No problems").first).to_be_visible()
    page.screenshot(path=str(screenshots / "preview-outline.png"), full_page=True)

    page.get_by_role("link", name="First steps").click()
    expect(page.get_by_text("The opening paragraph says hello.")).to_be_visible()
    expect(page.get_by_text("Graded quiz — preview")).to_be_visible()
    # Set by the test, gone only if the page reloads: proof the page reloaded itself on the save below.
    page.evaluate("window.__beforeSave = true")

    lesson_file.write_text(LONG_FIRST.replace("says hello", "now says goodbye"))
    expect(page.get_by_text("The opening paragraph now says goodbye.")).to_be_visible()
    assert page.evaluate("window.__beforeSave === undefined")
    page.screenshot(path=str(screenshots / "preview-reloaded.png"))

    # The reader scrolled down to read; the save brings the page back where they were.
    page.get_by_text("Paragraph 40 of the long tail.").scroll_into_view_if_needed()
    scrolled = page.evaluate("window.scrollY")
    assert scrolled > 0
    mistake = LONG_FIRST.replace("The opening paragraph says hello.", "::: nonsense-kind\nA 1 < 2 & 3 > 2 aside.\n:::")
    lesson_file.write_text(mistake)

    panel = page.locator("#file-problems")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text(f"line {MISTAKE_LINE}")
    expect(panel.locator(".preview-quote-here")).to_contain_text("::: nonsense-kind")
    expect(panel).to_contain_text("A 1 < 2 & 3 > 2 aside.")  # quoted as text, not markup
    expect(page.get_by_role("link", name="1 problem")).to_be_visible()
    page.wait_for_function("() => window.scrollY > 0")  # a function: an expression is polled through eval (CSP)
    page.screenshot(path=str(screenshots / "preview-problem.png"))
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(screenshots / "preview-problem-panel.png"))

    panel.get_by_role("link", name="Show where this is on the page").click()
    assert page.url.endswith("#opening")

    # A broken course.yaml: the problems page instead of an error, and back once it is fixed.
    course_yaml = (course / "course.yaml").read_text()
    (course / "course.yaml").write_text(course_yaml.replace("title: Preview course", "title: [broken"))
    expect(page.get_by_role("heading", name="The course cannot be read")).to_be_visible()
    page.screenshot(path=str(screenshots / "preview-broken-course.png"))
    (course / "course.yaml").write_text(course_yaml)
    expect(page.locator("#lesson-title")).to_have_text("First steps")
    assert page.url.endswith(LESSON + "#opening")

    assert errors == []
    context.close()
