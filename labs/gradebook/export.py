"""The gradebook as CSV, line by line, for the web export and `manage.py gradebook_export`.

Spreadsheets run a cell that starts with `=`, `+`, `-` or `@` (and some also after a tab or carriage return) as a
formula, so a username like `=HYPERLINK(...)` could run in the instructor's spreadsheet. Every text cell that
starts with one of those gets a leading single quote (OWASP's advice); numbers are written as plain numbers and
are never escaped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from courses.models import Course
from labs.gradebook.selectors import CSV_COLUMNS, GradebookFilters, gradebook_csv_rows

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    """One cell as text: numbers plain (no exponent), booleans yes/no, None empty, text escaped against formulas."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def gradebook_csv_lines(*, course: Course, filters: GradebookFilters) -> Iterator[str]:
    """The header, then one line per learner and lab (see gradebook_csv_rows), each ending in CRLF."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: list[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        return buffer.getvalue()

    yield line(list(CSV_COLUMNS))
    for row in gradebook_csv_rows(course=course, filters=filters):
        yield line([csv_cell(row[column]) for column in CSV_COLUMNS])


def lines_batched(lines: Iterator[str], *, size: int = 500) -> Iterator[str]:
    """Join lines into chunks of `size`: a streamed response writes one chunk at a time, and 20,000 one-line
    writes cost the server more than the export itself."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield "".join(batch)
            batch.clear()
    if batch:
        yield "".join(batch)
