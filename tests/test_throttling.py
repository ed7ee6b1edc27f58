"""Throttles against an attacker: failed logins per (account, client address) on the site and the admin, signups
per address, API calls per token or per address, the client's address behind proxies, and the settings.

Personas: Ines, an instructor (and staff, so the admin's login is hers too) at her usual address; Mallory, who
guesses Ines's password from another address; Dora, a learner behind the same café address as Mallory.
Time is frozen (`FrozenClock`) and every test counts in a cache of its own, so nothing depends on the wall clock
or on what ran before.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.test import Client, RequestFactory

from config import throttle
from labs.services.tokens import api_token_create

pytestmark = pytest.mark.django_db

REPO_ROOT = Path(__file__).resolve().parent.parent
INES_ADDRESS = "198.51.100.7"
MALLORY_ADDRESS = "203.0.113.66"
PROXY_ADDRESS = "127.0.1.2"
PASSWORD = "ines-has-a-long-password-7"
# A window of every size used here starts exactly at this instant (a multiple of 3600 s).
FROZEN_AT = 1_800_000_000.0


class FrozenClock:
    """Stands in for config.throttle.clock: time moves only when a test says so."""

    def __init__(self, now: float = FROZEN_AT) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def use_private_throttle_cache(settings) -> None:
    """A fresh in-process "shared" cache for one test, whatever SHIPSHAPE_CACHE_URL says."""
    location = f"throttle-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        **settings.CACHES,
        "shared": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": location},
    }


@pytest.fixture(autouse=True)
def clock(settings, monkeypatch) -> FrozenClock:
    use_private_throttle_cache(settings)
    settings.TRUSTED_PROXIES = []
    settings.THROTTLE_LOGIN_FAILURES, settings.THROTTLE_LOGIN_FAILURES_SECONDS = 3, 900
    settings.THROTTLE_SIGNUPS, settings.THROTTLE_SIGNUPS_SECONDS = 2, 3600
    settings.THROTTLE_API_CALLS, settings.THROTTLE_API_CALLS_SECONDS = 2, 60
    settings.THROTTLE_API_ANONYMOUS_CALLS, settings.THROTTLE_API_ANONYMOUS_CALLS_SECONDS = 2, 60
    frozen = FrozenClock()
    monkeypatch.setattr(throttle, "clock", frozen)
    return frozen


@pytest.fixture
def ines():
    return get_user_model().objects.create_user(username="ines", password=PASSWORD, is_staff=True)


def at(address: str, **extra) -> Client:
    return Client(REMOTE_ADDR=address, **extra)


def log_in(client: Client, password: str, *, username: str = "ines", url: str = "/accounts/login/"):
    return client.post(url, {"username": username, "password": password})


def is_logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def assert_refused_page(response, *, message: str, retry_after: int) -> None:
    assert response.status_code == 429
    assert response["Retry-After"] == str(retry_after)
    page = response.content.decode()
    assert message in page
    assert 'name="password' in page, "the refusal is shown with the form, ready for the next try"


# --- failed logins --------------------------------------------------------------------------------------------


def test_it_throttles_failed_logins_per_account_and_address(ines, clock):
    mallory = at(MALLORY_ADDRESS)
    for guess in ("hunter2", "letmein", "password1"):
        response = log_in(mallory, guess)
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()

    clock.advance(60)
    response = log_in(mallory, PASSWORD)  # even the right password: no more checking from here

    assert_refused_page(
        response,
        message="Too many failed logins for this account from your network address. Try again in 14 minutes.",
        retry_after=840,
    )
    assert not is_logged_in(mallory)


def test_it_counts_the_account_however_it_is_spelled(ines):
    mallory = at(MALLORY_ADDRESS)
    for spelling in ("INES", "Ines", " ines "):
        assert log_in(mallory, "wrong", username=spelling).status_code == 200
    assert log_in(mallory, PASSWORD).status_code == 429


def test_it_does_not_lock_an_account_out_from_another_address(ines):
    mallory = at(MALLORY_ADDRESS)
    for _ in range(5):
        log_in(mallory, "guess")
    assert log_in(mallory, PASSWORD).status_code == 429

    own = at(INES_ADDRESS)
    response = log_in(own, PASSWORD)

    assert response.status_code == 302
    assert is_logged_in(own)


def test_it_does_not_refuse_other_accounts_from_the_same_address(ines):
    get_user_model().objects.create_user(username="dora", password="dora-long-password-3")
    cafe = at(MALLORY_ADDRESS)
    for _ in range(3):
        log_in(cafe, "guess")
    assert log_in(cafe, PASSWORD).status_code == 429

    dora = at(MALLORY_ADDRESS)
    assert log_in(dora, "dora-long-password-3", username="dora").status_code == 302


def test_a_successful_login_resets_the_count(ines):
    own = at(INES_ADDRESS)
    for _ in range(2):
        assert log_in(own, "typo").status_code == 200
    assert log_in(own, PASSWORD).status_code == 302
    own.post("/accounts/logout/")

    for _ in range(2):
        assert log_in(own, "typo").status_code == 200
    response = log_in(own, PASSWORD)  # the fifth try in the window, but only the second failure since success

    assert response.status_code == 302


def test_the_refusal_ends_with_its_window(ines, clock):
    mallory = at(MALLORY_ADDRESS)
    for _ in range(3):
        log_in(mallory, "guess")
    refused = log_in(mallory, "guess")
    assert refused.status_code == 429

    clock.advance(int(refused["Retry-After"]))

    assert log_in(mallory, PASSWORD).status_code == 302


def test_a_login_form_with_a_missing_field_is_not_counted(ines):
    mallory = at(MALLORY_ADDRESS)
    for _ in range(5):
        assert mallory.post("/accounts/login/", {"username": "ines", "password": ""}).status_code == 200
    assert log_in(mallory, PASSWORD).status_code == 302


def test_the_admin_login_is_throttled_too(ines, clock):
    mallory = at(MALLORY_ADDRESS)
    for _ in range(3):
        response = log_in(mallory, "guess", url="/admin/login/")
        assert response.status_code == 200
        assert "Please enter the correct username and password for a staff account" in response.content.decode()

    response = log_in(mallory, PASSWORD, url="/admin/login/")

    assert_refused_page(
        response,
        message="Too many failed logins for this account from your network address. Try again in 15 minutes.",
        retry_after=900,
    )
    assert "Django" in response.content.decode(), "the admin's own login page, not the site's"
    assert not is_logged_in(mallory)
    own = at(INES_ADDRESS)
    response = log_in(own, PASSWORD, url="/admin/login/")
    assert response.status_code == 302
    assert own.get("/admin/").status_code == 200


def test_the_site_and_admin_logins_share_one_count(ines):
    mallory = at(MALLORY_ADDRESS)
    log_in(mallory, "guess")
    log_in(mallory, "guess", url="/admin/login/")
    log_in(mallory, "guess")

    assert log_in(mallory, PASSWORD, url="/admin/login/").status_code == 429
    assert log_in(mallory, PASSWORD).status_code == 429


def test_a_refused_login_says_nothing_about_whether_the_account_exists(ines):
    mallory = at(MALLORY_ADDRESS)
    refusals = []
    for username in ("ines", "nobody-by-that-name"):
        for _ in range(3):
            log_in(mallory, "guess", username=username)
        refusals.append(log_in(mallory, "guess", username=username))

    assert [r.status_code for r in refusals] == [429, 429]
    assert refusals[0]["Retry-After"] == refusals[1]["Retry-After"]
    message = "Too many failed logins for this account from your network address."
    assert all(message in r.content.decode() for r in refusals)


# --- signups --------------------------------------------------------------------------------------------------


def sign_up(client: Client, username: str):
    password = f"{username}-long-password-42"
    data = {"username": username, "email": f"{username}@example.com", "password1": password, "password2": password}
    return client.post("/accounts/signup/", data)


def test_it_throttles_signups_per_address(clock):
    clock.advance(600)
    for name in ("bot1", "bot2"):
        assert sign_up(at(MALLORY_ADDRESS), name).status_code == 302

    response = sign_up(at(MALLORY_ADDRESS), "bot3")

    assert response.status_code == 429
    assert response["Retry-After"] == "3000"
    page = response.content.decode()
    assert "Too many accounts were created from your network address. Try again in 50 minutes." in page
    assert 'name="password1"' in page
    assert 'value="bot3"' in page, "what was typed is kept"
    assert not get_user_model().objects.filter(username="bot3").exists()
    assert sign_up(at(INES_ADDRESS), "grace").status_code == 302, "another address is not affected"


def test_signups_with_form_errors_do_not_use_up_the_allowance():
    dora = at(MALLORY_ADDRESS)
    for _ in range(4):
        mismatch = {"username": "dora", "password1": "dora-long-password-3", "password2": "other-password-3"}
        assert dora.post("/accounts/signup/", mismatch).status_code == 200

    assert sign_up(dora, "dora").status_code == 302
    assert sign_up(at(MALLORY_ADDRESS), "dora2").status_code == 302


# --- the API --------------------------------------------------------------------------------------------------


def api_get(client: Client, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/api/revisions/999999", headers=headers)


def assert_throttled_json(response, *, retry_after: int) -> None:
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == str(retry_after)
    body = response.json()
    assert body["error"]
    assert f"Wait {throttle.wait_phrase(retry_after)} " in body["hint"]
    assert body["retry_in_seconds"] == retry_after


def test_it_throttles_api_calls_per_token(ines, clock):
    _, token = api_token_create(user=ines)
    client = at(INES_ADDRESS)
    assert [api_get(client, token).status_code for _ in range(2)] == [404, 404]  # answered: no such revision
    clock.advance(15)

    response = api_get(client, token)

    assert_throttled_json(response, retry_after=45)
    assert response.json()["error"] == "Too many API calls with this token."
    dora = get_user_model().objects.create_user(username="dora")
    assert api_get(client, api_token_create(user=dora)[1]).status_code == 404, "another token is not affected"
    clock.advance(45)
    assert api_get(client, token).status_code == 404


def test_it_throttles_api_calls_without_a_valid_token_per_address(ines):
    mallory = at(MALLORY_ADDRESS)
    assert api_get(mallory).status_code == 401
    assert api_get(mallory, "ss_guessed-token").status_code == 401

    response = api_get(mallory, "ss_another-guess")

    assert_throttled_json(response, retry_after=60)
    assert response.json()["error"] == "Too many API calls without a valid token from your address."
    assert api_get(mallory, api_token_create(user=ines)[1]).status_code == 404, "a valid token is counted apart"
    assert api_get(at(INES_ADDRESS)).status_code == 401, "another address is not affected"


# --- the client's address -------------------------------------------------------------------------------------


def request_from(remote_addr: str, forwarded_for: str | None = None):
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().get("/", **extra)


def test_it_ignores_x_forwarded_for_from_an_untrusted_peer(ines, settings):
    settings.TRUSTED_PROXIES = ["127.0.1.0/24"]
    assert throttle.client_address(request_from(MALLORY_ADDRESS, INES_ADDRESS)) == MALLORY_ADDRESS

    # Mallory makes up a new X-Forwarded-For for every guess: each one is still counted as hers.
    for number in range(3):
        log_in(at(MALLORY_ADDRESS, HTTP_X_FORWARDED_FOR=f"192.0.2.{number}"), "guess")
    assert log_in(at(MALLORY_ADDRESS, HTTP_X_FORWARDED_FOR="192.0.2.99"), PASSWORD).status_code == 429
    # Claiming Ines's own address does not lock her out either.
    assert log_in(at(INES_ADDRESS), PASSWORD).status_code == 302


def test_it_believes_x_forwarded_for_only_from_a_trusted_proxy(settings):
    request = request_from(PROXY_ADDRESS, MALLORY_ADDRESS)
    assert throttle.client_address(request) == PROXY_ADDRESS, "no proxy is trusted unless configured"

    settings.TRUSTED_PROXIES = ["127.0.1.0/24"]
    assert throttle.client_address(request) == MALLORY_ADDRESS


@pytest.mark.parametrize(
    ("remote_addr", "forwarded_for", "expected"),
    [
        # The right-most address that is not a trusted proxy; what is left of it was written by the client.
        (PROXY_ADDRESS, f"192.0.2.1, {MALLORY_ADDRESS}, 127.0.1.9", MALLORY_ADDRESS),
        (PROXY_ADDRESS, f"{MALLORY_ADDRESS}:51234", MALLORY_ADDRESS),
        (PROXY_ADDRESS, "[2001:db8::7]:443", "2001:db8::7"),
        (PROXY_ADDRESS, f"::ffff:{MALLORY_ADDRESS}", MALLORY_ADDRESS),
        # Nothing but proxies: the farthest one is the best we know.
        (PROXY_ADDRESS, "127.0.1.8, 127.0.1.9", "127.0.1.8"),
        # Not an address where a proxy's entry should be: stop at the nearest trusted hop.
        (PROXY_ADDRESS, "<script>, 127.0.1.9", "127.0.1.9"),
        (PROXY_ADDRESS, "", PROXY_ADDRESS),
        (PROXY_ADDRESS, None, PROXY_ADDRESS),
        (f"::ffff:{MALLORY_ADDRESS}", INES_ADDRESS, MALLORY_ADDRESS),
    ],
)
def test_the_client_address_behind_trusted_proxies(settings, remote_addr, forwarded_for, expected):
    settings.TRUSTED_PROXIES = ["127.0.1.0/24"]
    assert throttle.client_address(request_from(remote_addr, forwarded_for)) == expected


def test_behind_a_trusted_proxy_each_client_has_its_own_count(ines, settings):
    settings.TRUSTED_PROXIES = [PROXY_ADDRESS]
    for number in range(3):  # the proxy appends the address it saw; Mallory's own prefix changes every time
        log_in(at(PROXY_ADDRESS, HTTP_X_FORWARDED_FOR=f"192.0.2.{number}, {MALLORY_ADDRESS}"), "guess")

    assert log_in(at(PROXY_ADDRESS, HTTP_X_FORWARDED_FOR=MALLORY_ADDRESS), PASSWORD).status_code == 429
    assert log_in(at(PROXY_ADDRESS, HTTP_X_FORWARDED_FOR=INES_ADDRESS), PASSWORD).status_code == 302


def test_ipv6_clients_are_counted_per_64():
    one = throttle.address_key(request_from("2001:db8:1:2::1"))
    same_host = throttle.address_key(request_from("2001:db8:1:2:ffff:ffff:ffff:9"))
    neighbour = throttle.address_key(request_from("2001:db8:1:3::1"))

    assert one == same_host == "2001:db8:1:2::/64"
    assert neighbour != one


# --- the shared cache -----------------------------------------------------------------------------------------


@pytest.mark.redis
def test_the_counters_live_in_redis_where_every_web_process_sees_them(ines, settings, redis_server):
    import redis

    from config.settings import _shared_cache

    settings.CACHES = {**settings.CACHES, "shared": _shared_cache("SHIPSHAPE_CACHE_URL", redis_server.url)}
    mallory = at(MALLORY_ADDRESS)
    raw = redis.Redis.from_url(redis_server.url)
    try:
        for _ in range(2):
            log_in(mallory, "guess")

        keys = raw.keys("shipshape-cache:*:throttle:login:*")
        assert len(keys) == 1
        assert int(raw.get(keys[0])) == 2
        assert 900 < raw.ttl(keys[0]) <= 960, "the key outlives its window, not much longer"
        # Another web process has a cache object of its own on the same Redis: it sees the same count.
        other_process = caches.create_connection("shared")
        assert other_process.get(keys[0].decode().split(":", 2)[2]) == 2
        log_in(mallory, "guess")
        assert log_in(mallory, PASSWORD).status_code == 429
        assert log_in(at(INES_ADDRESS), PASSWORD).status_code == 302
    finally:
        for key in raw.keys("shipshape-cache:*"):
            raw.delete(key)  # never clear(): it would flush the broker's database too
        raw.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_cache_outage_lets_logins_through_and_is_logged(ines, settings, caplog):
    settings.CACHES = {
        **settings.CACHES,
        "shared": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5},
        },
    }
    with caplog.at_level(logging.ERROR, logger="config.throttle"):
        response = log_in(at(INES_ADDRESS), PASSWORD)

    assert response.status_code == 302
    assert "throttle cache unavailable; letting the request through" in caplog.text


# --- settings -------------------------------------------------------------------------------------------------


def settings_in_subprocess(**env: str) -> subprocess.CompletedProcess:
    code = (
        "from config import settings as s; "
        "print(s.CACHES['shared']['BACKEND'], s.CACHES['shared'].get('LOCATION'), s.TRUSTED_PROXIES)"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPSHAPE_THROTTLE", "SHIPSHAPE_CACHE_URL"))}
    base.pop("SHIPSHAPE_TRUSTED_PROXIES", None)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**base, "SHIPSHAPE_DEV": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SHIPSHAPE_TRUSTED_PROXIES", "127.0.1.0/33"),
        ("SHIPSHAPE_TRUSTED_PROXIES", "proxy.internal"),
        ("SHIPSHAPE_CACHE_URL", "memcached://127.0.0.1:11211"),
        ("SHIPSHAPE_THROTTLE_LOGIN_FAILURES", "0"),
        ("SHIPSHAPE_THROTTLE_API_CALLS_SECONDS", "a minute"),
    ],
)
def test_a_bad_throttle_setting_stops_the_process_naming_the_variable(name, value):
    result = settings_in_subprocess(**{name: value})

    assert result.returncode != 0
    assert "ImproperlyConfiguredEnv" in result.stderr
    assert name in result.stderr


def test_the_shared_cache_is_redis_unless_told_locmem():
    redis_default = settings_in_subprocess(REDIS_URL="redis://127.0.0.1:6399/3")
    assert redis_default.stdout.split() == [
        "django.core.cache.backends.redis.RedisCache",
        "redis://127.0.0.1:6399/3",
        "[]",
    ]
    local = settings_in_subprocess(SHIPSHAPE_CACHE_URL="locmem://", SHIPSHAPE_TRUSTED_PROXIES="127.0.1.1, fd00::/8")
    assert local.stdout.split(" ", 2) == [
        "django.core.cache.backends.locmem.LocMemCache",
        "shipshape-shared",
        "['127.0.1.1', 'fd00::/8']\n",
    ]
