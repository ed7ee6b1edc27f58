"""An author's course.yaml, front matter, lab.yaml and fences: the new fields read, and the silent mistakes
(an over-indented list item, a fence nobody knows) reported with file, line and a hint.

No database mark: these also prove the loader reads without a database.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from courses.coursefs import LessonSpec, load_course
from courses.errors import CourseProblem
from tests.courses.test_coursefs import GOOD, LAB, lesson, the_problem, write

MERGED = "reads as part of the previous item's text"


@pytest.fixture
def course_dir(tmp_path: Path) -> Path:
    target = tmp_path / "course"
    shutil.copytree(GOOD, target)
    return target


def problems_about(root: Path, containing: str) -> list[CourseProblem]:
    return [p for p in load_course(root).problems if containing in p.message]


COURSE_YAML = """slug: fixture-course
title: Fixture course
unit_label: Module
units:
  - slug: unit-one
    title: Unit one
{unit_one}  - slug: unit-two
    title: Unit two
"""


# --- unit label and track -----------------------------------------------------------------------------------


def test_a_unit_takes_its_own_label_and_a_track(course_dir: Path) -> None:
    write(course_dir, "course.yaml", COURSE_YAML.format(unit_one="    label: Essay\n    track: Advanced mastery\n"))

    result = load_course(course_dir)

    assert result.problems == []
    one, two = result.course.units
    assert (one.label, one.track) == ("Essay", "Advanced mastery")
    assert (two.label, two.track) == ("", "")  # pages fall back to the course's unit_label


def test_it_reports_a_unit_label_longer_than_40_characters(course_dir: Path) -> None:
    write(course_dir, "course.yaml", COURSE_YAML.format(unit_one=f"    label: {'L' * 41}\n"))

    problem = the_problem(course_dir, file="course.yaml", containing="'label' is 41 characters long, the maximum is 40")
    assert problem.line == 7


def test_it_reports_a_track_longer_than_80_characters(course_dir: Path) -> None:
    write(course_dir, "course.yaml", COURSE_YAML.format(unit_one=f"    track: {'t' * 81}\n"))

    problem = the_problem(course_dir, file="course.yaml", containing="'track' is 81 characters long, the maximum is 80")
    assert problem.line == 7


def test_it_reports_a_track_that_is_not_text(course_dir: Path) -> None:
    write(course_dir, "course.yaml", COURSE_YAML.format(unit_one="    track: [a, b]\n"))

    problem = the_problem(course_dir, file="course.yaml", containing="'track' must be text, got a list")
    assert problem.line == 7


def test_it_suggests_label_for_a_misspelt_unit_field(course_dir: Path) -> None:
    write(course_dir, "course.yaml", COURSE_YAML.format(unit_one="    lable: Essay\n"))

    problem = the_problem(course_dir, file="course.yaml", containing="unknown field 'lable'")
    assert problem.line == 7
    assert "'label'" in problem.hint


# --- objective and deliverable second lines, reflection, reference descriptions -----------------------------


def the_lesson(root: Path, front: str) -> LessonSpec:
    write(root, "unit-one/03-new.md", lesson(front))
    result = load_course(root)
    assert result.problems == []
    return next(item for item in result.course.lessons() if item.file == "unit-one/03-new.md")


def test_objective_and_deliverable_as_plain_text_have_no_second_line(course_dir: Path) -> None:
    found = the_lesson(course_dir, "title: T\nobjective: Ship it\ndeliverable: A running service\n")

    assert (found.objective, found.objective_detail) == ("Ship it", "")
    assert (found.deliverable, found.deliverable_detail) == ("A running service", "")


def test_objective_and_deliverable_take_a_text_and_a_detail(course_dir: Path) -> None:
    found = the_lesson(
        course_dir,
        "title: T\nobjective:\n  text: Ship it\n  detail: Behind a health check\n"
        "deliverable:\n  text: A service\n  detail: With its runbook\n",
    )

    assert (found.objective, found.objective_detail) == ("Ship it", "Behind a health check")
    assert (found.deliverable, found.deliverable_detail) == ("A service", "With its runbook")


def test_a_detail_without_its_text_is_reported(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\nobjective:\n  detail: only the second line\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="missing the required field 'text'")
    assert problem.line == 3
    assert "text:" in problem.hint


def test_an_unknown_key_under_objective_is_reported_with_the_close_match(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\nobjective:\n  text: Ship it\n  details: more\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="unknown field 'details' in the objective")
    assert problem.line == 5
    assert "'detail'" in problem.hint


@pytest.mark.parametrize(("value", "got"), [("[a, b]", "a list"), ("true", "true/false")])
def test_a_deliverable_of_another_shape_is_reported(course_dir: Path, value: str, got: str) -> None:
    write(course_dir, "unit-one/03-new.md", lesson(f"title: T\ndeliverable: {value}\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="'deliverable' must be text or a mapping")
    assert problem.line == 3
    assert got in problem.message
    assert "text:" in problem.hint and "detail:" in problem.hint


def test_a_detail_longer_than_500_characters_is_reported(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson(f"title: T\nobjective:\n  text: T\n  detail: {'d' * 501}\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="'detail' is 501 characters long")
    assert problem.line == 5


def test_a_lesson_reads_its_reflection_prompt(course_dir: Path) -> None:
    found = the_lesson(course_dir, "title: T\nreflection: What would you measure first?\n")

    assert found.reflection == "What would you measure first?"


def test_a_reflection_longer_than_1000_characters_is_reported(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson(f"title: T\nreflection: {'r' * 1001}\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="'reflection' is 1001 characters long")
    assert problem.line == 3


def test_a_reference_carries_its_description(course_dir: Path) -> None:
    found = the_lesson(
        course_dir,
        "title: T\nreferences:\n  - kind: article\n    title: A\n    url: https://example.org/a\n"
        "    description: Why retries need jitter.\n",
    )

    assert found.references == [
        {"kind": "article", "title": "A", "url": "https://example.org/a", "description": "Why retries need jitter."}
    ]


def test_a_reference_description_longer_than_500_characters_is_reported(course_dir: Path) -> None:
    front = f"title: T\nreferences:\n  - kind: article\n    url: https://example.org/a\n    description: {'x' * 501}\n"
    write(course_dir, "unit-one/03-new.md", lesson(front))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="'description' is 501 characters long")
    assert problem.line == 6


@pytest.mark.parametrize(
    "front",
    [
        "reflection: Think again\n",
        "objective:\n  text: Ship it\n  detail: another second line\n",
        "deliverable:\n  text: A service\n  detail: another second line\n",
    ],
)
def test_a_change_to_a_new_field_changes_the_lesson_content_hash(course_dir: Path, front: str) -> None:
    before = the_lesson(course_dir, "title: T\nobjective:\n  text: Ship it\n  detail: d\n").content_hash
    after = the_lesson(course_dir, "title: T\n" + front).content_hash

    assert before != after


# --- over-indented list items --------------------------------------------------------------------------------


def test_an_over_indented_outcome_in_front_matter_is_reported_at_its_line(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\noutcomes:\n  - Measure latency\n    - Read a trace\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing=MERGED)
    assert problem.line == 5
    assert "'Measure latency - Read a trace'" in problem.message
    assert "indent" in problem.hint


def test_an_over_indented_item_in_course_yaml_is_reported(course_dir: Path) -> None:
    write(course_dir, "course.yaml", COURSE_YAML.format(unit_one="    summary: Basics\n      - and more\n"))

    problem = the_problem(course_dir, file="course.yaml", containing=MERGED)
    assert problem.line == 8


def test_an_over_indented_item_in_lab_yaml_is_reported(course_dir: Path) -> None:
    text = (course_dir / LAB).read_text()
    write(course_dir, LAB, text.replace("  required: [main.py]\n", "  required:\n    - main.py\n      - util.py\n"))

    problem = the_problem(course_dir, file=LAB, containing=MERGED)
    assert problem.line == 5


QUIZ = """Intro.

```quiz
id: check
questions:
  - prompt: Which signal matters?
    choices:
      - text: Latency
        correct: true
      - text: Colour
    explanation: Latency is what users feel
      - and what the alert watches
```
"""


def test_an_over_indented_line_in_a_quiz_body_is_reported_at_its_file_line(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", QUIZ))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing=MERGED)
    assert problem.line == 15  # 3 front matter lines, the body's 12th line


def test_an_over_indented_line_in_a_stages_body_is_reported(course_dir: Path) -> None:
    body = "```stages\nstages:\n  - name: Build\n    caption: Tests run\n      - image pinned\n  - name: Ship\n```\n"
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", body))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing=MERGED)
    assert problem.line == 8


def test_an_over_indented_line_in_a_compare_body_is_reported(course_dir: Path) -> None:
    body = (
        "```compare\nleft:\n  label: drifty\n  code: FROM python\n    - latest\n"
        "right:\n  label: pinned\n  code: FROM python:3.11\n```\n"
    )
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", body))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing=MERGED)
    assert problem.line == 8


def test_folded_text_and_block_scalars_are_not_mistaken_for_list_items(course_dir: Path) -> None:
    front = (
        "title: T\n"
        "tagline: A long line\n  that folds onto a second line\n"
        "objective: |\n  Steps:\n  - first\n  - second\n"
        "deliverable: >\n  Folded\n  - with a dash line\n"
        "reflection: 'quoted text\n  - with a dash'\n"
        "outcomes:\n  - one\n  - two\n"
    )
    write(course_dir, "unit-one/03-new.md", lesson(front, QUIZ.replace("\n      - and what the alert watches", "")))

    assert load_course(course_dir).problems == []


def test_a_code_fence_holding_yaml_is_not_checked_for_list_items(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", "```yaml\nitems:\n  - a\n    - b\n```\n"))

    assert problems_about(course_dir, MERGED) == []


# --- fence names --------------------------------------------------------------------------------------------


def test_an_unknown_fence_name_is_reported_with_a_hint_for_plain_text(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", "Intro.\n\n```zzplain\nsome text\n```\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="unknown fence name 'zzplain'")
    assert problem.line == 6
    assert "```text" in problem.hint
    assert "quiz, stages, compare" in problem.hint


def test_a_misspelt_language_gets_the_close_match(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", "~~~pyhton\nprint(1)\n~~~\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="unknown fence name 'pyhton'")
    assert problem.line == 4
    assert "```python" in problem.hint


@pytest.mark.parametrize("fence", ["```", "```python", "```python run", "```Python", "```text", "```console"])
def test_known_fence_names_and_an_empty_one_are_fine(course_dir: Path, fence: str) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", f"{fence}\nx = 1\n```\n"))

    assert problems_about(course_dir, "fence") == []


PLAIN_NAMES = ["txt", "plaintext", "plain", "none", "nohighlight", "log", "output", "csv", "tsv", "env", "dotenv"]


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_a_plain_text_fence_name_is_fine_and_shows_escaped_text_under_its_name(course_dir: Path, name: str) -> None:
    code = 'ts=12 level=error msg="<b>late</b>" & retried'
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", f"```{name}\n{code}\n```\n"))

    result = load_course(course_dir)

    assert [p for p in result.problems if "fence" in p.message] == []
    found = next(item for item in result.course.lessons() if item.file == "unit-one/03-new.md")
    assert f'<div class="code-label">{name}</div>' in found.html
    # Plain text: escaped, and no highlighter spans (Pygments would colour "output" as program output).
    assert '<code>ts=12 level=error msg="&lt;b&gt;late&lt;/b&gt;" &amp; retried</code>' in found.html


def test_a_mermaid_fence_says_diagrams_are_not_drawn_and_what_to_use(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", "```mermaid\ngraph LR; a-->b\n```\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="```mermaid diagrams are not drawn")
    assert problem.line == 4
    assert "```stages" in problem.hint and "SVG figure" in problem.hint


def test_a_math_fence_points_to_display_math_between_dollar_lines(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", "```math\nE = mc^2\n```\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="```math blocks are not typeset")
    assert problem.line == 4
    assert "$$" in problem.hint


def test_a_name_close_only_to_a_less_common_language_still_gets_it(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", "```kotln\nval x = 1\n```\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="unknown fence name 'kotln'")
    assert "did you mean ```kotlin?" in problem.hint


def test_only_the_first_word_of_the_info_string_is_the_name(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", "```nosuchlang python\nx = 1\n```\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="unknown fence name 'nosuchlang'")
    assert problem.line == 4


def test_fence_lines_inside_a_longer_fence_are_code(course_dir: Path) -> None:
    body = "````markdown\n```nosuchlang\ninside\n```\n````\n"
    write(course_dir, "unit-one/03-new.md", lesson("title: T\n", body))

    assert problems_about(course_dir, "fence") == []


def test_an_unknown_fence_name_in_lab_instructions_is_reported(course_dir: Path) -> None:
    path = course_dir / "unit-two/hello-lab/instructions.md"
    path.write_text(path.read_text() + "\n```nosuchlang\nx\n```\n")
    line = path.read_text().split("\n").index("```nosuchlang") + 1

    problem = the_problem(course_dir, file="unit-two/hello-lab/instructions.md", containing="unknown fence name")
    assert problem.line == line


# --- front-matter text as inline Markdown ---------------------------------------------------------------------

HEADER = """title: T
tagline: Pin the *base* image
objective:
  text: Never ship `latest`
  detail: Say **why** in one line
deliverable: A [pinned image](../unit-two/01-deeper.md#the-details)
reflection: Which of $x$ and $P(y|x)$ did you record?
outcomes:
  - Replace `latest` with a digest
  - Plain words & no syntax
prerequisites:
  - The [intro](01-intro.md)
references:
  - kind: article
    url: https://example.org/a
    description: Why _jitter_ matters
"""


def test_front_matter_text_renders_as_inline_markdown_and_the_plain_text_stays(course_dir: Path) -> None:
    found = the_lesson(course_dir, HEADER)
    html = found.header_html

    assert html["tagline"] == "Pin the <em>base</em> image"
    assert html["objective"] == "Never ship <code>latest</code>"
    assert html["objective_detail"] == "Say <strong>why</strong> in one line"
    assert html["deliverable"] == (
        'A <a href="/courses/fixture-course/unit-two/deeper/#the-details" rel="noopener noreferrer">pinned image</a>'
    )
    assert html["reflection"] == (
        'Which of <span class="math math-inline">x</span> and <span class="math math-inline">P(y|x)</span> did you '
        "record?"
    )
    assert html["outcomes"] == ["Replace <code>latest</code> with a digest", "Plain words &amp; no syntax"]
    assert html["prerequisites"] == [
        'The <a href="/courses/fixture-course/unit-one/intro/" rel="noopener noreferrer">intro</a>'
    ]
    assert html["reference_descriptions"] == ["Why <em>jitter</em> matters"]
    # Titles, the admin and search keep reading the text as written.
    assert found.outcomes[0] == "Replace `latest` with a digest"
    assert found.deliverable == "A [pinned image](../unit-two/01-deeper.md#the-details)"


def test_raw_html_in_front_matter_never_reaches_the_page(course_dir: Path) -> None:
    write(
        course_dir,
        "unit-one/03-new.md",
        lesson('title: T\ntagline: "<script>alert(1)</script> [x](javascript:alert(1))"\n'),
    )

    found = next(item for item in load_course(course_dir).course.lessons() if item.file == "unit-one/03-new.md")

    assert "<script" not in found.header_html["tagline"]
    assert "href" not in found.header_html["tagline"]


def test_a_broken_link_in_a_prerequisite_is_reported_at_the_items_file_line(course_dir: Path) -> None:
    write(
        course_dir, "unit-one/03-new.md", lesson("title: T\nprerequisites:\n  - None\n  - The [gone](09-gone.md) one\n")
    )

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="broken internal link: 09-gone.md")

    assert problem.line == 5  # front matter starts at file line 2


def test_a_front_matter_link_to_a_missing_section_is_reported(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\noutcomes:\n  - Read [this](01-intro.md#no-such-part)\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="has no section with the id 'no-such-part'")

    assert problem.line == 4
    assert "first-steps" in problem.hint


def test_a_renamed_link_target_changes_the_content_hash_of_a_lesson_linking_from_its_front_matter(
    course_dir: Path,
) -> None:
    before = the_lesson(course_dir, "title: T\nprerequisites:\n  - The [intro](01-intro.md)\n")
    intro = course_dir / "unit-one/01-intro.md"
    intro.write_text(intro.read_text().replace("title: Introduction\n", "title: Introduction\nslug: welcome\n"))

    after = the_lesson(course_dir, "title: T\nprerequisites:\n  - The [intro](01-intro.md)\n")

    assert "/unit-one/welcome/" in after.header_html["prerequisites"][0]
    assert before.content_hash != after.content_hash


# --- a list whose first item is indented more than the next -------------------------------------------------


def test_an_over_indented_first_prerequisite_is_reported_at_its_line_with_an_indentation_hint(course_dir: Path) -> None:
    front = "title: T\nprerequisites:\n    - Chapter 6 (evaluation)\n  - Chapter 5 (data documentation)\n"
    write(course_dir, "unit-one/03-new.md", lesson(front))

    [problem] = problems_about(course_dir, "invalid front matter")

    assert problem.line == 4  # `    - Chapter 6`, not the correctly indented line after it
    assert "indented 4 spaces but the item on line 5 is indented 2 spaces" in problem.message
    assert "indent every item of the list the same" in problem.hint
    assert "quot" not in problem.hint


def test_an_over_indented_first_unit_in_course_yaml_is_reported_at_its_line(course_dir: Path) -> None:
    write(
        course_dir,
        "course.yaml",
        "slug: fixture-course\ntitle: F\nunits:\n    - slug: unit-one\n      title: One\n"
        "  - slug: unit-two\n    title: Two\n",
    )

    problem = the_problem(course_dir, file="course.yaml", containing="invalid course.yaml")

    assert problem.line == 4
    assert "indent every item of the list the same" in problem.hint


def test_an_over_indented_first_file_in_lab_yaml_is_reported_at_its_line(course_dir: Path) -> None:
    text = (course_dir / LAB).read_text()
    write(course_dir, LAB, text.replace("  required: [main.py]\n", "  required:\n      - main.py\n    - util.py\n"))

    problem = the_problem(course_dir, file=LAB, containing="invalid lab.yaml")

    assert problem.line == 4
    assert "indented 6 spaces but the item on line 5 is indented 4 spaces" in problem.message


def test_other_yaml_syntax_errors_keep_the_line_and_the_quoting_hint(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\noutcomes:\n  - a\ntagline: Step 1: pin it\n"))

    problem = the_problem(course_dir, file="unit-one/03-new.md", containing="invalid front matter")

    assert problem.line == 5
    assert "quoted" in problem.hint


# --- links to a lesson that has problems of its own ---------------------------------------------------------


def test_a_link_to_a_lesson_with_broken_front_matter_points_at_that_lessons_problems(course_dir: Path) -> None:
    write(course_dir, "unit-one/03-new.md", lesson("title: T\noutcomes:\n    - a\n  - b\n"))
    write(course_dir, "unit-one/04-linking.md", lesson("title: L\n", "See [the new one](03-new.md#body).\n"))

    problems = [p for p in load_course(course_dir).problems if p.file == "unit-one/04-linking.md"]

    assert [p.message for p in problems] == [
        "the link 03-new.md#body names unit-one/03-new.md, which cannot be read because of its own problems"
    ]
    assert problems[0].line == 4
    assert "fix the problems reported for unit-one/03-new.md" in problems[0].hint
    assert problems_about(course_dir, "broken internal link") == []
