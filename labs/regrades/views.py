"""Regrade pages: a lab's regrade history and "Start a preview"; one preview with its progress (polled by htmx,
a reload link without JavaScript), cancel, and once ready the learners whose results would change, check by
check, with Apply and Discard. Thin: selectors read, services write. Instructors of the lab's course only;
everyone else gets 404 (anonymous visitors of the pages are sent to the login page).
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from labs.errors import LearnerError
from labs.models import Regrade
from labs.permissions import access_lab_for_instructor_by_slugs, access_regrade_by_id
from labs.regrades import selectors
from labs.regrades.report import regrade_finish_if_done
from labs.regrades.services import regrade_apply, regrade_cancel, regrade_discard, regrade_preview_start


@login_required
@require_http_methods(["GET", "POST"])
def lab_regrades(request: HttpRequest, course_slug: str, lab_slug: str) -> HttpResponse:
    lab = access_lab_for_instructor_by_slugs(course_slug=course_slug, lab_slug=lab_slug, user=request.user)
    error: LearnerError | None = None
    status = 200
    if request.method == "POST":
        try:
            regrade = regrade_preview_start(lab=lab, by=request.user)
        except LearnerError as exc:
            error, status = exc, exc.http_status
        else:
            messages.success(request, f"Preview {regrade.pk} started: {regrade.total} revisions to grade.")
            return redirect("regrades:detail", regrade_id=regrade.pk)
    context = {
        "lab": lab,
        "regrades": selectors.regrades_for_lab(lab=lab),
        "running": selectors.regrade_running_for_lab(lab=lab),
        "error": error,
    }
    return render(request, "labs/regrades/lab.html", context, status=status)


@login_required
@require_http_methods(["GET"])
def regrade_detail(request: HttpRequest, regrade_id: int) -> HttpResponse:
    regrade = _current(access_regrade_by_id(regrade_id=regrade_id, user=request.user))
    context = {"regrade": regrade, "lab": regrade.lab, "progress": selectors.regrade_progress(regrade=regrade)}
    return render(request, "labs/regrades/detail.html", context)


@require_http_methods(["GET"])
def regrade_progress_fragment(request: HttpRequest, regrade_id: int) -> HttpResponse:
    """The progress block the detail page polls; once the preview stops running, htmx reloads the whole page."""
    regrade = _current(access_regrade_by_id(regrade_id=regrade_id, user=request.user))
    response = render(
        request,
        "labs/regrades/_progress.html",
        {"regrade": regrade, "progress": selectors.regrade_progress(regrade=regrade)},
    )
    if regrade.status != Regrade.Status.RUNNING and request.headers.get("HX-Request"):
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_http_methods(["POST"])
def regrade_cancel_view(request: HttpRequest, regrade_id: int) -> HttpResponse:
    return _act(request, regrade_id, regrade_cancel, "Preview {pk} cancelled.")


@login_required
@require_http_methods(["POST"])
def regrade_apply_view(request: HttpRequest, regrade_id: int) -> HttpResponse:
    return _act(request, regrade_id, regrade_apply, "Preview {pk} applied.")


@login_required
@require_http_methods(["POST"])
def regrade_discard_view(request: HttpRequest, regrade_id: int) -> HttpResponse:
    return _act(request, regrade_id, regrade_discard, "Preview {pk} discarded: nothing changed.")


def _act(request: HttpRequest, regrade_id: int, action: Callable[..., Regrade], done: str) -> HttpResponse:
    regrade = access_regrade_by_id(regrade_id=regrade_id, user=request.user)
    try:
        action(regrade=regrade, by=request.user)
    except LearnerError as exc:
        messages.error(request, f"{exc.message} {exc.hint}".strip())
    else:
        messages.success(request, done.format(pk=regrade.pk))
    return redirect("regrades:detail", regrade_id=regrade.pk)


def _current(regrade: Regrade) -> Regrade:
    """The regrade, made ready first if its last copy finished and the grading worker's notice was lost."""
    if regrade.status == Regrade.Status.RUNNING and regrade_finish_if_done(regrade_id=regrade.pk):
        regrade.refresh_from_db()
    return regrade
