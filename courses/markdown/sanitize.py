"""The last step of rendering: nh3 with an explicit allowlist of exactly what the renderer emits."""

import re

import nh3

from courses.markdown.blocks import CALLOUT_TITLES, FIGURE_KINDS
from courses.markdown.highlight import TOKEN_CLASSES

_TAGS = {
    "a", "aside", "blockquote", "br", "code", "dd", "details", "div", "dl", "dt", "em", "figcaption", "figure",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "img", "input", "label", "li", "ol", "p", "pre", "s", "section",
    "span", "strong", "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip

_ATTRIBUTES = {
    "*": {"id", "role", "aria-label", "aria-live"},
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},  # loading: only "lazy", see tag_attribute_values
    "input": {"checked", "disabled", "data-item"},  # type: only "checkbox", see tag_attribute_values
    "details": {"open", "data-question"},
    "ol": {"start", "data-checklist"},
    "ul": {"data-checklist"},
    "div": {"data-quiz-key", "data-code-cell"},
    "section": {"data-quiz-key"},
    "span": {"data-opened"},
}

_CLASSES = {
    "a": {"header-anchor", "footnote-backref"},
    "aside": {"callout", *(f"callout-{kind}" for kind in CALLOUT_TITLES)},
    "details": {"quiz-reveal"},
    "div": {
        "block-error", "code-block", "code-cell", "code-label", "compare", "graded-quiz-slot", "math", "math-display",
        "quiz-answer", "quiz-answer-text", "quiz-explanation", "quiz-header", "stages-diagram",
    },
    "figcaption": {"compare-label"},
    "figure": {"compare-side", "compare-left", "compare-right", *FIGURE_KINDS},
    "hr": {"footnotes-sep"},
    "input": {"task-list-item-checkbox"},
    "li": {
        "footnote-item", "quiz-choice", "quiz-question", "quiz-single", "quiz-multiple", "quiz-reveal-only", "stage",
        "task-list-item", "enabled",
    },
    "ol": {"footnotes-list", "quiz-choices", "quiz-questions", "stages", "contains-task-list"},
    "p": {
        "block-error-title", "callout-title", "code-cell-check", "compare-title", "quiz-correct", "quiz-kind", "quiz-progress",
        "quiz-prompt", "quiz-title", "stages-title",
    },
    "pre": {"highlight"},
    "section": {"footnotes", "quiz"},
    "span": {"math", "math-inline", "math-display", "stage-name", "stage-caption", *TOKEN_CLASSES},
    "sup": {"footnote-ref"},
    "td": {"align-left", "align-center", "align-right"},
    "th": {"align-left", "align-center", "align-right"},
    "ul": {"contains-task-list"},
}  # fmt: skip


# An attribute value holding `<` or `>`. The serialiser escapes only `&` and `"` in attribute values; text nodes
# never hold a raw `<`/`>`, so this can only match inside a tag.
_ANGLE_IN_ATTRIBUTE = re.compile(r'="[^"<>]*[<>][^"]*"')


def _escape_angles(match: re.Match[str]) -> str:
    return match.group(0).replace("<", "&lt;").replace(">", "&gt;")


def sanitize(html: str) -> str:
    """Keep only allowlisted tags, attributes, classes and http(s)/mailto/relative URLs; add rel to links.

    Author text that lands in an attribute (alt, title, aria-label) is inert either way, but `<` and `>` are
    escaped there too so the output never even reads like markup (`alt="&lt;script&gt;"`)."""
    clean = nh3.clean(
        html,
        tags=_TAGS,
        clean_content_tags={"script", "style"},
        attributes=_ATTRIBUTES,
        allowed_classes=_CLASSES,
        tag_attribute_values={
            "input": {"type": {"checkbox"}},
            "pre": {"tabindex": {"0"}},
            "img": {"loading": {"lazy"}},
        },
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
    return _ANGLE_IN_ATTRIBUTE.sub(_escape_angles, clean)
