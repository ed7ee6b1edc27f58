"""Malformed ids never crash the site: every URL pattern, query parameter and form field that takes an id, fed
hostile values, as site staff (a superuser, so the admin's own lookups run) and as a learner.

A refusal may be 404, 400, 403, 405, 302 or a 200 showing the page without the filter; a 500 never.

The URL patterns are walked from Django's resolver, so a new route with an id is covered the day it is added;
a route parameter this file does not know fails `test_every_route_parameter_is_known_to_this_file` until it
is classified below. Query parameters and form fields cannot be discovered from the resolver, so the view
source is scanned instead: every `request.GET`/`request.POST` name our views read must be listed here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import models
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils.http import urlsafe_base64_encode

from courses.models import Enrollment
from labs.models import CheckResult, GradingRun, Revision
from labs.services.tokens import api_token_create
from tests.courses import factories as course_factories
from tests.labs import factories as lab_factories

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parent.parent

# What an attacker types where an id goes: digits `str.isdigit` accepts and `int` refuses (²) or accepts
# against expectation (٣, fullwidth 1), numbers past SQLite's and PostgreSQL's 64-bit integers, signs, blanks, floats,
# padding and a NUL.
HOSTILE_IDS = [
    "²",
    "٣",
    "\uff11",  # FULLWIDTH DIGIT ONE: int() reads 1
    "9999999999999999999999999",
    "9223372036854775808",  # 2**63: one past the largest BIGINT
    "9" * 5000,  # past the 4300 digits int() parses at all
    "-1",
    "-9223372036854775809",
    "0",
    "",
    "1e3",
    " 1",
    "1\x00",
]

PERSONAS = ("staff", "learner")

# Route parameters that are not ids, and the value that makes the route resolve to a real object.
NOT_ID_ROUTE_PARAMS = {
    "course_slug": "shipping",
    "lab_slug": "quote-service",
    "unit_slug": "week-01",
    "lesson_slug": "pinning",
    "quiz_key": "final",
    "app_label": "labs",  # admin's app index: a regex of the installed app labels
    "url": "nowhere/",  # admin's catch-all
    "token": "set-password",  # password reset: the token beside the (id) uidb64
    "sha256": "0" * 64,  # a course asset's digest, checked against a pattern before any query
    "filename": "flow.png",  # a course asset's name, checked against a pattern and its media type
}


def is_id_param(name: str, converter: str | None) -> bool:
    return converter == "int" or name in ("id", "pk", "uidb64") or name.endswith(("_id", "_pk"))


# --- the walk over the resolver --------------------------------------------------------------------------------

_ROUTE_PARAM = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")
_REGEX_PARAM = re.compile(r"\(\?P<(?P<name>\w+)>(?P<body>(?:[^()]|\([^()]*\))*)\)")


@dataclass(frozen=True)
class Route:
    template: str  # the URL with "{name}" where each parameter goes
    params: tuple[tuple[str, str | None], ...]  # (name, converter) in order
    callback: object
    name: str

    @property
    def id_params(self) -> list[str]:
        return [name for name, converter in self.params if is_id_param(name, converter)]

    def url(self, values: dict[str, str]) -> str:
        return "/" + self.template.format(**{k: quote(v, safe="") for k, v in values.items()})


def _template_of(pattern) -> tuple[str, list[tuple[str, str | None]]]:
    text = str(pattern.pattern)
    params: list[tuple[str, str | None]] = []
    if hasattr(pattern.pattern, "_route"):
        escaped = text.replace("{", "{{").replace("}", "}}")

        def route_param(match: re.Match) -> str:
            params.append((match["name"], match["converter"]))
            return "{" + match["name"] + "}"

        return _ROUTE_PARAM.sub(route_param, escaped), params

    def regex_param(match: re.Match) -> str:
        params.append((match["name"], None))
        return "{" + match["name"] + "}"

    text = text.removeprefix("^").removesuffix("$").removesuffix("\\Z")
    return _REGEX_PARAM.sub(regex_param, text.replace("{", "{{").replace("}", "}}")), params


def walk(patterns=None, prefix: str = "", prefix_params: tuple = ()) -> list[Route]:
    routes: list[Route] = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        template, params = _template_of(pattern)
        if isinstance(pattern, URLResolver):
            routes += walk(pattern.url_patterns, prefix + template, prefix_params + tuple(params))
        elif isinstance(pattern, URLPattern):
            name = pattern.name or getattr(pattern.callback, "__name__", "?")
            routes.append(Route(prefix + template, prefix_params + tuple(params), pattern.callback, name))
    return routes


ROUTES = walk()
ID_ROUTES = [route for route in ROUTES if route.id_params]


# --- the world the requests run against ------------------------------------------------------------------------


@dataclass
class World:
    users: dict
    tokens: dict
    revision: Revision

    def client(self, persona: str) -> Client:
        # A crash comes back as the 500 it would be in production, so one test reports every failing value.
        client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {self.tokens[persona]}")
        client.force_login(self.users[persona])
        return client


@pytest.fixture
def world(settings, tmp_path) -> World:
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    course = course_factories.course_create(slug="shipping", title="Shipping")
    unit = course_factories.unit_create(course=course, position=1, slug="week-01")
    lesson = course_factories.lesson_create(unit=unit, position=1, slug="pinning")
    course_factories.graded_quiz_create(lesson=lesson, key="final")
    lab = lab_factories.make_lab(course=course, slug="quote-service")
    staff = get_user_model().objects.create(username="boss", is_staff=True, is_superuser=True)
    learner = get_user_model().objects.create(username="learner")
    course_factories.enrollment_create(user=learner, course=course)
    revision = Revision.objects.create(
        lab=lab,
        user=learner,
        number=1,
        state="graded",
        tree_sha256="a" * 64,
        files=[{"path": "service.py", "size": 12, "sha256": "b" * 64}],
        total_bytes=12,
    )
    run = GradingRun.objects.create(revision=revision, attempt=1, phase="results_stored", outcome="graded")
    CheckResult.objects.create(
        run=run, position=1, check_id="has-service", kind="files.required", category="correctness",
        status="pass", points=5, max_points=5, message="ok",
    )  # fmt: skip
    users = {"staff": staff, "learner": learner}
    tokens = {name: api_token_create(user=user)[1] for name, user in users.items()}
    return World(users=users, tokens=tokens, revision=revision)


def _hostile_values(param: str) -> list[str]:
    if param != "uidb64":
        return HOSTILE_IDS
    # A base64 id is decoded before it is looked up: hostile both as it arrives and once decoded.
    return HOSTILE_IDS + [urlsafe_base64_encode(value.encode()) for value in HOSTILE_IDS if value]


def _valid_values(route: Route, world: World) -> dict[str, str]:
    values = {}
    for name, _converter in route.params:
        if name in NOT_ID_ROUTE_PARAMS:
            values[name] = NOT_ID_ROUTE_PARAMS[name]
        elif name == "uidb64":
            values[name] = urlsafe_base64_encode(str(world.users["learner"].pk).encode())
        else:
            values[name] = str(world.revision.pk)
    return values


def _not_a_crash(response, what: str, failures: list[str]) -> None:
    if response.status_code >= 500:
        exc = getattr(response, "exc_info", None)
        failures.append(f"{what}: {response.status_code} {exc[1]!r}" if exc else f"{what}: {response.status_code}")


def assert_none(failures: list[str]) -> None:
    if failures:
        pytest.fail(f"{len(failures)} requests answered 500:\n" + "\n".join(failures), pytrace=False)


# --- the tests -------------------------------------------------------------------------------------------------


def test_every_route_parameter_is_known_to_this_file():
    unknown = {
        (route.template, name)
        for route in ROUTES
        for name, converter in route.params
        if not is_id_param(name, converter) and name not in NOT_ID_ROUTE_PARAMS
    }
    assert not unknown, f"classify these route parameters as ids or not: {sorted(unknown)}"


def test_the_walk_finds_the_routes_that_take_ids():
    names = {route.name for route in ID_ROUTES}
    expected = {
        "revision_detail",
        "revision_status",
        "revision_regrade",
        "api_revision_detail",
        "revision",  # reviews:revision
        "labs_revision_change",
        "auth_user_password_change",
        "view_on_site",
    }
    assert expected <= names, expected - names


@pytest.mark.parametrize("route", ID_ROUTES, ids=[route.template for route in ID_ROUTES])
def test_no_id_route_answers_500_to_a_hostile_id(world, route):
    # The template must build URLs that reach this very view, or the hostile requests below prove nothing.
    valid = route.url(_valid_values(route, world))
    assert resolve(valid.split("?")[0]).func == route.callback, valid
    failures: list[str] = []
    for persona in PERSONAS:
        client = world.client(persona)
        for param in route.id_params:
            for value in _hostile_values(param):
                url = route.url({**_valid_values(route, world), param: value})
                for method in ("get", "post"):
                    response = getattr(client, method)(url)
                    _not_a_crash(response, f"{method.upper()} {url!r} as {persona}", failures)
    assert_none(failures)


# Query parameters and form fields that carry an id or a number standing for one: (method, URL, the rest of the
# data, the field the hostile value goes into).
FIELD_CASES = [
    ("get", "/review/shipping/", {}, "lab"),
    ("get", "/review/shipping/", {}, "page"),
    ("get", "/review/revisions/{rev}/", {}, "against"),
    ("post", "/review/revisions/{rev}/comments/", {"path": "service.py", "body": "x"}, "line"),
    ("post", "/courses/shipping/work/{work}/override/", {"reason": "x"}, "grade"),
    ("get", "/courses/shipping/gradebook/", {}, "page"),
    ("post", "/account/tokens/", {"action": "revoke"}, "token_id"),
    ("post", "/account/tokens/", {"action": "create"}, "expires_in_days"),
    ("post", "/courses/shipping/week-01/pinning/quiz/final/", {}, "q0"),
    ("post", "/review/revisions/{rev}/", {"decision": "approved", "fc-path": "service.py", "fc-body": "x"}, "fc-line"),
    ("post", "/review/revisions/{rev}/", {"decision": "approved"}, "score-overall"),
    ("get", "/work/{work}/diff/", {"new": "1"}, "old"),
    ("get", "/work/{work}/diff/", {"old": "1"}, "new"),
    ("get", "/notifications/", {}, "page"),
]

# Every name our views read from request.GET / request.POST, and why it is not fed ids here.
NOT_ID_FIELDS = {
    "paths": "upload paths, covered by the upload validation tests",
    "action": "a choice between two words",
    "completed": "compared with '0', never converted",
    "next": "a redirect target, covered by the open-redirect tests",
    "decision": "a choice, validated by the review service",
    "comment": "free text",
    "fc-path": "a file name checked against the revision's manifest",
    "fc-body": "free text",
    "path": "a file name checked against the revision's manifest",
    "reason": "free text",
    "state": "a choice among the loop's states, anything else ignored",
    "learner": "a substring of a username",
    "body": "free text",
    "key": "a reader-mark key, matched against a pattern by the marks service",
    "value": "a reader mark's JSON list, parsed and validated by the marks service",
}


def _fields_our_views_read() -> set[str]:
    found = set()
    # request.GET/POST.get("x"), and post.get("x") where a view names request.POST `post`.
    pattern = re.compile(r"(?:request\.(?:GET|POST)|\bpost)\.(?:get|getlist)\(\s*f?[\"']([^\"'{]+)")
    for folder in ("courses", "labs", "config", "core"):
        for path in (REPO / folder).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            found.update(pattern.findall(path.read_text(encoding="utf-8")))
    return found


def test_every_field_our_views_read_is_fed_hostile_ids_or_explained():
    assert {"lab", "token_id", "fc-line", "next"} <= _fields_our_views_read(), "the scan of the views found too little"
    covered = {field.rstrip("0") for _m, _u, _d, field in FIELD_CASES} | {"score-"}
    unexplained = {
        name for name in _fields_our_views_read() if name not in NOT_ID_FIELDS and name.rstrip("0") not in covered
    }
    assert not unexplained, f"add these request fields to FIELD_CASES or NOT_ID_FIELDS: {sorted(unexplained)}"


@pytest.mark.parametrize(("method", "url", "data", "field"), FIELD_CASES, ids=[f"{c[1]} {c[3]}" for c in FIELD_CASES])
def test_no_id_field_answers_500_to_a_hostile_value(world, method, url, data, field):
    if "{work}" in url:
        url = url.format(work=lab_factories.loop_record(world.revision).pk)
    url = url.format(rev=world.revision.pk)
    failures: list[str] = []
    for persona in PERSONAS:
        client = world.client(persona)
        for value in HOSTILE_IDS:
            response = getattr(client, method)(url, {**data, field: value})
            _not_a_crash(response, f"{method.upper()} {url} {field}={value!r} as {persona}", failures)
    assert_none(failures)


def _admin_relation_filters() -> list[tuple[str, str]]:
    """(changelist URL, query parameter) for every relation a registered model admin filters its list by."""
    cases = []
    for model, model_admin in admin.site._registry.items():
        changelist = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for spec in model_admin.list_filter:
            if not isinstance(spec, str):
                continue
            field, target = None, model
            for part in spec.split("__"):
                field = target._meta.get_field(part)
                target = field.related_model
            if field is not None and field.is_relation:
                cases.append((changelist, f"{spec}__{field.target_field.name}__exact"))
    return cases


ADMIN_FILTERS = _admin_relation_filters()


def test_the_admin_filters_are_found():
    assert ("/admin/labs/revision/", "lab__course__id__exact") in ADMIN_FILTERS


@pytest.mark.parametrize(("url", "param"), ADMIN_FILTERS, ids=[f"{u}?{p}" for u, p in ADMIN_FILTERS])
def test_no_admin_list_filter_answers_500_to_a_hostile_id(world, url, param):
    failures: list[str] = []
    for persona in PERSONAS:
        client = world.client(persona)
        for value in HOSTILE_IDS:
            _not_a_crash(client.get(url, {param: value}), f"GET {url}?{param}={value!r} as {persona}", failures)
    assert_none(failures)


def _admin_models() -> list:
    return [pytest.param(model, id=model._meta.label) for model in admin.site._registry]


def _changelist(model) -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/"


@pytest.mark.parametrize("model", _admin_models())
def test_no_admin_action_answers_500_to_hostile_selected_rows(world, model):
    failures: list[str] = []
    for persona in PERSONAS:
        client = world.client(persona)
        for value in HOSTILE_IDS:
            action = {"action": "delete_selected", "index": "0", "_selected_action": [value, "1"]}
            response = client.post(_changelist(model), action)
            _not_a_crash(response, f"POST {_changelist(model)} _selected_action={value!r} as {persona}", failures)
    assert_none(failures)


@pytest.mark.parametrize("model", _admin_models())
def test_no_admin_add_form_answers_500_to_hostile_related_ids(world, model):
    relations = [
        f.name
        for f in model._meta.get_fields()
        if f.concrete and isinstance(f, models.ForeignKey | models.ManyToManyField)
    ]
    url = _changelist(model) + "add/"
    failures: list[str] = []
    for persona in PERSONAS:
        client = world.client(persona)
        for value in HOSTILE_IDS:
            response = client.post(url, dict.fromkeys(relations, value))
            _not_a_crash(response, f"POST {url} {relations}={value!r} as {persona}", failures)
    assert_none(failures)


@pytest.mark.parametrize(
    "model",
    [param for param in _admin_models() if admin.site._registry[param.values[0]].list_editable],
)
def test_no_admin_list_edit_answers_500_to_hostile_row_ids(world, model):
    model_admin = admin.site._registry[model]
    failures: list[str] = []
    for persona in PERSONAS:
        client = world.client(persona)
        for value in HOSTILE_IDS:
            data = {"form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": value, "_save": "Save"}
            data.update({f"form-0-{name}": "x" for name in model_admin.list_editable})
            response = client.post(_changelist(model), data)
            _not_a_crash(response, f"POST {_changelist(model)} form-0-id={value!r} as {persona}", failures)
    assert_none(failures)


def test_a_reviewer_filter_by_a_huge_lab_id_shows_the_whole_queue(world):
    reviewer = get_user_model().objects.create(username="rev")
    course_factories.enrollment_create(user=reviewer, course=world.revision.lab.course, role=Enrollment.Role.REVIEWER)
    client = Client()
    client.force_login(reviewer)
    work = lab_factories.loop_record(world.revision)
    response = client.get("/review/shipping/", {"lab": "9999999999999999999999999"})
    assert response.status_code == 200
    assert f'data-work="{work.pk}"' in response.content.decode()
