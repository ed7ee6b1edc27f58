"""The security headers of config/security.py: on every response of the site, for every persona; no template that
would need the policy loosened; no-store where a secret or someone's results are shown; HSTS only when cookies are
HTTPS-only; TRACE and other unknown methods refused everywhere."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.exceptions import NoReverseMatch

from config.security import CONTENT_SECURITY_POLICY, PERMISSIONS_POLICY
from courses.models import Enrollment, Lesson
from courses.services.importing import course_import
from labs.models import CheckResult, GradingRun, Lab, Review, Revision
from labs.services.tokens import api_token_create
from tests.courses import factories as course_factories
from tests.labs import factories as lab_factories

REPO_ROOT = Path(__file__).resolve().parents[1]
FILES = [{"path": "service.py", "size": 12, "sha256": "b" * 64}]
PERSONAS = ("anonymous", "learner", "staff")

# Pages that must never be stored by a browser or a proxy, written out here rather than read from
# config/security.py so a name dropped there fails a test. A namespace ends in ":*".
SECRET_PAGES = {
    "api_tokens",
    "revision_detail",
    "revision_status",
    "revision_regrade",
    "reviews:*",
    "login",
    "logout",
    "signup",
    "password_change",
    "password_change_done",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    "api_revision_create",
    "api_revision_detail",
    "admin:*",
}


@dataclass
class World:
    users: dict
    revision: Revision
    token: str

    def client(self, persona: str) -> Client:
        client = Client()
        if persona != "anonymous":
            client.force_login(self.users[persona])
        return client


@pytest.fixture
def world(db) -> World:
    course = course_factories.course_create(slug="shipping", title="Shipping")
    unit = course_factories.unit_create(course=course, position=1, slug="week-01")
    lesson = course_factories.lesson_create(unit=unit, position=1, slug="pinning")
    course_factories.graded_quiz_create(lesson=lesson, key="final")
    digest = "c" * 64
    lab = lab_factories.make_lab(course=course, slug="quote-service", starter_digest=digest)
    starters = settings.DATA_DIR / "starters"
    starters.mkdir(parents=True, exist_ok=True)
    (starters / f"{digest}.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)  # an empty zip

    user_model = get_user_model()
    learner = user_model.objects.create(username="learner")
    reviewer = user_model.objects.create(username="reviewer")
    staff = user_model.objects.create(username="staff", is_staff=True, is_superuser=True)
    course_factories.enrollment_create(user=learner, course=course)
    course_factories.enrollment_create(user=reviewer, course=course, role=Enrollment.Role.REVIEWER)
    revision = Revision.objects.create(
        lab=lab, user=learner, number=1, state="graded", tree_sha256="a" * 64, files=FILES, total_bytes=12
    )
    run = GradingRun.objects.create(revision=revision, attempt=1, phase="results_stored", outcome="graded")
    CheckResult.objects.create(
        run=run, position=1, check_id="has-service", kind="files.required", category="correctness",
        status="pass", points=5, max_points=5, message="service.py is there.",
    )  # fmt: skip
    Review.objects.create(revision=revision, reviewer=reviewer, decision="approved", rubric_scores={}, comment="Ok.")
    return World(users={"learner": learner, "staff": staff}, revision=revision, token=api_token_create(user=learner)[1])


# --- the URL table ---------------------------------------------------------------------------------------------


def url_names(resolver: URLResolver | None = None, namespace: str = "") -> list[tuple[str, list[str]]]:
    """Every named URL of the site as (view name, the keyword arguments it takes)."""
    resolver = resolver or get_resolver()
    names = []
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            names += url_names(entry, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            names.append((namespace + entry.name, list(entry.pattern.regex.groupindex)))
    return names


def sample_kwargs(view_name: str, world: World) -> dict[str, str]:
    """Arguments that name real rows where there is one (so the page renders), anything that reverses otherwise."""
    revision = world.revision
    known = {
        "course_slug": "shipping",
        "unit_slug": "week-01",
        "lesson_slug": "pinning",
        "lab_slug": "quote-service",
        "quiz_key": "final",
        "revision_id": str(revision.pk),
        "app_label": "labs",
        "content_type_id": str(ContentType.objects.get_for_model(Revision).pk),
        "object_id": str(revision.pk),
        "id": str(world.users["learner"].pk),
        "uidb64": "MQ",
        "token": "set-password",
    }
    match = re.fullmatch(r"admin:(\w+?)_(\w+)_(?:change|delete|history)", view_name)
    if match:  # the object of that admin page's own model
        try:
            model = apps.get_model(match.group(1), match.group(2))
        except LookupError:
            model = None
        first = model.objects.order_by("pk").first() if model else None
        known["object_id"] = str(first.pk) if first else "1"
    return known


def walk(world: World) -> list[tuple[str, str]]:
    pages = []
    for view_name, kwarg_names in url_names():
        known = sample_kwargs(view_name, world)
        kwargs = {name: known.get(name, "1") for name in kwarg_names}
        try:
            pages.append((view_name, reverse(view_name, kwargs=kwargs)))
        except NoReverseMatch:
            kwargs = {name: known.get(name, "x") for name in kwarg_names}
            pages.append((view_name, reverse(view_name, kwargs=kwargs)))  # fails loudly: add a sample value
    return pages


def is_secret(view_name: str, url: str) -> bool:
    namespace = view_name.rpartition(":")[0]
    return url.startswith("/api/") or view_name in SECRET_PAGES or f"{namespace}:*" in SECRET_PAGES


def assert_policy_headers(response, where: str) -> None:
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, where
    assert response["Permissions-Policy"] == PERMISSIONS_POLICY, where
    assert response["Referrer-Policy"] == "same-origin", where
    assert response["Cross-Origin-Opener-Policy"] == "same-origin", where


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_page_of_the_url_table_carries_the_policy_headers_for_each_persona(world, persona):
    client = world.client(persona)
    pages = walk(world)
    assert len(pages) > 40, pages  # the site's own pages and the admin's
    statuses = {}
    for view_name, url in pages:
        headers = {"Authorization": f"Bearer {world.token}"} if url.startswith("/api/") else {}
        response = client.get(url, headers=headers)
        where = f"GET {url} ({view_name}) as {persona}: {response.status_code}"
        statuses[view_name] = response.status_code
        assert_policy_headers(response, where)
        if is_secret(view_name, url):
            assert "no-store" in response.get("Cache-Control", ""), where
    # The walk reaches real pages, not only redirects and 404s.
    expected_ok = {"catalog", "course", "lesson", "lab_detail", "healthz"}
    if persona != "anonymous":
        expected_ok |= {"revision_detail", "revision_status", "api_tokens", "api_revision_detail"}
    if persona == "staff":
        expected_ok |= {"reviews:queue", "reviews:revision", "admin:index", "admin:labs_revision_changelist"}
        expected_ok |= {"admin:labs_revision_change", "admin:courses_lesson_changelist"}
    assert {name for name in expected_ok if statuses.get(name) != 200} == set(), statuses


@pytest.mark.parametrize(
    ("url", "persona"),
    [
        ("/nowhere/", "anonymous"),  # the HTML 404
        ("/api/nowhere", "anonymous"),  # the JSON 404
        ("/courses/shipping/enroll/", "learner"),  # a POST-only view's 405
        ("/review/", "learner"),  # a 404 for who may not review
    ],
)
def test_error_responses_carry_the_policy_headers_too(world, url, persona):
    response = world.client(persona).get(url)
    assert response.status_code in (404, 405)
    assert_policy_headers(response, url)


def test_a_post_answer_and_an_htmx_fragment_carry_the_policy_headers(world):
    client = world.client("learner")
    response = client.post("/courses/shipping/week-01/pinning/complete/", {}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert_policy_headers(response, "lesson-complete fragment")
    fragment = client.get(f"/revisions/{world.revision.pk}/status/", headers={"HX-Request": "true"})
    assert_policy_headers(fragment, "revision status fragment")


# --- no inline script or style in any template -----------------------------------------------------------------

SKIP_DIRS = {".venv", "var", "node_modules", "artifacts", ".git"}
INLINE = {
    "an inline <script> with a body": re.compile(r"<script\b[^>]*>\s*[^<\s]", re.IGNORECASE),
    "a <script> without src": re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "a <style> block": re.compile(r"<style\b", re.IGNORECASE),
    "a style= attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "an on*= event handler": re.compile(r"\son[a-z]{3,}\s*=", re.IGNORECASE),
    "a javascript: URL": re.compile(r"""=\s*["']?\s*javascript:""", re.IGNORECASE),
    "an htmx attribute htmx would eval": re.compile(
        r"\shx-(?:on\b|on:|vars\s*=)|hx-vals\s*=\s*['\"]\s*js:", re.IGNORECASE
    ),
}


def template_files() -> list[Path]:
    found = []
    for directory in REPO_ROOT.rglob("templates"):
        if directory.is_dir() and not SKIP_DIRS & set(directory.relative_to(REPO_ROOT).parts):
            found += [path for path in directory.rglob("*") if path.is_file() and path.suffix in {".html", ".txt"}]
    return sorted(found)


DJANGO_COMMENTS = re.compile(r"\{#.*?#\}|\{%\s*comment\b.*?%\}.*?\{%\s*endcomment\s*%\}", re.DOTALL)


def inline_code(text: str) -> list[str]:
    """What in this markup would need the policy loosened. Template comments never reach the browser: blanked out
    first, keeping their line breaks so line numbers stay right."""
    text = DJANGO_COMMENTS.sub(lambda match: re.sub(r"[^\n]", " ", match.group(0)), text)
    problems = []
    for what, pattern in INLINE.items():
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            problems.append(f"line {line}: {what}: {match.group(0).strip()[:60]!r}")
    return problems


def test_the_inline_checks_catch_each_kind_of_inline_code():
    samples = [
        "<script>alert(1)</script>",
        '<script type="module"></script>',
        "<style>p{}</style>",
        '<p style="color: red">',
        '<img src=x onerror="alert(1)">',
        '<a href="javascript:alert(1)">',
        '<button hx-on:click="alert(1)">',
    ]
    for sample in samples:
        assert inline_code(sample), sample
    fine = '<script src="/static/x.js" defer></script> <p class="one" hx-get="/x">Only one <em>style</em></p>'
    assert inline_code(fine) == []
    assert inline_code('{# no <script> here #}{% comment %}<p style="x">{% endcomment %}') == []


def test_no_template_has_inline_script_style_or_event_handlers():
    files = template_files()
    names = {path.relative_to(REPO_ROOT).as_posix() for path in files}
    assert {"config/templates/base.html", "labs/templates/labs/reviews/review.html"} <= names
    problems = [f"{path.relative_to(REPO_ROOT)}: {p}" for path in files for p in inline_code(path.read_text())]
    assert problems == [], "\n".join(problems)


@pytest.mark.django_db
def test_the_sample_course_renders_no_inline_script_style_or_event_handlers():
    course_import(path=REPO_ROOT / "courses" / "content" / "production-systems")
    rendered = [(f"lesson {lesson.slug}", lesson.html) for lesson in Lesson.objects.all()]
    rendered += [(f"lab {lab.slug}", lab.instructions_html) for lab in Lab.objects.all()]
    assert len(rendered) > 5
    problems = [f"{name}: {p}" for name, html in rendered for p in inline_code(html)]
    assert problems == [], "\n".join(problems)


# --- no-store --------------------------------------------------------------------------------------------------

SECRET_URLS = [
    ("/account/tokens/", "learner"),
    ("/revisions/{rev}/", "learner"),
    ("/revisions/{rev}/status/", "learner"),
    ("/review/", "staff"),
    ("/review/revisions/{rev}/", "staff"),
    ("/accounts/login/", "anonymous"),
    ("/accounts/signup/", "anonymous"),
    ("/admin/", "staff"),
    ("/admin/labs/revision/", "staff"),
    ("/admin/labs/revision/{rev}/change/", "staff"),
    ("/admin/login/", "anonymous"),
    ("/accounts/password/change/", "learner"),
    ("/accounts/password/reset/", "anonymous"),
]


@pytest.mark.parametrize(("url", "persona"), SECRET_URLS)
def test_pages_with_secrets_or_personal_results_are_never_stored(world, url, persona):
    response = world.client(persona).get(url.format(rev=world.revision.pk))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


def test_every_api_answer_is_never_stored_even_errors(world):
    auth = {"Authorization": f"Bearer {world.token}"}
    client = Client()
    answers = [
        client.get(f"/api/revisions/{world.revision.pk}", headers=auth),  # 200
        client.get(f"/api/revisions/{world.revision.pk}"),  # 401
        client.get("/api/revisions/999999", headers=auth),  # 404 from the view
        client.get("/api/nowhere"),  # 404 from the URL table
        client.post("/api/labs/shipping/quote-service/revisions", headers=auth),  # 400
        client.generic("TRACE", "/api/revisions/1"),  # 405 from the middleware
    ]
    assert [r.status_code for r in answers] == [200, 401, 404, 404, 400, 405]
    for response in answers:
        assert response["Cache-Control"] == "no-store", response.status_code


def test_a_logged_in_post_of_a_secret_page_is_never_stored(world):
    response = world.client("learner").post("/account/tokens/", {"action": "create"})
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("url", ["/", "/courses/shipping/", "/courses/shipping/week-01/pinning/"])
def test_public_pages_stay_cacheable(world, url):
    response = world.client("anonymous").get(url)
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")


# --- HSTS ------------------------------------------------------------------------------------------------------


def test_hsts_is_sent_when_cookies_are_https_only(world, settings):
    settings.SESSION_COOKIE_SECURE = True
    for url in ("/", "/api/nowhere", "/nowhere/"):
        response = Client().get(url)
        assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains", url


def test_no_hsts_when_cookies_may_travel_over_http(world, settings):
    settings.SESSION_COOKIE_SECURE = False
    for url in ("/", "/api/nowhere", "/nowhere/"):
        assert "Strict-Transport-Security" not in Client().get(url), url


# --- methods ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["TRACE", "TRACK", "CONNECT", "PROPFIND", "DEBUG", "BREW"])
@pytest.mark.parametrize("url", ["/", "/courses/shipping/", "/admin/", "/static/courses/css/site.css", "/nowhere/"])
def test_trace_and_other_unknown_methods_answer_405_everywhere(world, method, url):
    response = world.client("staff").generic(method, url, data="secret body", headers={"Cookie": "echo=me"})
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    assert b"secret body" not in response.content and b"echo=me" not in response.content  # TRACE echoes nothing
    assert_policy_headers(response, f"{method} {url}")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("method", ["TRACE", "TRACK"])
def test_trace_under_the_api_answers_405_in_json(world, method):
    response = Client().generic(method, f"/api/revisions/{world.revision.pk}")
    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["error"] == f"{method} is not allowed."
    assert "GET" in body["hint"]
    assert response["Allow"] == "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


def test_the_usual_methods_still_reach_the_views(world):
    client = world.client("learner")
    assert client.head("/").status_code == 200
    # The API's own 405 (its Allow names the view's methods), not the middleware's.
    response = Client().patch(f"/api/revisions/{world.revision.pk}", headers={"Authorization": f"Bearer {world.token}"})
    assert response.status_code == 405
    assert "GET" in response["Allow"] and "PATCH" not in response["Allow"]


@pytest.mark.django_db
def test_every_page_a_logged_in_reader_gets_is_no_store_and_anonymous_pages_are_not():
    from django.test import Client

    from tests.labs.factories import make_user

    client = Client()
    assert "no-store" not in client.get("/").get("Cache-Control", "")
    client.force_login(make_user())
    assert "no-store" in client.get("/")["Cache-Control"]
