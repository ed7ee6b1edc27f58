"""Instructors' pages. Thin: access functions fetch and authorise (404 for everyone else), selectors read, the
review loop writes."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from labs.errors import LearnerError
from labs.gradebook import charts, selectors
from labs.gradebook.cells import gradebook_row_cells, override_url_maker
from labs.gradebook.export import gradebook_csv_lines, lines_batched
from labs.permissions import (
    access_course_for_instructor_by_slug,
    access_lab_for_instructor_by_slugs,
    access_work_for_instructor_by_id,
)
from labs.reviews.loop import work_grade_override


@require_http_methods(["GET"])
def gradebook(request: HttpRequest, course_slug: str) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    course = access_course_for_instructor_by_slug(course_slug=course_slug, user=request.user)
    filters = selectors.GradebookFilters.from_query(request.GET)
    book = selectors.gradebook_page(course=course, filters=filters, page_number=request.GET.get("page") or 1)
    query = filters.as_query()
    override_url = override_url_maker(course_slug=course.slug)
    for row in book.rows:
        row.html = gradebook_row_cells(row=row, labs=book.labs, override_url=override_url)
    context = {
        "course": course,
        "book": book,
        "filters": filters,
        "states": selectors.STATES.choices,
        "query": urlencode(query),
        "page_prefix": urlencode(query) + "&" if query else "",
    }
    return render(request, "labs/gradebook/gradebook.html", context)


@require_http_methods(["GET"])
def gradebook_csv(request: HttpRequest, course_slug: str) -> StreamingHttpResponse | HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    course = access_course_for_instructor_by_slug(course_slug=course_slug, user=request.user)
    filters = selectors.GradebookFilters.from_query(request.GET)
    response = StreamingHttpResponse(
        lines_batched(gradebook_csv_lines(course=course, filters=filters)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{course.slug}-grades.csv"'
    response["Cache-Control"] = "private, no-store"
    return response


@require_http_methods(["GET"])
def lab_analytics(request: HttpRequest, course_slug: str, lab_slug: str) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    lab = access_lab_for_instructor_by_slugs(course_slug=course_slug, lab_slug=lab_slug, user=request.user)
    data = selectors.lab_analytics(lab=lab)
    pass_chart = charts.hbar_chart(
        title="Pass rate per check",
        description=f"Share of the {data.works} learners' newest finished revisions that pass each check.",
        bars=[(c.check_id + (" (hidden)" if c.hidden else ""), c.percent, f"{c.percent:.0f}%") for c in data.checks],
    )
    revisions_chart = charts.histogram(
        title="Revisions needed to pass",
        description=f"{data.passed} learners passed; how many revisions each needed.",
        buckets=data.revisions_to_pass,
        x_label="revisions",
    )
    review_chart = charts.histogram(
        title="Time from submission to review",
        description=f"{data.reviews} review decisions; hours from the revision's submission to the decision.",
        buckets=data.hours_to_review,
        x_label="hours",
    )
    score_chart = charts.histogram(
        title="Score distribution",
        description="Learners per 10-point bucket of their grade (override, final grade, else autograde).",
        buckets=data.scores,
        x_label="grade (%)",
    )
    context = {
        "course": lab.course,
        "lab": lab,
        "data": data,
        "pass_chart": pass_chart,
        "revisions_chart": revisions_chart,
        "review_chart": review_chart,
        "score_chart": score_chart,
    }
    return render(request, "labs/gradebook/analytics.html", context)


@require_http_methods(["GET", "POST"])
def work_override(request: HttpRequest, course_slug: str, work_id: int) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    work = access_work_for_instructor_by_id(work_id=work_id, user=request.user)
    if work.lab.course.slug != course_slug:
        raise Http404("No such work.")
    form = {"grade": "" if work.override_grade is None else f"{work.override_grade:f}", "reason": ""}
    problems: list[str] = []
    status = 200
    if request.method == "POST":
        form = {"grade": request.POST.get("grade", "").strip(), "reason": request.POST.get("reason", "")}
        grade, problems = _grade_from_form(form["grade"])
        if not problems:
            try:
                work_grade_override(work=work, grade=grade, reason=form["reason"], by=request.user)
            except LearnerError as exc:
                problems = list(exc.problems or [exc.message])
            else:
                done = f"set to {grade:f}" if grade is not None else "removed"
                messages.success(
                    request, f"The override for {work.user.get_username()} on {work.lab.title} was {done}."
                )
                return redirect(reverse("gradebook:override", args=[course_slug, work.pk]))
        status = 400
    context = {
        "course": work.lab.course,
        "work": work,
        "form": form,
        "problems": problems,
        "history": selectors.work_override_history(work=work),
    }
    return render(request, "labs/gradebook/override.html", context, status=status)


def _grade_from_form(text: str) -> tuple[Decimal | None, list[str]]:
    """Empty: remove the override. Otherwise a finite number (range and decimals are the loop's to check)."""
    if not text:
        return None, []
    try:
        grade = Decimal(text.replace(",", "."))
    except InvalidOperation:
        return None, [f"The grade must be a number from 0 to 100, or empty to remove the override; got {text[:20]!r}."]
    if not grade.is_finite():
        return None, ["The grade must be a number from 0 to 100, or empty to remove the override."]
    return grade, []
