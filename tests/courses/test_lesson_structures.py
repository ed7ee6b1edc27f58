"""The lesson structures of issue 13 in the renderer: reveal-only questions and mixed quizzes, callout kinds, pull
quotes and epigraphs, numbered checklists, course assets, hidden HTML comments and math inside table cells.
No database: render_markdown only (the loader's asset checks are tested with the loader)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from courses.markdown import CALLOUT_TITLES, render_markdown
from courses.markdown.sanitize import sanitize
from tests.courses.test_markdown import md, parse


def _problems(source: str, **kwargs) -> list[tuple[int, str]]:
    return [(p.line, p.message) for p in render_markdown(source, **kwargs).problems]


# --- reveal-only questions and mixed quizzes ------------------------------------------------------------------

MIXED_QUIZ = md(
    """
    ```quiz
    id: check-yourself
    questions:
      - prompt: Why pin the **base image** by digest?
        answer: |
          A tag can move; a digest names *one* image.

          - the same bytes on every build
        explanation: Tags are pointers.
      - prompt: Which file holds exact versions?
        choices:
          - text: uv.lock
            correct: true
          - text: README.md
      - prompt: What does a health check report?
        answer: Whether the service can take traffic.
    ```
    """
)


def test_a_reveal_only_question_shows_its_markdown_answer_behind_a_button_without_choose_one():
    tree = parse(render_markdown(MIXED_QUIZ).html)

    questions = tree.find("section", "quiz").find_all("li", "quiz-question")
    first = questions[0]
    assert "quiz-reveal-only" in first.classes
    assert first.find("p", "quiz-prompt").find("strong").text() == "base image"
    assert first.find_all("p", "quiz-kind") == [] and first.find_all("ol", "quiz-choices") == []
    assert "Choose one" not in first.text()
    reveal = first.find("details", "quiz-reveal")
    assert reveal.find("summary").text() == "Show the answer"
    answer = reveal.find("div", "quiz-answer-text")
    assert answer.find("em").text() == "one"
    assert answer.find("li").text() == "the same bytes on every build"
    assert reveal.find("div", "quiz-explanation").text().strip() == "Tags are pointers."
    assert reveal.find_all("p", "quiz-correct") == []


def test_a_mixed_quiz_keeps_choices_on_choice_questions_and_counts_every_answer():
    tree = parse(render_markdown(MIXED_QUIZ).html)

    quiz = tree.find("section", "quiz")
    assert quiz.attrs["data-quiz-key"] == "check-yourself"
    assert quiz.find("p", "quiz-progress").text() == "0 of 3 opened"
    second = quiz.find_all("li", "quiz-question")[1]
    assert second.find("p", "quiz-kind").text() == "Choose one"
    assert [c.text() for c in second.find_all("li", "quiz-choice")] == ["uv.lock", "README.md"]


def test_every_question_details_carries_its_question_id():
    tree = parse(render_markdown(MIXED_QUIZ).html)

    assert [d.attrs["data-question"] for d in tree.find_all("details", "quiz-reveal")] == ["q1", "q2", "q3"]


def test_a_reveal_question_is_data_with_kind_reveal_an_answer_and_no_choices():
    quiz = render_markdown(MIXED_QUIZ).quizzes[0]

    reveal, choice, short = quiz["questions"]
    assert reveal["kind"] == "reveal" and reveal["choices"] == []
    assert reveal["answer"].startswith("A tag can move")
    assert "<em>one</em>" in reveal["answer_html"]
    assert short["answer_html"] == "<p>Whether the service can take traffic.</p>\n"
    assert choice["kind"] == "single" and "answer" not in choice
    # No private bookkeeping leaks into the JSON stored on the Quiz row.
    assert not [key for question in quiz["questions"] for key in question if key.startswith("_")]


def test_a_hostile_reveal_answer_is_sanitised_in_the_page_and_in_the_data():
    source = (
        "```quiz\nquestions:\n  - prompt: p\n    answer: '<script>alert(1)</script> [x](javascript:alert(1))'\n```\n"
    )

    result = render_markdown(source)

    for html in (result.html, result.quizzes[0]["questions"][0]["answer_html"]):
        assert "<script" not in html and 'href="javascript' not in html
        assert "&lt;script&gt;" in html


@pytest.mark.parametrize("offset", [0, 4])
def test_a_question_with_both_answer_and_choices_is_reported_at_the_answer(offset):
    source = "```quiz\nquestions:\n  - prompt: p\n    choices: [{text: a, correct: true}, b]\n    answer: a\n```\n"

    result = render_markdown(source, line_offset=offset)

    assert [(p.line, p.message) for p in result.problems] == [
        (5 + offset, "quiz block: question 1 has both `answer:` and `choices:`")
    ]
    assert "not both" in result.problems[0].hint
    assert "block-error" in result.html and result.quizzes == []


def test_a_question_with_neither_answer_nor_choices_is_reported_at_the_question():
    source = "Intro\n\n```quiz\nquestions:\n  - prompt: fine\n    answer: yes\n  - prompt: nothing to show\n```\n"

    result = render_markdown(source, line_offset=2)

    assert [(p.line, p.message) for p in result.problems] == [
        (7 + 2, "quiz block: question 2 needs `choices:` or `answer:`")
    ]
    assert "answer:" in result.problems[0].hint and "choices:" in result.problems[0].hint


def test_a_graded_quiz_refuses_a_reveal_only_question_and_shows_no_answer():
    source = md(
        """
        ```quiz
        graded: true
        questions:
          - prompt: p
            choices: [{text: a, correct: true}, b]
          - prompt: q
            answer: ZEBRA-ANSWER
        ```
        """
    )

    result = render_markdown(source, line_offset=1)

    assert [(p.line, p.message) for p in result.problems] == [
        (7 + 1, "quiz block: a graded quiz needs choices in every question")
    ]
    assert "graded: false" in result.problems[0].hint and "question 2" in result.problems[0].hint
    assert "ZEBRA-ANSWER" not in result.html
    assert result.quizzes == []


def test_graded_quizzes_still_need_two_choices():
    source = "```quiz\ngraded: true\nquestions:\n  - prompt: p\n    choices: [{text: a, correct: true}]\n```\n"

    assert _problems(source) == [(5, "quiz block: question 1 needs a `choices:` list with at least two choices")]


def test_an_answer_with_a_choice_kind_is_a_problem():
    source = "```quiz\nquestions:\n  - prompt: p\n    kind: single\n    answer: a\n```\n"

    assert _problems(source) == [(4, "quiz block: question 1 has `answer:` but kind: single")]


def test_an_empty_answer_is_reported():
    source = "```quiz\nquestions:\n  - prompt: p\n    answer: ''\n```\n"

    assert _problems(source) == [(3, "quiz block: question 1 is missing `answer`")]


# --- callouts, pull quotes and epigraphs ----------------------------------------------------------------------


NESTED_QUIZ = md(
    """
    - [ ] read the lesson

    ```quiz
    id: outer
    questions:
      - prompt: How was it released?
        answer: |
          In two steps:

          - [x] built
          - [ ] shipped

          ```quiz
          questions:
            - prompt: Inner question
              answer: the inner answer
          ```
        explanation: |
          ```stages
          stages: [build, ship]
          ```
      - prompt: Pick one
        choices:
          - text: "```quiz``` in a choice is code"
            correct: true
          - text: other
    ```

    - [ ] try it yourself
    """
)


def test_blocks_inside_a_quiz_answer_or_explanation_are_refused_at_their_line():
    result = render_markdown(NESTED_QUIZ, line_offset=3)
    quiz = parse(result.html).find("section", "quiz")

    # Problems inside an answer or explanation are reported at its `answer:` / `explanation:` line.
    assert [(p.line, p.message) for p in result.problems] == [
        (7 + 3, "blocks cannot sit inside a quiz answer or explanation, so this quiz block is not shown"),
        (18 + 3, "blocks cannot sit inside a quiz answer or explanation, so this stages block is not shown"),
    ]
    assert result.problems[0].hint == "Put the ```quiz block after the quiz."
    # The outer quiz alone: its progress counts its own two questions, and the inner quiz's answer never shows.
    assert [q["key"] for q in result.quizzes] == ["outer"]
    assert len(parse(result.html).find_all("section", "quiz")) == 1
    assert [d.attrs["data-question"] for d in quiz.find_all("details")] == ["q1", "q2"]
    assert "inner answer" not in result.html and "Inner question" not in result.html
    assert len(quiz.find_all("div", "block-error")) == 2
    assert quiz.find("li", "quiz-choice").find("code").text() == "quiz"


def test_a_task_list_in_a_quiz_answer_is_shown_disabled_and_unnumbered():
    tree = parse(render_markdown(NESTED_QUIZ).html)
    answer = tree.find("div", "quiz-answer-text")
    boxes = answer.find_all("input")

    assert [li.text().strip() for li in answer.find_all("li", "task-list-item")] == ["built", "shipped"]
    assert all("disabled" in box.attrs and "data-item" not in box.attrs for box in boxes)
    assert "checked" in boxes[0].attrs
    assert "data-checklist" not in answer.find("ul").attrs
    assert "enabled" not in answer.find("li").classes
    # The lesson's own checklists keep their numbers, 1 and 2, around the quiz.
    assert [ul.attrs.get("data-checklist") for ul in tree.find_all("ul", "contains-task-list")] == ["1", None, "2"]


def test_the_callout_kinds_are_the_documented_set():
    assert CALLOUT_TITLES == {
        "tip": "Tip",
        "note": "Note",
        "warning": "Warning",
        "failure-modes": "Common failure modes",
        "assumptions": "Assumptions",
        "in-practice": "In practice",
        "myth": "Myth",
        "optional-practice": "Optional practice",
        "key-idea": "Key idea",
        "example": "Worked example",
        "important": "Important",
    }


@pytest.mark.parametrize(("kind", "title"), list(CALLOUT_TITLES.items()))
def test_each_callout_kind_keeps_its_class_through_the_sanitiser(kind, title):
    aside = parse(render_markdown(f"::: {kind}\nBody.\n:::\n").html).find("aside")

    assert aside.classes == {"callout", f"callout-{kind}"}
    assert aside.find("p", "callout-title").text() == title


def test_a_new_callout_kind_takes_a_custom_title():
    tree = parse(render_markdown("::: in-practice What teams actually do\nx\n:::\n").html)

    assert tree.find("aside").classes == {"callout", "callout-in-practice"}
    assert tree.find("p", "callout-title").text() == "What teams actually do"


@pytest.mark.parametrize("kind", ["pullquote", "epigraph"])
@pytest.mark.parametrize("dash", ["— ", "-- "])
def test_a_quotation_is_a_figure_with_its_attribution_in_the_caption(kind, dash):
    source = f"::: {kind}\nWhat is *possible* is not yet durable.\n\nSecond thought.\n\n{dash}A. Author, *Field notes*\n:::\n"

    result = render_markdown(source)
    figure = parse(result.html).find("figure")

    assert result.problems == []
    assert figure.classes == {kind}
    quote = figure.find("blockquote")
    assert [p.text() for p in quote.find_all("p")] == ["What is possible is not yet durable.", "Second thought."]
    caption = figure.find("figcaption")
    assert caption.text() == "A. Author, Field notes"
    assert caption.find("em").text() == "Field notes"
    assert caption.parent is figure  # after the quotation, not inside it


def test_a_quotation_without_attribution_has_no_caption():
    figure = parse(render_markdown("::: pullquote\nJust the words.\n:::\n").html).find("figure", "pullquote")

    assert figure.find("blockquote").find("p").text() == "Just the words."
    assert figure.find_all("figcaption") == []


def test_a_dash_line_that_is_the_whole_quotation_stays_the_quotation():
    figure = parse(render_markdown("::: epigraph\n— only this\n:::\n").html).find("figure", "epigraph")

    assert figure.find("blockquote").text().strip() == "— only this"
    assert figure.find_all("figcaption") == []


def test_a_title_after_pullquote_or_epigraph_is_reported():
    result = render_markdown("Intro\n\n::: epigraph On durability\nWords.\n:::\n", line_offset=3)

    assert [(p.line, p.message) for p in result.problems] == [
        (3 + 3, "`::: epigraph` takes no title, but has 'On durability'")
    ]
    assert "— " in result.problems[0].hint
    assert parse(result.html).find("figure", "epigraph").find("p").text() == "Words."


def test_an_unknown_callout_kind_lists_every_kind_in_the_hint():
    (problem,) = render_markdown("::: aside\nx\n:::\n").problems

    assert all(kind in problem.hint for kind in [*CALLOUT_TITLES, "pullquote", "epigraph"])


@pytest.mark.parametrize(
    ("opening", "title"),
    [
        ("::: tip <!-- t -->", "Tip"),  # a title that is only a comment is no title
        ("::: warning Mind <!-- say why --> the cache", "Mind the cache"),
        ("::: key-idea Idempotence<!-- from the review -->", "Idempotence"),
    ],
)
def test_a_comment_in_a_callout_title_is_hidden(opening, title):
    result = render_markdown(f"{opening}\nBody.\n:::\n")

    assert result.problems == []
    assert parse(result.html).find("p", "callout-title").text() == title
    assert "&lt;!--" not in result.html


def test_a_comment_after_pullquote_is_hidden_and_not_a_title():
    result = render_markdown("::: pullquote <!-- chosen for unit 3 -->\nWords.\n:::\n")

    assert result.problems == []
    assert "chosen" not in result.html


def test_an_unclosed_comment_in_a_callout_title_is_reported_at_the_opening_line():
    result = render_markdown("Intro.\n\n::: tip <!-- unfinished\nBody.\n:::\n", line_offset=2)

    assert [(p.line, p.message) for p in result.problems] == [
        (3 + 2, "an HTML comment is not closed: `<!--` without `-->`")
    ]
    assert "-->" in result.problems[0].hint


# --- checklists --------------------------------------------------------------------------------------------------


def test_task_lists_are_numbered_checklists_with_numbered_enabled_checkboxes():
    source = "- [ ] pin\n- [x] lock\n  - [ ] nested\n\nText.\n\n1. [ ] first\n2. [ ] second\n\n- plain list\n"

    tree = parse(render_markdown(source).html)

    lists = [el for el in tree.iter() if "data-checklist" in el.attrs]
    assert [(el.tag, el.attrs["data-checklist"]) for el in lists] == [("ul", "1"), ("ul", "2"), ("ol", "3")]
    assert all("contains-task-list" in el.classes for el in lists)
    outer_boxes = [li.find("input") for li in lists[0].children]
    assert [box.attrs["data-item"] for box in outer_boxes] == ["0", "1"]
    assert [box.attrs["data-item"] for box in lists[1].find_all("input")] == ["0"]
    assert [box.attrs["data-item"] for box in lists[2].find_all("input")] == ["0", "1"]
    assert all("disabled" not in box.attrs for box in tree.find_all("input"))
    assert tree.find_all("ul")[-1].attrs == {}


# --- course assets -----------------------------------------------------------------------------------------------


class _Resolver:
    def __init__(self, missing: set[str] = frozenset()) -> None:
        self.calls: list[tuple[str, bool, int]] = []
        self.missing = missing

    def __call__(self, path: str, *, image: bool, line: int) -> str | None:
        self.calls.append((path, image, line))
        if path in self.missing:
            return None
        return f"/course-assets/{'a' * 64}/{path.rsplit('/', 1)[-1]}"


ASSETS = md(
    """
    # Figures

    ![The request flow](figures/flow%20chart.svg "Flow")
    See [the data](data/latencies.csv#top) and [the notebook](./data/run.ipynb?raw=1),
    [the next lesson](02-next.md), [a site](https://example.org/x.csv), [top](#figures) and [root](/about/).

    ![gone](figures/missing.png) and [also gone](data/missing.csv).
    """
)


def test_relative_images_and_links_are_resolved_with_their_path_kind_and_line():
    resolver = _Resolver()

    render_markdown(ASSETS, asset_resolver=resolver, line_offset=5)

    assert resolver.calls == [
        ("figures/flow chart.svg", True, 3 + 5),
        ("data/latencies.csv", False, 4 + 5),
        ("./data/run.ipynb", False, 4 + 5),
        ("figures/missing.png", True, 7 + 5),
        ("data/missing.csv", False, 7 + 5),
    ]


def test_a_resolved_image_loads_lazily_from_the_course_assets_url():
    html = render_markdown(ASSETS, asset_resolver=_Resolver()).html

    img = parse(html).find("img")
    assert img.attrs == {
        "src": f"/course-assets/{'a' * 64}/flow chart.svg",
        "alt": "The request flow",
        "title": "Flow",
        "loading": "lazy",
    }
    hrefs = [a.attrs["href"] for a in parse(html).find_all("a") if "header-anchor" not in a.classes]
    assert hrefs[:2] == [f"/course-assets/{'a' * 64}/latencies.csv", f"/course-assets/{'a' * 64}/run.ipynb"]
    assert hrefs[2:] == ["02-next.md", "https://example.org/x.csv", "#figures", "/about/", hrefs[-1]]
    assert hrefs[-1].endswith("/missing.csv")


def test_an_asset_the_resolver_refuses_renders_as_its_text_without_a_link():
    result = render_markdown(ASSETS, asset_resolver=_Resolver({"figures/missing.png", "data/missing.csv"}))
    tree = parse(result.html)

    assert len(tree.find_all("img")) == 1
    assert [a.text() for a in tree.find_all("a") if "missing" in a.attrs.get("href", "")] == []
    last = tree.find_all("p")[-1]
    assert last.text().strip() == "gone and also gone."
    # The resolver reports the problem (the loader knows why); the renderer adds none of its own.
    assert result.problems == []


def test_without_an_asset_resolver_relative_images_and_links_stay_as_written():
    html = render_markdown(ASSETS).html
    tree = parse(html)

    assert tree.find("img").attrs["src"] == "figures/flow%20chart.svg"
    assert "loading" not in tree.find("img").attrs
    assert 'href="data/latencies.csv#top"' in html


def test_md_links_still_go_to_the_link_resolver_and_never_to_the_asset_resolver():
    resolver = _Resolver()
    result = render_markdown(
        "[next](02-next.md#intro)\n", link_resolver=lambda path: "/courses/c/u/next/", asset_resolver=resolver
    )

    assert resolver.calls == []
    assert parse(result.html).find("a").attrs["href"] == "/courses/c/u/next/#intro"
    assert result.links == [("02-next.md#intro", 1)]


def test_remote_and_protocol_relative_images_never_load():
    resolver = _Resolver()
    html = render_markdown(
        "![a](https://example.org/a.png) ![b](//example.org/b.png) ![c](javascript:alert(1))",
        asset_resolver=resolver,
    ).html

    assert "<img" not in html
    assert resolver.calls == []
    assert '<a href="https://example.org/a.png"' in html
    assert "Image: b" in html and "example.org/b.png" not in html
    assert 'src="javascript' not in html and 'href="javascript' not in html


def test_images_in_a_quiz_answer_are_resolved_at_the_answer_line():
    resolver = _Resolver()
    source = "```quiz\nquestions:\n  - prompt: p\n    answer: '![the plot](figures/plot.png)'\n```\n"

    result = render_markdown(source, asset_resolver=resolver, line_offset=2)

    assert resolver.calls == [("figures/plot.png", True, 4 + 2)]
    assert 'loading="lazy"' in result.quizzes[0]["questions"][0]["answer_html"]


# --- the sanitiser: new attributes kept, hostile ones still stripped ------------------------------------------------


def test_the_sanitiser_keeps_the_new_attributes_and_classes():
    html = (
        '<ul class="contains-task-list" data-checklist="1"><li class="task-list-item enabled">'
        '<input class="task-list-item-checkbox" type="checkbox" data-item="0"></li></ul>'
        '<details class="quiz-reveal" data-question="q1"><summary>s</summary></details>'
        '<figure class="pullquote"><blockquote><p>q</p></blockquote><figcaption>a</figcaption></figure>'
        '<img src="/course-assets/x/y.png" alt="y" loading="lazy">'
    )

    assert sanitize(html) == html


def test_the_sanitiser_strips_hostile_attributes_on_the_new_elements():
    html = sanitize(
        '<img src="x.png" onerror="alert(1)" loading="eager" style="x"><img src="javascript:alert(1)">'
        '<details data-question="q1" ontoggle="alert(1)" data-evil="1"><summary>s</summary></details>'
        '<ul data-checklist="1" data-x="2"><li><input type="text" data-item="0" onclick="x"></li></ul>'
        '<figure class="pullquote evil"><blockquote cite="javascript:alert(1)">q</blockquote></figure>'
    )

    assert "onerror" not in html and "ontoggle" not in html and "onclick" not in html
    assert "javascript" not in html and "eager" not in html and "style" not in html
    assert "data-evil" not in html and "data-x" not in html and 'type="text"' not in html
    assert '<figure class="pullquote">' in html
    assert 'data-question="q1"' in html and 'data-checklist="1"' in html and 'data-item="0"' in html


def test_an_author_writing_raw_image_html_gets_escaped_text():
    html = render_markdown('<img src="figures/a.png" onerror="alert(1)">\n\nText <img src=x onerror=alert(1)>\n').html

    assert "<img" not in html and "&lt;img" in html


# --- HTML comments -------------------------------------------------------------------------------------------------


def test_html_comments_are_hidden_block_inline_and_inside_lists():
    source = md(
        """
        <!-- TODO: a block comment -->

        Before <!-- an inline note --> after.

        <!--
        A comment over

        several paragraphs
        -->
        Next paragraph.

        - item <!-- in a list -->
        - second
          <!-- indented in the item -->

        > quoted <!-- in a quote -->

        | a | b <!-- in a cell --> |
        |---|---|
        | 1 | 2 |

        ## Heading <!-- in a heading -->
        """
    )

    result = render_markdown(source)
    tree = parse(result.html)

    assert result.problems == []
    assert "<!--" not in result.html and "&lt;!--" not in result.html
    assert "TODO" not in result.html and "comment" not in result.html and "several" not in result.html
    assert tree.find_all("p")[0].text() == "Before  after."
    assert "Next paragraph." in tree.text()
    assert [li.text().strip() for li in tree.find("ul").children] == ["item", "second"]
    assert [th.text().strip() for th in tree.find_all("th")] == ["a", "b"]
    assert tree.find("h2").attrs["id"] == "heading"


def test_text_after_a_comment_on_its_closing_line_is_kept():
    tree = parse(render_markdown("<!-- note -->Shown text.\n").html)

    assert tree.find("p").text() == "Shown text."


def test_comments_in_code_stay_visible():
    html = render_markdown("`<!-- a -->`\n\n```html\n<!-- b -->\n```\n\n    <!-- c -->\n").html

    assert html.count("&lt;!--") == 3


@pytest.mark.parametrize(
    ("line", "marker", "stopped"),
    [
        ("<!-- draft --> # Heading", "#", "heading"),
        ("<!-- draft --> ### Detail", "###", "heading"),
        ("<!-- draft --> - item", "-", "list item"),
        ("<!-- draft --> * item", "*", "list item"),
        ("<!-- draft --> > quoted", ">", "quotation"),
        ("<!-- draft --> 1. first", "1.", "numbered list item"),
    ],
)
def test_a_comment_before_a_block_marker_on_the_same_line_is_reported(line, marker, stopped):
    # CommonMark: a block marker must start its line, so the text after the comment is a plain paragraph.
    result = render_markdown(f"Intro.\n\n{line}\n", line_offset=4)

    assert [(p.line, p.message) for p in result.problems] == [
        (3 + 4, f"a comment before `{marker}` on the same line stops the {stopped}")
    ]
    assert result.problems[0].hint == "Put the comment on its own line."
    assert "draft" not in result.html


def test_a_heading_after_a_multi_line_comment_is_reported_at_the_closing_line():
    assert _problems("<!--\nplanning notes\n--> ## Setup\n") == [
        (3, "a comment before `##` on the same line stops the heading")
    ]


@pytest.mark.parametrize("rest", ["#hashtags stay text", "plain words", "-5 degrees", "3.5 s is the median"])
def test_text_after_a_comment_that_is_no_block_marker_is_not_reported(rest):
    result = render_markdown(f"<!-- note --> {rest}\n")

    assert result.problems == []
    assert parse(result.html).find("p").text() == rest


def test_an_unclosed_comment_is_reported_at_its_line_and_shown():
    result = render_markdown("Intro.\n\nText <!-- forgot\nto close\n\nLater.\n", line_offset=2)

    assert [(p.line, p.message) for p in result.problems] == [
        (3 + 2, "an HTML comment is not closed: `<!--` without `-->`")
    ]
    assert "-->" in result.problems[0].hint
    assert "&lt;!-- forgot" in result.html  # the author sees what went wrong


def test_an_unclosed_block_comment_is_reported_once():
    result = render_markdown("<!-- no end\n\nrest\n")

    assert [(p.line, p.message) for p in result.problems] == [
        (1, "an HTML comment is not closed: `<!--` without `-->`")
    ]


def test_an_unclosed_comment_inside_a_quiz_prompt_is_reported_at_the_prompt_line():
    source = "```quiz\nquestions:\n  - prompt: 'p <!-- x'\n    answer: a\n```\n"

    assert _problems(source) == [(3, "an HTML comment is not closed: `<!--` without `-->`")]


# --- math in table cells ----------------------------------------------------------------------------------------


def test_math_with_a_pipe_keeps_its_table_cell():
    source = "| quantity | formula | note |\n|---|---|---|\n| likelihood | $P(y|x)$ | given x |\n"

    tree = parse(render_markdown(source).html)

    cells = tree.find("tbody").find_all("td")
    assert len(cells) == 3
    assert [th.text() for th in tree.find_all("th")] == ["quantity", "formula", "note"]
    assert cells[1].find("span", "math-inline").text() == "P(y|x)"
    assert cells[2].text() == "given x"


def test_math_with_pipes_in_the_header_row_keeps_the_table():
    source = "| $\\|w\\|$ | $|v|$ | c |\n|---|---|---|\n| 1 | 2 | 3 |\n"

    tree = parse(render_markdown(source).html)

    assert [th.find("span", "math-inline").text() for th in tree.find_all("th")[:2]] == ["\\|w\\|", "|v|"]
    assert len(tree.find("tbody").find_all("td")) == 3


def test_a_tex_norm_in_a_table_cell_reaches_katex_as_written():
    source = "| norm | divergence |\n|---|---|\n| $\\|v\\|$ | $D_{KL}(p \\| q)$ |\n"

    tree = parse(render_markdown(source).html)

    cells = tree.find("tbody").find_all("td")
    assert [td.find("span", "math-inline").text() for td in cells] == ["\\|v\\|", "D_{KL}(p \\| q)"]


def test_an_escaped_pipe_outside_math_in_a_cell_is_a_literal_pipe():
    tree = parse(render_markdown("| a | b |\n|---|---|\n| x \\| y | $|v|$ |\n").html)

    assert [td.text() for td in tree.find("tbody").find_all("td")] == ["x | y", "|v|"]


def test_a_code_cell_before_math_with_a_pipe_keeps_every_column():
    # The stranger instructor's rows: the threshold column was lost after the code cell.
    source = md(
        """
        | metric | formula | threshold |
        |---|---|---|
        | `k1` | $P(y|x)$ | ok |
        | `calibration_gap` | $|P(y|x) - \\hat{y}|$ averaged | > 0.05 |
        """
    )

    result = render_markdown(source)
    rows = parse(result.html).find("tbody").find_all("tr")

    assert [[td.text() for td in row.find_all("td")] for row in rows] == [
        ["k1", "P(y|x)", "ok"],
        ["calibration_gap", "|P(y|x) - \\hat{y}| averaged", "> 0.05"],
    ]
    assert rows[1].find_all("td")[1].find("span", "math-inline").text() == "|P(y|x) - \\hat{y}|"
    assert result.problems == []


@pytest.mark.parametrize("code", ["``a`b``", "`$`", "``a`$``", "`` `$` ``", "```$``$```"])
def test_code_spans_of_any_length_are_skipped_when_finding_math_in_a_row(code):
    # No spaces around the pipes: a dollar in the code would otherwise open math closed by the math's own `$`.
    source = f"| code | math | c |\n|---|---|---|\n|{code}|$|x|$|ok|\n"

    cells = parse(render_markdown(source).html).find("tbody").find_all("td")

    assert len(cells) == 3
    assert cells[1].find("span", "math-inline").text() == "|x|"
    assert cells[2].text() == "ok"


@pytest.mark.parametrize(
    "row",
    [
        "| \\$a | b$ | c |",  # an escaped dollar opens nothing
        "| $a | b$5 | c |",  # a digit after the closing dollar: prose, not math
        "| 5$a | b$ | c |",  # a digit before the opening dollar
        "| $a | b $ | c |",  # a space before the closing dollar
    ],
)
def test_dollars_the_math_rule_would_not_take_leave_the_cells_alone(row):
    result = render_markdown(f"| x | y | z |\n|---|---|---|\n{row}\n")

    assert len(parse(result.html).find("tbody").find_all("td")) == 3
    assert "math-inline" not in result.html


_MERGED = "math between $ signs spans several cells of this row, so they are merged"


@pytest.mark.parametrize(
    ("table", "row_line"),
    [
        ("| dir | export |\n|---|---|\n| $HOME/bin | PATH=$PATH:x |\n", 3),
        ("| x | y | z |\n|---|---|---|\n| 1 | 2 | 3 |\n| a$b | c$d | e |\n", 4),
        ("> | x | y | z |\n> |---|---|---|\n> | a$b | c$d | e |\n", 3),  # the row after a quote marker
    ],
)
def test_math_that_spans_cells_of_a_row_is_reported_as_merging_them(table, row_line):
    result = render_markdown(f"Intro.\n\n{table}", line_offset=5)

    assert [(p.line, p.message) for p in result.problems] == [(2 + row_line + 5, _MERGED)]
    assert "`$HOME`" in result.problems[0].hint and "\\$" in result.problems[0].hint
    assert "a | inside math is fine" in result.problems[0].hint
    # The math rule's own reading stands: the dollars hold math (the author is told to change the source).
    assert "math-inline" in result.html


def test_math_in_a_row_already_short_of_cells_is_not_reported_as_merging():
    result = render_markdown("| a | b | c |\n|---|---|---|\n| $P(y|x)$ |\n| $|x|$ | $|y|$ | ok |\n")

    assert result.problems == []


def test_a_row_whose_math_spans_cells_in_a_quiz_answer_is_reported_at_the_answer_line():
    source = md(
        """
        ```quiz
        questions:
          - prompt: Where does the tool go?
            answer: |
              | dir | export |
              |---|---|
              | $HOME/bin | PATH=$PATH:x |
        ```
        """
    )

    assert _problems(source) == [(4, _MERGED)]


def test_a_paragraph_starting_with_math_and_ending_with_a_digit_keeps_its_math():
    tree = parse(render_markdown("$x$ is 2\n").html)

    assert tree.find("span", "math-inline").text() == "x"


# --- table rows that lose cells -------------------------------------------------------------------------------


def test_a_row_with_more_cells_than_the_header_is_reported_at_its_line():
    source = "Intro.\n\n| a | b | c |\n|---|---|---|\n| 1 | 2 | 3 |\n| spaced | $ |x| $ | ok |\n"

    result = render_markdown(source, line_offset=4)

    assert [(p.line, p.message) for p in result.problems] == [
        (6 + 4, "this row has 5 cells but the header has 3; the extra cells are dropped")
    ]
    assert "\\|" in result.problems[0].hint and "$|x|$ not $ |x| $" in result.problems[0].hint


def test_a_row_with_fewer_cells_than_the_header_is_legal_and_not_reported():
    result = render_markdown("| a | b | c |\n|---|---|---|\n| 1 |\n| 1 | 2 |\n")

    assert result.problems == []
    assert [td.text() for td in parse(result.html).find("tbody").find_all("td")][:3] == ["1", "", ""]


def test_pipes_in_math_and_escaped_pipes_do_not_count_as_cells():
    result = render_markdown("| a | b |\n|---|---|\n| $|x| + |y|$ | p \\| q |\n")

    assert result.problems == []


def test_a_pipe_in_a_code_span_splits_the_cell_as_the_table_rule_does_and_is_reported():
    result = render_markdown("| a | b |\n|---|---|\n| `x|y` | z |\n")

    assert [(p.line, p.message) for p in result.problems] == [
        (3, "this row has 3 cells but the header has 2; the extra cells are dropped")
    ]
    assert len(parse(result.html).find("tbody").find_all("td")) == 2


def test_a_row_with_extra_cells_in_a_quoted_table_is_reported_at_its_line():
    assert _problems("> | a |\n> |---|\n> | 1 | 2 |\n") == [
        (3, "this row has 2 cells but the header has 1; the extra cells are dropped")
    ]


# --- unclosed containers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opening", "noun"),
    [("::: note", "callout"), ("::: tip Watch out", "callout"), ("::: pullquote", "pull quote")],
)
def test_an_unclosed_container_is_reported_at_its_opening_line(opening, noun):
    source = f"Intro.\n\n{opening}\nInside.\n\n## Next section\n\nMore text.\n"

    result = render_markdown(source, line_offset=5)

    assert [(p.line, p.message) for p in result.problems] == [
        (3 + 5, f"the {noun} opened here is never closed, so it holds the rest of the lesson")
    ]
    assert "`:::`" in result.problems[0].hint


def test_closed_and_properly_nested_containers_are_not_reported():
    source = md(
        """
        :::: tip Outer
        ::: note
        Inner.
        :::
        ::::

        ::: epigraph
        Quoted.

        — Someone
        :::
        """
    )

    assert render_markdown(source).problems == []


def test_nesting_with_equal_colons_reports_the_inner_callout_with_the_nesting_hint():
    # The outer `:::` closes at the first bare `:::`, so the inner note never gets its own.
    source = "::: tip\n::: note\nInner.\n:::\n:::\n"

    result = render_markdown(source)

    assert [(p.line, p.message) for p in result.problems] == [
        (2, "the callout opened here is never closed, so it holds the rest of the block around it")
    ]
    assert "`:::: tip`" in result.problems[0].hint


def test_an_unclosed_callout_in_a_list_item_is_reported():
    assert _problems("- item\n\n  ::: note\n  inside\n- next\n") == [
        (3, "the callout opened here is never closed, so it holds the rest of the block around it")
    ]


# --- raw HTML in Markdown text ----------------------------------------------------------------------------------

HTML_MESSAGE = "HTML tag <{}> is shown to readers as text: raw HTML is not rendered"


def test_raw_html_tags_are_reported_once_per_line_and_shown_as_text():
    source = "Intro.\n\nTry it with <kbd>Ctrl</kbd>+<kbd>C</kbd>\nand <b>then</b> stop.\n"

    result = render_markdown(source, line_offset=3)

    assert [(p.line, p.message) for p in result.problems] == [
        (3 + 3, HTML_MESSAGE.format("kbd")),
        (4 + 3, HTML_MESSAGE.format("b")),
    ]
    hint = result.problems[0].hint
    assert "**bold**" in hint and "`Ctrl+C`" in hint and "comments" in hint
    assert "&lt;kbd&gt;Ctrl&lt;/kbd&gt;" in result.html and "<kbd>" not in result.html


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("Line one<br>line two", "br"),
        ("x<sup>2</sup>", "sup"),
        ('<div class="box">', "div"),
        ('<img src="figures/a.png">', "img"),
        ("the end</span>", "span"),
        ("a break <br/>", "br"),
    ],
)
def test_each_kind_of_raw_html_tag_is_reported(text, tag):
    assert _problems(f"{text}\n") == [(1, HTML_MESSAGE.format(tag))]


def test_raw_html_in_a_table_row_is_reported_once_at_the_row():
    source = "| key | meaning |\n|---|---|\n| <kbd>C</kbd> | copy<br>it |\n"

    assert _problems(source) == [(3, HTML_MESSAGE.format("kbd"))]


def test_raw_html_in_a_quiz_prompt_is_reported_at_the_prompt_line():
    source = "```quiz\nquestions:\n  - prompt: Press <kbd>q</kbd>\n    answer: quits\n```\n"

    assert _problems(source) == [(3, HTML_MESSAGE.format("kbd"))]


def test_prose_code_math_and_comments_that_look_like_html_are_not_reported():
    source = md(
        """
        A List<String> and Map<K, V>; when a < b > c, replace <your-name> and <input> here.

        See <https://example.org> or write `<kbd>` in code and \\<b> escaped, $a<b>c$ as math.

        Generic Box<B> and Option<T>. <!-- a hidden <b>comment</b> -->

        ```html
        <div><b>shown as code</b></div>
        ```

            <p>indented code</p>
        """
    )

    assert render_markdown(source).problems == []


def test_math_outside_tables_and_code_keeps_its_backslashes():
    source = "$\\|v\\|$ and $a|b$\n\n```\n| $a|b$ |\n```\n\n| x | `$a|b$` |\n|---|---|---|\n| 1 | 2 | 3 |\n"

    result = render_markdown(source)
    tree = parse(result.html)

    assert [s.text() for s in tree.find("p").find_all("span", "math-inline")] == ["\\|v\\|", "a|b"]
    assert tree.find("pre").text() == "| $a|b$ |"
    # A code span in a cell is left alone: GitHub's rule, a pipe in it splits the cell unless escaped.
    assert len(tree.find("thead").find_all("th")) == 3


def test_dollars_that_are_not_math_do_not_change_a_table():
    tree = parse(render_markdown("| price | other |\n|---|---|\n| $5 | $10 |\n").html)

    assert [td.text() for td in tree.find_all("td")] == ["$5", "$10"]


# --- stylesheet: every new structure is styled, accents readable in both themes ---------------------------------

CSS_DIR = Path(__file__).resolve().parents[2] / "courses" / "static" / "courses" / "css"


def _contrast(a: str, b: str) -> float:
    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _palette(css: str, selector_regex: str) -> dict[str, str]:
    block = re.search(selector_regex + r"\s*\{(.*?)\n\s*\}", css, re.S).group(1)
    return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", block))


def test_every_callout_kind_has_its_own_accent_readable_in_both_themes():
    content = (CSS_DIR / "content.css").read_text(encoding="utf-8")
    site = (CSS_DIR / "site.css").read_text(encoding="utf-8")
    themes = {
        "light": (_palette(content, r":root"), _palette(site, r":root")),
        "dark": (_palette(content, r':root\[data-theme="dark"\]'), _palette(site, r':root\[data-theme="dark"\]')),
    }
    assert _palette(content, r':root:not\(\[data-theme="light"\]\)') == themes["dark"][0]
    for kind in CALLOUT_TITLES:
        rule = re.search(rf"\.callout-{re.escape(kind)} \{{ --callout-color: var\(--([\w-]+)\); \}}", content)
        assert rule, f"no accent for callout-{kind}"
        for theme, (accents, site_palette) in themes.items():
            colour = accents[rule.group(1)]
            for background in ("bg", "surface"):
                ratio = _contrast(colour, site_palette[background])
                assert ratio >= 4.5, f"{kind} title on {background} in the {theme} theme: {ratio:.2f}"
    accents = [
        re.search(rf"\.callout-{re.escape(k)} \{{ --callout-color: var\(--([\w-]+)\)", content).group(1)
        for k in CALLOUT_TITLES
    ]
    assert len(set(accents)) == len(accents), "two callout kinds share an accent"
    for selector in (".pullquote", ".epigraph", ".quiz-answer-text", "[data-checklist]", ".lesson-body img"):
        assert selector in content, f"content.css does not style {selector}"
