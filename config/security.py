"""Security headers on every response, and a 405 for every HTTP method the site does not serve.

Wired into settings.MIDDLEWARE right after the request-id middleware, so it wraps everything else: Django's
SecurityMiddleware, the views, the admin, the static files (WhiteNoise) and the error pages. Headers a view set on
purpose are kept (`setdefault`); `Cache-Control: no-store` wins over anything a secret page's view set.
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse

# No inline script or style anywhere: every script and stylesheet is a file under /static/ (see the templates),
# which is what makes an injected `<script>` or `style=` inert even if escaping ever failed.
# KaTeX needs no exception: it writes its inline styles through the CSSOM (element.style), which CSP does not
# restrict; the few places where it would call setAttribute("style") are handled in courses/js/math.js.
# htmx needs none either: base.html turns off its injected indicator <style> and its eval (htmx-config).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",  # data: as the issue asks; nothing needs it today, and an image cannot run script
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# Powerful features nothing on the site uses, denied to the page and to anything it could embed. Only names
# Chromium knows: an unknown name is reported as an error in the console of every page.
DENIED_FEATURES = (
    "accelerometer",
    "autoplay",
    "bluetooth",
    "camera",
    "display-capture",
    "encrypted-media",
    "geolocation",
    "gyroscope",
    "hid",
    "idle-detection",
    "magnetometer",
    "microphone",
    "midi",
    "payment",
    "picture-in-picture",
    "publickey-credentials-get",
    "screen-wake-lock",
    "serial",
    "usb",
    "xr-spatial-tracking",
)
PERMISSIONS_POLICY = ", ".join(f"{feature}=()" for feature in DENIED_FEATURES)

HSTS = "max-age=31536000; includeSubDomains"

# Pages holding a secret or someone's personal results are never stored by a browser or a proxy cache: a shared
# computer's back button or disk cache must not show them to the next person. URL names as in the URL table;
# "namespace:*" covers a whole namespace. Every /api/ response is no-store too, matched or not (see below).
NO_STORE_VIEWS = frozenset(
    {
        # Secrets
        "api_tokens",
        # A learner's revisions, the grader's evidence, the live status fragment, the reviews
        "revision_detail",
        "revision_status",
        "revision_regrade",
        "reviews:*",
        # Accounts and passwords (Django's names for the password views, courses/password_urls.py)
        "login",
        "logout",
        "signup",
        "password_change",
        "password_change_done",
        "password_reset",
        "password_reset_done",
        "password_reset_confirm",
        "password_reset_complete",
        # The JSON API (token-authenticated, answers with revision details)
        "api_revision_create",
        "api_revision_detail",
        # The admin
        "admin:*",
    }
)
# Public files named by the digest of their bytes: the same for every reader, so a logged-in reader's request does
# not make them personal, and they keep their year-long cache lifetime.
PUBLIC_IMMUTABLE_VIEWS = frozenset({"course-asset"})
API_PREFIX = "/api/"

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def is_no_store(request: HttpRequest) -> bool:
    if request.path_info.startswith(API_PREFIX):
        return True
    match = getattr(request, "resolver_match", None)
    if match is not None and match.view_name in PUBLIC_IMMUTABLE_VIEWS:
        return False
    # A logged-in reader's pages carry personal results (progress, scores, their revisions): never kept by a
    # shared or back-button cache. Anonymous pages stay cacheable.
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return True
    if match is None:
        return False
    if match.view_name in NO_STORE_VIEWS:
        return True
    return any(f"{namespace}:*" in NO_STORE_VIEWS for namespace in match.namespaces)


def method_not_allowed(request: HttpRequest) -> HttpResponse:
    """TRACE, TRACK, CONNECT, PROPFIND…: refused before any view or other middleware sees them (so nothing is
    echoed back). Django's SecurityMiddleware and XFrameOptionsMiddleware do not see this answer either: the two
    headers they would add are set here."""
    response = _method_not_allowed_body(request)
    if getattr(settings, "SECURE_CONTENT_TYPE_NOSNIFF", True):
        response["X-Content-Type-Options"] = "nosniff"
    response["X-Frame-Options"] = getattr(settings, "X_FRAME_OPTIONS", "DENY")
    return response


def _method_not_allowed_body(request: HttpRequest) -> HttpResponse:
    if request.path_info.startswith(API_PREFIX):
        response = JsonResponse(
            {
                "error": f"{request.method} is not allowed.",
                "problems": [],
                "hint": f"Use {', '.join(ALLOWED_METHODS)}.",
            },
            status=405,
        )
        response["Allow"] = ", ".join(ALLOWED_METHODS)
        return response
    return HttpResponseNotAllowed(ALLOWED_METHODS, content=b"Method not allowed.\n", content_type="text/plain")


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        allowed = request.method in ALLOWED_METHODS
        response = self.get_response(request) if allowed else method_not_allowed(request)
        self.add_headers(request, response)
        return response

    def add_headers(self, request: HttpRequest, response: HttpResponse) -> None:
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.setdefault("Referrer-Policy", "same-origin")
        response.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        # Read per request, not at start-up, so override_settings in tests sees the value it set.
        if getattr(settings, "SESSION_COOKIE_SECURE", False):
            response.setdefault("Strict-Transport-Security", HSTS)
        if is_no_store(request) and "no-store" not in response.get("Cache-Control", ""):
            response["Cache-Control"] = "no-store"
