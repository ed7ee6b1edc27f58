"""Review pages. Thin: selectors read, services write, templates show. Everyone who may not review gets 404."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from labs.errors import LearnerError
from labs.permissions import access_review_queue, access_revision_for_review_by_id
from labs.reviews import selectors
from labs.reviews.rubric import ReviewSpec
from labs.reviews.services import review_submit
from labs.views import id_from_form

BLANK_COMMENT_ROWS = 2


@require_http_methods(["GET"])
def review_queue(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    access_review_queue(user=request.user)
    # Not a lab id (garbled, or too big for the database): the whole queue, as with no filter.
    lab_id = id_from_form(request.GET.get("lab"))
    page = selectors.review_queue_page(reviewer=request.user, lab_id=lab_id, page=request.GET.get("page") or 1)
    labs = selectors.review_queue_labs(reviewer=request.user)
    return render(request, "labs/reviews/queue.html", {"page": page, "labs": labs, "lab_id": lab_id})


@require_http_methods(["GET", "POST"])
def revision_review(request: HttpRequest, revision_id: int) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    revision = access_revision_for_review_by_id(revision_id=revision_id, user=request.user)
    page = selectors.review_page(revision=revision, reviewer=request.user)
    error: LearnerError | None = None
    status = 200
    form = _form_from_review(page)
    if request.method == "POST":
        form = _form_from_post(request, page.spec)
        try:
            review_submit(
                revision=revision,
                reviewer=request.user,
                decision=form["decision"],
                rubric_scores=form["scores"],
                comment=form["comment"],
                file_comments=form["file_comments"],
            )
        except LearnerError as exc:
            error, status = exc, exc.http_status
        else:
            verb = "updated" if page.own_review else "saved"
            messages.success(request, f"Your review of revision {revision.number} was {verb}.")
            return redirect(reverse("reviews:revision", args=[revision.pk]) + "#your-review")
    form["criteria"] = [(c, form["scores"].get(c.id, "")) for c in page.spec.criteria]
    form["rows"] = [*form["file_comments"], *([{"path": "", "line": "", "body": ""}] * BLANK_COMMENT_ROWS)]
    context = {"p": page, "revision": revision, "lab": revision.lab, "form": form, "error": error}
    return render(request, "labs/reviews/review.html", context, status=status)


def _form_from_review(page: selectors.ReviewPage) -> dict:
    review = page.own_review
    if review is None:
        return {"decision": "", "scores": {}, "comment": "", "file_comments": []}
    return {
        "decision": review.decision,
        "scores": {key: str(value) for key, value in (review.rubric_scores or {}).items()},
        "comment": review.comment,
        "file_comments": list(review.file_comments or []),
    }


def _form_from_post(request: HttpRequest, spec: ReviewSpec) -> dict:
    post = request.POST
    rows = zip(post.getlist("fc-path"), post.getlist("fc-line"), post.getlist("fc-body"), strict=False)
    return {
        "decision": post.get("decision", ""),
        "scores": {c.id: post.get(f"score-{c.id}", "") for c in spec.criteria},
        "comment": post.get("comment", ""),
        # A row left entirely blank is the spare row the form always offers, not a mistake.
        "file_comments": [
            {"path": path, "line": line, "body": body}
            for path, line, body in rows
            if path.strip() or line.strip() or body.strip()
        ],
    }
