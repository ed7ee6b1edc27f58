"""An author's live preview (`manage.py preview_course DIR`): pages straight from the folder, problems at their
lines, reload on save, no database.

Most tests carry no database mark: pytest-django then refuses any query, so they also prove the preview never
touches the database. One test counts queries across requests, one runs the real command against a database
file that cannot exist.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from courses.coursefs.spec import AssetSpec, UnitSpec
from courses.preview import watch
from courses.preview.app import PreviewApp
from courses.preview.pages import unit_heading
from courses.preview.watch import CoursePreview
from tests.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]

COURSE_YAML = """slug: preview-course
title: Preview course
summary: A small course for the preview tests.
unit_label: Week
units:
  - slug: basics
    title: The basics
  - slug: practice
    title: Practice
    label: Module
    track: Advanced mastery
"""

FIRST = """---
title: First steps
tagline: Where it starts
objective: Read a lesson in the preview.
deliverable:
  text: A saved file.
  detail: Saved twice, to see the page follow.
reflection: What did the page do when you saved?
estimated_minutes: 5
references:
  - kind: article
    title: Plain text
    url: https://example.org/plain
    description: Why plain text lasts.
---
## Opening

The opening paragraph says hello.

![The request flow](figures/flow.svg)

The [raw timings](data/timings.csv) are a download.

## Check

```quiz
id: graded-check
title: Graded check
graded: true
questions:
  - prompt: Which one is right?
    choices:
      - text: The right one
        correct: true
      - text: The wrong one
    explanation: Because the source says so.
```
"""

SECOND = """---
title: Second lesson
---
## Practice

Go on.
"""

LAB_YAML = """title: Practice lab
slug: practice-lab
instructions: instructions.md
files:
  required: [main.py]
  allowed: ["*.py"]
run:
  command: ["python", "main.py"]
limits:
  wall_seconds: 30
checks:
  - id: files
    kind: files.required
    points: 1
    args: {paths: [main.py]}
"""


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'


def make_course(root: Path) -> Path:
    write(root, "course.yaml", COURSE_YAML)
    write(root, "basics/01-first.md", FIRST)
    (root / "basics/figures").mkdir(parents=True)
    (root / "basics/figures/flow.svg").write_bytes(SVG)
    write(root, "basics/data/timings.csv", "ms\n12\n")
    write(root, "practice/01-second.md", SECOND)
    write(root, "practice/lab-practice/lab.yaml", LAB_YAML)
    write(root, "practice/lab-practice/instructions.md", "## Your task\n\nWrite the lab's main file.\n")
    write(root, "practice/lab-practice/starter/main.py", "print('hello')\n")
    return root


@pytest.fixture
def course_dir(tmp_path: Path) -> Path:
    return make_course(tmp_path / "course")


@pytest.fixture
def preview(course_dir: Path) -> CoursePreview:
    return CoursePreview(course_dir)


def get(preview: CoursePreview, url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    environ: dict = {}
    setup_testing_defaults(environ)
    path, _, query = url.partition("?")
    environ.update(PATH_INFO=path.encode().decode("latin-1"), QUERY_STRING=query, REQUEST_METHOD=method)
    answer: dict = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=int(status.split()[0]), headers=dict(headers))

    body = b"".join(PreviewApp(preview, poll_timeout=0)(environ, start_response))
    return answer["status"], answer["headers"], body


def page(preview: CoursePreview, url: str) -> str:
    status, headers, body = get(preview, url)
    assert status == 200, body.decode()
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    return body.decode()


LESSON = "/courses/preview-course/basics/first/"


# --- pages -----------------------------------------------------------------------------------------------------


def test_the_outline_lists_units_lessons_and_the_labs_instructions(preview):
    html = page(preview, "/")
    assert "<h1>Preview course</h1>" in html
    assert '<span class="unit-label">Week 1</span>The basics' in html
    assert '<span class="unit-label"><span class="unit-track">Advanced mastery</span> · Module 2</span>Practice' in html
    assert f'href="{LESSON}">First steps</a>' in html
    assert 'href="/courses/preview-course/labs/practice-lab/">Practice lab</a>' in html
    assert "No problems" in html
    assert page(preview, "/courses/preview-course/") == html


def test_a_unit_is_named_by_its_track_and_label_else_the_courses_label(preview):
    course = preview.result.course
    assert unit_heading(course, UnitSpec(slug="u", title="U", position=3, number=3)) == "Week 3"
    named = UnitSpec(slug="u", title="U", position=3, number=3, label="Module", track="Advanced mastery")
    assert unit_heading(course, named) == "Advanced mastery · Module 3"
    html = page(preview, "/courses/preview-course/practice/second/")
    assert '<p class="unit-label"><span class="unit-track">Advanced mastery</span> · Module 2 · Practice</p>' in html
    assert "Previous · Week 1" in html


def test_a_lesson_renders_like_the_lesson_page_with_the_sites_css_and_js(preview):
    html = page(preview, LESSON)
    assert '<h1 id="lesson-title">First steps</h1>' in html
    assert '<p class="unit-label">Week 1 · The basics</p>' in html
    assert "<dt>Objective</dt><dd>Read a lesson in the preview.</dd>" in html
    assert '<dd>A saved file.<span class="fact-detail">Saved twice, to see the page follow.</span></dd>' in html
    assert '<p class="reflection-prompt">What did the page do when you saved?</p>' in html
    assert "The opening paragraph says hello." in html
    assert 'href="https://example.org/plain"' in html
    assert '<p class="reference-description">Why plain text lasts.</p>' in html
    for asset in (
        "css/site.css",
        "css/content.css",
        "js/quiz.js",
        "js/marks.js",
        "js/math.js",
        "vendor/katex/katex.min.js",
    ):
        assert f'"/static/courses/{asset}"' in html
    # Nothing inline: every script is a file, as the site's CSP requires.
    assert html.count("<script") == html.count("<script src=")
    assert 'href="/courses/preview-course/practice/second/"' in html  # the pager


def test_the_front_matter_shows_as_inline_markdown_with_links_resolved(course_dir):
    front = (
        "title: Second lesson\ntagline: Go *on*\nobjective: Pin `latest`\nreflection: Is $P(y|x)$ known?\n"
        "outcomes:\n  - Read the [timings](../basics/data/timings.csv)\n"
        "prerequisites:\n  - The [first steps](../basics/01-first.md#opening)\n"
        "references:\n  - kind: article\n    url: https://example.org/a\n    description: Why _this_ one\n"
    )
    write(course_dir, "practice/01-second.md", f"---\n{front}---\n## Practice\n\nGo on.\n")
    preview = CoursePreview(course_dir)
    assert preview.result.problems == []

    html = page(preview, "/courses/preview-course/practice/second/")

    assert '<p class="tagline">Go <em>on</em></p>' in html
    assert "<dt>Objective</dt><dd>Pin <code>latest</code></dd>" in html
    assert '<p class="reflection-prompt">Is <span class="math math-inline">P(y|x)</span> known?</p>' in html
    digest = hashlib.sha256(b"ms\n12\n").hexdigest()
    assert f'<li>Read the <a href="/course-assets/{digest}/timings.csv"' in html
    assert f'<li>The <a href="{LESSON}#opening"' in html
    assert '<p class="reference-description">Why <em>this</em> one</p>' in html


def test_a_graded_quiz_shows_read_only_with_the_authors_answers_marked_as_a_preview(preview):
    html = page(preview, LESSON)
    assert "Graded quiz — preview" in html
    assert '<li class="preview-correct">The right one <strong>(correct)</strong></li>' in html
    assert "Because the source says so." in html
    assert "graded-quiz-slot" not in html and "<form" not in html


def test_the_lab_page_shows_its_instructions(preview):
    html = page(preview, "/courses/preview-course/labs/practice-lab/")
    assert '<h1 id="lab-title">Practice lab</h1>' in html
    assert "<p>Write the lab's main file.</p>" in html


def test_a_title_with_a_script_is_shown_as_text(course_dir):
    write(course_dir, "practice/01-second.md", '---\ntitle: "<script>alert(1)</script>"\n---\nBody.\n')
    preview = CoursePreview(course_dir)
    html = page(preview, "/")
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_pages_carry_the_sites_security_headers_and_are_never_cached(preview):
    status, headers, _ = get(preview, LESSON)
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


def test_an_unknown_page_is_a_404_that_still_reloads(preview):
    status, _, body = get(preview, "/courses/preview-course/basics/nope/")
    assert status == 404
    assert b"No such page" in body and b"data-preview-version" in body


def test_only_get_and_head_are_served(preview):
    assert get(preview, "/", method="POST")[0] == 405
    status, _, body = get(preview, "/", method="HEAD")
    assert status == 200 and body == b""


# --- static files and course assets ----------------------------------------------------------------------------


def test_static_files_come_from_the_apps_and_nothing_outside_them(preview):
    status, headers, body = get(preview, "/static/courses/css/site.css")
    assert status == 200 and headers["Content-Type"] == "text/css; charset=utf-8" and b"--accent" in body
    assert get(preview, "/static/../../config/settings.py")[0] == 404
    assert get(preview, "/static/courses/css/nope.css")[0] == 404


def add_asset(preview: CoursePreview, rel: str, data: bytes, media_type: str, kind: str) -> AssetSpec:
    path = preview.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    asset = AssetSpec(path=rel, sha256=sha, size=len(data), media_type=media_type, kind=kind, source=path)
    preview.result.course.assets[rel] = asset
    return asset


def test_assets_are_served_at_their_site_url_with_the_sites_headers(preview):
    figure = add_asset(preview, "basics/figures/flow.svg", SVG, "image/svg+xml", "image")
    status, headers, body = get(preview, figure.url)
    assert status == 200 and body == SVG
    assert headers["Content-Type"] == "image/svg+xml"
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    assert "Content-Disposition" not in headers

    table = add_asset(preview, "basics/data/latencies.csv", b"ms\n250\n", "text/csv", "data")
    status, headers, body = get(preview, table.url)
    assert status == 200 and headers["Content-Type"] == "text/csv"
    assert headers["Content-Disposition"] == 'attachment; filename="latencies.csv"'


def test_a_lessons_figure_and_data_file_are_served_from_the_folder_at_their_site_urls(preview):
    figure = preview.result.course.assets["basics/figures/flow.svg"]
    html = page(preview, LESSON)
    assert f'<img src="{figure.url}" alt="The request flow"' in html
    status, headers, body = get(preview, figure.url)
    assert status == 200 and body == SVG and headers["Content-Type"] == "image/svg+xml"
    timings = preview.result.course.assets["basics/data/timings.csv"]
    assert f'href="{timings.url}"' in html
    status, headers, body = get(preview, timings.url)
    assert status == 200 and body == b"ms\n12\n"
    assert headers["Content-Disposition"] == 'attachment; filename="timings.csv"'


def test_an_asset_is_refused_for_an_unknown_digest_a_wrong_extension_or_changed_content(preview):
    figure = add_asset(preview, "basics/figures/flow.svg", SVG, "image/svg+xml", "image")
    assert get(preview, f"/course-assets/{'0' * 64}/flow.svg")[0] == 404
    assert get(preview, f"/course-assets/{figure.sha256}/flow.html")[0] == 404
    (preview.root / figure.path).write_bytes(SVG.replace(b"4", b"5"))
    assert get(preview, figure.url)[0] == 404  # the old address never answers with other bytes


# --- problems --------------------------------------------------------------------------------------------------


BROKEN_CALLOUT = """---
title: Second lesson
---
## Practice

Go on.

## Careful

::: nonsense-kind
Text where 1 < 2 & 3 > 2, in a callout.
:::
"""


def test_a_broken_lesson_shows_its_problem_at_the_line_with_the_source_quoted(course_dir):
    write(course_dir, "practice/01-second.md", BROKEN_CALLOUT)
    preview = CoursePreview(course_dir)
    [problem] = [p for p in preview.result.problems if p.file == "practice/01-second.md"]
    assert problem.line == 10  # the line of "::: nonsense-kind"
    html = page(preview, "/courses/preview-course/practice/second/")
    assert "1 problem in <code>practice/01-second.md</code>" in html
    assert "<strong>line 10</strong>" in html and problem.message.replace("'", "&#x27;") in html
    assert '<span class="preview-quote-line preview-quote-here"><span class="preview-quote-number">10</span>' in html
    assert "::: nonsense-kind</span>" in html
    assert "Text where 1 &lt; 2 &amp; 3 &gt; 2, in a callout." in html  # quoted source is escaped
    assert 'href="#careful"' in html  # the section holding the line
    # The other lesson lists it among the course's problems, linking to its page; so does the outline.
    other = page(preview, LESSON)
    assert "1 problem elsewhere in the course" in other
    assert 'href="/courses/preview-course/practice/second/">Open the page' in other
    assert "1 problem in the course" in page(preview, "/")


def test_a_lesson_that_stops_loading_shows_why_at_its_address(preview, course_dir):
    write(course_dir, "practice/01-second.md", "---\ntitle: [unclosed\n---\nBody.\n")
    assert preview.check()
    status, _, body = get(preview, "/courses/preview-course/practice/second/")
    html = body.decode()
    assert status == 404
    assert "This page's file cannot be read now" in html
    [problem] = [p for p in preview.result.problems if p.file == "practice/01-second.md"]
    assert "problem in <code>practice/01-second.md</code>" in html
    assert f"<strong>line {problem.line}</strong>" in html and "title: [unclosed" in html


def test_a_broken_course_yaml_shows_the_problems_page_instead_of_an_error(course_dir):
    write(course_dir, "course.yaml", "slug: preview-course\ntitle: [broken\nunits: []\n")
    preview = CoursePreview(course_dir)
    assert preview.result.course is None
    for url in ("/", LESSON):
        html = page(preview, url)
        assert "The course cannot be read" in html
        assert "<code>course.yaml</code>" in html and "title: [broken" in html


def test_a_loader_crash_becomes_a_problem_on_the_page(course_dir, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("the loader tripped")

    monkeypatch.setattr(watch, "load_course", explode)
    preview = CoursePreview(course_dir)
    assert "RuntimeError: the loader tripped" in page(preview, "/")


# --- reload on save --------------------------------------------------------------------------------------------


def test_saving_a_file_gives_a_new_version_and_the_new_text(preview, course_dir):
    before = preview.version
    assert not preview.check()
    assert preview.wait_for_change(since=before, timeout=0) == before
    write(course_dir, "basics/01-first.md", FIRST.replace("says hello", "now says goodbye"))
    assert preview.check()
    assert preview.version != before
    assert preview.wait_for_change(since=before, timeout=0) == preview.version
    assert "now says goodbye" in page(preview, LESSON)
    status, _, body = get(preview, f"/__preview__/changes?since={before}")
    assert status == 200 and preview.version in body.decode()


def test_a_page_from_an_earlier_server_reloads_at_once(preview):
    assert get(preview, "/__preview__/changes?since=another-process-7")[2].decode() == (
        f'{{"version": "{preview.version}"}}'
    )


def test_hidden_files_such_as_editor_swap_files_do_not_reload(preview, course_dir):
    write(course_dir, "basics/.01-first.md.swp", "swap")
    write(course_dir, ".git/index", "git")
    assert not preview.check()


def test_unchanged_documents_come_from_the_render_cache_and_problems_are_shown_again(course_dir):
    write(course_dir, "practice/01-second.md", BROKEN_CALLOUT)
    preview = CoursePreview(course_dir)
    write(course_dir, "course.yaml", COURSE_YAML.replace("A small course", "A tiny course"))
    assert preview.check()
    first, second = preview.result.course.lessons()
    assert not first.rendered.fresh  # rendered on the first read, taken from memory on the second
    assert second.rendered.fresh  # a document with problems is rendered again
    assert any(p.file == "practice/01-second.md" for p in preview.result.problems)


# --- no database -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_serving_pages_runs_no_database_query(preview):
    with CaptureQueriesContext(connection) as queries:
        for url in ("/", LESSON, "/courses/preview-course/labs/practice-lab/", "/static/courses/js/preview.js"):
            assert get(preview, url)[0] == 200
        preview.reload()
    assert len(queries) == 0, [q["sql"] for q in queries]


# --- the command -----------------------------------------------------------------------------------------------


def test_the_command_refuses_an_address_other_than_loopback(course_dir):
    with pytest.raises(CommandError, match="only listens on this machine, not on '0.0.0.0'.*--address 127.0.0.1"):
        call_command("preview_course", str(course_dir), "--address", "0.0.0.0")  # noqa: S104 - refused


def test_the_command_says_when_the_port_is_in_use(course_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"port {port} on 127.0.0.1 is already in use.*--port"):
            call_command("preview_course", str(course_dir), "--port", str(port))


def test_the_command_refuses_a_missing_folder(tmp_path):
    with pytest.raises(CommandError, match="course directory not found: .*nothing-here.*holds course.yaml"):
        call_command("preview_course", str(tmp_path / "nothing-here"))


def ctrl_c_default() -> None:
    """For a child process: SIGINT as a terminal delivers it (the default action), whatever the parent inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_the_command_serves_without_a_database_prints_the_url_and_stops_on_ctrl_c(course_dir, tmp_path):
    missing = tmp_path / "no-such-folder" / "db.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{missing}", "SHIPSHAPE_DEV": "1"}
    port = free_port()
    process = subprocess.Popen(  # our own manage.py
        [sys.executable, "manage.py", "preview_course", str(course_dir), "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as in a terminal: a shell's background job starts with SIGINT ignored, and children inherit it.
        preexec_fn=ctrl_c_default,
    )
    try:
        first = process.stdout.readline()
        second = process.stdout.readline()
        assert "Preview course: 2 lessons, 1 labs, no problems" in first, first + process.stderr.read()
        assert f"Open http://127.0.0.1:{port}/" in second
        for url in ("/", LESSON):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{url}") as response:
                assert response.status == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Preview stopped." in out
    assert "Traceback" not in err
    assert not missing.exists() and not missing.parent.exists()
