"""Lesson Markdown rendering: `render_markdown(source, link_resolver=..., asset_resolver=..., line_offset=...)`."""

from courses.markdown.blocks import MarkdownProblem, graded_quiz_placeholder
from courses.markdown.render import (
    CALLOUT_TITLES,
    RENDERER_VERSION,
    RenderResult,
    render_inline_markdown,
    render_markdown,
)

__all__ = [
    "CALLOUT_TITLES",
    "RENDERER_VERSION",
    "MarkdownProblem",
    "RenderResult",
    "graded_quiz_placeholder",
    "render_inline_markdown",
    "render_markdown",
]
