"""courses.markdown: every block type, problems with their file lines, sanitising, determinism. No database."""

from __future__ import annotations

import textwrap
from html.parser import HTMLParser

import pytest

from courses.markdown import RENDERER_VERSION, graded_quiz_placeholder, render_markdown


class _Element:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: _Element | None) -> None:
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.nodes: list[_Element | str] = []  # children and text, in document order

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    @property
    def children(self) -> list[_Element]:
        return [node for node in self.nodes if isinstance(node, _Element)]

    def text(self) -> str:
        return "".join(node if isinstance(node, str) else node.text() for node in self.nodes)

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[_Element]:
        return [
            el
            for el in self.iter()
            if el is not self and (tag is None or el.tag == tag) and (cls is None or cls in el.classes)
        ]

    def find(self, tag: str | None = None, cls: str | None = None) -> _Element:
        found = self.find_all(tag, cls)
        assert found, f"no <{tag or '*'} class={cls!r}> in the HTML"
        return found[0]


_VOID = {"br", "hr", "img", "input"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Element("root", {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        el = _Element(tag, dict(attrs), self.current)
        self.current.nodes.append(el)
        if tag not in _VOID:
            self.current = el

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.nodes.append(data)


def parse(html: str) -> _Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def md(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


QUIZ = md(
    """
    ```quiz
    id: check-yourself
    title: Quick check
    questions:
      - prompt: Which image reference is reproducible?
        kind: single
        choices:
          - text: "python:latest"
          - text: "python:3.11.9-slim@sha256:abc"
            correct: true
        explanation: A digest names exactly one image.
      - prompt: Which of these belong in a lock file?
        kind: multiple
        choices:
          - text: exact versions
            correct: true
          - text: hashes
            correct: true
          - text: your editor settings
        explanation: Versions and hashes pin the dependency tree.
    ```
    """
)

GRADED_QUIZ = md(
    """
    ```quiz
    id: unit-exam
    graded: true
    max_attempts: 3
    questions:
      - prompt: What does a health check report?
        choices:
          - text: Process uptime only
          - text: ZEBRA-ANSWER user impact
            correct: true
        explanation: ZEBRA-EXPLANATION readiness reflects whether users are served.
    ```
    """
)


# --- standard Markdown extensions -----------------------------------------------------------------------


def test_it_renders_tables_with_alignment_as_classes():
    tree = parse(render_markdown("| metric | threshold |\n|:---|---:|\n| error rate | 1% |\n").html)

    table = tree.find("table")
    assert [th.text() for th in table.find_all("th")] == ["metric", "threshold"]
    assert table.find_all("td")[1].classes == {"align-right"}
    assert "style" not in render_markdown("| a |\n|--:|\n| 1 |\n").html


def test_it_renders_footnotes_with_links_both_ways():
    tree = parse(render_markdown("A claim.[^1]\n\n[^1]: The source.\n").html)

    ref = tree.find("sup", "footnote-ref").find("a")
    assert ref.attrs["href"] == "#fn1"
    item = tree.find("section", "footnotes").find("li", "footnote-item")
    assert item.attrs["id"] == "fn1"
    assert "The source." in item.text()


def test_it_renders_definition_lists():
    tree = parse(render_markdown("Seed\n: A number that fixes a random sequence.\n").html)

    assert tree.find("dt").text() == "Seed"
    assert "fixes a random sequence" in tree.find("dd").text()


def test_it_renders_task_lists_as_labelled_checkboxes():
    tree = parse(render_markdown("- [ ] pin versions\n- [x] record the commit\n").html)

    items = tree.find("ul", "contains-task-list").find_all("li", "task-list-item")
    assert len(items) == 2
    boxes = [item.find("input") for item in items]
    assert all(box.attrs["type"] == "checkbox" for box in boxes)
    assert "checked" not in boxes[0].attrs and "checked" in boxes[1].attrs
    assert "record the commit" in items[1].find("label").text()


def test_it_leaves_math_as_escaped_tex_for_katex():
    result = render_markdown("Inline $a < b$ here.\n\n$$\n\\sum_i x_i\n$$\n\nIt costs $5 and $10.\n")
    tree = parse(result.html)

    inline = tree.find("span", "math-inline")
    assert inline.text() == "a < b"
    assert "a &lt; b" in result.html
    assert tree.find("div", "math-display").text() == "\\sum_i x_i"
    assert "costs $5 and $10" in result.html


@pytest.mark.parametrize(
    ("kind", "default_title"),
    [("tip", "Tip"), ("note", "Note"), ("warning", "Warning"), ("failure-modes", "Common failure modes")],
)
def test_it_renders_each_callout_kind_as_an_aside_with_a_title(kind, default_title):
    tree = parse(render_markdown(f"::: {kind}\nBody **text**.\n:::\n").html)

    aside = tree.find("aside")
    assert aside.classes == {"callout", f"callout-{kind}"}
    assert aside.attrs["role"] == "note"
    assert aside.find("p", "callout-title").text() == default_title
    assert aside.find("strong").text() == "text"


def test_a_callout_uses_its_custom_title():
    tree = parse(render_markdown("::: warning Mind the cache\nx\n:::\n").html)

    assert tree.find("p", "callout-title").text() == "Mind the cache"


def test_it_highlights_fenced_code_with_classes_and_a_language_label():
    html = render_markdown('```python\ndef f():\n    return "<b>"\n```\n').html
    tree = parse(html)

    block = tree.find("div", "code-block")
    assert block.find("div", "code-label").text() == "python"
    keyword = block.find("pre", "highlight").find("span", "k")
    assert keyword.text() == "def"
    assert "style=" not in html
    assert "&lt;b&gt;" in html


def test_unknown_fence_languages_are_plain_escaped_code_not_problems():
    result = render_markdown("```quizz\n<b>not a quiz</b>\n```\n")

    assert result.problems == []
    code = parse(result.html).find("pre", "highlight")
    assert code.text() == "<b>not a quiz</b>"
    assert code.find_all("span") == []


def test_headings_get_anchors_and_h2_h3_make_the_toc():
    result = render_markdown(
        "# Title\n\n## Dependency locks\n\n### Why `uv.lock`\n\n#### Deep\n\n## Dependency locks\n"
    )
    tree = parse(result.html)

    assert result.toc == [
        {"level": 2, "id": "dependency-locks", "text": "Dependency locks"},
        {"level": 3, "id": "why-uvlock", "text": "Why uv.lock"},
        {"level": 2, "id": "dependency-locks-1", "text": "Dependency locks"},
    ]
    h2 = tree.find("h2")
    assert h2.attrs["id"] == "dependency-locks"
    permalink = h2.find("a", "header-anchor")
    assert permalink.attrs["href"] == "#dependency-locks"
    assert permalink.attrs["aria-label"] == "Link to this section: Dependency locks"


# --- custom blocks -----------------------------------------------------------------------------------------


def test_a_quiz_lists_questions_with_answers_in_details_and_a_counter():
    result = render_markdown(QUIZ)
    tree = parse(result.html)

    quiz = tree.find("section", "quiz")
    assert quiz.attrs["data-quiz-key"] == "check-yourself"
    progress = quiz.find("p", "quiz-progress")
    assert progress.find("span").attrs.get("data-opened") is not None
    assert progress.text() == "0 of 2 opened"
    questions = quiz.find_all("li", "quiz-question")
    assert len(questions) == 2
    assert [c.text() for c in questions[0].find_all("li", "quiz-choice")] == [
        "python:latest",
        "python:3.11.9-slim@sha256:abc",
    ]
    reveal = questions[0].find("details", "quiz-reveal")
    assert "open" not in reveal.attrs
    assert reveal.find("summary").text()
    assert "python:3.11.9-slim@sha256:abc" in reveal.find("p", "quiz-correct").text()
    assert "A digest names exactly one image." in reveal.find("div", "quiz-explanation").text()
    assert "exact versions; hashes" in questions[1].find("p", "quiz-correct").text()


def test_a_quiz_is_returned_as_data_in_document_order():
    result = render_markdown("Intro\n\n" + QUIZ + "\n" + GRADED_QUIZ, line_offset=4)

    assert [q["key"] for q in result.quizzes] == ["check-yourself", "unit-exam"]
    first, graded = result.quizzes
    assert first["line"] == 3 + 4
    assert first["graded"] is False and first["max_attempts"] is None
    assert first["title"] == "Quick check"
    q1 = first["questions"][0]
    assert q1["id"] == "q1" and q1["kind"] == "single"
    assert q1["choices"] == [
        {"id": "a", "text": "python:latest", "correct": False, "html": "python:latest"},
        {"id": "b", "text": "python:3.11.9-slim@sha256:abc", "correct": True, "html": "python:3.11.9-slim@sha256:abc"},
    ]
    assert q1["explanation"] == "A digest names exactly one image."
    assert graded["graded"] is True and graded["max_attempts"] == 3
    assert graded["questions"][0]["choices"][1]["correct"] is True


def test_quizzes_without_an_id_are_numbered_in_order():
    body = "```quiz\nquestions:\n  - prompt: p\n    choices: [{text: a, correct: true}, {text: b}]\n```\n"

    result = render_markdown(body + "\n" + body)

    assert [q["key"] for q in result.quizzes] == ["quiz-1", "quiz-2"]
    assert result.problems == []


def test_yes_and_no_are_text_in_quiz_yaml_and_not_booleans():
    source = "```quiz\nquestions:\n  - prompt: Pinned?\n    choices:\n      - text: yes\n        correct: true\n      - text: no\n```\n"

    result = render_markdown(source)

    assert result.problems == []
    assert [c["text"] for c in result.quizzes[0]["questions"][0]["choices"]] == ["yes", "no"]


def test_correct_must_be_true_or_false():
    source = "```quiz\nquestions:\n  - prompt: p\n    choices:\n      - text: a\n        correct: yes\n      - text: b\n        correct: true\n```\n"

    _, problem = _one_problem(source)

    assert problem.line == 6
    assert "must be true or false" in problem.message


def test_a_graded_quiz_renders_only_a_placeholder_without_answers():
    result = render_markdown("Before.\n\n" + GRADED_QUIZ + "\nAfter.\n")

    assert graded_quiz_placeholder("unit-exam") in result.html
    assert graded_quiz_placeholder("unit-exam") == '<div class="graded-quiz-slot" data-quiz-key="unit-exam"></div>'
    assert "ZEBRA-ANSWER" not in result.html
    assert "ZEBRA-EXPLANATION" not in result.html
    assert "health check" not in result.html
    assert "quiz-reveal" not in result.html


def test_stages_render_as_an_accessible_ordered_list():
    source = md(
        """
        ```stages
        title: Ship, observe, recover
        stages:
          - name: CI build
            caption: tests and a locked build
          - name: Container
          - Orchestrator
        ```
        """
    )
    result = render_markdown(source)
    tree = parse(result.html)

    ol = tree.find("ol", "stages")
    assert ol.attrs["aria-label"] == "Ship, observe, recover"
    stages = ol.find_all("li", "stage")
    assert [s.find("span", "stage-name").text() for s in stages] == ["CI build", "Container", "Orchestrator"]
    assert stages[0].find("span", "stage-caption").text() == "tests and a locked build"
    assert stages[1].find_all("span", "stage-caption") == []
    assert "→" not in result.html


def test_compare_renders_two_labelled_highlighted_code_blocks():
    source = md(
        """
        ```compare
        left: {label: drifty, language: dockerfile, code: "FROM python:latest"}
        right:
          label: pinned
          language: dockerfile
          code: |
            FROM python:3.11.9-slim
        ```
        """
    )
    tree = parse(render_markdown(source).html)

    figures = tree.find("div", "compare").find_all("figure")
    assert [f.find("figcaption").text() for f in figures] == ["drifty", "pinned"]
    assert figures[0].find("span", "k").text() == "FROM"
    assert "python:3.11.9-slim" in figures[1].find("pre").text()


# --- problems and their lines --------------------------------------------------------------------------------


def _one_problem(source: str, line_offset: int = 0):
    result = render_markdown(source, line_offset=line_offset)
    assert len(result.problems) == 1, result.problems
    return result, result.problems[0]


@pytest.mark.parametrize("offset", [0, 7])
def test_bad_yaml_is_reported_at_its_line_and_shown_as_an_error_box(offset):
    source = "Intro\n\n```quiz\nquestions:\n  - prompt: [unclosed\n```\n"

    result, problem = _one_problem(source, offset)

    assert problem.line in (5 + offset, 6 + offset)
    assert "does not parse" in problem.message
    assert problem.hint
    assert parse(result.html).find("div", "block-error").attrs["role"] == "alert"


@pytest.mark.parametrize("offset", [0, 3])
def test_a_question_without_a_correct_choice_is_reported_at_the_question(offset):
    source = "```quiz\nquestions:\n  - prompt: p\n    choices:\n      - text: a\n      - text: b\n```\n"

    result, problem = _one_problem(source, offset)

    assert problem.line == 3 + offset
    assert "no correct choice" in problem.message
    assert "correct: true" in problem.hint
    assert result.quizzes == []


def test_a_single_choice_question_with_two_correct_choices_is_a_problem():
    source = "```quiz\nquestions:\n  - prompt: p\n    kind: single\n    choices:\n      - {text: a, correct: true}\n      - {text: b, correct: true}\n```\n"

    _, problem = _one_problem(source, 10)

    assert problem.line == 13
    assert "2 correct choices" in problem.message
    assert "kind: multiple" in problem.hint


def test_an_unknown_question_kind_is_reported_at_its_line():
    source = (
        "```quiz\nquestions:\n  - prompt: p\n    kind: essay\n    choices: [{text: a, correct: true}, {text: b}]\n```\n"
    )

    _, problem = _one_problem(source, 2)

    assert problem.line == 4 + 2
    assert "unknown kind 'essay'" in problem.message


def test_a_missing_field_is_reported_at_its_mapping():
    source = "Text\n\n```stages\nstages:\n  - name: CI\n  - caption: no name here\n```\n"

    result, problem = _one_problem(source, 1)

    assert problem.line == 6 + 1
    assert "missing `name`" in problem.message
    assert "block-error" in result.html


def test_a_misspelt_field_is_reported_at_its_own_line():
    source = "```stages\nstages:\n  - name: CI\n    captoin: typo\n```\n"

    _, problem = _one_problem(source, 20)

    assert problem.line == 4 + 20
    assert "unknown field 'captoin' in stage 1" in problem.message
    assert "caption" in problem.hint


def test_compare_without_code_is_a_problem():
    source = "```compare\nleft: {label: a, code: x}\nright: {label: b}\n```\n"

    _, problem = _one_problem(source)

    assert problem.line == 3
    assert "`right` is missing `code`" in problem.message


def test_a_duplicate_quiz_id_is_reported_at_the_second_id():
    body = "```quiz\nid: same\nquestions:\n  - prompt: p\n    choices: [{text: a, correct: true}, {text: b}]\n```\n"

    result, problem = _one_problem(body + "\n" + body, 5)

    assert problem.line == 9 + 5
    assert "duplicate quiz id 'same'" in problem.message
    assert [q["key"] for q in result.quizzes] == ["same"]


def test_an_unknown_callout_kind_is_reported_and_shown_as_a_note():
    result, problem = _one_problem("para\n\n::: danger Careful\nx\n:::\n", 4)

    assert problem.line == 3 + 4
    assert "unknown callout kind 'danger'" in problem.message
    assert "failure-modes" in problem.hint
    assert parse(result.html).find("aside").classes == {"callout", "callout-note"}


def test_a_broken_problem_block_never_shows_graded_answers():
    source = "```quiz\ngraded: true\nquestions:\n  - prompt: p\n    choices:\n      - text: ZEBRA-ANSWER\n      - text: b\n```\n"

    result, _ = _one_problem(source)

    assert "ZEBRA-ANSWER" not in result.html


# --- internal links ------------------------------------------------------------------------------------------


def test_internal_links_are_resolved_recorded_and_broken_ones_reported():
    source = "Intro line\n\nSee [locks](../week-05/02-locks.md#dependency-locks) and\n[gone](missing.md), [site](https://docs.docker.com/) and [top](#top).\n"
    asked = []

    def resolver(path: str) -> str | None:
        asked.append(path)
        return "/courses/c/week-05/locks/" if path == "../week-05/02-locks.md" else None

    result = render_markdown(source, link_resolver=resolver, line_offset=6)
    tree = parse(result.html)

    assert asked == ["../week-05/02-locks.md", "missing.md"]
    assert result.links == [("../week-05/02-locks.md#dependency-locks", 3 + 6), ("missing.md", 4 + 6)]
    hrefs = [a.attrs["href"] for a in tree.find_all("a")]
    assert hrefs == ["/courses/c/week-05/locks/#dependency-locks", "https://docs.docker.com/", "#top"]
    assert "gone" in result.html
    assert [(p.line, p.message) for p in result.problems] == [(4 + 6, "broken internal link: missing.md")]


def test_without_a_resolver_internal_links_are_recorded_and_kept():
    result = render_markdown("[next](02-next.md)\n")

    assert result.links == [("02-next.md", 1)]
    assert result.problems == []
    assert 'href="02-next.md"' in result.html


def test_external_links_get_rel_noopener():
    anchor = parse(render_markdown("[docs](https://example.org/x)\n").html).find("a")

    assert anchor.attrs["href"] == "https://example.org/x"
    assert set(anchor.attrs["rel"].split()) == {"noopener", "noreferrer"}


# --- sanitising ------------------------------------------------------------------------------------------------


HOSTILE = md(
    """
    # Hostile <script>alert(1)</script> lesson

    ![<script>alert(1)</script>](x.png "<img src=x onerror=alert(1)>")

    <script>alert(1)</script>

    <img src=x onerror=alert(1)>

    Inline <a href="javascript:alert(1)">x</a> and [x](javascript:alert(1)) and [y](JaVaScRiPt:alert(2))
    and [z](data:text/html;base64,PHNjcmlwdD4=) and [v](vbscript:msgbox) and ![i](javascript:alert(3)).

    <svg onload=alert(1)>

    ::: tip <script>alert(1)</script>
    body
    :::

    ```quiz
    title: <script>alert(1)</script>
    questions:
      - prompt: Which? <script>alert(1)</script> <img src=x onerror=alert(1)> [l](javascript:alert(1))
        choices:
          - text: "<script>alert(1)</script>"
            correct: true
          - text: "[m](javascript:alert(1))"
        explanation: <iframe src="javascript:alert(1)"></iframe>
    ```

    ```stages
    title: '"><script>alert(1)</script>'
    stages:
      - name: <script>alert(1)</script>
        caption: <img src=x onerror=alert(1)>
    ```

    ```compare
    left: {label: "<script>alert(1)</script>", code: "<script>alert(1)</script>"}
    right: {label: ok, code: x}
    ```
    """
)


def _assert_inert(html: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered
    assert '<img src="x"' not in lowered
    assert "<svg" not in lowered and "<iframe" not in lowered
    tree = parse(html)
    for el in tree.iter():
        for name, value in el.attrs.items():
            assert not name.startswith("on"), (el.tag, name)
            if name in ("href", "src"):
                assert not (value or "").strip().lower().startswith(("javascript:", "data:", "vbscript:")), value


def test_a_hostile_lesson_renders_inert():
    result = render_markdown(HOSTILE)

    _assert_inert(result.html)
    for quiz in result.quizzes:
        for question in quiz["questions"]:
            _assert_inert(question["prompt_html"])
            _assert_inert(question["explanation_html"])
            for choice in question["choices"]:
                _assert_inert(choice["html"])
    # The text is still there, escaped, so the author sees what they wrote.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in result.html


def test_a_hostile_quiz_prompt_is_escaped_text():
    result = render_markdown(HOSTILE)

    prompt = parse(result.html).find("p", "quiz-prompt")
    assert "<script>alert(1)</script>" in prompt.text()
    assert prompt.find_all("script") == [] and prompt.find_all("a") == []


# --- determinism and versioning ------------------------------------------------------------------------------


def test_rendering_is_deterministic():
    source = "## A\n\ntext[^1] $x$\n\n[^1]: n\n\n" + QUIZ + "\n" + GRADED_QUIZ

    first = render_markdown(source, line_offset=3)
    second = render_markdown(source, line_offset=3)

    assert first == second
    assert first.html == second.html


def test_renderer_version_is_a_non_empty_string():
    assert isinstance(RENDERER_VERSION, str) and RENDERER_VERSION


def test_a_remote_image_becomes_a_link_so_no_asset_loads_from_the_network():
    html = render_markdown("![the dashboard](https://example.org/d.png) and ![x](data:image/png;base64,AAAA)").html

    assert "<img" not in html
    assert '<a href="https://example.org/d.png"' in html
    assert "Image: the dashboard" in html
    assert "data:image" not in html
