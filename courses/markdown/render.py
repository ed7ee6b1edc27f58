"""Lesson Markdown → sanitised HTML, table of contents, quizzes, internal links and problems."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.container import container_plugin
from mdit_py_plugins.deflist import deflist_plugin
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.footnote import footnote_plugin
from mdit_py_plugins.tasklists import tasklists_plugin

from courses.markdown.blocks import RENDERERS, MarkdownProblem, RenderContext
from courses.markdown.highlight import code_block_html, language_of
from courses.markdown.sanitize import sanitize

# Bump whenever the HTML for the same source changes: the importer keys its render cache on it.
RENDERER_VERSION = "3"

CALLOUT_TITLES = {"tip": "Tip", "note": "Note", "warning": "Warning", "failure-modes": "Common failure modes"}

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


def _file_line(env: dict, token_map: Sequence[int] | None, extra: int = 0) -> int:
    """1-based line in the lesson file; nested renders (quiz prompts, explanations) report their YAML line."""
    if "fixed_line" in env:
        return env["fixed_line"]
    ctx: RenderContext = env["ctx"]
    return (token_map[0] if token_map else 0) + 1 + ctx.line_offset + extra


# --- core rule: links, toc, table alignment ----------------------------------------------------------------


def _postprocess(state: StateCore) -> None:
    ctx: RenderContext = state.env["ctx"]
    nested = "fixed_line" in state.env
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
        if token.type == "inline" and token.children:
            token.children = _process_links(token.children, state.env, token.map)


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


def _process_links(children: list[Token], env: dict, token_map: Sequence[int] | None) -> list[Token]:
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
        elif child.type == "image" and _SCHEME_RE.match(str(child.attrGet("src") or "")):
            out.extend(_image_as_link(child))
            continue
        out.append(child)
    return out


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


def _keep_link(link: Token, href: str, ctx: RenderContext, line: int) -> bool:
    """Resolve internal `.md` links, drop links with unsafe schemes; False means render the text only."""
    scheme = _SCHEME_RE.match(href)
    if scheme:
        return scheme.group(1).lower() in _EXTERNAL_SCHEMES
    path, _, fragment = href.partition("#")
    if not path.endswith(".md") or path.startswith("/"):
        return True
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


# --- render rules ------------------------------------------------------------------------------------------


def _render_fence(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    token = tokens[idx]
    language = language_of(token.info)
    block = RENDERERS.get(language)
    if block is not None:
        return block(token.content, _file_line(env, token.map), env["ctx"])
    return code_block_html(token.content, language)


def _render_code_block(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    return code_block_html(tokens[idx].content, "")


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


def _render_callout(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: dict) -> str:
    token = tokens[idx]
    if token.nesting != 1:
        return "</aside>\n"
    kind, _, title = token.info.strip().partition(" ")
    kind = kind.lower()
    if kind not in CALLOUT_TITLES:
        env["ctx"].problem(
            _file_line(env, token.map),
            f"unknown callout kind {kind!r}",
            f"Use one of: {', '.join(CALLOUT_TITLES)}, e.g. `::: tip Optional title`.",
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
    md.core.ruler.push("shipshape_postprocess", _postprocess)
    md.add_render_rule("fence", _render_fence)
    md.add_render_rule("code_block", _render_code_block)
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
    env = {"ctx": ctx, "fixed_line": line}
    return _MD.render(text, env) if block else _MD.renderInline(text, env)


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
    env = {"ctx": ctx}
    html = _MD.renderer.render(_MD.parse(source, env), _MD.options, env)
    for quiz in ctx.quizzes:
        for question in quiz["questions"]:
            question["prompt_html"] = _sanitize_fragment(question["prompt_html"])
            question["explanation_html"] = _sanitize_fragment(question["explanation_html"])
            for choice in question["choices"]:
                choice["html"] = _sanitize_fragment(choice["html"])
    return RenderResult(
        html=sanitize(html),
        toc=ctx.toc,
        quizzes=ctx.quizzes,
        links=sorted(ctx.links, key=lambda link: link[1]),
        problems=sorted(ctx.problems, key=lambda problem: problem.line),
    )
