"""Review pages. Thin: selectors read, services write, templates show. Everyone who may not review gets 404."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from labs.errors import LearnerError
from labs.models import Revision
from labs.permissions import (
    access_course_for_review_by_slug,
    access_review_queue,
    access_revision_for_review_by_id,
    access_revision_pair_by_ids,
    access_work_for_review_by_id,
)
from labs.reviews import loop, selectors
from labs.reviews.rubric import ReviewSpec
from labs.reviews.services import (
    review_draft_comment_add,
    review_draft_comment_delete,
    review_draft_save,
    review_submit,
)
from labs.views import id_from_form


@require_http_methods(["GET"])
def review_queue(request: HttpRequest) -> HttpResponse:
    """The courses the user reviews, with how much waits in each."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    access_review_queue(user=request.user)
    courses = selectors.review_courses(reviewer=request.user)
    return render(request, "labs/reviews/queue.html", {"courses": courses})


@require_http_methods(["GET"])
def course_queue(request: HttpRequest, course_slug: str) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    course = access_course_for_review_by_slug(course_slug=course_slug, user=request.user)
    # Not a lab id (garbled, or too big for the database): the whole queue, as with no filter.
    lab_id = id_from_form(request.GET.get("lab"))
    state = request.GET.get("state") or ""
    if state not in dict(selectors.QUEUE_STATE_CHOICES):
        state = ""
    page = selectors.review_queue_page(
        reviewer=request.user, course=course, lab_id=lab_id, state=state or None, page=request.GET.get("page") or 1
    )
    filters = urlencode({key: value for key, value in (("lab", lab_id or ""), ("state", state)) if value})
    context = {
        "course": course,
        "page": page,
        "labs": selectors.review_queue_labs(course=course),
        "lab_id": lab_id,
        "state": state,
        "states": selectors.QUEUE_STATE_CHOICES,
        "filters": filters,
        "now": timezone.now(),
    }
    return render(request, "labs/reviews/course_queue.html", context)


@require_POST
def work_claim(request: HttpRequest, work_id: int) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    work = access_work_for_review_by_id(work_id=work_id, user=request.user)
    try:
        work = loop.work_claim(work=work, reviewer=request.user)
    except LearnerError as exc:
        return _review_response(request, work.revision, error=exc, status=exc.http_status)
    until = timezone.localtime(work.claim_expires_at).strftime("%H:%M")
    messages.success(request, f"You hold this work until {until}.")
    return redirect("reviews:revision", work.revision_id)


@require_POST
def work_release(request: HttpRequest, work_id: int) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    work = access_work_for_review_by_id(work_id=work_id, user=request.user)
    try:
        loop.work_release(work=work, reviewer=request.user)
    except LearnerError as exc:
        return _review_response(request, work.revision, error=exc, status=exc.http_status)
    messages.success(request, f"You released {work.user.get_username()}'s {work.lab.title}; it is back in the queue.")
    return redirect("reviews:course_queue", work.lab.course.slug)


@require_http_methods(["GET", "POST"])
def revision_review(request: HttpRequest, revision_id: int) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    revision = access_revision_for_review_by_id(revision_id=revision_id, user=request.user)
    against = _against(request, revision)
    if request.method == "GET":
        return _review_response(request, revision, against=against, comment=request.GET.get("comment"))
    page = selectors.review_page(revision=revision, reviewer=request.user, against=against)
    form = _form_from_post(request, page.spec)
    action = request.POST.get("action", "submit")
    try:
        if action == "draft":
            review_draft_save(
                revision=revision,
                reviewer=request.user,
                decision=form["decision"],
                rubric_scores=form["scores"],
                comment=form["comment"],
            )
        else:
            drafted = list(page.draft.file_comments or []) if page.draft else []
            review_submit(
                revision=revision,
                reviewer=request.user,
                decision=form["decision"],
                rubric_scores=form["scores"],
                comment=form["comment"],
                file_comments=[*drafted, *form["file_comments"]],
            )
    except LearnerError as exc:
        return _review_response(request, revision, against=against, error=exc, status=exc.http_status, form=form)
    if action == "draft":
        messages.success(request, "Your draft was saved. Only you can see it.")
    else:
        messages.success(request, f"Your review of revision {revision.number} was submitted.")
    return redirect(_page_url(revision, against) + "#your-review")


@require_POST
def comment_add(request: HttpRequest, revision_id: int) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    revision = access_revision_for_review_by_id(revision_id=revision_id, user=request.user)
    against = _against(request, revision)
    path, line, body = (request.POST.get(name, "") for name in ("path", "line", "body"))
    try:
        review_draft_comment_add(revision=revision, reviewer=request.user, path=path, line=line, body=body)
    except LearnerError as exc:
        return _review_response(
            request,
            revision,
            against=against,
            comment=f"{path}:{line}",
            comment_body=body,
            error=exc,
            status=exc.http_status,
        )
    return redirect(_page_url(revision, against) + _line_anchor(revision, path, line))


@require_POST
def comment_delete(request: HttpRequest, revision_id: int, index: int) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    revision = access_revision_for_review_by_id(revision_id=revision_id, user=request.user)
    against = _against(request, revision)
    try:
        removed = review_draft_comment_delete(
            revision=revision,
            reviewer=request.user,
            index=index,
            path=request.POST.get("path"),
            line=request.POST.get("line"),
        )
    except LearnerError as exc:
        return _review_response(request, revision, against=against, error=exc, status=exc.http_status)
    messages.success(request, f"Your comment on {removed['path']}:{removed['line']} was deleted.")
    return redirect(_page_url(revision, against) + _line_anchor(revision, removed["path"], removed["line"]))


# --- helpers ---------------------------------------------------------------------------------------------------


def _against(request: HttpRequest, revision: Revision) -> Revision | None:
    """The revision picked to diff against (?against= or a hidden field), through access_revision_pair_by_ids:
    another learner's revision, or one of another lab, is 404. Blank or garbled: the default."""
    against_id = id_from_form(request.POST.get("against") or request.GET.get("against"))
    if against_id is None or against_id == revision.pk:
        return None
    old, _new = access_revision_pair_by_ids(old_id=against_id, new_id=revision.pk, user=request.user)
    return old


def _page_url(revision: Revision, against: Revision | None) -> str:
    url = reverse("reviews:revision", args=[revision.pk])
    return f"{url}?against={against.pk}" if against is not None else url


def _line_anchor(revision: Revision, path: str, line: object) -> str:
    for index, entry in enumerate(revision.files or []):
        if entry.get("path") == path:
            return f"#file-{index + 1}-L{line}"
    return ""


def _review_response(
    request: HttpRequest,
    revision: Revision,
    *,
    against: Revision | None = None,
    comment: str | None = None,
    comment_body: str = "",
    error: LearnerError | None = None,
    status: int = 200,
    form: dict | None = None,
) -> HttpResponse:
    page = selectors.review_page(revision=revision, reviewer=request.user, against=against, comment=comment)
    form = form or _form_from_review(page)
    form["criteria"] = [(c, form["scores"].get(c.id, "")) for c in page.spec.criteria]
    context = {
        "p": page,
        "revision": revision,
        "lab": revision.lab,
        "form": form,
        "error": error,
        "comment_body": comment_body,
        "revisions": [h.revision for h in page.history],
    }
    return render(request, "labs/reviews/review.html", context, status=status)


def _form_from_review(page: selectors.ReviewPage) -> dict:
    review = page.own_review
    if review is None:
        return {"decision": "", "scores": {}, "comment": "", "file_comments": []}
    return {
        "decision": review.decision,
        "scores": {key: str(value) for key, value in (review.rubric_scores or {}).items()},
        "comment": review.comment,
        "file_comments": [],
    }


def _form_from_post(request: HttpRequest, spec: ReviewSpec) -> dict:
    post = request.POST
    # Line comments come from the draft; rows posted as fc-path/fc-line/fc-body (older forms, scripts) still count.
    rows = zip(post.getlist("fc-path"), post.getlist("fc-line"), post.getlist("fc-body"), strict=False)
    return {
        "decision": post.get("decision", ""),
        "scores": {c.id: post.get(f"score-{c.id}", "") for c in spec.criteria},
        "comment": post.get("comment", ""),
        "file_comments": [
            {"path": path, "line": line, "body": body}
            for path, line, body in rows
            if path.strip() or line.strip() or body.strip()
        ],
    }
