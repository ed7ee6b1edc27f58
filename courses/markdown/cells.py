"""Runnable code cells: a fence whose info string is `python run [check="<expression>"]`.

The cell renders as plain, user-independent markup (docs/authoring.md, "Runnable code cells"); the page's script
adds the Run button and talks to the kernel service. Each cell is also collected in document order into
`RenderContext.code_cells`, which the importer stores on the lesson (`Lesson.code_cells`).
"""

from __future__ import annotations

import ast
import shlex
from html import escape

from courses.markdown.blocks import RenderContext, refuse_nested_block
from courses.markdown.highlight import code_block_html, code_html, language_of

RUN_WORD = "run"
# Only Python has a kernel in the sandbox image.
RUNNABLE_LANGUAGES = frozenset({"python"})
_CHECK_KEY = "check"
_SYNTAX = '```python run check="total == 55"'


def is_runnable(info: str) -> bool:
    """Whether a fence asks to be run: its second word is `run` (```python run …)."""
    words = info.split(maxsplit=2)
    return len(words) >= 2 and words[1].lower() == RUN_WORD


def render_code_cell(info: str, content: str, fence_line: int, ctx: RenderContext, *, nested: bool) -> str:
    """A runnable fence as a code cell; a problem (with its hint) for each thing wrong with its info string."""
    language = language_of(info)
    if language not in RUNNABLE_LANGUAGES:
        ctx.problem(
            fence_line,
            f"only Python code cells can run, but this fence is {language!r} with `run`",
            f"Remove `run` to show the {language} code without a Run button, or write the cell in Python: "
            f"{_SYNTAX}.",
        )
        return code_block_html(content, language)
    if nested:
        # Inside a quiz answer or explanation: refused like the blocks, for the same reason (the quiz owns it).
        return refuse_nested_block(
            f"{language} {RUN_WORD}",
            fence_line,
            ctx,
            hint=f"Put the ```{language} run block after the quiz, or remove `run` to show the code there "
            "without a Run button.",
        )
    check = _check(info, fence_line, ctx)
    index = len(ctx.code_cells)
    code = content.removesuffix("\n")
    ctx.code_cells.append({"index": index, "language": language, "code": code, "check": check})
    parts = [f'<div class="code-cell" id="code-cell-{index}" data-code-cell="{index}">', code_html(content, language)]
    if check:
        parts.append(f'<p class="code-cell-check">Check: <code>{escape(check, quote=False)}</code></p>')
    parts.append("</div>\n")
    return "".join(parts)


def _check(info: str, fence_line: int, ctx: RenderContext) -> str:
    """The cell's check expression ("" for none), read from the info string with shell-style quoting."""
    try:
        words = shlex.split(info)
    except ValueError as exc:
        reason = "a quote is never closed" if "quotation" in str(exc) else f"it cannot be read ({exc})"
        ctx.problem(
            fence_line,
            f"the fence line of this code cell cannot be read: {reason}",
            f"Close the quote around the check: {_SYNTAX}; to use a quote inside the check, use the other kind: "
            "check=\"name == 'Ada'\".",
        )
        return ""
    check = ""
    seen_check = False
    unknown: list[str] = []
    for word in words[2:]:
        key, equals, value = word.partition("=")
        if not equals or key != _CHECK_KEY:
            unknown.append(word)
            continue
        if seen_check:
            ctx.problem(
                fence_line,
                "this code cell has more than one check",
                'Join the conditions into one expression: check="a == 1 and b == 2".',
            )
            continue
        seen_check = True
        problem = _expression_problem(value)
        if problem:
            ctx.problem(
                fence_line,
                f"the check {value!r} is not a Python expression ({problem})",
                "Write one expression that is true when the learner's cell did its job, e.g. "
                'check="total == 55" or check="len(rows) > 0"; statements (=, import, def) do not go in a check.',
            )
            continue
        check = value.strip()
    if unknown:
        # One problem for the line: `check = "x"` (spaces around =) reads as three words.
        noun = "word" if len(unknown) == 1 else "words"
        ctx.problem(
            fence_line,
            f"unknown {noun} {', '.join(map(repr, unknown))} after `run` in this code cell's fence line",
            f'After `run` only a check may follow, written check="<expression>" with no spaces around =, '
            f"e.g. {_SYNTAX}.",
        )
    return check


def _expression_problem(text: str) -> str:
    """Why `text` is not a single Python expression; "" when it is one."""
    if not text.strip():
        return "it is empty"
    try:
        ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        return exc.msg or "invalid syntax"
    except (ValueError, RecursionError) as exc:  # a NUL character; nesting too deep for the parser
        return str(exc) or type(exc).__name__
    return ""
