"""Jupyter IOPub messages -> the output items of the code-cell contract (section 3).

Everything a kernel sends is learner data: the learner's code runs in the kernel and can send any message of any
shape. So nothing here trusts a key, a type or a size, nothing raises on a bad message (it is ignored), and every
item is capped by an `OutputBudget` that lasts one execution. Standard library only: this runs in the kernel
manager's IOPub loop, where Django, Redis and Docker have no business.

HTML is rebuilt, not filtered: `html_sanitise` tokenizes the input the way a browser does (roughly) and writes a
new document out of allowlisted elements, two checked attributes and escaped text. What the browser then parses
can hold nothing else, however our tokenizer and the browser's disagree about hostile input. It is a linear
scanner of its own rather than `html.parser`, whose Python 3.11.7 build here is quadratic on unclosed constructs
(40 KB of "<a a" took 10 s, 80 KB 44 s): a learner could stall the kernel manager with one display() call.
"""

from __future__ import annotations

import base64
import html as html_lib
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

MB = 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class OutputBudget:
    """What one execution has shown so far, against its caps. Create one per execution; not thread-safe.

    `cut` names the caps that were hit ("text", "image", "images", "html", "htmls", "items"): each one's notice
    has been emitted, once.
    """

    max_text_chars: int = 200_000  # stream + text + error, together
    max_image_bytes: int = 2 * MB  # one PNG, decoded
    max_images_bytes: int = 5 * MB  # all PNGs of the run, decoded
    max_html_chars: int = 100_000  # one HTML output, before and after sanitising
    max_htmls_chars: int = 500_000  # all HTML outputs of the run: 200 of 100,000 would be 20 MB in Redis
    max_items: int = 200  # items other than notices (at most one notice per cap)
    max_field_chars: int = 2_000  # an error's ename and evalue, each
    max_traceback_chars: int = 20_000  # one traceback; its head and tail are kept
    text_chars: int = 0
    image_bytes: int = 0
    html_chars: int = 0
    items: int = 0
    errors: int = 0
    cut: set[str] = field(default_factory=set)

    def notice(self, cap: str) -> list[dict[str, Any]]:
        """The cap's notice the first time it is hit, then nothing."""
        if cap in self.cut:
            return []
        self.cut.add(cap)
        return [{"type": "notice", "text": self._notice_text(cap)}]

    def _notice_text(self, cap: str) -> str:
        texts = {
            "text": f"Output cut: this run printed more than {self.max_text_chars:,} characters; "
            f"only the first {self.max_text_chars:,} are shown.",
            "image": f"Output cut: an image larger than {_mb(self.max_image_bytes)} was not shown.",
            "images": f"Output cut: this run's images passed {_mb(self.max_images_bytes)} in total; "
            "later images are not shown.",
            "html": f"Output cut: an HTML output was longer than {self.max_html_chars:,} characters "
            "and is not shown as HTML.",
            "htmls": f"Output cut: this run's HTML outputs passed {self.max_htmls_chars:,} characters in total; "
            "later ones are not shown as HTML.",
            "items": f"Output cut: this run produced more than {self.max_items:,} outputs; "
            f"only the first {self.max_items:,} are shown.",
        }
        return texts[cap]

    def add(self, item: dict[str, Any], notices: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.items >= self.max_items:
            return self.notice("items")
        self.items += 1
        return [item, *notices]

    def take_text(self, raw: str) -> tuple[str, list[dict[str, Any]]]:
        """`raw` cleaned and cut to what is left of the text cap, with the cap's notice when something was cut."""
        remaining = self.max_text_chars - self.text_chars
        if remaining <= 0:
            return "", self.notice("text")
        # Cleaned whole: ZeroMQ caps a message at 16 MB, which costs more to receive and parse than to clean, and
        # coloured output (rich, tqdm) can be mostly escape codes, so a slice of it could show too little.
        text = _clean(raw)
        if len(text) > remaining:
            self.text_chars = self.max_text_chars
            return text[:remaining], self.notice("text")
        self.text_chars += len(text)
        return text, []


def items_from_message(msg: dict, *, budget: OutputBudget) -> list[dict[str, Any]]:
    """The output items (contract section 3) for one IOPub message; [] for any message we do not show."""
    try:
        if not isinstance(msg, dict):
            return []
        msg_type, content = msg.get("msg_type"), msg.get("content")
        if not isinstance(msg_type, str) or not isinstance(content, dict):
            return []
        handler = _HANDLERS.get(msg_type)
        if handler is None or "items" in budget.cut:
            return []
        return handler(content, budget)
    except Exception:
        # A bug of ours must not end the execution's IOPub loop: this message is lost, and we hear about it.
        logger.exception("kernels.outputs could not convert a %s message", type(msg).__name__)
        return []


def _stream(content: dict, budget: OutputBudget) -> list[dict[str, Any]]:
    raw = _text(content.get("text"))
    if not raw:
        return []
    name = content.get("name")
    text, notices = budget.take_text(raw)
    if not text:
        return notices
    item = {"type": "stream", "name": name if name in ("stdout", "stderr") else "stdout", "text": text}
    return budget.add(item, notices)


def _display(content: dict, budget: OutputBudget) -> list[dict[str, Any]]:
    data = content.get("data")
    if not isinstance(data, dict):
        return []
    notices: list[dict[str, Any]] = []
    # Richest first; a representation we cannot show safely falls back to the next one.
    png = _text(data.get("image/png"))
    if png is not None:
        item = _image_item(png, budget, notices)
        if item is not None:
            return budget.add(item, notices)
    markup = _text(data.get("text/html"))
    if markup is not None:
        item = _html_item(markup, budget, notices)
        if item is not None:
            return budget.add(item, notices)
    plain = _text(data.get("text/plain"))
    if plain:
        text, cut = budget.take_text(plain)
        notices += cut
        if text:
            return budget.add({"type": "text", "text": text}, notices)
    return notices


def _image_item(value: str, budget: OutputBudget, notices: list[dict[str, Any]]) -> dict[str, Any] | None:
    if "images" in budget.cut:
        return None
    limit = 4 * math.ceil(budget.max_image_bytes / 3)  # base64 characters of the largest PNG we take
    # Line breaks are allowed (base64 is often wrapped); anything else outside the alphabet is refused.
    if len(value) > limit + limit // 16 + 4:
        notices += budget.notice("image")
        return None
    encoded = value.replace("\n", "").replace("\r", "")
    if len(encoded) > limit:
        notices += budget.notice("image")
        return None
    try:
        png = base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII characters
        return None
    if len(png) > budget.max_image_bytes:
        notices += budget.notice("image")
        return None
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        return None
    if budget.image_bytes + len(png) > budget.max_images_bytes:
        notices += budget.notice("images")
        return None
    budget.image_bytes += len(png)
    return {"type": "image", "mime": "image/png", "data": base64.b64encode(png).decode("ascii")}


def _html_item(markup: str, budget: OutputBudget, notices: list[dict[str, Any]]) -> dict[str, Any] | None:
    if "htmls" in budget.cut:
        return None
    # Measured before sanitising too, so a huge document costs nothing; escaping can make it longer, hence after.
    if len(markup) > budget.max_html_chars:
        notices += budget.notice("html")
        return None
    safe = html_sanitise(markup)
    if len(safe) > budget.max_html_chars:
        notices += budget.notice("html")
        return None
    if not safe.strip():  # nothing left (a lone <script>): the plain text says more
        return None
    if budget.html_chars + len(safe) > budget.max_htmls_chars:
        notices += budget.notice("htmls")
        return None
    budget.html_chars += len(safe)
    return {"type": "html", "html": safe}


def _error(content: dict, budget: OutputBudget) -> list[dict[str, Any]]:
    ename = _field(content.get("ename"), budget.max_field_chars)
    evalue = _field(content.get("evalue"), budget.max_field_chars)
    traceback = _traceback(content.get("traceback"), budget.max_traceback_chars)
    notices: list[dict[str, Any]] = []
    size = len(ename) + len(evalue) + len(traceback)
    first = budget.errors == 0
    budget.errors += 1
    if first:
        # Why the run failed is the output that matters most: the first error is shown even past the text cap
        # (it still counts, so what follows it may be cut). Later ones are learner output like any other.
        budget.text_chars += size
    else:
        remaining = budget.max_text_chars - budget.text_chars
        if remaining <= 0:
            return budget.notice("text")
        if size > remaining:
            traceback = traceback[: max(0, remaining - len(ename) - len(evalue))]
            budget.text_chars = budget.max_text_chars
            notices = budget.notice("text")
        else:
            budget.text_chars += size
    item = {"type": "error", "ename": ename, "evalue": evalue, "traceback": traceback}
    return budget.add(item, notices)


def _clear(content: dict, budget: OutputBudget) -> list[dict[str, Any]]:
    # Counted like any item: a loop of clear_output() calls must not fill the execution's list either.
    return budget.add({"type": "clear", "wait": content.get("wait") is True}, [])


_HANDLERS: dict[str, Callable[[dict, OutputBudget], list[dict[str, Any]]]] = {
    "stream": _stream,
    "execute_result": _display,
    "display_data": _display,
    "error": _error,
    "clear_output": _clear,
}


# ---- text ---------------------------------------------------------------------------------------------------

_ANSI = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]*+ [ -/]*+ [@-~]                                  # CSI: colours, cursor moves
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f]) [^\x07\x1b\x9c]*+ (?:\x07|\x1b\\|\x9c)  # OSC (links), DCS, SOS, PM, APC
    | \x1b [ -/]*+ [0-~]                                                     # the other escapes (and an unended OSC's opener)
    | [\x1b\x90\x98\x9b\x9d-\x9f]                                               # a lone ESC or C1 opener
    """,
    re.VERBOSE,
)
# C0 controls but tab, newline and carriage return (progress bars), DEL and C1: invisible, or boxes on screen.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # JSON carries lone surrogates; UTF-8 encoders refuse them


def _mb(size: int) -> str:
    return f"{size / MB:g} MB"


def ansi_strip(text: str) -> str:
    """`text` without terminal escape sequences (CSI, OSC, DCS and the rest, 7-bit and 8-bit forms)."""
    if not isinstance(text, str):
        return ""
    if "\x1b" not in text and text.isascii():
        return text
    return _ANSI.sub("", text)


def _clean(text: str) -> str:
    text = _CONTROL.sub("", ansi_strip(text))
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def _text(value: object) -> str | None:
    """A MIME bundle's text: a string, or a list of strings (nbformat's multi-line form); None otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(part for part in value if isinstance(part, str))
    return None


def _field(value: object, limit: int) -> str:
    raw = _text(value)
    if not raw:
        return ""
    text = _clean(raw[: 4 * limit])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _traceback(frames: object, limit: int) -> str:
    """The traceback's strings joined with newlines, cleaned; past `limit`, its start and its end around a marker.

    The end (the failing line and the exception) matters most, the start (the header) next.
    """
    if isinstance(frames, str):
        frames = [frames]
    strings = [frame for frame in frames if isinstance(frame, str)] if isinstance(frames, list) else []
    marker = f"\n… the middle of this traceback was cut: it is longer than {limit:,} characters …\n"
    head = max(0, (limit - len(marker)) // 4)
    tail = max(0, limit - len(marker) - head)
    if sum(map(len, strings)) + len(strings) <= 4 * limit:
        text = _clean("\n".join(strings))
        return text if len(text) <= limit else text[:head] + marker + text[len(text) - tail :]
    # Too long to clean whole: clean a generous slice of each end (escape codes rarely triple a frame's length).
    start = _clean(_edge(strings, 4 * head, from_end=False))[:head]
    end = _clean(_edge(strings, 4 * tail, from_end=True))
    return start + marker + end[len(end) - tail :]


def _edge(strings: list[str], size: int, *, from_end: bool) -> str:
    """The first (or last) `size` characters of the strings joined with newlines, without joining them all."""
    taken: list[str] = []
    left = size
    for string in reversed(strings) if from_end else strings:
        if left <= 0:
            break
        piece = string[max(0, len(string) - left) :] if from_end else string[:left]
        taken.append(piece)
        left -= len(piece) + 1
    return "\n".join(reversed(taken) if from_end else taken)


# ---- HTML ---------------------------------------------------------------------------------------------------

_ALLOWED = frozenset(
    "table thead tbody tfoot tr th td caption colgroup col p br b i em strong code pre span div ul ol li "
    "h1 h2 h3 h4 h5 h6 sub sup small hr dl dt dd".split()
)
_VOID = frozenset({"br", "col", "hr"})
# The lesson page owns h1-h3; output headings stay below them in the outline (and h4 stays h4 on a second pass).
_RENAMED = {"h1": "h4", "h2": "h4", "h3": "h4"}
# Elements dropped with everything inside them. The raw-text ones end at their own end tag whatever comes between.
_RAW_TEXT = frozenset({"script", "style", "iframe", "noscript", "textarea", "title", "xmp", "noembed", "noframes"})
_DROPPED = _RAW_TEXT | {"object", "embed", "template", "svg", "math"}
_DROPPED_VOID = frozenset({"embed"})
_SELF_CLOSING = frozenset({"svg", "math"})  # "/>" ends these (foreign elements) but not the HTML ones
# An open element the new start tag closes first, as the browser would (li after li, a row after a cell...).
_BLOCKS = frozenset("table ul ol dl pre div p hr h1 h2 h3 h4 h5 h6".split())
_CLOSES: dict[str, frozenset[str]] = {
    "li": frozenset({"li"}),
    "dt": frozenset({"dt", "dd"}),
    "dd": frozenset({"dt", "dd"}),
    "td": frozenset({"td", "th"}),
    "th": frozenset({"td", "th"}),
    "tr": frozenset({"td", "th", "tr"}),
    **dict.fromkeys(("thead", "tbody", "tfoot"), frozenset({"td", "th", "tr", "thead", "tbody", "tfoot"})),
    **dict.fromkeys(_BLOCKS, frozenset({"p"})),
}
_MAX_DEPTH = 100
_MAX_CLASSES = 16

_WS = "\t\n\f\r "
_MARKUP = re.compile(r"<[A-Za-z!?/]")
_TAG_NAME = re.compile(rf"[A-Za-z][^{_WS}/>]*+")
_ATTRIBUTE = re.compile(
    rf"""
    (?P<gap>[{_WS}/]*+)
    (?: (?P<end>>)
      | (?P<name>[^{_WS}/>][^{_WS}/>=]*+)
        (?: [{_WS}]*+ = [{_WS}]*+
            (?: "(?P<dq>[^"]*+)(?P<dq_end>"?) | '(?P<sq>[^']*+)(?P<sq_end>'?) | (?P<bare>[^{_WS}>]*+) )
        )?
    )?
    """,
    re.VERBOSE,
)
_COMMENT_END = re.compile(r"--!?>")
_CLASS_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SPAN = re.compile(r"[0-9]{1,4}")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_RAW_TEXT_END = {name: re.compile(rf"</{name}(?=[{_WS}/>])", re.IGNORECASE | re.ASCII) for name in _RAW_TEXT}


def html_sanitise(html: str) -> str:
    """`html` rebuilt from allowlisted elements, their checked class/colspan/rowspan attributes and escaped text.

    Well-formed: every element is closed, stray end tags are dropped. Scripts, styles, frames, SVG, MathML and
    the like are dropped with their content; other unknown elements are dropped but their text is kept.
    Comments, doctypes, processing instructions and CDATA are dropped. Linear in the input's length.
    """
    if not isinstance(html, str):
        return ""
    return _Rebuilder(html).run()


class _Rebuilder:
    def __init__(self, source: str) -> None:
        self.src = source
        self.out: list[str] = []
        self.open: list[str] = []  # the source names of the elements open in the output
        self.too_deep: dict[str, int] = {}  # start tags dropped past _MAX_DEPTH, whose end tags are dropped too
        self.skip: tuple[str, int] | None = None  # inside a dropped element: its name, and how deeply nested

    def run(self) -> str:
        src, n, pos = self.src, len(self.src), 0
        while pos < n:
            found = _MARKUP.search(src, pos)
            if found is None:
                self.text(src[pos:])
                break
            if found.start() > pos:
                self.text(src[pos : found.start()])
            pos = found.start()
            kind = src[pos + 1]
            if kind == "!" and src.startswith("<!--", pos):
                pos = self.comment_end(pos)
            elif kind in "!?":  # doctype, CDATA, processing instruction: a bogus comment up to ">"
                pos = _after(src, ">", pos + 2)
            elif kind == "/":
                if pos + 2 >= n:  # "</" at the very end is text
                    self.text(src[pos:])
                    break
                if src[pos + 2] == ">":  # "</>" is nothing
                    pos += 3
                elif src[pos + 2].isascii() and src[pos + 2].isalpha():
                    pos = self.tag(pos + 2, end=True)
                else:
                    pos = _after(src, ">", pos + 2)
            else:
                pos = self.tag(pos + 1, end=False)
        while self.open:
            self.close_top()
        return "".join(self.out)

    def comment_end(self, pos: int) -> int:
        src = self.src
        if src.startswith(">", pos + 4):  # "<!-->"
            return pos + 5
        if src.startswith("->", pos + 4):  # "<!--->"
            return pos + 6
        found = _COMMENT_END.search(src, pos + 4)
        return found.end() if found else len(src)

    def tag(self, pos: int, *, end: bool) -> int:
        """Reads the tag whose name starts at `pos`, acts on it, and returns where the tag ends."""
        src, n = self.src, len(self.src)
        name_match = _TAG_NAME.match(src, pos)
        name = name_match.group().translate(_ASCII_LOWER)
        pos = name_match.end()
        attributes: dict[str, str] = {}
        while True:
            found = _ATTRIBUTE.match(src, pos)
            if found.group("end"):
                self_closing = found.group("gap").endswith("/")
                pos = found.end()
                break
            if found.group("name") is None or found.group("dq_end") == "" or found.group("sq_end") == "":
                return n  # the input ends inside the tag: like a browser, drop the tag and the rest
            key = found.group("name").translate(_ASCII_LOWER)
            value = found.group("dq") if found.group("dq") is not None else found.group("sq")
            if value is None:
                value = found.group("bare") or ""
            attributes.setdefault(key, value)  # the first of duplicates wins, as in browsers
            pos = found.end()
        if end:
            self.end_tag(name)
        else:
            self.start_tag(name, attributes, self_closing=self_closing)
            if name in _RAW_TEXT:
                pos = self.raw_text_end(name, pos)
        return pos

    def raw_text_end(self, name: str, pos: int) -> int:
        found = _RAW_TEXT_END[name].search(self.src, pos)
        if found is None:
            return len(self.src)
        return self.tag(found.start() + 2, end=True)

    def start_tag(self, name: str, attributes: dict[str, str], *, self_closing: bool) -> None:
        if self.skip is not None:
            skipped, depth = self.skip
            if name == skipped and not (self_closing and name in _SELF_CLOSING):
                self.skip = (skipped, depth + 1)
            return
        if name in _DROPPED:
            if name in _RAW_TEXT:  # its content is skipped by raw_text_end, and its end tag with it
                return
            if name not in _DROPPED_VOID and not (self_closing and name in _SELF_CLOSING):
                self.skip = (name, 1)
            return
        if name not in _ALLOWED:
            return
        closes = _CLOSES.get(name)
        while closes and self.open and self.open[-1] in closes:
            self.close_top()
        if name not in _VOID and len(self.open) >= _MAX_DEPTH:
            self.too_deep[name] = self.too_deep.get(name, 0) + 1
            return
        self.out.append(f"<{_RENAMED.get(name, name)}{_attributes(name, attributes)}>")
        if name not in _VOID:
            self.open.append(name)

    def end_tag(self, name: str) -> None:
        if self.skip is not None:
            skipped, depth = self.skip
            if name == skipped:
                self.skip = (skipped, depth - 1) if depth > 1 else None
            return
        if name not in _ALLOWED or name in _VOID:
            return
        if self.too_deep.get(name):
            self.too_deep[name] -= 1
            return
        if name in self.open:
            while self.open[-1] != name:
                self.close_top()
            self.close_top()

    def close_top(self) -> None:
        name = self.open.pop()
        self.out.append(f"</{_RENAMED.get(name, name)}>")

    def text(self, raw: str) -> None:
        if self.skip is None and raw:
            text = _CONTROL.sub("", html_lib.unescape(raw))
            if not text.isascii():
                text = _SURROGATE.sub("\ufffd", text)
            self.out.append(html_lib.escape(text, quote=False))


def _after(src: str, needle: str, pos: int) -> int:
    found = src.find(needle, pos)
    return len(src) if found < 0 else found + len(needle)


def _attributes(name: str, attributes: dict[str, str]) -> str:
    kept = []
    classes = []
    for token in re.split(f"[{_WS}]+", html_lib.unescape(attributes.get("class", ""))):
        if _CLASS_TOKEN.fullmatch(token) and token not in classes and len(classes) < _MAX_CLASSES:
            classes.append(token)
    if classes:
        kept.append(f' class="{" ".join(classes)}"')
    if name in ("td", "th"):
        for key in ("colspan", "rowspan"):
            value = html_lib.unescape(attributes.get(key, ""))
            if _SPAN.fullmatch(value) and 1 <= int(value) <= 1000:
                kept.append(f' {key}="{int(value)}"')
    return "".join(kept)
