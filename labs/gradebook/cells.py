"""A gradebook cell as HTML, built in Python: a page holds up to 50 learners x every lab, and the template
language (or format_html for every cell) would spend most of the page's time on these few lines.

Every text that goes in is escaped with html.escape here; the rest are our own numbers and the state's value (a
LabWork.State choice). No style= attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from html import escape

from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from labs.gradebook.selectors import GradebookRow, WorkCell
from labs.models import Lab, LabWork

EMPTY = mark_safe('<td class="gb-cell gb-empty"><span class="muted">not submitted</span></td>')  # noqa: S308
DASH = "\u2013"  # an en dash: no value
STATE_LABELS = {value: escape(str(label)) for value, label in LabWork.State.choices}


def percent_text(value: Decimal | None) -> str:
    """85.00 -> "85", 85.50 -> "85.50", None -> an en dash."""
    if value is None:
        return DASH
    if value == value.to_integral():
        return str(int(value))
    return f"{value:.2f}"


def override_url_maker(*, course_slug: str) -> Callable[[int], str]:
    """work id -> its override page's URL, reversing the route once rather than once per cell."""
    head, tail = reverse("gradebook:override", args=[course_slug, 0]).rsplit("/0/", 1)
    return lambda work_id: f"{head}/{int(work_id)}/{tail}"


def gradebook_row_cells(*, row: GradebookRow, labs: list[Lab], override_url: Callable[[int], str]) -> SafeString:
    """A row's <td> cells, one per lab, as one string."""
    name = row.learner.username
    cells = (
        gradebook_cell(
            work=work, lab_title=lab.title, learner_name=name, override_url=override_url(work.pk) if work else ""
        )
        for lab, work in row.cells
    )
    return mark_safe("".join(cells))  # noqa: S308 (each cell is a SafeString made below)


def gradebook_cell(*, work: WorkCell | None, lab_title: str, learner_name: str, override_url: str) -> SafeString:
    """One <td>: the state, a late mark, autograde, rubric and the grade that counts (an override marked
    "(override)"), and the link to override it."""
    if work is None:
        return EMPTY
    if work.override_grade is not None:
        final = f'<strong class="gb-override">{percent_text(work.override_grade)} (override)</strong>'
    else:
        final = percent_text(work.final_grade)
    state = escape(work.state)
    late = ' <span class="badge badge-late">late</span>' if work.is_late else ""
    html = (
        f'<td class="gb-cell state-{state}" data-work="{int(work.pk)}">'
        f'<span class="badge gb-state">{STATE_LABELS.get(work.state, state)}</span>{late}'
        f'<dl class="gb-grades"><dt>Autograde</dt><dd>{percent_text(work.autograde)}</dd>'
        f"<dt>Rubric</dt><dd>{percent_text(work.rubric)}</dd>"
        f'<dt>Final</dt><dd class="gb-final">{final}</dd></dl>'
        f'<a class="gb-override-link" href="{escape(override_url)}">Override<span class="visually-hidden"> the grade '
        f"of {escape(learner_name)} on {escape(lab_title)}</span></a></td>"
    )
    return mark_safe(html)  # noqa: S308 (every text above is escaped; the rest are numbers we formatted)
