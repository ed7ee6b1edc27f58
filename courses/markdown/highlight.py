"""Fenced code highlighting with Pygments: CSS classes only (styled by content.css), no inline styles."""

from functools import lru_cache
from html import escape

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

# nowrap: we write the <pre>/<code> wrapper ourselves so the sanitiser allowlist stays small.
_FORMATTER = HtmlFormatter(nowrap=True)

# Every class the formatter can put on a <span>; the sanitiser keeps exactly these.
TOKEN_CLASSES: frozenset[str] = frozenset(c for c in STANDARD_TYPES.values() if c)

# Fence names authors use for plain text. Most are unknown to Pygments ("output" it knows, as program output);
# all are shown as plain escaped text under their name, never reported as an unknown language.
PLAIN_TEXT: frozenset[str] = frozenset(
    {"text", "txt", "plaintext", "plain", "none", "nohighlight", "log", "output", "csv", "tsv", "env", "dotenv"}
)


@lru_cache(maxsize=256)
def _lexer(language: str) -> Lexer | None:
    # Lexer lookup walks the plugin registry, which is slow; lessons reuse a handful of languages.
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def is_known_language(language: str) -> bool:
    """A fence name shown as code: a plain-text name or a language Pygments highlights."""
    return language in PLAIN_TEXT or _lexer(language) is not None


def language_of(info: str) -> str:
    """The language named by a fence info string (its first word), lower-cased; "" when none."""
    return info.strip().split(maxsplit=1)[0].lower() if info.strip() else ""


def code_html(code: str, language: str) -> str:
    """Highlighted code as `<pre class="highlight"><code>…</code></pre>`; unknown languages are plain escaped text."""
    lexer = _lexer(language) if language and language not in PLAIN_TEXT else None
    body = highlight(code, lexer, _FORMATTER) if lexer is not None else escape(code, quote=False)
    if body.endswith("\n"):
        body = body[:-1]
    # tabindex: a horizontally scrolling block must be reachable by keyboard.
    return f'<pre class="highlight" tabindex="0"><code>{body}</code></pre>'


def code_block_html(code: str, language: str, *, label: str | None = None) -> str:
    """A code block with its language (or the given label) shown above it."""
    shown = label if label is not None else language
    head = f'<div class="code-label">{escape(shown)}</div>' if shown else ""
    return f'<div class="code-block">{head}{code_html(code, language)}</div>\n'
