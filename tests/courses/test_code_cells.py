"""Runnable code cells, the courses side: a ```python run fence renders as a code cell (markup, escaping, order,
the check), wrong fences are course problems with their line and a hint, the importer stores the cells on the
lesson (also when the body comes from the render cache), and the lesson page carries the hook the kernel app's
script reads, only on lessons with cells."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from courses.coursefs import loader
from courses.errors import CourseInvalid
from courses.markdown import render_markdown
from courses.markdown.highlight import code_block_html
from courses.models import Lesson, RenderedMarkdown
from courses.services.importing import course_import
from tests.courses import factories
from tests.courses.test_coursefs import GOOD, register_test_kinds
from tests.courses.test_markdown import md, parse

register_test_kinds()

CELLS = md(
    """
    Intro.

    ```python run check="total == 55"
    total = sum(range(11))
    ```

    ```python
    print("only read")
    ```

    ::: tip
    ```python run
    print(total)
    ```
    :::

    - a list item

      ```python run check='name == "Ada"'
      name = "Ada"
      ```
    """
)


def cells_of(source: str, **kwargs) -> list[dict]:
    return render_markdown(source, **kwargs).code_cells


def problems_of(source: str, **kwargs) -> list[tuple[int, str, str]]:
    return [(p.line, p.message, p.hint) for p in render_markdown(source, **kwargs).problems]


# --- markup ----------------------------------------------------------------------------------------------------


def test_it_renders_a_runnable_fence_as_a_code_cell_with_highlighted_code_and_its_check():
    result = render_markdown('```python run check="total == 55"\ntotal = sum(range(11))\n```\n')
    cell = parse(result.html).find("div", "code-cell")

    assert result.problems == []
    assert (cell.attrs["id"], cell.attrs["data-code-cell"]) == ("code-cell-0", "0")
    pre = cell.find("pre", "highlight")
    assert pre.attrs["tabindex"] == "0"
    assert pre.find("code").text() == "total = sum(range(11))"
    assert pre.find("span", "nb").text() == "sum"  # highlighted like any Python fence
    check = cell.find("p", "code-cell-check")
    assert check.text() == "Check: total == 55"
    assert check.find("code").text() == "total == 55"
    assert cell.find_all("div", "code-label") == []


def test_a_cell_without_a_check_has_no_check_line():
    cell = parse(render_markdown("```python run\nx = 1\n```\n").html).find("div", "code-cell")

    assert cell.find_all("p", "code-cell-check") == []
    assert cell.find("code").text() == "x = 1"


def test_code_and_checks_that_look_like_markup_stay_text():
    code = 'html = "</code></pre><script>alert(1)</script>"\nprint(html)'
    source = f"```python run check=\"html != '</p><script>'\"\n{code}\n```\n"

    result = render_markdown(source)

    assert "<script" not in result.html
    cell = parse(result.html).find("div", "code-cell")
    assert cell.find("pre", "highlight").find("code").text() == code
    assert cell.find("p", "code-cell-check").find("code").text() == "html != '</p><script>'"
    assert result.code_cells[0]["code"] == code
    assert result.code_cells[0]["check"] == "html != '</p><script>'"


def test_cells_are_numbered_in_document_order_wherever_they_sit():
    result = render_markdown(CELLS)
    cells = parse(result.html).find_all("div", "code-cell")

    assert result.problems == []
    assert [c.attrs["data-code-cell"] for c in cells] == ["0", "1", "2"]
    assert [c.attrs["id"] for c in cells] == ["code-cell-0", "code-cell-1", "code-cell-2"]
    assert result.code_cells == [
        {"index": 0, "language": "python", "code": "total = sum(range(11))", "check": "total == 55"},
        {"index": 1, "language": "python", "code": "print(total)", "check": ""},
        {"index": 2, "language": "python", "code": 'name = "Ada"', "check": 'name == "Ada"'},
    ]
    # The stored code is what the page shows: the script sends the <code> element's text.
    assert [c.find("code").text() for c in cells] == [cell["code"] for cell in result.code_cells]


def test_plain_python_fences_render_exactly_as_before():
    source = '```python\ndef f():\n    return "<b>"\n```\n'

    result = render_markdown(source)

    assert result.html == code_block_html('def f():\n    return "<b>"\n', "python")
    assert result.code_cells == []
    # Words after the language that are not `run` are ignored, as they always were.
    assert render_markdown('```python title="x"\nx\n```\n').html == code_block_html("x\n", "python")


def test_a_lesson_without_cells_has_an_empty_list():
    assert cells_of("Just text.\n") == []


@pytest.mark.parametrize(
    ("info", "check"),
    [
        ('python run check="total == 55"', "total == 55"),
        ("python run check='total == 55'", "total == 55"),
        ("python run check=total==55", "total==55"),
        ("python run check=\"name == 'Ada'\"", "name == 'Ada'"),
        ("python run check='name == \"Ada\"'", 'name == "Ada"'),
        ('python run check="len(rows) == 3 and rows[0] > 1"', "len(rows) == 3 and rows[0] > 1"),
        ('python run check="  x  "', "x"),
        ("Python Run", ""),
    ],
)
def test_it_reads_the_check_with_shell_style_quoting(info: str, check: str):
    result = render_markdown(f"```{info}\nx = 1\n```\n")

    assert result.problems == []
    assert result.code_cells[0]["check"] == check


# --- course problems -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "message", "hint"),
    [
        (
            "bash run",
            "only Python code cells can run, but this fence is 'bash' with `run`",
            "Remove `run` to show the bash code without a Run button",
        ),
        ("python run now", "unknown word 'now' after `run` in this code cell's fence line", 'check="<expression>"'),
        ("python run check = x", "unknown words 'check', '=', 'x' after `run`", "no spaces around ="),
        (
            'python run check="total == 55',
            "the fence line of this code cell cannot be read: a quote is never closed",
            "Close the quote around the check",
        ),
        ('python run check="total ="', "the check 'total =' is not a Python expression (invalid syntax)", "e.g."),
        ('python run check="import os"', "the check 'import os' is not a Python expression", "statements"),
        ('python run check="a; b"', "the check 'a; b' is not a Python expression", "one expression"),
        ('python run check=""', "the check '' is not a Python expression (it is empty)", "one expression"),
        ('python run check="a" check="b"', "this code cell has more than one check", "and"),
    ],
)
def test_a_wrong_fence_line_is_a_problem_at_its_line_with_a_hint(info: str, message: str, hint: str):
    source = f"Intro.\n\n```{info}\nx = 1\n```\n"

    ((line, got_message, got_hint),) = problems_of(source, line_offset=4)

    assert line == 7  # four front-matter lines, then the fence on the body's third line
    assert got_message.startswith(message)
    assert hint in got_hint


def test_run_on_another_language_shows_the_code_as_before():
    result = render_markdown("```bash run\nls\n```\n")

    assert result.html == code_block_html("ls\n", "bash")
    assert result.code_cells == []


def test_a_cell_with_a_bad_check_still_shows_its_code_without_the_check():
    result = render_markdown('```python run check="1 +"\nx = 1\n```\n')

    cell = parse(result.html).find("div", "code-cell")
    assert cell.find_all("p", "code-cell-check") == []
    assert result.code_cells == [{"index": 0, "language": "python", "code": "x = 1", "check": ""}]


NESTED = md(
    """
    ```quiz
    questions:
      - prompt: Try it
        answer: |
          Run this:

          ```python run
          print(1)
          ```
    ```
    """
)


def test_a_cell_inside_a_quiz_answer_is_refused_like_the_blocks():
    # The answer's fences are indented past the quiz's, so they do not close it.
    result = render_markdown(NESTED, line_offset=2)

    assert result.code_cells == []
    ((line, message, hint),) = [(p.line, p.message, p.hint) for p in result.problems]
    assert message == "blocks cannot sit inside a quiz answer or explanation, so this python run block is not shown"
    assert "Put the ```python run block after the quiz" in hint and "remove `run`" in hint
    assert line == 6  # the answer's line in the file
    assert "code-cell" not in result.html


# --- import ----------------------------------------------------------------------------------------------------

LESSON_WITH_CELLS = md(
    """
    ---
    title: Running code
    ---
    ## Try it

    ```python run check="total == 55"
    total = sum(range(11))
    ```

    ```python run
    print(total)
    ```
    """
)


@pytest.fixture
def course_dir(tmp_path: Path, settings) -> Path:
    settings.DATA_DIR = tmp_path / "data"
    target = tmp_path / "course"
    shutil.copytree(GOOD, target)
    (target / "unit-one" / "03-running-code.md").write_text(LESSON_WITH_CELLS)
    return target


@pytest.fixture
def render_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = loader.render_markdown

    def counting(source: str, **kwargs):
        calls.append(source)
        return real(source, **kwargs)

    monkeypatch.setattr(loader, "render_markdown", counting)
    return calls


def lesson_cells(slug: str = "running-code") -> list[dict]:
    return Lesson.objects.get(slug=slug).code_cells


@pytest.mark.django_db
def test_the_import_stores_the_cells_on_the_lesson(course_dir: Path):
    course_import(path=course_dir)

    assert lesson_cells() == [
        {"index": 0, "language": "python", "code": "total = sum(range(11))", "check": "total == 55"},
        {"index": 1, "language": "python", "code": "print(total)", "check": ""},
    ]
    assert 'data-code-cell="1"' in Lesson.objects.get(slug="running-code").html
    assert lesson_cells("intro") == []


@pytest.mark.django_db
def test_a_reimport_updates_the_cells_when_the_lesson_changes(course_dir: Path):
    course_import(path=course_dir)
    lesson_file = course_dir / "unit-one" / "03-running-code.md"
    lesson_file.write_text(
        LESSON_WITH_CELLS.replace('check="total == 55"', 'check="total == 45"').replace("range(11)", "range(10)")
    )

    report = course_import(path=course_dir)

    assert "lesson unit-one/running-code" in report.changed
    assert lesson_cells()[0] == {
        "index": 0,
        "language": "python",
        "code": "total = sum(range(10))",
        "check": "total == 45",
    }

    lesson_file.write_text(LESSON_WITH_CELLS.replace("python run", "python"))
    course_import(path=course_dir)
    assert lesson_cells() == []


@pytest.mark.django_db
def test_an_unchanged_reimport_renders_nothing_and_keeps_the_cells(course_dir: Path, render_calls: list[str]):
    course_import(path=course_dir)
    render_calls.clear()

    report = course_import(path=course_dir)

    assert render_calls == []
    assert "lesson unit-one/running-code" not in report.changed
    assert len(lesson_cells()) == 2


@pytest.mark.django_db
def test_a_lesson_rewritten_from_the_render_cache_gets_its_cells_from_the_cache(
    course_dir: Path, render_calls: list[str]
):
    course_import(path=course_dir)
    Lesson.objects.filter(slug="running-code").update(code_cells=[])  # as a row written before the column was
    lesson_file = course_dir / "unit-one" / "03-running-code.md"
    # A new title changes the row but not the body, so the body comes from the render cache.
    lesson_file.write_text(LESSON_WITH_CELLS.replace("title: Running code", "title: Running some code"))
    render_calls.clear()

    report = course_import(path=course_dir)

    assert render_calls == []
    assert "lesson unit-one/running-code" in report.changed
    assert [cell["code"] for cell in lesson_cells()] == ["total = sum(range(11))", "print(total)"]
    cached = RenderedMarkdown.objects.get(html=Lesson.objects.get(slug="running-code").html)
    assert cached.blocks["code_cells"] == lesson_cells()


@pytest.mark.django_db
def test_a_wrong_cell_stops_the_import_with_the_file_and_line(course_dir: Path):
    (course_dir / "unit-one" / "03-running-code.md").write_text(
        LESSON_WITH_CELLS.replace("```python run\n", "```python run twice\n")
    )

    with pytest.raises(CourseInvalid) as caught:
        course_import(path=course_dir)

    ((problem),) = caught.value.problems
    assert (problem.file, problem.line) == ("unit-one/03-running-code.md", 10)
    assert problem.message == "unknown word 'twice' after `run` in this code cell's fence line"
    assert not Lesson.objects.exists()


# --- the lesson page -------------------------------------------------------------------------------------------

CELL_HTML = (
    '<div class="code-cell" id="code-cell-0" data-code-cell="0"><pre class="highlight" tabindex="0">'
    "<code>x = 1</code></pre></div>"
)


@pytest.fixture
def cell_settings(settings):
    settings.CODE_CELL_SCRIPTS = ["kernels-test/cells.js"]
    settings.CODE_CELL_STYLES = ["kernels-test/cells.css"]
    return settings


@pytest.fixture
def pages(db):
    cache.clear()
    course = factories.course_create(slug="ship", content_version="abc123", imported_at=timezone.now())
    unit = factories.unit_create(course=course, position=1)
    with_cells = factories.lesson_create(
        unit=unit,
        position=1,
        slug="runnable",
        html=CELL_HTML,
        code_cells=[{"index": 0, "language": "python", "code": "x = 1", "check": ""}],
    )
    without = factories.lesson_create(unit=unit, position=2, slug="reading")
    yield with_cells, without
    cache.clear()


def page_of(client: Client, lesson: Lesson) -> str:
    response = client.get(reverse("lesson", args=[lesson.course.slug, lesson.unit.slug, lesson.slug]))
    assert response.status_code == 200
    return response.content.decode()


def hook_of(body: str):
    found = [el for el in parse(body).find_all("div") if el.attrs.get("id") == "code-cells"]
    return found[0] if found else None


def test_an_anonymous_reader_gets_the_hook_logged_out_with_a_login_link_back(client, pages, cell_settings):
    lesson, _ = pages
    body = page_of(client, lesson)

    hook = hook_of(body)
    assert hook is not None and "hidden" in hook.attrs
    assert hook.attrs["data-lesson"] == str(lesson.id)
    assert hook.attrs["data-logged-in"] == "0"
    assert hook.attrs["data-login-url"] == "/accounts/login/?next=/courses/ship/unit-1/runnable/"
    assert '<script defer src="/static/kernels-test/cells.js"></script>' in body
    assert '<link rel="stylesheet" href="/static/kernels-test/cells.css">' in body
    assert CELL_HTML in body


def test_a_logged_in_reader_gets_the_hook_logged_in(pages, cell_settings):
    lesson, _ = pages
    client = Client()
    client.force_login(factories.user_create())

    first = page_of(client, lesson)  # builds the shared shell
    second = page_of(client, lesson)  # served from it

    for body in (first, second):
        assert hook_of(body).attrs["data-logged-in"] == "1"
        assert hook_of(body).attrs["data-lesson"] == str(lesson.id)
        assert '<script defer src="/static/kernels-test/cells.js"></script>' in body


def test_a_lesson_without_cells_has_no_hook_and_loads_no_cell_script(client, pages, cell_settings):
    _, lesson = pages
    anonymous = page_of(client, lesson)
    reader = Client()
    reader.force_login(factories.user_create())

    for body in (anonymous, page_of(reader, lesson)):
        assert hook_of(body) is None
        assert "kernels-test/" not in body


def test_without_the_settings_the_page_has_the_hook_and_no_extra_script(client, pages, settings):
    del settings.CODE_CELL_SCRIPTS
    del settings.CODE_CELL_STYLES
    lesson, _ = pages

    body = page_of(client, lesson)

    assert hook_of(body) is not None
    assert "cells.js" not in body


def test_the_hook_costs_no_query(client, pages, cell_settings, django_assert_num_queries):
    lesson, without = pages
    # course version (cache check), lesson, previous, next: as for a lesson without cells
    with django_assert_num_queries(4):
        page_of(client, lesson)
    with django_assert_num_queries(4):
        page_of(client, without)
