"""Lesson Markdown → sanitised HTML, table of contents, quizzes, internal links and problems."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_block.table import escapedSplit
from markdown_it.rules_core import StateCore
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.container import container_plugin
from mdit_py_plugins.deflist import deflist_plugin
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.footnote import footnote_plugin
from mdit_py_plugins.tasklists import tasklists_plugin

from courses.markdown.blocks import (
    CALLOUT_TITLES,
    FIGURE_KINDS,
    RENDERERS,
    MarkdownProblem,
    RenderContext,
    refuse_nested_block,
)
from courses.markdown.cells import is_runnable, render_code_cell
from courses.markdown.highlight import code_block_html, language_of
from courses.markdown.sanitize import sanitize

# Bump whenever the HTML for the same source changes: the importer keys its render cache on it.
RENDERER_VERSION = "8"

_ATTRIBUTION_RE = re.compile(r"^(?:—|--) +")

_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_EXTERNAL_SCHEMES = {"http", "https", "mailto"}
_ALIGN_RE = re.compile(r"text-align:\s*(left|center|right)")


@dataclass(frozen=True)
class RenderResult:
    html: str
    toc: list[dict[str, Any]]
    quizzes: list[dict[str, Any]]
    links: list[tuple[str, int]]
    problems: list[MarkdownProblem]
    code_cells: list[dict[str, Any]] = field(default_factory=list)  # runnable cells, in document order


def _file_line(env: dict, token_map: Sequence[int] | None, extra: int = 0) -> int:
    """1-based line in the lesson file; nested renders (quiz prompts, explanations) report their YAML line."""
    if "fixed_line" in env:
        return env["fixed_line"]
    ctx: RenderContext = env["ctx"]
    return (token_map[0] if token_map else 0) + 1 + ctx.line_offset + extra


# --- core rule: links, assets, toc, table alignment, checklists, quotations -----------------------------------


def _postprocess(state: StateCore) -> None:
    ctx: RenderContext = state.env["ctx"]
    nested = "fixed_line" in state.env
    # One entry per open list: [checklist number, next checkbox index], or None for a list without tasks.
    lists: list[list[int] | None] = []
    for idx, token in enumerate(state.tokens):
        if token.type in ("th_open", "td_open"):
            # Alignment as a class: the sanitiser allows no style attributes.
            match = _ALIGN_RE.search(str(token.attrs.pop("style", "")))
            if match:
                token.attrSet("class", f"align-{match.group(1)}")
        elif token.type == "heading_open" and not nested and token.tag in ("h2", "h3") and token.attrGet("id"):
            ctx.toc.append(
                {"level": int(token.tag[1]), "id": token.attrGet("id"), "text": _heading_text(state.tokens[idx + 1])}
            )
        elif token.type in ("bullet_list_open", "ordered_list_open"):
            lists.append(None if nested else _checklist_start(token, ctx))
        elif token.type == "list_item_open" and nested:
            _task_item_disabled(token)
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif token.type == "container_callout_open":
            _quotation_mark(state.tokens, idx)
            if "unclosed" in token.meta:
                _report_unclosed(token, state.env)
        elif token.type == "table_open":
            _report_dropped_cells(state.tokens, idx, state.env)
        elif token.type == "paragraph_open" and "stopped_block" in token.meta:
            marker = token.meta["stopped_block"]
            ctx.problem(
                _file_line(state.env, token.map),
                f"a comment before `{marker}` on the same line stops the {_stopped_block(marker)}",
                "Put the comment on its own line.",
            )
        if token.type == "inline" and token.children:
            if nested:
                _checkboxes_disabled(token.children)
            elif lists and lists[-1] is not None:
                _checkbox_number(token.children, lists[-1])
            token.children = _process_inline(token.children, state.env, token.map)


def _checklist_start(token: Token, ctx: RenderContext) -> list[int] | None:
    """Number each task list in the document, so the page can keep a reader's ticks per list."""
    if "contains-task-list" not in str(token.attrGet("class") or ""):
        return None
    ctx.checklist_count += 1
    token.attrSet("data-checklist", str(ctx.checklist_count))
    return [ctx.checklist_count, 0]


_CHECKBOX_END = ' type="checkbox">'


def _checkbox_number(children: list[Token], checklist: list[int]) -> None:
    for child in children:
        # The tasklists plugin emits each checkbox as a ready-made HTML token.
        if child.type == "html_inline" and 'class="task-list-item-checkbox"' in child.content:
            child.content = child.content.replace(_CHECKBOX_END, f' type="checkbox" data-item="{checklist[1]}">')
            checklist[1] += 1


# A task list inside a quiz answer or explanation is shown, not kept: its boxes are disabled and unnumbered, so
# they are never a checklist of the reader's (and never share a number with one of the lesson's).
def _task_item_disabled(item: Token) -> None:
    classes = str(item.attrGet("class") or "").split()
    if "enabled" in classes:
        item.attrSet("class", " ".join(c for c in classes if c != "enabled"))


def _checkboxes_disabled(children: list[Token]) -> None:
    for child in children:
        if child.type == "html_inline" and 'class="task-list-item-checkbox"' in child.content:
            child.content = child.content.replace(_CHECKBOX_END, ' type="checkbox" disabled>')


def _quotation_mark(tokens: list[Token], idx: int) -> None:
    """For a pull quote or epigraph, turn a last paragraph starting with "— " into the attribution."""
    opening = tokens[idx]
    kind = opening.info.strip().partition(" ")[0].lower()
    close = next(
        i
        for i in range(idx + 1, len(tokens))
        if tokens[i].type == "container_callout_close" and tokens[i].level == opening.level
    )
    tokens[close].meta["kind"] = kind
    if kind not in FIGURE_KINDS or close - idx < 7:  # at least one paragraph of quotation before the attribution
        return
    para_open, inline, para_close = tokens[close - 3 : close]
    if (
        para_open.type != "paragraph_open"
        or para_open.level != opening.level + 1
        or not _ATTRIBUTION_RE.match(inline.content)
        or not inline.children
        or inline.children[0].type != "text"
    ):
        return
    para_open.type, para_close.type = "attribution_open", "attribution_close"
    inline.content = _ATTRIBUTION_RE.sub("", inline.content, count=1)
    inline.children[0].content = _ATTRIBUTION_RE.sub("", inline.children[0].content, count=1)
    tokens[close].meta["attributed"] = True


def _heading_text(inline: Token) -> str:
    parts = []
    for child in inline.children or []:
        if child.type == "link_open" and "header-anchor" in str(child.attrGet("class") or ""):
            # Label the permalink for screen readers; it is a bare "#" otherwise.
            child.attrSet("aria-label", f"Link to this section: {''.join(parts).strip()}")
            break
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
    return "".join(parts).strip()


def _process_inline(children: list[Token], env: dict, token_map: Sequence[int] | None) -> list[Token]:
    ctx: RenderContext = env["ctx"]
    out: list[Token] = []
    breaks = 0
    unwrap_next_close = False
    for child in children:
        if child.type in ("softbreak", "hardbreak"):
            breaks += 1
        elif child.type == "link_close" and unwrap_next_close:
            unwrap_next_close = False
            continue
        elif child.type == "link_open":
            href = str(child.attrGet("href") or "")
            if not _keep_link(child, href, ctx, _file_line(env, token_map, breaks)):
                unwrap_next_close = True
                continue
        elif child.type == "image":
            out.extend(_image(child, ctx, _file_line(env, token_map, breaks)))
            continue
        elif child.type == "html_comment_unclosed":
            ctx.problem(
                _file_line(env, token_map, breaks),
                "an HTML comment is not closed: `<!--` without `-->`",
                "End the comment with `-->`; a comment that starts inside a paragraph must end in the same "
                "paragraph. To show `<!--` as text, put it in backticks.",
            )
        out.append(child)
    return out


def _image(image: Token, ctx: RenderContext, line: int) -> list[Token]:
    src = str(image.attrGet("src") or "")
    if _SCHEME_RE.match(src) or src.startswith("//"):
        return _image_as_link(image)
    path = _relative_path(src)
    if path is None or ctx.asset_resolver is None:
        return [image]
    url = ctx.asset_resolver(path, image=True, line=line)
    if url is None:
        # The resolver has reported why; the reader gets the description instead of a broken image.
        return [Token("text", "", 0, content=_alt_text(image))]
    image.attrSet("src", url)
    image.attrSet("loading", "lazy")
    return [image]


def _alt_text(image: Token) -> str:
    return "".join(c.content for c in image.children or [] if c.type in ("text", "code_inline")) or image.content


def _image_as_link(image: Token) -> list[Token]:
    """A page never loads an asset from the network, so a remote image becomes a link the reader may follow."""
    src = str(image.attrGet("src") or "")
    alt = image.content or "image"
    link_open = Token("link_open", "a", 1, attrs={"href": src})
    text = Token("text", "", 0, content=f"Image: {alt}")
    scheme = _SCHEME_RE.match(src)
    if scheme and scheme.group(1).lower() in _EXTERNAL_SCHEMES:
        return [link_open, text, Token("link_close", "a", -1)]
    return [text]


def _relative_path(url: str) -> str | None:
    """The unquoted path of a relative URL, without #fragment or ?query; None when it is empty or absolute."""
    if _SCHEME_RE.match(url) or url.startswith("/"):
        return None
    return unquote(url.partition("#")[0].partition("?")[0]) or None


def _keep_link(link: Token, href: str, ctx: RenderContext, line: int) -> bool:
    """Resolve internal `.md` links and course files, drop links with unsafe schemes; False means text only."""
    scheme = _SCHEME_RE.match(href)
    if scheme:
        return scheme.group(1).lower() in _EXTERNAL_SCHEMES
    path, _, fragment = href.partition("#")
    if path.startswith("/"):
        return True
    if not path.endswith(".md"):
        return _keep_asset_link(link, href, ctx, line)
    target = unquote(href)
    ctx.links.append((target, line))
    if ctx.link_resolver is None:
        return True
    url = ctx.link_resolver(unquote(path))
    if url is None:
        ctx.problem(
            line,
            f"broken internal link: {target}",
            "The path is relative to this lesson file and must name a lesson of the course, e.g. ../unit-slug/02-lesson.md.",
        )
        return False
    link.attrSet("href", f"{url}#{fragment}" if fragment else url)
    return True


def _keep_asset_link(link: Token, href: str, ctx: RenderContext, line: int) -> bool:
    path = _relative_path(href)
    if path is None or ctx.asset_resolver is None:
        return True
    url = ctx.asset_resolver(path, image=False, line=line)
    if url is None:
        return False
    link.attrSet("href", url)
    return True


# --- HTML comments: hidden from readers (the parser runs with html=False, so they would show as text) ---------

_COMMENT_OPEN = "<!--"


def _comment_close(text: str, start: int) -> int:
    """Index just past the `-->` that closes a comment opened at `start`, or -1. `<!-->` is an empty comment."""
    end = text.find("-->", start + 2)
    return -1 if end == -1 else end + 3


# Block markers an author puts after a comment on the same line, and what the comment then stops.
_BLOCK_MARKER_RE = re.compile(r"^(#{1,6}(?=\s|$)|[-*+>](?=\s)|\d{1,9}[.)](?=\s))")


def _stopped_block(marker: str) -> str:
    if marker.startswith("#"):
        return "heading"
    if marker == ">":
        return "quotation"
    return "numbered list item" if marker[0].isdigit() else "list item"


def _comment_block(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    """A comment starting a line is dropped, however many lines (and blank lines) it spans."""
    if state.is_code_block(start_line):
        return False
    if not state.src.startswith(_COMMENT_OPEN, state.bMarks[start_line] + state.tShift[start_line]):
        return False
    for line in range(start_line, end_line):
        if line > start_line and state.sCount[line] < state.blkIndent:
            return False
        text = state.src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]]
        end = _comment_close(text, 0 if line == start_line else -2)
        if end != -1:
            break
    else:
        return False  # unclosed: the paragraph shows it and the inline rule reports it
    if silent:
        return True
    rest = text[end:].strip()
    if rest:
        # Text after `-->` on the closing line is a paragraph of its own: never a heading or list, since a block
        # marker must start its line (CommonMark), so the core rule tells the author.
        paragraph = state.push("paragraph_open", "p", 1)
        paragraph.map = [line, line + 1]
        marker = _BLOCK_MARKER_RE.match(rest)
        if marker:
            paragraph.meta["stopped_block"] = marker.group(1)
        inline = state.push("inline", "", 0)
        inline.content, inline.map, inline.children = rest, [line, line + 1], []
        state.push("paragraph_close", "p", -1)
    state.line = line + 1
    return True


def _comment_inline(state: StateInline, silent: bool) -> bool:
    if not state.src.startswith(_COMMENT_OPEN, state.pos):
        return False
    end = _comment_close(state.src, state.pos)
    if end == -1:
        if not silent:
            state.push("html_comment_unclosed", "", 0).content = _COMMENT_OPEN
        state.pos += len(_COMMENT_OPEN)
        return True
    state.pos = end
    return True


# --- math inside table cells ------------------------------------------------------------------------------------
# Table rows are split on unescaped `|` before inline parsing, so `$P(y|x)$` would split its cell. Before parsing,
# every `|` inside inline math on a table line gets one more backslash: the splitter takes exactly one back off,
# so the math reaches KaTeX as written (`|` stays `|`, the norm `\|` stays `\|`). Math is found by the same
# scanner the inline math rule uses, and code spans are skipped as the inline parser skips them.


def _escaped(text: str, pos: int) -> bool:
    """Whether the character at `pos` follows an odd number of backslashes."""
    return (pos - len(text[:pos].rstrip("\\"))) % 2 == 1


def _math_end(text: str, start: int, limit: int) -> int:
    """End of the inline math opened by the `$` at `start`, or -1. The dollarmath rules as configured below
    (no space inside the dollars, no digit outside them, `\\$` is a dollar), without the plugin's slip of
    looking at the last character of the text for the "digit before" of a `$` that starts it."""
    if start + 1 >= limit or text[start + 1].isspace() or (start > 0 and text[start - 1].isdigit()):
        return -1
    if _escaped(text, start):
        return -1
    double = text[start + 1] == "$"
    pos = start + 1 + double
    while True:
        close = text.find("$", pos, limit)
        if close == -1:
            return -1
        if _escaped(text, close) or (double and text[close + 1 : min(close + 2, limit)] != "$"):
            pos = close + 1
            continue
        break
    end = close + 1 + double
    body = text[start + 1 + double : close]
    if not body or (not double and text[close - 1].isspace()) or text[end : end + 1].isdigit():
        return -1
    return end


def _math_inline(state: StateInline, silent: bool) -> bool:
    if state.src[state.pos] != "$":
        return False
    end = _math_end(state.src, state.pos, state.posMax)
    if end == -1:
        return False
    if not silent:
        double = state.src.startswith("$$", state.pos)
        token = state.push("math_inline_double" if double else "math_inline", "math", 0)
        token.content = state.src[state.pos + 1 + double : end - 1 - double]
        token.markup = "$$" if double else "$"
    state.pos = end
    return True


def _code_span_end(text: str, start: int) -> int:
    """End of the code span opened by the backtick run at `start`: the next run of the same length closes it
    (CommonMark); without one the run is plain text and ends where it ends."""
    run = len(text) - start - len(text[start:].lstrip("`"))
    for closer in re.finditer(r"`+", text[start + run :]):
        if len(closer.group()) == run:
            return start + run + closer.end()
    return start + run


def _math_pipes_escaped(line: str) -> str:
    out: list[str] = []
    pos = 0
    while pos < len(line):
        char = line[pos]
        if char == "\\":
            end = pos + 2
        elif char == "`":
            end = _code_span_end(line, pos)  # code spans stay exactly as written
        elif char == "$" and (end := _math_end(line, pos, len(line))) != -1:
            out.append(line[pos:end].replace("|", "\\|"))
            pos = end
            continue
        else:
            end = pos + 1
        out.append(line[pos:end])
        pos = end
    return "".join(out)


def _table_math_escaped(source: str) -> tuple[str, frozenset[int]]:
    """The source with the pipes inside math escaped on table rows, and the (0-based) rows whose math then spans
    cells: `| $HOME/bin | PATH=$PATH:x |` is valid math by the inline rule, but the author meant two cells."""
    if "|" not in source or "$" not in source:
        return source, frozenset()
    lines = re.sub(r"\r\n?", "\n", source).split("\n")  # line ends as the parser normalises them
    escaped = [_math_pipes_escaped(line) if "$" in line else line for line in lines]
    if escaped == lines:
        return source, frozenset()
    # Which lines are table rows once the math pipes no longer split cells: parse the blocks to find out, so
    # fenced code and prose are never touched.
    tokens: list[Token] = []
    _MD.block.parse("\n".join(escaped), _MD, {}, tokens)
    merged: set[int] = set()
    columns = 0
    out = list(lines)
    for token in tokens:
        if token.type == "table_open" and token.map:
            columns = 0
            for line in range(*token.map):
                out[line] = escaped[line]
        elif token.type == "th_open":
            columns += 1
        elif token.type == "tr_open" and token.map and token.meta["cells"] < columns:
            # Fewer cells than the header is legal Markdown, so only a row the math shortened is reported.
            line = token.map[0]
            if _cells(lines[line][token.meta["indent"] :]) >= columns:
                merged.add(line)
    return "\n".join(out), frozenset(merged)


# --- silent losses the parser does not report: dropped table cells, unclosed containers ------------------------


def _cells(text: str) -> int:
    """How many cells the table rule reads in a row: it splits on every `|` without a backslash before it."""
    cells = escapedSplit(text.strip())
    return len(cells) - (cells[0] == "") - (len(cells) > 1 and cells[-1] == "")


def _counting_table(rule: Callable[..., bool]) -> Callable[..., bool]:
    """The table rule, noting on each row how many cells its line has: markdown-it drops cells past the header's."""

    def table(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        first = len(state.tokens)
        if not rule(state, start_line, end_line, silent):
            return False
        if silent:
            return True
        for token in state.tokens[first:]:
            if token.type == "tr_open" and token.map:
                line = token.map[0]
                start = state.bMarks[line] + state.tShift[line]
                token.meta["cells"] = _cells(state.src[start : state.eMarks[line]])
                # Where the row starts on its line, after any `>` or list indent: the same on the unescaped line.
                token.meta["indent"] = start - (state.src.rfind("\n", 0, start) + 1)
        return True

    return table


def _closing_container(rule: Callable[..., bool]) -> Callable[..., bool]:
    """The container rule, marking a container that found no closing `:::` (the plugin closes it silently at the
    end of the document or of the block around it)."""

    def container(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        first = len(state.tokens)
        if not rule(state, start_line, end_line, silent):
            return False
        if not silent:
            opening = state.tokens[first]
            # A closed container leaves the parser on the line after its closing fence.
            if opening.map and state.line == opening.map[1]:
                opening.meta["unclosed"] = "lesson" if state.level == 0 else "block"
        return True

    return container


def _wrap_block_rule(md: MarkdownIt, name: str, wrap: Callable[[Callable[..., bool]], Callable[..., bool]]) -> None:
    rule = next(r for r in md.block.ruler.__rules__ if r.name == name)
    md.block.ruler.at(name, wrap(rule.fn), {"alt": rule.alt})


_CELL_HINT = "A | inside text must be written \\|; math must touch its dollars: $|x|$ not $ |x| $."
_MERGED_HINT = (
    "Put shell variables and prices in backticks (`$HOME`) or escape a dollar as \\$; a | inside math is fine."
)
_FIGURE_NOUNS = {"pullquote": "pull quote", "epigraph": "epigraph"}


def _report_dropped_cells(tokens: list[Token], idx: int, env: dict) -> None:
    columns = 0
    for token in tokens[idx + 1 :]:
        if token.type == "th_open":
            columns += 1
        elif token.type == "tr_open" and token.map and token.meta.get("cells", 0) > columns > 0:
            env["ctx"].problem(
                _file_line(env, token.map),
                f"this row has {token.meta['cells']} cells but the header has {columns}; the extra cells are dropped",
                _CELL_HINT,
            )
        elif token.type == "tr_open" and token.map and token.map[0] in env.get("merged_rows", ()):
            env["ctx"].problem(
                _file_line(env, token.map),
                "math between $ signs spans several cells of this row, so they are merged",
                _MERGED_HINT,
            )
        elif token.type == "table_close":
            return


def _report_unclosed(token: Token, env: dict) -> None:
    kind = token.info.strip().partition(" ")[0].lower()
    noun = _FIGURE_NOUNS.get(kind, "callout")
    if token.meta["unclosed"] == "lesson":
        message = f"the {noun} opened here is never closed, so it holds the rest of the lesson"
        hint = f"Add a line with only `:::` where the {noun} ends."
    else:
        message = f"the {noun} opened here is never closed, so it holds the rest of the block around it"
        hint = (
            f"Add a line with only `:::` where the {noun} ends. To put a callout inside another, give the outer "
            "one more colons: `:::: tip` … `::::`."
        )
    env["ctx"].problem(_file_line(env, token.map), message, hint)


# --- raw HTML: shown as text (the parser runs with html=False), so the author is told -------------------------

# Elements an author plausibly types into a lesson, lower case only: `List<T>`, `Box<B>`, `<input>` or
# `<your-name>` in prose are placeholders and generics, not markup.
_HTML_ELEMENTS = frozenset(
    "a abbr b bdi bdo big blockquote br center cite code dd del details dfn div dl dt em figcaption figure font "
    "h1 h2 h3 h4 h5 h6 hr i iframe img ins kbd li mark ol p picture pre q s samp script small span strike "
    "strong style sub summary sup table tbody td tfoot th thead tr tt u ul video audio wbr".split()
)
_HTML_TAG_RE = re.compile(r"</?([a-z][a-z0-9]*)(?:\s[^<>]*)?/?>")
_HTML_HINT = (
    "Write Markdown instead: **bold**, *italic*, `Ctrl+C` in backticks, a blank line for a new paragraph; "
    "HTML comments are fine and are hidden."
)


def _report_html_tags(state: StateCore) -> None:
    """Runs before text_join, so an escaped `\\<b>` (its own token then) is text the author meant."""
    ctx: RenderContext = state.env["ctx"]
    for token in state.tokens:
        if token.type != "inline" or not token.children:
            continue
        breaks = 0
        for child in token.children:
            if child.type in ("softbreak", "hardbreak"):
                breaks += 1
            elif child.type == "text":
                tag = next((m for m in _HTML_TAG_RE.finditer(child.content) if m.group(1) in _HTML_ELEMENTS), None)
                line = _file_line(state.env, token.map, breaks)
                if tag and line not in ctx.html_tag_lines:
                    ctx.html_tag_lines.add(line)
                    ctx.problem(
                        line,
                        f"HTML tag <{tag.group(1)}> is shown to readers as text: raw HTML is not rendered",
                        _HTML_HINT,
                    )


# --- render rules ------------------------------------------------------------------------------------------


def _render_fence(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    token = tokens[idx]
    if is_runnable(token.info):
        nested = "fixed_line" in env
        return render_code_cell(token.info, token.content, _file_line(env, token.map), env["ctx"], nested=nested)
    language = language_of(token.info)
    block = RENDERERS.get(language)
    if block is not None and "fixed_line" in env:
        # Inside a quiz answer or explanation: a quiz there would count in the outer quiz's progress and marks.
        return refuse_nested_block(language, _file_line(env, token.map), env["ctx"])
    if block is not None:
        return block(token.content, _file_line(env, token.map), env["ctx"])
    return code_block_html(token.content, language)


def _render_code_block(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    return code_block_html(tokens[idx].content, "")


def _render_comment_unclosed(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    return escape(tokens[idx].content)


def _render_attribution(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    return "</blockquote><figcaption>" if tokens[idx].nesting == 1 else "</figcaption>\n"


def _render_math_inline(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    # The TeX stays text; KaTeX (vendored, courses/js/math.js) typesets it in the browser.
    return f'<span class="math math-inline">{escape(tokens[idx].content.strip())}</span>'


def _render_math_inline_double(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    # $$…$$ inside a paragraph: display style, but a <span> because a <div> cannot sit inside a <p>.
    return f'<span class="math math-display">{escape(tokens[idx].content.strip())}</span>'


def _render_math_block(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    return f'<div class="math math-display">{escape(tokens[idx].content.strip())}</div>\n'


def _validate_callout(params: str, *args: Any) -> bool:
    return bool(params.strip())


_TITLE_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)


def _title_without_comments(title: str, line: int, ctx: RenderContext) -> str:
    """A callout title with its HTML comments hidden, as everywhere else; a title that was only a comment is none."""
    if _COMMENT_OPEN not in title:
        return title
    title = " ".join(_TITLE_COMMENT_RE.sub(" ", title).split())
    if _COMMENT_OPEN in title:
        ctx.problem(
            line,
            "an HTML comment is not closed: `<!--` without `-->`",
            "End the comment with `-->` on the callout's opening line, or put it on a line of its own.",
        )
    return title


def _render_callout(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    token = tokens[idx]
    if token.nesting != 1:
        if token.meta.get("kind") not in FIGURE_KINDS:
            return "</aside>\n"
        return "</figure>\n" if token.meta.get("attributed") else "</blockquote></figure>\n"
    kind, _, title = token.info.strip().partition(" ")
    kind = kind.lower()
    title = _title_without_comments(title, _file_line(env, token.map), env["ctx"])
    if kind in FIGURE_KINDS:
        if title.strip():
            env["ctx"].problem(
                _file_line(env, token.map),
                f"`::: {kind}` takes no title, but has {title.strip()!r}",
                f'Write `::: {kind}` alone; put the attribution in a last paragraph starting with "— ".',
            )
        return f'<figure class="{kind}"><blockquote>\n'
    if kind not in CALLOUT_TITLES:
        env["ctx"].problem(
            _file_line(env, token.map),
            f"unknown callout kind {kind!r}",
            f"Use one of: {', '.join([*CALLOUT_TITLES, *FIGURE_KINDS])}, e.g. `::: tip Optional title`.",
        )
        kind = "note"
    title = title.strip() or CALLOUT_TITLES[kind]
    return f'<aside class="callout callout-{kind}" role="note"><p class="callout-title">{escape(title)}</p>\n'


def _build() -> MarkdownIt:
    md = (
        MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
        .enable(["table", "strikethrough"])
        .use(footnote_plugin)
        .use(tasklists_plugin, enabled=True, label=True)
        .use(deflist_plugin)
        # No space or digit next to the dollars, so "$5 and $10" stays prose.
        .use(dollarmath_plugin, allow_labels=False, allow_space=False, allow_digits=False, double_inline=True)
        .use(container_plugin, name="callout", validate=_validate_callout, render=_render_callout)
        .use(anchors_plugin, min_level=1, max_level=4, permalink=True, permalinkSymbol="#")
    )
    md.inline.ruler.at("math_inline", _math_inline)
    _wrap_block_rule(md, "table", _counting_table)
    _wrap_block_rule(md, "container_callout", _closing_container)
    md.block.ruler.before(
        "html_block", "html_comment", _comment_block, {"alt": ["paragraph", "reference", "blockquote"]}
    )
    md.inline.ruler.before("autolink", "html_comment", _comment_inline)
    md.core.ruler.before("text_join", "html_tags", _report_html_tags)
    md.core.ruler.push("shipshape_postprocess", _postprocess)
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("code_block", _render_code_block)
    md.add_render_rule("html_comment_unclosed", _render_comment_unclosed)
    md.add_render_rule("attribution_open", _render_attribution)
    md.add_render_rule("attribution_close", _render_attribution)
    md.add_render_rule("math_inline", _render_math_inline)
    md.add_render_rule("math_inline_double", _render_math_inline_double)
    md.add_render_rule("math_block", _render_math_block)
    return md


# Built once: constructing MarkdownIt and its plugins costs more than rendering a typical lesson.
_MD = _build()


class _PlainHtml(str):
    """HTML we produced by escaping plain text: already safe, so sanitising it again is skipped."""


# Text without these characters (and not starting like a block) renders to itself, escaped: quiz prompts and
# choices are mostly such text, and skipping a full parse for each one halves the time of a quiz-heavy lesson.
_INLINE_SYNTAX = re.compile(r"[\\`*_\[\]<&$~!\n]")
_BLOCK_START = re.compile(r"^(?:[#>+*=|:-]|\d+[.)]|\s)")


def _render_nested(text: str, line: int, ctx: RenderContext, *, block: bool) -> str:
    plain = text.strip()
    if not _INLINE_SYNTAX.search(plain) and not (block and _BLOCK_START.match(plain)):
        escaped = escape(plain, quote=False)
        return _PlainHtml(f"<p>{escaped}</p>\n" if block else escaped)
    env: dict[str, Any] = {"ctx": ctx, "fixed_line": line}
    if not block:
        return _MD.renderInline(text, env)
    text, env["merged_rows"] = _table_math_escaped(text)
    return _MD.render(text, env)


def _sanitize_fragment(html: str) -> str:
    return str(html) if isinstance(html, _PlainHtml) else sanitize(html)


def render_markdown(
    source: str,
    *,
    link_resolver: Callable[[str], str | None] | None = None,
    asset_resolver: Callable[..., str | None] | None = None,
    line_offset: int = 0,
) -> RenderResult:
    """Render a lesson body. `line_offset` is the number of file lines before `source` (the front matter),
    so problem lines point into the file. `link_resolver` maps a relative `.md` path (no #fragment) to a URL,
    or None when it names no lesson; without a resolver internal links are kept as written."""
    ctx = RenderContext(
        line_offset=line_offset,
        link_resolver=link_resolver,
        asset_resolver=asset_resolver,
        render_inline=lambda text, line: _render_nested(text, line, ctx, block=False),
        render_block=lambda text, line: _render_nested(text, line, ctx, block=True),
    )
    source, merged_rows = _table_math_escaped(source)
    env = {"ctx": ctx, "merged_rows": merged_rows}
    html = _MD.renderer.render(_MD.parse(source, env), _MD.options, env)
    for quiz in ctx.quizzes:
        for question in quiz["questions"]:
            question["prompt_html"] = _sanitize_fragment(question["prompt_html"])
            question["explanation_html"] = _sanitize_fragment(question["explanation_html"])
            if "answer_html" in question:
                question["answer_html"] = _sanitize_fragment(question["answer_html"])
            for choice in question["choices"]:
                choice["html"] = _sanitize_fragment(choice["html"])
    return RenderResult(
        html=sanitize(html),
        toc=ctx.toc,
        quizzes=ctx.quizzes,
        links=sorted(ctx.links, key=lambda link: link[1]),
        problems=sorted(ctx.problems, key=lambda problem: problem.line),
        code_cells=ctx.code_cells,
    )


def render_inline_markdown(
    text: str,
    *,
    line: int,
    link_resolver: Callable[[str], str | None] | None = None,
    asset_resolver: Callable[..., str | None] | None = None,
) -> RenderResult:
    """Render one line of author text (a front-matter field) as sanitised inline HTML: code, emphasis, links,
    math. Problems (a broken link) are reported at `line`, the field's line in the file."""
    ctx = RenderContext(
        line_offset=0,
        link_resolver=link_resolver,
        asset_resolver=asset_resolver,
        render_inline=lambda text, line: _render_nested(text, line, ctx, block=False),
        render_block=lambda text, line: _render_nested(text, line, ctx, block=True),
    )
    html = _sanitize_fragment(_render_nested(text, line, ctx, block=False))
    return RenderResult(html=html, toc=[], quizzes=[], links=list(ctx.links), problems=list(ctx.problems))
