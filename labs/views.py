"""Lab and revision pages. Thin: selectors read, services write, templates show."""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from labs import selectors
from labs.bundles import starter_materialize
from labs.errors import LearnerError, PlatformError
from labs.forms import SubmissionForm
from labs.models import ApiToken
from labs.permissions import (
    access_lab_by_slugs,
    access_lab_for_instructor_by_slugs,
    access_revision_by_id,
    access_revision_for_instructor_by_id,
    access_revision_pair_by_ids,
    access_work_by_id,
)
from labs.reviews.diffs import revisions_diff
from labs.reviews.selectors import reviews_for_revision
from labs.services.grading import lab_hidden_checks_reveal, revision_grade_again
from labs.services.submissions import revision_submit
from labs.services.tokens import (
    API_TOKEN_DEFAULT_LIFETIME_DAYS,
    API_TOKEN_LIFETIMES_DAYS,
    api_token_create,
    api_token_revoke,
)

logger = logging.getLogger(__name__)

# The largest id a 64-bit primary key holds; bigger numbers overflow SQLite's integers instead of matching nothing.
MAX_ID = 2**63 - 1


@require_http_methods(["GET", "POST"])
def lab_detail(request: HttpRequest, course_slug: str, lab_slug: str) -> HttpResponse:
    lab = access_lab_by_slugs(course_slug=course_slug, lab_slug=lab_slug)
    wants_json = request.headers.get("Accept", "").startswith("application/json")
    error: LearnerError | None = None
    status = 200
    form = SubmissionForm()
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        form = SubmissionForm(request.POST, request.FILES)
        try:
            if not form.is_valid():
                problems = [str(e) for errors in form.errors.values() for e in errors]
                raise LearnerError("Nothing was uploaded.", "Choose files or a .zip, then submit.", problems=problems)
            revision = revision_submit(lab=lab, user=request.user, upload=form.upload(request.POST.getlist("paths")))
        except LearnerError as exc:
            error, status = exc, exc.http_status
            if wants_json:
                return JsonResponse(exc.as_dict(), status=status)
        else:
            target = reverse("revision_detail", args=[revision.pk])
            return JsonResponse({"redirect": target}, status=201) if wants_json else redirect(target)
    page = selectors.lab_page(lab=lab, user=request.user)
    return render(
        request, "labs/lab_detail.html", {"page": page, "lab": lab, "form": form, "error": error}, status=status
    )


def lab_starter(request: HttpRequest, course_slug: str, lab_slug: str) -> HttpResponse:
    lab = access_lab_by_slugs(course_slug=course_slug, lab_slug=lab_slug)
    digest = lab.starter_digest
    if not digest or not all(ch in "0123456789abcdef" for ch in digest):
        raise Http404("This lab has no starter files.")
    try:
        # This host's copy, zipped again from the database when missing or changed (labs.blobs).
        path = starter_materialize(digest=digest)
        handle = path.open("rb")
    except (PlatformError, OSError) as exc:
        # Ours (a blob missing from the database, a cache this host cannot write), not the learner's: 503.
        logger.error("lab %s: starter archive unavailable: %s", lab.pk, exc)
        return HttpResponse(
            "The starter files are unavailable because of a problem on our side; try again later.\n",
            status=503,
            content_type="text/plain; charset=utf-8",
            headers={"Retry-After": "60"},
        )
    return FileResponse(handle, as_attachment=True, filename=f"{lab.slug}-starter.zip")


def revision_detail(request: HttpRequest, revision_id: int) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    revision = access_revision_by_id(revision_id=revision_id, user=request.user)
    detail = selectors.revision_detail(revision=revision, viewer=request.user)
    # Submitted reviews only: a draft is its reviewer's, on the review page.
    reviews = [r for r in reviews_for_revision(revision=revision, viewer=request.user) if r.review.submitted_at]
    comments = [{**c, "reviewer_name": r.reviewer_name} for r in reviews for c in r.file_comments]
    files = selectors.revision_commented_files(revision=revision, comments=comments)
    context = {
        "d": detail,
        "revision": revision,
        "lab": revision.lab,
        "reviews": reviews,
        "commented_files": files,
        "work": selectors.work_for_revision(revision=revision),
    }
    return render(request, "labs/revision_detail.html", context)


def work_detail(request: HttpRequest, work_id: int) -> HttpResponse:
    """A learner's work on a lab: its state, grades and timeline (the learner and the course's staff)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    work = access_work_by_id(work_id=work_id, user=request.user)
    timeline = selectors.work_timeline(work=work, viewer=request.user)
    return render(request, "labs/timeline.html", {"t": timeline, "work": work, "lab": work.lab})


@require_http_methods(["GET"])
def work_diff_pick(request: HttpRequest, work_id: int) -> HttpResponse:
    """The timeline's "compare two revisions" form (a GET form cannot build the diff's path without JavaScript)."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    work = access_work_by_id(work_id=work_id, user=request.user)
    old_id, new_id = id_from_form(request.GET.get("old")), id_from_form(request.GET.get("new"))
    if old_id is None or new_id is None:
        messages.error(request, "Choose two revisions to compare.")
        return redirect("work_detail", work_id=work.pk)
    return redirect("revision_diff", old_id=old_id, new_id=new_id)


def revision_diff(request: HttpRequest, old_id: int, new_id: int) -> HttpResponse:
    """What changed between two revisions of one learner's work on a lab."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    old, new = access_revision_pair_by_ids(old_id=old_id, new_id=new_id, user=request.user)
    context = {
        "old": old,
        "new": new,
        "lab": new.lab,
        "diffs": revisions_diff(old=old, new=new),
        "work": selectors.work_for_revision(revision=new),
    }
    return render(request, "labs/revision_diff.html", context)


def revision_status(request: HttpRequest, revision_id: int) -> HttpResponse:
    """The live part of the revision page, polled by htmx every second until the revision is finished."""
    revision = access_revision_by_id(revision_id=revision_id, user=request.user)
    detail = selectors.revision_detail(revision=revision, viewer=request.user)
    response = render(request, "labs/_revision_status.html", {"d": detail, "revision": revision})
    response["Cache-Control"] = "no-store"
    return response


def id_from_form(value: str | None) -> int | None:
    """A database id typed into a form or query string, or None when it cannot be one.

    ASCII digits only: `"²".isdigit()` is true but `int("²")` fails, and `int("٣")` is 3. At most 19 digits and
    within a 64-bit key, so the database never sees a number it cannot store and `int` never parses a megabyte.
    """
    if not value or len(value) > 19 or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if 0 < number <= MAX_ID else None


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    new_token = None
    status = 200
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            # Only the user's own tokens can match; an id that cannot be one matches nothing rather than crashing.
            token_id = id_from_form(request.POST.get("token_id"))
            if token_id is not None:
                api_token_revoke(user=request.user, token_id=token_id)
            return redirect("api_tokens")
        lifetimes = {str(days): days for days in API_TOKEN_LIFETIMES_DAYS}
        lifetime = request.POST.get("expires_in_days") or str(API_TOKEN_DEFAULT_LIFETIME_DAYS)
        if lifetime in lifetimes:
            _token, new_token = api_token_create(user=request.user, lifetime_days=lifetimes[lifetime])
        else:
            status = 400
            *first, last = lifetimes
            choices = f"{', '.join(first)} or {last}"
            messages.error(request, f"A token lasts {choices} days; choose one of those. No token was created.")
    tokens = ApiToken.objects.filter(user=request.user).order_by("-created_at")
    base_url = request.build_absolute_uri("/").rstrip("/")
    context = {
        "tokens": tokens,
        "new_token": new_token,
        "base_url": base_url,
        "lifetimes": API_TOKEN_LIFETIMES_DAYS,
        "default_lifetime": API_TOKEN_DEFAULT_LIFETIME_DAYS,
    }
    return render(request, "labs/api_tokens.html", context, status=status)


@login_required
@require_http_methods(["POST"])
def lab_reveal_hidden(request: HttpRequest, course_slug: str, lab_slug: str) -> HttpResponse:
    lab = access_lab_for_instructor_by_slugs(course_slug=course_slug, lab_slug=lab_slug, user=request.user)
    lab_hidden_checks_reveal(lab=lab, by=request.user)
    return redirect("lab_detail", course_slug=course_slug, lab_slug=lab_slug)


@login_required
@require_http_methods(["POST"])
def revision_regrade(request: HttpRequest, revision_id: int) -> HttpResponse:
    revision = access_revision_for_instructor_by_id(revision_id=revision_id, user=request.user)
    revision_grade_again(revision=revision, by=request.user)
    return redirect("revision_detail", revision_id=revision.pk)
