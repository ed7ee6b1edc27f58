"""JSON API for the CLI. Token authentication only (`Authorization: Bearer <token>`), so CSRF does not apply."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, HttpRequest, JsonResponse, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from config import throttle
from labs import selectors
from labs.errors import LearnerError, PlatformError, SubmissionTooSoon
from labs.permissions import access_lab_by_slugs, access_revision_by_id
from labs.services.submissions import revision_submit
from labs.services.tokens import api_token_authenticate, token_hash

logger = logging.getLogger(__name__)

TOKEN_HINT = "Create a token at /account/tokens/ and send it as 'Authorization: Bearer <token>'."
RETRY_HINT = "Nothing was lost on your side. Try again in a little while."
# What Django raises when a view first reads request.POST or request.FILES and the body breaks a limit or a rule.
REQUEST_BODY_ERRORS = (
    RequestDataTooBig,
    TooManyFilesSent,
    TooManyFieldsSent,
    MultiPartParserError,
    UnreadablePostError,
)


def error_response(status: int, error: str, hint: str = "", problems: list[str] | None = None) -> JsonResponse:
    response = JsonResponse({"error": error, "problems": problems or [], "hint": hint}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="shipshape"'
    return response


def throttled_response(verdict: throttle.Verdict, error: str) -> JsonResponse:
    wait = throttle.wait_phrase(verdict.retry_in_seconds)
    response = JsonResponse(
        {
            "error": error,
            "problems": [],
            "hint": f"Wait {wait} before calling again (`shipshape status --follow` waits by itself).",
            "retry_in_seconds": verdict.retry_in_seconds,
        },
        status=429,
    )
    response["Retry-After"] = str(verdict.retry_in_seconds)
    return response


def request_refused_response(request: HttpRequest, exc: Exception) -> JsonResponse:
    """Django's own refusals of a request body (raised when request.POST or request.FILES is first read), in JSON.

    Django would answer them with its HTML 400 page; the CLI and scripts need to read what went wrong."""
    # Django's handler does the same: the body cannot be read again, so do not let anything try.
    mark = getattr(request, "_mark_post_parse_error", None)
    if mark is not None:
        mark()
    logging.getLogger(f"django.security.{type(exc).__name__}").warning(
        "API %s %s refused: %s", request.method, request.path, exc
    )
    upload = "Send your work as one .zip in the 'archive' field, as the shipshape CLI does."
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return error_response(
            413, f"The request's form fields are too large (at most {limit} bytes besides the files).", upload
        )
    if isinstance(exc, TooManyFilesSent):
        return error_response(
            400, f"The request holds too many files (at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES}).", upload
        )
    if isinstance(exc, TooManyFieldsSent):
        return error_response(
            400, f"The request holds too many form fields (at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}).", upload
        )
    return error_response(400, "The request's body could not be read.", f"Check that it is well-formed. {upload}")


def learner_error_response(exc: LearnerError) -> JsonResponse:
    response = JsonResponse(exc.as_dict(), status=exc.http_status)
    if isinstance(exc, SubmissionTooSoon):
        response["Retry-After"] = str(exc.retry_in_seconds)
    return response


def token_required(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Authenticate by API token only; session cookies are ignored here, which is what makes csrf_exempt safe."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
        raw = raw.strip() if scheme.lower() == "bearer" else ""
        user = api_token_authenticate(raw=raw) if raw else None
        if user is None:
            # Calls without a valid token are counted per client address, calls with one per token.
            verdict = throttle.API_ANONYMOUS_CALLS.hit(throttle.address_key(request))
            if not verdict.allowed:
                return throttled_response(verdict, "Too many API calls without a valid token from your address.")
            if not raw:
                return error_response(401, "An API token is required.", TOKEN_HINT)
            return error_response(401, "The API token is not valid: it expired, was revoked or was mistyped.", TOKEN_HINT)
        verdict = throttle.API_CALLS.hit(token_hash(raw))
        if not verdict.allowed:
            return throttled_response(verdict, "Too many API calls with this token.")
        request.user = user
        try:
            return view(request, *args, **kwargs)
        except REQUEST_BODY_ERRORS as exc:
            return request_refused_response(request, exc)
        except PlatformError:
            # Ours, and the CLI retries: answer in JSON, never with the HTML error page.
            logger.exception("API %s %s failed on our side", request.method, request.path)
            response = error_response(503, "The server could not handle this request just now.", RETRY_HINT)
            response["Retry-After"] = "30"
            return response

    return wrapper


def methods_allowed(*methods: str) -> Callable[[Callable[..., JsonResponse]], Callable[..., JsonResponse]]:
    """Like Django's require_http_methods, but the 405 is JSON like every other API answer."""

    def decorator(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
            if request.method not in methods:
                response = error_response(405, f"{request.method} is not allowed here.", f"Use {' or '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


@token_required
@methods_allowed("POST")
def revision_create(request: HttpRequest, course_slug: str, lab_slug: str) -> JsonResponse:
    try:
        lab = access_lab_by_slugs(course_slug=course_slug, lab_slug=lab_slug)
    except Http404:
        return error_response(404, f"There is no lab {course_slug}/{lab_slug}.", "Check the lab's name on its page.")
    upload = _upload_from(request)
    if upload is None:
        return error_response(
            400,
            "The request holds no files.",
            "Send a multipart form with an 'archive' field (a .zip) or one 'files' field per file.",
        )
    try:
        revision = revision_submit(lab=lab, user=request.user, upload=upload)
    except LearnerError as exc:
        return learner_error_response(exc)
    return JsonResponse(
        {
            "id": revision.pk,
            "number": revision.number,
            "state": revision.state,
            "url": request.build_absolute_uri(reverse("revision_detail", args=[revision.pk])),
            "api_url": request.build_absolute_uri(reverse("api_revision_detail", args=[revision.pk])),
        },
        status=201,
    )


@token_required
@methods_allowed("GET", "HEAD")
def revision_detail(request: HttpRequest, revision_id: int) -> JsonResponse:
    try:
        revision = access_revision_by_id(revision_id=revision_id, user=request.user)
    except Http404:
        return error_response(404, f"There is no revision {revision_id} that you can see.")
    detail = selectors.revision_detail(revision=revision, viewer=request.user)
    return JsonResponse(revision_payload(detail=detail, request=request))


def revision_payload(*, detail: selectors.RevisionDetail, request: HttpRequest) -> dict[str, Any]:
    revision = detail.revision
    return {
        "id": revision.pk,
        "number": revision.number,
        "course": revision.lab.course.slug,
        "lab": revision.lab.slug,
        "state": revision.state,
        "finished": detail.finished,
        "phase": detail.phase,
        "phases": {p["key"]: p["at"].isoformat() if p["at"] else None for p in detail.phases},
        "queue_position": detail.queue_position,
        "is_late": revision.is_late,
        "score": _num(detail.score),
        "max_score": _num(detail.max_score),
        "scores_by_category": detail.scores_by_category,
        "hidden_checks": detail.concealed_count,
        "checks": [
            {"id": c.check_id, "status": "hidden", "hidden_until": _iso(detail.due_at)}
            if c.concealed
            else {
                "id": c.check_id,
                "category": c.category,
                "status": c.status,
                "points": _num(c.points),
                "max_points": _num(c.max_points),
                "message": c.message,
                "hint": c.hint,
            }
            for c in detail.checks
        ],
        "failure": {"reason": revision.failure_reason, "message": detail.failure_text} if detail.failure_text else None,
        "url": request.build_absolute_uri(reverse("revision_detail", args=[revision.pk])),
    }


def _upload_from(request: HttpRequest) -> Any:
    if "archive" in request.FILES:
        return request.FILES["archive"]
    files = request.FILES.getlist("files")
    if not files:
        return None
    paths = request.POST.getlist("paths")
    if len(paths) != len(files):
        paths = [f.name for f in files]
    return list(zip(paths, files, strict=True))


def _num(value: Any) -> float | None:
    return float(value) if value is not None else None


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
