"""Thin views: fetch with selectors, write with services, render templates. No business rules here."""

import json
import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.views import redirect_to_login
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST, require_safe

from config import throttle
from courses import lesson_shell, selectors
from courses.forms import SignupForm
from courses.markdown import graded_quiz_placeholder
from courses.models import Course, Lesson, Quiz
from courses.services import learning
from notifications.forms import TAKEN as EMAIL_TAKEN
from notifications.services import email_address_set

# Anonymous lesson pages are cached per content version; the timeout only bounds memory held by old versions.
LESSON_PAGE_CACHE_SECONDS = 3600

# Course assets are named by their digest, so a URL's bytes never change: cached by anyone, for a year.
ASSET_CACHE_CONTROL = "public, max-age=31536000, immutable"
# An SVG opened on its own is a document: no script, no fetch, no form, only its own inline styles.
SVG_CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_ASSET_FILENAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _login_redirect(request: HttpRequest, next_url: str) -> HttpResponse:
    response = redirect_to_login(next_url)
    if _is_htmx(request):
        # htmx would follow a 302 inside the XHR and swap the login page into the fragment.
        htmx_response = HttpResponse(status=204)
        htmx_response["HX-Redirect"] = response["Location"]
        return htmx_response
    return response


def _lesson_or_404(course_slug: str, unit_slug: str, lesson_slug: str) -> Lesson:
    lesson = selectors.lesson_get(course_slug=course_slug, unit_slug=unit_slug, lesson_slug=lesson_slug)
    if lesson is None:
        raise Http404("No such lesson.")
    return lesson


def _lesson_url(lesson: Lesson) -> str:
    return reverse("lesson", args=[lesson.course.slug, lesson.unit.slug, lesson.slug])


def catalog(request: HttpRequest) -> HttpResponse:
    entries = selectors.course_list(user=request.user)
    return render(request, "courses/catalog.html", {"entries": entries})


def course_detail(request: HttpRequest, course_slug: str) -> HttpResponse:
    course = get_object_or_404(Course, slug=course_slug)
    outline = selectors.course_outline(course=course, user=request.user)
    return render(request, "courses/course_detail.html", {"outline": outline, "course": course})


@require_POST
def course_enroll(request: HttpRequest, course_slug: str) -> HttpResponse:
    course = get_object_or_404(Course, slug=course_slug)
    course_url = reverse("course", args=[course.slug])
    if not request.user.is_authenticated:
        return _login_redirect(request, course_url)
    learning.enrollment_create(user=request.user, course=course)
    messages.success(request, f"You are enrolled in {course.title}.")
    return redirect(course_url)


def _graded_quiz_html(request: HttpRequest, lesson: Lesson, graded: selectors.GradedQuiz) -> str:
    return render_to_string("courses/_graded_quiz.html", {"lesson": lesson, "gq": graded}, request=request)


def _anonymous_page_key(request: HttpRequest, course_slug: str, unit_slug: str, lesson_slug: str) -> str | None:
    """Cache key of the lesson page as every anonymous reader sees it, or None when it may be personal.

    Only imported courses are cached, keyed by content version and import time: every import gets new keys,
    so a stale page is never served. A session or messages cookie may carry per-visitor
    state (a flash message, a half-finished login), so such requests are rendered fresh.
    """
    if request.user.is_authenticated:
        return None
    if settings.SESSION_COOKIE_NAME in request.COOKIES or "messages" in request.COOKIES:
        return None
    version = selectors.course_version_get(course_slug=course_slug)
    if not version:
        return None
    return f"lesson-page:{course_slug}:{version}:{unit_slug}:{lesson_slug}"


def _has_messages(request: HttpRequest) -> bool:
    # len() loads the pending messages without marking them shown, so the page that renders them still does.
    return len(messages.get_messages(request)) > 0


def lesson_detail(request: HttpRequest, course_slug: str, unit_slug: str, lesson_slug: str) -> HttpResponse:
    if request.user.is_authenticated and not _has_messages(request):
        return lesson_shell.reader_page(request, course_slug, unit_slug, lesson_slug)
    # Checked before loading the lesson: a hit costs one small query instead of reading the lesson's body.
    cache_key = _anonymous_page_key(request, course_slug, unit_slug, lesson_slug)
    if cache_key is not None:
        cached = cache.get(cache_key)
        if cached is not None:
            return HttpResponse(cached)
    lesson = _lesson_or_404(course_slug, unit_slug, lesson_slug)
    page = selectors.lesson_page(lesson=lesson, user=request.user)
    body = lesson.html
    for graded in page.graded_quizzes:
        body = body.replace(graded_quiz_placeholder(graded.quiz.key), _graded_quiz_html(request, lesson, graded))
    # The body was sanitised when the lesson was rendered at import time; the quiz forms are our templates.
    context = {"page": page, "lesson": lesson, "course": lesson.course, "unit": lesson.unit, "body": mark_safe(body)}  # noqa: S308
    context["marks"] = selectors.lesson_marks(lesson=lesson, user=request.user)
    context["has_marks"] = selectors.lesson_has_marks(lesson=lesson)
    context.update(lesson_shell.code_cell_assets())
    response = render(request, "courses/lesson_detail.html", context)
    if cache_key is not None:
        cache.set(cache_key, response.content, timeout=LESSON_PAGE_CACHE_SECONDS)
    return response


@require_POST
def lesson_progress_update(request: HttpRequest, course_slug: str, unit_slug: str, lesson_slug: str) -> HttpResponse:
    lesson = _lesson_or_404(course_slug, unit_slug, lesson_slug)
    if not request.user.is_authenticated:
        return _login_redirect(request, _lesson_url(lesson))
    done = request.POST.get("completed", "1") != "0"
    if done:
        learning.lesson_complete(user=request.user, lesson=lesson)
    else:
        learning.lesson_uncomplete(user=request.user, lesson=lesson)
    if _is_htmx(request):
        return render(
            request,
            "courses/_lesson_progress.html",
            {"lesson": lesson, "is_done": done, "tracking": True, "swapped": True},
        )
    return redirect(_lesson_url(lesson) + "#lesson-progress")


@require_POST
def quiz_submit(
    request: HttpRequest, course_slug: str, unit_slug: str, lesson_slug: str, quiz_key: str
) -> HttpResponse:
    lesson = _lesson_or_404(course_slug, unit_slug, lesson_slug)
    quiz = get_object_or_404(Quiz, lesson=lesson, key=quiz_key, graded=True)
    anchor = f"{_lesson_url(lesson)}#quiz-{quiz.key}"
    if not request.user.is_authenticated:
        return _login_redirect(request, anchor)
    answers = {str(index): request.POST.getlist(f"q{index}") for index in range(len(quiz.questions))}
    error = None
    try:
        learning.quiz_attempt_submit(user=request.user, quiz=quiz, answers=answers)
    except learning.QuizAttemptError as exc:
        error = exc
    if _is_htmx(request):
        graded = selectors.graded_quiz_for_user(quiz=quiz, user=request.user)
        return render(
            request, "courses/_graded_quiz.html", {"lesson": lesson, "gq": graded, "error": error, "swapped": True}
        )
    if error is not None:
        messages.error(request, f"{error.message} {error.hint}".strip())
    return redirect(anchor)


# 200 ids of a few characters each fit in well under this; anything longer is refused before it is parsed.
MARK_VALUE_MAX_BYTES = 4096


def _json_value(raw: str) -> object:
    if len(raw) > MARK_VALUE_MAX_BYTES:
        raise learning.LessonMarkError(
            f"The value is {len(raw)} characters long, above the limit of {MARK_VALUE_MAX_BYTES}.",
            hint="Send the ids of the opened answers or ticked items only, as a flat JSON list.",
        )
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # deeply nested lists exhaust the parser's recursion before it fails
        raise learning.LessonMarkError(
            "The value is not JSON.", hint='Send a JSON list, such as ["q1", "q3"] or [0, 2].'
        ) from None


@require_POST
def lesson_marks_update(request: HttpRequest, course_slug: str, unit_slug: str, lesson_slug: str) -> HttpResponse:
    """Keep one quiz's opened answers or one checklist's ticks for the logged-in reader: 204, or 400 with why."""
    lesson = _lesson_or_404(course_slug, unit_slug, lesson_slug)
    if not request.user.is_authenticated:
        # Posted by the page's script, which keeps the state in the browser instead: no login page to follow.
        return JsonResponse(
            {"error": "Log in to keep your answers and ticks.", "problems": [], "hint": "They stay in this browser."},
            status=403,
        )
    try:
        value = _json_value(request.POST.get("value", ""))
        learning.lesson_mark_set(user=request.user, lesson=lesson, key=request.POST.get("key", ""), value=value)
    except learning.LessonMarkError as exc:
        return JsonResponse(exc.as_dict(), status=exc.http_status)
    return HttpResponse(status=204)


def _asset_headers(response: HttpResponse, *, sha256: str, filename: str, media_type: str) -> HttpResponse:
    response["Cache-Control"] = ASSET_CACHE_CONTROL
    response["ETag"] = f'"{sha256}"'
    response["X-Content-Type-Options"] = "nosniff"
    if media_type == "image/svg+xml":
        # Set here, so the site-wide policy (config/security.py only fills in a missing one) does not replace it.
        response["Content-Security-Policy"] = SVG_CONTENT_SECURITY_POLICY
    if media_type not in selectors.ASSET_IMAGE_TYPES:
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_safe
def course_asset(request: HttpRequest, sha256: str, filename: str) -> HttpResponse:
    """A course's image or data file by the digest of its bytes. Public, like the lessons that show it."""
    # Never reads request.user: the bytes are the same for everyone (config.security.PUBLIC_IMMUTABLE_VIEWS).
    media_type = selectors.asset_media_type(filename=filename)
    if media_type is None or not _SHA256_RE.match(sha256) or not _ASSET_FILENAME_RE.match(filename):
        raise Http404("No such course asset.")
    if f'"{sha256}"' in request.headers.get("If-None-Match", ""):
        # The digest is the content: a client holding this tag holds these bytes, no need to read them again.
        return _asset_headers(HttpResponse(status=304), sha256=sha256, filename=filename, media_type=media_type)
    asset = selectors.course_asset_get(sha256=sha256, filename=filename)
    if asset is None:
        raise Http404("No such course asset.")
    response = HttpResponse(bytes(asset.data), content_type=asset.media_type)
    return _asset_headers(response, sha256=sha256, filename=filename, media_type=asset.media_type)


def signup(request: HttpRequest) -> HttpResponse:
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    if request.user.is_authenticated:
        return HttpResponseRedirect(next_url or reverse("catalog"))
    form = SignupForm(request.POST or None)
    context = {"form": form, "next": next_url}
    if request.method == "POST":
        # Counted before the form is checked, so parallel requests cannot pass the limit; only accounts count.
        verdict = throttle.SIGNUPS.hit(throttle.address_key(request))
        if not verdict.allowed:
            throttle.form_refused(form, throttle.signup_refused_message(verdict))
            return throttle.refused_page(request, "registration/signup.html", context, verdict)
        if form.is_valid():
            try:
                with transaction.atomic():
                    user = form.save()
                    address = email_address_set(user=user, email=form.cleaned_data["email"])
            except IntegrityError:
                # Another signup took the address (or the name) between the form's check and the insert.
                form.add_error("email", EMAIL_TAKEN)
                throttle.SIGNUPS.undo(verdict)
                return render(request, "registration/signup.html", context, status=400)
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(
                request,
                f"Welcome, {user.get_username()}. Your account is ready. We mailed a link to {address.email}: "
                "open it to receive notifications by mail.",
            )
            return HttpResponseRedirect(next_url or reverse("catalog"))
        throttle.SIGNUPS.undo(verdict)
    return render(request, "registration/signup.html", context)
