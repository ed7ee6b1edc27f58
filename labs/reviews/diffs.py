"""Diffs between two revisions of one learner's work, file by file, for the review page and the learner's pages.

Files are read through the review selectors (manifest paths only, same size caps); unchanged files are told
apart by their manifest sha256 without reading them. Notebooks are diffed cell by cell ("# cell 3 [code]" and
the cell's source; outputs ignored), falling back to a text diff when either side does not parse. Every line's
HTML is escaped: by Pygments, or by escape().
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from labs.models import Revision
from labs.sources import (
    MAX_SHOWN_FILE_BYTES,
    MAX_SHOWN_TOTAL_BYTES,
    highlighted_lines,
    line_count_of,
    revision_file_read,
    text_of,
)


@dataclass
class DiffLine:
    kind: str  # "context" | "add" | "delete" | "skip" (a "… N unchanged lines" gap)
    old_number: int | None
    new_number: int | None
    html: SafeString


@dataclass
class FileDiff:
    path: str
    status: str  # "added" | "deleted" | "modified" | "unchanged" | "binary" | "too_large"
    lines: list[DiffLine] = field(default_factory=list)
    is_notebook: bool = False
    anchor: str = ""

    @property
    def added(self) -> int:
        return sum(1 for line in self.lines if line.kind == "add")

    @property
    def deleted(self) -> int:
        return sum(1 for line in self.lines if line.kind == "delete")


def diff_anchor(path: str) -> str:
    """A stable id for a file's diff: the same path gets the same anchor on every page."""
    return "diff-" + hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def revisions_diff(*, old: Revision, new: Revision, context: int = 3) -> list[FileDiff]:
    """Every file of `old` and `new`: the new revision's files in its order, then the files it deleted."""
    old_entries = _entries(old)
    new_entries = _entries(new)
    paths = list(new_entries) + [path for path in old_entries if path not in new_entries]
    budget = MAX_SHOWN_TOTAL_BYTES
    diffs: list[FileDiff] = []
    for path in paths:
        before, after = old_entries.get(path), new_entries.get(path)
        diff = FileDiff(path=path, status="modified", is_notebook=path.lower().endswith(".ipynb"))
        diff.anchor = diff_anchor(path)
        diffs.append(diff)
        if before and after and before["sha256"] and before["sha256"] == after["sha256"]:
            diff.status = "unchanged"
            continue
        sizes = [entry["size"] for entry in (before, after) if entry]
        if max(sizes) > MAX_SHOWN_FILE_BYTES or sum(sizes) > budget:
            diff.status = "too_large"
            continue
        budget -= sum(sizes)
        old_text = _text(old, path) if before else ""
        new_text = _text(new, path) if after else ""
        digests = (before["sha256"] if before else "", after["sha256"] if after else "")
        if old_text is None or new_text is None:
            diff.status = "binary"
            continue
        diff.status = "added" if before is None else "deleted" if after is None else "modified"
        old_lines, new_lines, diff.is_notebook = _comparable(
            path, old_text, new_text, is_notebook=diff.is_notebook, digests=digests
        )
        diff.lines = _diff_lines(old_lines, new_lines, context=context)
        if diff.status == "modified" and not any(line.kind in ("add", "delete") for line in diff.lines):
            # Same cells with different outputs, or only line endings changed: nothing a reviewer reads differs.
            diff.status, diff.lines = "unchanged", []
    return diffs


def _entries(revision: Revision) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for entry in revision.files or []:
        path = str(entry.get("path") or "")
        if path:
            entries[path] = {"size": int(entry.get("size") or 0), "sha256": str(entry.get("sha256") or "")}
    return entries


def _text(revision: Revision, path: str) -> str | None:
    data = revision_file_read(revision=revision, path=path, max_bytes=MAX_SHOWN_FILE_BYTES)
    if data is None or len(data) > MAX_SHOWN_FILE_BYTES:
        return None
    return text_of(data)


def notebook_text(text: str) -> str | None:
    """A notebook as text blocks, one per cell ("# cell 3 [code]", then its source); None if it is not one."""
    try:
        notebook = json.loads(text)
    except ValueError:
        return None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        return None
    blocks = []
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict):
            return None
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(str(part) for part in source)
        source = str(source).replace("\r\n", "\n").replace("\r", "\n")
        kind = str(cell.get("cell_type") or "unknown")
        blocks.append(f"# cell {number} [{kind}]\n{source.rstrip(chr(10))}\n")
    return "\n".join(blocks)


def _comparable(
    path: str, old_text: str, new_text: str, *, is_notebook: bool, digests: tuple[str, str]
) -> tuple[list, list, bool]:
    """Both sides as highlighted lines (text and HTML), notebooks as cells when both sides parse."""
    if is_notebook:
        old_cells, new_cells = notebook_text(old_text or "{}"), notebook_text(new_text or "{}")
        if old_cells is not None and new_cells is not None:
            # Cell sources are mostly Python; the cell headers read as Python comments.
            return _lines(path + ".py", old_cells), _lines(path + ".py", new_cells), True
    return _lines(path, old_text, digests[0]), _lines(path, new_text, digests[1]), False


def _lines(path: str, text: str, sha256: str = "") -> list[tuple[str, SafeString]]:
    if not text:
        return []
    plain = text.split("\n")[: line_count_of(text)]
    return list(zip(plain, highlighted_lines(path=path, text=text, sha256=sha256), strict=True))


def _diff_lines(old: list, new: list, *, context: int) -> list[DiffLine]:
    matcher = difflib.SequenceMatcher(None, [text for text, _ in old], [text for text, _ in new])
    lines: list[DiffLine] = []
    shown_old = 0  # old lines before this point are shown or skipped already
    for group in matcher.get_grouped_opcodes(context):
        first_old = group[0][1]
        if first_old > shown_old:
            lines.append(_skip(first_old - shown_old))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for offset in range(i2 - i1):
                    html = new[j1 + offset][1]
                    lines.append(DiffLine("context", i1 + offset + 1, j1 + offset + 1, html))
                continue
            if tag in ("replace", "delete"):
                lines.extend(DiffLine("delete", i + 1, None, old[i][1]) for i in range(i1, i2))
            if tag in ("replace", "insert"):
                lines.extend(DiffLine("add", None, j + 1, new[j][1]) for j in range(j1, j2))
        shown_old = group[-1][2]
    if lines and shown_old < len(old):
        lines.append(_skip(len(old) - shown_old))
    return lines


def _skip(count: int) -> DiffLine:
    text = escape(f"… {count} unchanged line{'s' if count != 1 else ''}")
    return DiffLine("skip", None, None, mark_safe(text))  # noqa: S308 - escaped just above
