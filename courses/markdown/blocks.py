"""The custom fenced blocks whose body is YAML: ```quiz, ```stages and ```compare (formats in docs/authoring.md, "Blocks").

Each block is validated; every problem becomes a MarkdownProblem with a file line and a fix hint, and a block
with problems renders as a visible error box (never its source: a broken graded quiz must not leak answers).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Any

import yaml

from courses.markdown.highlight import code_block_html

# Each callout kind with the title it shows when the author gives none (docs/authoring.md lists them).
CALLOUT_TITLES = {
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
# Quotations set apart from the text: `::: pullquote` / `::: epigraph`, the attribution in a last "— " paragraph.
FIGURE_KINDS = ("pullquote", "epigraph")

BLOCK_NAMES = frozenset({"quiz", "stages", "compare"})
QUIZ_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_CHOICE_IDS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class MarkdownProblem:
    """Something wrong in a lesson's Markdown: `line` is 1-based in the lesson file."""

    line: int
    message: str
    hint: str


@dataclass
class RenderContext:
    """Per-render state shared by the Markdown rules and the block renderers."""

    line_offset: int
    link_resolver: Callable[[str], str | None] | None
    # (relative path, image=..., line=...) -> asset URL, or None once the caller has reported the problem.
    asset_resolver: Callable[..., str | None] | None
    render_inline: Callable[[str, int], str]
    render_block: Callable[[str, int], str]
    problems: list[MarkdownProblem] = field(default_factory=list)
    links: list[tuple[str, int]] = field(default_factory=list)
    quizzes: list[dict[str, Any]] = field(default_factory=list)
    toc: list[dict[str, Any]] = field(default_factory=list)
    quiz_keys: set[str] = field(default_factory=set)
    quiz_count: int = 0
    checklist_count: int = 0
    html_tag_lines: set[int] = field(default_factory=set)  # a line with raw HTML is reported once
    # Runnable cells in document order: {"index", "language", "code", "check"} (courses.markdown.cells).
    code_cells: list[dict[str, Any]] = field(default_factory=list)

    def problem(self, line: int, message: str, hint: str) -> None:
        self.problems.append(MarkdownProblem(line=line, message=message, hint=hint))


def graded_quiz_placeholder(key: str) -> str:
    """The element a graded quiz renders as; the lesson view `.replace()`s it with the server-rendered form."""
    return f'<div class="graded-quiz-slot" data-quiz-key="{escape(key)}"></div>'


# --- YAML with line numbers -------------------------------------------------------------------------------


class _LineDict(dict):
    """A mapping that remembers where it and each of its keys start (0-based lines in the block body)."""

    line: int = 0
    key_lines: dict[Any, int]


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    pass


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode):  # type: ignore[no-untyped-def]
    data = _LineDict()
    data.line = node.start_mark.line
    data.key_lines = {}
    yield data
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            data.key_lines[key_node.value] = key_node.start_mark.line
    data.update(loader.construct_mapping(node))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)

# YAML 1.1 reads yes/no/on/off as booleans, which turns a choice `text: yes` into True. Only true/false are
# booleans here (as in YAML 1.2), so such text stays text and `correct: yes` is reported instead of guessed.
_BOOL_TAG = "tag:yaml.org,2002:bool"
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class _Block:
    """Validation helper for one block: turns body-relative YAML lines into file lines and collects problems."""

    def __init__(self, name: str, fence_line: int, ctx: RenderContext) -> None:
        self.name = name
        self.fence_line = fence_line
        self.ctx = ctx
        self.errors: list[MarkdownProblem] = []

    def line_of(self, node: Any, key: str | None = None) -> int:
        if isinstance(node, _LineDict):
            body_line = node.key_lines.get(key, node.line) if key is not None else node.line
            return self.fence_line + 1 + body_line
        return self.fence_line

    def error(self, line: int, message: str, hint: str) -> None:
        self.errors.append(MarkdownProblem(line=line, message=f"{self.name} block: {message}", hint=hint))

    def load(self, body: str) -> Any:
        try:
            data = yaml.load(body, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = self.fence_line + 1 + mark.line if mark is not None else self.fence_line
            reason = getattr(exc, "problem", None) or "syntax error"
            self.error(
                line,
                f"the YAML body does not parse ({reason})",
                "Check the indentation, and quote text that contains ': ' or ' #', e.g. text: \"a: b\".",
            )
            return None
        if not isinstance(data, dict):
            self.error(
                self.fence_line,
                "the body must be a YAML mapping",
                f"See the `{self.name}` format in the authoring guide.",
            )
            return None
        return data

    def unknown_keys(self, mapping: dict, allowed: set[str], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.error(
                    self.line_of(mapping, key),
                    f"unknown field {key!r} in {where}",
                    f"Use only: {', '.join(sorted(allowed))}.",
                )

    def text(self, mapping: dict, key: str, where: str, *, required: bool) -> str | None:
        value = mapping.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.error(self.line_of(mapping), f"{where} is missing `{key}`", f"Add `{key}: ...` to {where}.")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.error(self.line_of(mapping, key), f"`{key}` in {where} must be text", f'Quote it: `{key}: "..."`.')
            return None
        return str(value)

    def finish(self, html: str) -> str:
        if not self.errors:
            return html
        self.ctx.problems.extend(self.errors)
        items = "".join(f"<li>{escape(e.message)}: {escape(e.hint)} (line {e.line})</li>" for e in self.errors)
        return (
            f'<div class="block-error" role="alert"><p class="block-error-title">'
            f"This {escape(self.name)} block could not be shown (line {self.fence_line})</p><ul>{items}</ul></div>\n"
        )


# --- quiz ----------------------------------------------------------------------------------------------------

_QUIZ_KEYS = {"id", "title", "graded", "max_attempts", "questions"}
_QUESTION_KEYS = {"prompt", "kind", "choices", "answer", "explanation"}
_CHOICE_KEYS = {"text", "correct"}


def render_quiz(body: str, fence_line: int, ctx: RenderContext) -> str:
    ctx.quiz_count += 1
    block = _Block("quiz", fence_line, ctx)
    data = block.load(body)
    if data is None:
        return block.finish("")
    block.unknown_keys(data, _QUIZ_KEYS, "the quiz")

    key = data.get("id", f"quiz-{ctx.quiz_count}")
    if not isinstance(key, str) or not QUIZ_KEY_RE.match(key):
        block.error(
            block.line_of(data, "id"),
            f"quiz id {key!r} is not a valid key",
            "Use lower-case letters, digits and '-', e.g. id: check-yourself.",
        )
        key = f"quiz-{ctx.quiz_count}"
    elif key in ctx.quiz_keys:
        block.error(
            block.line_of(data, "id"), f"duplicate quiz id {key!r}", "Give each quiz in the lesson its own `id:`."
        )
    ctx.quiz_keys.add(key)

    graded = data.get("graded", False)
    if not isinstance(graded, bool):
        block.error(
            block.line_of(data, "graded"), "`graded` must be true or false", "Write graded: true or graded: false."
        )
        graded = False
    max_attempts = data.get("max_attempts")
    if max_attempts is not None and (
        isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
    ):
        block.error(
            block.line_of(data, "max_attempts"),
            "`max_attempts` must be a whole number of at least 1",
            "Write e.g. max_attempts: 3, or leave it out for unlimited attempts.",
        )
        max_attempts = None
    title = block.text(data, "title", "the quiz", required=False) or "Check yourself"

    questions_data = data.get("questions")
    questions: list[dict[str, Any]] = []
    if not isinstance(questions_data, list) or not questions_data:
        block.error(
            block.line_of(data, "questions"),
            "the quiz needs a non-empty `questions:` list",
            "Add questions:, then one `- prompt: ...` item per question.",
        )
        questions_data = []
    for q_index, q in enumerate(questions_data, start=1):
        question = _quiz_question(block, q, q_index, data)
        if question is None:
            continue
        if graded and question["kind"] == "reveal":
            block.error(
                block.line_of(q, "answer"),
                "a graded quiz needs choices in every question",
                f"Give question {q_index} `choices:` (mark the right ones with `correct: true`), "
                "or set graded: false to show its answer on a button.",
            )
        questions.append(question)

    if block.errors:
        return block.finish("")
    for question in questions:
        question["prompt_html"] = ctx.render_inline(question["prompt"], question.pop("_line"))
        for choice in question["choices"]:
            choice["html"] = ctx.render_inline(choice["text"], choice.pop("_line"))
        answer_line = question.pop("_answer_line")
        if question["kind"] == "reveal":
            question["answer_html"] = ctx.render_block(question["answer"], answer_line)
        explanation_line = question.pop("_explanation_line")
        explanation = question["explanation"]
        question["explanation_html"] = ctx.render_block(explanation, explanation_line) if explanation else ""
    ctx.quizzes.append(
        {
            "key": key,
            "title": title,
            "graded": graded,
            "max_attempts": max_attempts if graded else None,
            "questions": questions,
            "line": fence_line,
        }
    )
    if graded:
        return graded_quiz_placeholder(key) + "\n"
    return _quiz_html(key, title, questions, ctx)


def _quiz_question(block: _Block, q: Any, q_index: int, quiz: dict) -> dict[str, Any] | None:
    where = f"question {q_index}"
    if not isinstance(q, dict):
        block.error(
            block.line_of(quiz, "questions"), f"{where} must be a mapping", "Start each question with `- prompt: ...`."
        )
        return None
    block.unknown_keys(q, _QUESTION_KEYS, where)
    prompt = block.text(q, "prompt", where, required=True)
    kind = q.get("kind", "reveal" if "answer" in q else "single")
    if kind not in ("single", "multiple", "reveal"):
        block.error(
            block.line_of(q, "kind"),
            f"unknown kind {kind!r} in {where}",
            "Use kind: single (one answer), kind: multiple (all that apply) or leave it out; a question with "
            "`answer:` instead of choices is kind: reveal.",
        )
    explanation = block.text(q, "explanation", where, required=False)
    has_answer, has_choices = "answer" in q, "choices" in q
    if has_answer and has_choices:
        block.error(
            block.line_of(q, "answer"),
            f"{where} has both `answer:` and `choices:`",
            "Keep `choices:` for a question the reader answers by picking, or `answer:` for one whose answer "
            "is revealed on a button, not both.",
        )
        return None
    if has_answer:
        return _reveal_question(block, q, q_index, prompt, explanation)
    if not has_choices:
        block.error(
            block.line_of(q),
            f"{where} needs `choices:` or `answer:`",
            "Add choices: with `- text: ...` items (mark the right ones with `correct: true`), or answer: with "
            "the answer to reveal.",
        )
        return None
    if kind == "reveal":
        block.error(
            block.line_of(q, "kind"),
            f"{where} is kind: reveal but has `choices:`",
            "Replace choices: with answer: ..., or set kind: single or kind: multiple.",
        )
        return None
    choices_data = q.get("choices")
    if not isinstance(choices_data, list) or len(choices_data) < 2:
        block.error(
            block.line_of(q, "choices"),
            f"{where} needs a `choices:` list with at least two choices",
            "Add choices:, then `- text: ...` items; mark the right ones with `correct: true`.",
        )
        return None
    if len(choices_data) > len(_CHOICE_IDS):
        block.error(
            block.line_of(q, "choices"),
            f"{where} has more than {len(_CHOICE_IDS)} choices",
            "Split it into several questions.",
        )
        return None
    choices = []
    for c_index, c in enumerate(choices_data):
        c_where = f"choice {c_index + 1} of {where}"
        if isinstance(c, str | int | float) and not isinstance(c, bool):
            c = {"text": str(c)}
        if not isinstance(c, dict):
            block.error(
                block.line_of(q, "choices"),
                f"{c_where} must be text or a mapping",
                "Write `- text: ...` (and `correct: true` for a right answer).",
            )
            continue
        block.unknown_keys(c, _CHOICE_KEYS, c_where)
        text = block.text(c, "text", c_where, required=True)
        correct = c.get("correct", False)
        if not isinstance(correct, bool):
            block.error(
                block.line_of(c, "correct"),
                f"`correct` in {c_where} must be true or false",
                "Write correct: true, or leave it out for a wrong choice.",
            )
            correct = False
        choices.append({"id": _CHOICE_IDS[c_index], "text": text or "", "correct": correct, "_line": block.line_of(c)})
    n_correct = sum(1 for c in choices if c["correct"])
    if n_correct == 0:
        block.error(block.line_of(q), f"{where} has no correct choice", "Mark the right answer with `correct: true`.")
    elif kind == "single" and n_correct > 1:
        block.error(
            block.line_of(q),
            f"{where} is single choice but has {n_correct} correct choices",
            "Keep one `correct: true`, or set kind: multiple.",
        )
    return {
        "id": f"q{q_index}",
        "prompt": prompt or "",
        "kind": kind,
        "choices": choices,
        "explanation": explanation or "",
        "_line": block.line_of(q, "prompt"),
        "_answer_line": block.line_of(q, "answer"),
        "_explanation_line": block.line_of(q, "explanation"),
    }


def _reveal_question(
    block: _Block, q: dict, q_index: int, prompt: str | None, explanation: str | None
) -> dict[str, Any] | None:
    """A question without choices: the prompt, then its answer (Markdown) behind "Show the answer"."""
    where = f"question {q_index}"
    if q.get("kind") in ("single", "multiple"):
        block.error(
            block.line_of(q, "kind"),
            f"{where} has `answer:` but kind: {q.get('kind')}",
            "Leave kind: out for a question with `answer:`; single and multiple are for questions with choices.",
        )
        return None
    answer = block.text(q, "answer", where, required=True)
    if answer is None:
        return None
    return {
        "id": f"q{q_index}",
        "prompt": prompt or "",
        "kind": "reveal",
        "choices": [],
        "answer": answer,
        "explanation": explanation or "",
        "_line": block.line_of(q, "prompt"),
        "_answer_line": block.line_of(q, "answer"),
        "_explanation_line": block.line_of(q, "explanation"),
    }


def _quiz_html(key: str, title: str, questions: list[dict[str, Any]], ctx: RenderContext) -> str:
    parts = [
        f'<section class="quiz" data-quiz-key="{escape(key)}" aria-label="{escape(title)}">',
        '<div class="quiz-header">',
        f'<p class="quiz-title">{escape(title)}</p>',
        f'<p class="quiz-progress" aria-live="polite"><span data-opened>0</span> of {len(questions)} opened</p>',
        "</div>",
        '<ol class="quiz-questions">',
    ]
    for q in questions:
        kind_class = "quiz-reveal-only" if q["kind"] == "reveal" else f"quiz-{q['kind']}"
        parts.append(f'<li class="quiz-question {kind_class}">')
        parts.append(f'<p class="quiz-prompt">{q["prompt_html"]}</p>')
        if q["kind"] != "reveal":
            kind_label = "Choose one" if q["kind"] == "single" else "Choose all that apply"
            parts.append(f'<p class="quiz-kind">{kind_label}</p><ol class="quiz-choices">')
            parts.extend(f'<li class="quiz-choice">{c["html"]}</li>' for c in q["choices"])
            parts.append("</ol>")
        parts.append(
            f'<details class="quiz-reveal" data-question="{escape(q["id"])}"><summary>Show the answer</summary>'
            '<div class="quiz-answer">'
        )
        if q["kind"] == "reveal":
            parts.append(f'<div class="quiz-answer-text">{q["answer_html"]}</div>')
        else:
            correct = [c for c in q["choices"] if c["correct"]]
            answer_label = "Correct answer" if len(correct) == 1 else "Correct answers"
            parts.append(
                f'<p class="quiz-correct"><strong>{answer_label}:</strong> '
                + "; ".join(c["html"] for c in correct)
                + "</p>"
            )
        if q["explanation_html"]:
            parts.append(f'<div class="quiz-explanation">{q["explanation_html"]}</div>')
        parts.append("</div></details></li>")
    parts.append("</ol></section>\n")
    return "".join(parts)


# --- stages --------------------------------------------------------------------------------------------------


def render_stages(body: str, fence_line: int, ctx: RenderContext) -> str:
    block = _Block("stages", fence_line, ctx)
    data = block.load(body)
    if data is None:
        return block.finish("")
    block.unknown_keys(data, {"title", "stages"}, "the stages block")
    title = block.text(data, "title", "the stages block", required=False)
    items = data.get("stages")
    if not isinstance(items, list) or not items:
        block.error(
            block.line_of(data, "stages"),
            "the block needs a non-empty `stages:` list",
            "Add stages:, then one `- name: ...` item per stage.",
        )
        items = []
    stages: list[tuple[str, str | None]] = []
    for index, item in enumerate(items, start=1):
        where = f"stage {index}"
        if isinstance(item, str | int | float) and not isinstance(item, bool):
            stages.append((str(item), None))
            continue
        if not isinstance(item, dict):
            block.error(
                block.line_of(data, "stages"),
                f"{where} must be a name or a mapping",
                "Write `- name: ...` with an optional `caption: ...`.",
            )
            continue
        block.unknown_keys(item, {"name", "caption"}, where)
        name = block.text(item, "name", where, required=True)
        caption = block.text(item, "caption", where, required=False)
        stages.append((name or "", caption))
    if block.errors:
        return block.finish("")
    label = title or "Stages"
    parts = ['<div class="stages-diagram">']
    if title:
        parts.append(f'<p class="stages-title">{escape(title)}</p>')
    parts.append(f'<ol class="stages" aria-label="{escape(label)}">')
    for name, caption in stages:
        cap = f'<span class="stage-caption">{escape(caption)}</span>' if caption else ""
        parts.append(f'<li class="stage"><span class="stage-name">{escape(name)}</span>{cap}</li>')
    parts.append("</ol></div>\n")
    return "".join(parts)


# --- compare -------------------------------------------------------------------------------------------------


def render_compare(body: str, fence_line: int, ctx: RenderContext) -> str:
    block = _Block("compare", fence_line, ctx)
    data = block.load(body)
    if data is None:
        return block.finish("")
    block.unknown_keys(data, {"title", "left", "right"}, "the compare block")
    title = block.text(data, "title", "the compare block", required=False)
    sides = []
    for side in ("left", "right"):
        spec = data.get(side)
        if not isinstance(spec, dict):
            block.error(
                block.line_of(data, side),
                f"`{side}` is missing or not a mapping",
                f"Add `{side}: {{label: ..., language: ..., code: ...}}`.",
            )
            continue
        block.unknown_keys(spec, {"label", "language", "code"}, f"`{side}`")
        label = block.text(spec, "label", f"`{side}`", required=True)
        language = block.text(spec, "language", f"`{side}`", required=False) or ""
        code = spec.get("code")
        if not isinstance(code, str):
            block.error(
                block.line_of(spec, "code"),
                f"`{side}` is missing `code` text",
                "Add `code: |` followed by the indented code.",
            )
            continue
        sides.append((side, label or "", language.strip().lower(), code))
    if block.errors:
        return block.finish("")
    parts = ['<div class="compare">']
    if title:
        parts.append(f'<p class="compare-title">{escape(title)}</p>')
    for side, label, language, code in sides:
        parts.append(
            f'<figure class="compare-side compare-{side}"><figcaption class="compare-label">{escape(label)}</figcaption>'
        )
        parts.append(code_block_html(code.rstrip("\n") + "\n", language))
        parts.append("</figure>")
    parts.append("</div>\n")
    return "".join(parts)


def refuse_nested_block(name: str, fence_line: int, ctx: RenderContext, *, hint: str | None = None) -> str:
    """The error box for a block written inside a quiz answer or explanation, where it cannot be shown: a quiz
    there would be counted, opened and saved as part of the quiz around it."""
    block = _Block(name, fence_line, ctx)
    block.errors.append(
        MarkdownProblem(
            line=fence_line,
            message=f"blocks cannot sit inside a quiz answer or explanation, so this {name} block is not shown",
            hint=hint or f"Put the ```{name} block after the quiz.",
        )
    )
    return block.finish("")


RENDERERS: dict[str, Callable[[str, int, RenderContext], str]] = {
    "quiz": render_quiz,
    "stages": render_stages,
    "compare": render_compare,
}
