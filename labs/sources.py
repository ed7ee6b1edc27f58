"""A revision's submitted files as pages show them: read from content-addressed storage (only paths in the
revision's manifest, never outside its tree), sniffed for binary, highlighted line by line with Pygments (escaped),
with line comments attached. Used by the review page, the learner's revision page and diffs."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygments
from django.core.cache import cache
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_for_filename
from pygments.lexers.special import TextLexer
from pygments.util import ClassNotFound

from labs import storage
from labs.errors import PlatformError
from labs.models import Revision

logger = logging.getLogger(__name__)

# What one review page shows: bigger files are listed with their size only, so one page stays readable and fast
# (Pygments highlights roughly 250 KB of Python a second on one core).
MAX_SHOWN_FILE_BYTES = 128 * 1024
MAX_SHOWN_TOTAL_BYTES = 512 * 1024
BINARY_SNIFF_BYTES = 8192
# Stored files never change (content-addressed), so highlighted lines are cached by the file's sha256.
HIGHLIGHT_CACHE_SECONDS = 24 * 3600
HIGHLIGHT_CACHE_VERSION = f"v1-{pygments.__version__}"


# --- files ----------------------------------------------------------------------------------------------


@dataclass
class SourceLine:
    number: int
    html: SafeString
    comments: list[dict[str, Any]] = field(default_factory=list)
    comment_form: bool = False  # the no-JavaScript line comment form opens under this line (?comment=path:line)


@dataclass
class SourceFile:
    path: str
    size: int
    kind: str  # "text" | "binary" | "too_large" | "over_page_budget" | "missing"
    anchor: str
    lines: list[SourceLine] = field(default_factory=list)
    line_count: int | None = None
    comments_elsewhere: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_shown(self) -> bool:
        return self.kind == "text"


def revision_paths(*, revision: Revision) -> list[str]:
    """The revision's file paths, from its stored manifest (the database copy of manifest.json)."""
    return [str(f.get("path")) for f in revision.files or [] if f.get("path")]


def revision_file_read(*, revision: Revision, path: str, max_bytes: int) -> bytes | None:
    """Up to `max_bytes` + 1 bytes of one submitted file (so callers can tell it is longer), or None when the
    revision has no such file or storage has lost it. Only paths listed in the revision's manifest are read,
    and the resolved file must stay inside the revision's tree. The file is checked against the manifest's
    sha256: a missing or changed local copy is written again from the database (labs.blobs)."""
    entry = next((f for f in revision.files or [] if f.get("path") == path), None)
    if entry is None:
        return None
    try:
        files_root = storage.tree_files_dir(tree_sha256=revision.tree_sha256)
    except PlatformError:
        logger.error("revision %s has a malformed tree digest %r", revision.pk, revision.tree_sha256)
        return None
    data = _stored_file_read(revision, files_root, path)
    if not _matches(entry, data):
        try:
            files_root = storage.tree_materialize(tree_sha256=revision.tree_sha256)
        except (PlatformError, OSError) as exc:  # OSError: this host's cache cannot be written (disk full, modes)
            logger.error("revision %s: its stored files cannot be read: %s", revision.pk, exc)
            return None
        data = _stored_file_read(revision, files_root, path)
        if not _matches(entry, data):
            logger.error("revision %s: stored file %r does not match its manifest", revision.pk, path)
            return None
    return data[: max_bytes + 1]


def _matches(entry: dict, data: bytes | None) -> bool:
    """The file was read and is what the revision's manifest says (when it names a sha256)."""
    return data is not None and not (entry.get("sha256") and hashlib.sha256(data).hexdigest() != entry["sha256"])


def _stored_file_read(revision: Revision, files_root: Path, path: str) -> bytes | None:
    # Whole files, to check their sha256: a submitted file is at most the lab's max_file_bytes.
    files_root = files_root.resolve()
    target = (files_root / path).resolve()
    if not target.is_relative_to(files_root) or target == files_root:
        logger.error("revision %s: manifest path %r resolves outside its tree", revision.pk, path)
        return None
    try:
        return target.read_bytes()
    except OSError:
        return None


def text_of(data: bytes) -> str | None:
    """The file as text with newlines normalised, or None if it looks binary (NUL bytes, or not UTF-8)."""
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Pygments normalises \r\n and lone \r too; doing it first keeps our line numbers equal to its lines.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def line_count_of(text: str) -> int:
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def revision_file_line_count(*, revision: Revision, path: str, max_bytes: int) -> int | None:
    """How many lines a submitted text file has; None for a missing or binary file."""
    data = revision_file_read(revision=revision, path=path, max_bytes=max_bytes)
    if data is None:
        return None
    if len(data) > max_bytes:
        # Cut at the budget, and back off to a whole UTF-8 character so the cut is not mistaken for binary.
        data = data[:max_bytes]
        while data and (data[-1] & 0xC0) == 0x80:
            data = data[:-1]
        if data and data[-1] >= 0xC0:
            data = data[:-1]
    text = text_of(data)
    return None if text is None else line_count_of(text)


def highlighted_lines(*, path: str, text: str, sha256: str = "") -> list[SafeString]:
    """One HTML string per line. Pygments escapes every token; its spans never cross a line end. Pass the
    file's sha256 (only when `text` is the whole file) to cache the result."""
    lexer = _lexer_for(path)
    key = f"review-hl:{HIGHLIGHT_CACHE_VERSION}:{sha256}:{type(lexer).__name__}" if sha256 else ""
    lines = cache.get(key) if key else None
    if lines is None:
        lines = _highlight(lexer=lexer, text=text)
        if key:
            cache.set(key, lines, HIGHLIGHT_CACHE_SECONDS)
    return [mark_safe(line) for line in lines]  # noqa: S308 - produced by Pygments or escape(), both escaped


def _lexer_for(path: str) -> Lexer:
    try:
        return get_lexer_for_filename(path, stripnl=False, ensurenl=True)
    except ClassNotFound:
        return TextLexer(stripnl=False, ensurenl=True)


def _highlight(*, lexer: Lexer, text: str) -> list[str]:
    expected = line_count_of(text)
    lines = highlight(text, lexer, HtmlFormatter(nowrap=True)).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != expected:
        # Never show code against the wrong line numbers: fall back to plain escaped text.
        lines = [escape(line) for line in text.split("\n")[:expected]]
    return [str(line) for line in lines]


def revision_source(*, revision: Revision, file_comments: list[dict[str, Any]] = ()) -> list[SourceFile]:
    """Every submitted file for the review page, text files highlighted with line numbers and the given line
    comments attached to their lines. Binary, oversized and over-budget files are listed with their size."""
    by_line: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for comment in file_comments:
        by_line.setdefault((comment["path"], int(comment["line"])), []).append(comment)
    budget = MAX_SHOWN_TOTAL_BYTES
    files: list[SourceFile] = []
    for index, entry in enumerate(revision.files or []):
        path, size, sha256 = str(entry.get("path")), int(entry.get("size") or 0), str(entry.get("sha256") or "")
        source = SourceFile(path=path, size=size, kind="text", anchor=f"file-{index + 1}")
        files.append(source)
        if size > MAX_SHOWN_FILE_BYTES:
            source.kind = "too_large"
        elif size > budget:
            source.kind = "over_page_budget"
        if source.kind != "text":
            source.comments_elsewhere = [c for (p, _n), cs in by_line.items() if p == path for c in cs]
            continue
        data = revision_file_read(revision=revision, path=path, max_bytes=MAX_SHOWN_FILE_BYTES)
        if data is None:
            source.kind = "missing"
            continue
        text = text_of(data[:MAX_SHOWN_FILE_BYTES])
        if text is None:
            source.kind = "binary"
            continue
        budget -= len(data)
        source.line_count = line_count_of(text)
        source.lines = [
            SourceLine(number=n, html=html, comments=by_line.get((path, n), []))
            for n, html in enumerate(highlighted_lines(path=path, text=text, sha256=sha256), start=1)
        ]
    return files
