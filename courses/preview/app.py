"""The preview's WSGI application: pages, the site's static files, the course's assets and the change feed.

Plain WSGI rather than Django's request handler: the site's middleware and context processors reach for sessions
and users, and the preview must run without a database. Headers follow the site's (config/security.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import mimetypes
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from django.contrib.staticfiles import finders
from django.core.exceptions import SuspiciousFileOperation
from django.template.loader import render_to_string

from config.security import CONTENT_SECURITY_POLICY, PERMISSIONS_POLICY
from courses import selectors
from courses.coursefs.assets import content_problem
from courses.coursefs.spec import CourseSpec
from courses.preview import pages
from courses.preview.watch import CoursePreview
from courses.views import ASSET_CACHE_CONTROL, SVG_CONTENT_SECURITY_POLICY

logger = logging.getLogger(__name__)

POLL_TIMEOUT_SECONDS = 25.0  # below the usual idle timeouts of browsers and proxies
STATUS_TEXT = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}

_LESSON = re.compile(r"^/courses/(?P<course>[^/]+)/(?P<unit>[^/]+)/(?P<lesson>[^/]+)/$")
_LAB = re.compile(r"^/courses/(?P<course>[^/]+)/labs/(?P<lab>[^/]+)/$")
_COURSE = re.compile(r"^/courses/(?P<course>[^/]+)/$")
# A page on another site may resolve its own name to 127.0.0.1 (DNS rebinding) and read the drafts and graded
# answers the preview shows: answer only requests addressed to a loopback name.
_LOOPBACK_HOST = re.compile(r"^(?:127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?$")
_ASSET = re.compile(r"^/course-assets/(?P<sha256>[0-9a-f]{64})/(?P<filename>[^/]+)$")


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _html(page: pages.Page, preview: CoursePreview) -> Response:
    context = {
        **page.context,
        "static": pages.STATIC_PREFIX,
        "changes_url": pages.CHANGES_PATH,
        "version": preview.version,
        "root": str(preview.root),
        "problem_count": len(preview.result.problems),
    }
    body = render_to_string(page.template, context).encode()
    # Drafts change on every save: never kept by the browser, so a reload always shows the latest read.
    return Response(page.status, body, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"})


class PreviewApp:
    def __init__(self, preview: CoursePreview, *, poll_timeout: float = POLL_TIMEOUT_SECONDS) -> None:
        self.preview = preview
        self.poll_timeout = poll_timeout

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        response = self.respond(environ)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.headers.update(
            {
                "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY",
                "Referrer-Policy": "same-origin",
                "Content-Length": str(len(response.body)),
            }
        )
        status = f"{response.status} {STATUS_TEXT.get(response.status, '')}".strip()
        start_response(status, list(response.headers.items()))
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [response.body]

    def respond(self, environ: dict) -> Response:
        if not _LOOPBACK_HOST.match(environ.get("HTTP_HOST", "")):
            return Response(
                400,
                b"The preview answers only requests addressed to 127.0.0.1, localhost or [::1].\n",
                {"Content-Type": "text/plain; charset=utf-8"},
            )
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return Response(405, b"The preview only serves GET and HEAD.\n", {"Allow": "GET, HEAD"})
        try:
            # WSGI hands the path over as latin-1; URLs of the course are UTF-8.
            path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8")
        except UnicodeError:
            return Response(404, b"Not found.\n", {"Content-Type": "text/plain; charset=utf-8"})
        try:
            return self.route(path, environ.get("QUERY_STRING", ""))
        except Exception as exc:  # a bug in one page must not stop the preview
            logger.exception("the preview failed to serve %s", path)
            page = pages.Page("courses/preview/error.html", {"error": f"{type(exc).__name__}: {exc}"}, 500)
            return _html(page, self.preview)

    def route(self, path: str, query: str) -> Response:
        if path.startswith(pages.STATIC_PREFIX):
            return static_response(path.removeprefix(pages.STATIC_PREFIX))
        if path == pages.CHANGES_PATH:
            since = parse_qs(query).get("since", [""])[0]
            version = self.preview.wait_for_change(since=since, timeout=self.poll_timeout)
            body = json.dumps({"version": version}).encode()
            return Response(200, body, {"Content-Type": "application/json", "Cache-Control": "no-store"})
        result = self.preview.result  # one read for the whole request, even if the course is re-read meanwhile
        course = result.course
        if match := _ASSET.match(path):
            return asset_response(course, match["sha256"], match["filename"])
        sources = pages.SourceFiles(self.preview.root)
        if course is None:
            return _html(pages.broken_page(result.problems, sources), self.preview)
        return _html(self.page(course, result.problems, sources, path), self.preview)

    def page(self, course: CourseSpec, problems: list, sources: pages.SourceFiles, path: str) -> pages.Page:
        if path == "/" or ((match := _COURSE.match(path)) and match["course"] == course.slug):
            return pages.outline_page(course, problems, sources)
        if (match := _LAB.match(path)) and match["course"] == course.slug:
            for lab in course.labs():
                if lab.slug == match["lab"]:
                    return pages.lab_page(course, problems, sources, lab)
        if (match := _LESSON.match(path)) and match["course"] == course.slug:
            for lesson in course.lessons():
                if lesson.unit_slug == match["unit"] and lesson.slug == match["lesson"]:
                    return pages.lesson_page(course, problems, sources, lesson)
        file = self.preview.known_files.get(path, "")
        return pages.missing_page(course, problems, sources, path=path, file=file)


def _not_found(message: str) -> Response:
    return Response(404, f"{message}\n".encode(), {"Content-Type": "text/plain; charset=utf-8"})


def static_response(name: str) -> Response:
    """A file of the site's static files, found as Django finds them (the app folders), never outside them."""
    if not name or any(part in ("", ".", "..") for part in name.split("/")):
        return _not_found("No such static file.")
    try:
        found = finders.find(name)
    except SuspiciousFileOperation:
        found = None
    if not found or not Path(found).is_file():
        return _not_found("No such static file.")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type in ("application/javascript", "text/javascript"):
        media_type += "; charset=utf-8"
    # Revalidated on every load: the author may be editing the site's CSS too.
    return Response(200, Path(found).read_bytes(), {"Content-Type": media_type, "Cache-Control": "no-cache"})


def asset_response(course: CourseSpec | None, sha256: str, filename: str) -> Response:
    """A course asset at its site URL, with the site's headers (courses.views.course_asset), read from the folder.

    The file is hashed again: after a save the old digest names content that is gone, and an immutable URL must
    never answer with other bytes.
    """
    media_type = selectors.asset_media_type(filename=filename)
    candidates = [a for a in course.assets.values() if a.sha256 == sha256] if course is not None else []
    # The same bytes may be shipped under two names: prefer the file the URL names, then one of the URL's type.
    candidates.sort(key=lambda a: (a.filename != filename, a.media_type != media_type))
    if media_type is None or not candidates:
        return _not_found("No such course asset.")
    asset = candidates[0]
    try:
        data = asset.source.read_bytes()
    except OSError:
        return _not_found("No such course asset.")
    if hashlib.sha256(data).hexdigest() != sha256:
        return _not_found("No such course asset (the file changed; the page reloads with its new address).")
    if media_type != asset.media_type and content_problem(filename, data) is not None:
        return _not_found("No such course asset.")
    asset = dataclasses.replace(asset, media_type=media_type)
    headers = {"Content-Type": asset.media_type, "Cache-Control": ASSET_CACHE_CONTROL, "ETag": f'"{sha256}"'}
    if asset.media_type == "image/svg+xml":
        headers["Content-Security-Policy"] = SVG_CONTENT_SECURITY_POLICY
    if asset.media_type not in selectors.ASSET_IMAGE_TYPES:
        # The stored name, checked by the loader, not the URL's: nothing from the request goes into a header.
        headers["Content-Disposition"] = f'attachment; filename="{asset.filename}"'
    return Response(200, data, headers)
