"""Turn bytes a submission printed into text that is safe to store and show.

Anything a submission prints is data: decoded as UTF-8 with replacement, NUL bytes dropped (PostgreSQL
rejects them), terminal escape sequences and other control characters removed (they could rewrite a
terminal or hide text in a log view), and the result capped.
"""

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), other two-byte ESC sequences, and C1 CSI (\x9b).
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]" r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?" r"|\x1b[@-Z\\-_]" r"|\x9b[0-?]*[ -/]*[@-~]"
)
# Control characters except tab and newline (carriage returns become newlines first).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

TRUNCATION_NOTE = "\n[output truncated: {shown} of {total} bytes shown]"


def clean_output(data: bytes | str, *, limit: int = 64 * 1024) -> str:
    """Printable text from untrusted output, at most `limit` characters (plus a truncation note)."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ESCAPES.sub("", text)
    text = _CONTROLS.sub("", text)
    if len(text) > limit:
        return text[:limit] + TRUNCATION_NOTE.format(shown=limit, total=len(text))
    return text
