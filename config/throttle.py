"""Throttles on the shared cache: failed logins per (account, client address), signups per address, API calls per
token (and per address when no valid token is sent).

Each throttle is a fixed-window counter in Django's "shared" cache (Redis, so every web process counts together):
`cache.add(key, 0)` then `cache.incr(key)`, one key per subject and window, expiring after the window. A request is
counted before it is judged, so parallel requests cannot slip past the limit between a check and an update.

Every throttle identifies the client with `client_address(request)`, which believes `X-Forwarded-For` only when the
request comes from one of `settings.TRUSTED_PROXIES`. If the cache cannot be reached, the throttles let requests
through and log an error: a Redis outage must not lock everyone out of the site.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.forms import Form
from django.forms.utils import ErrorDict
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.debug import sensitive_variables

logger = logging.getLogger(__name__)

SHARED_CACHE = "shared"
# Tests replace this to freeze time; everything here reads the time through it.
clock: Callable[[], float] = time.time

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- the client's address -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _parse_address(text: str) -> IPAddress | None:
    """An address as REMOTE_ADDR or a proxy writes it (`1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:80`), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has at least two colons
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(request: HttpRequest) -> str:
    """The address of the client that sent `request`.

    REMOTE_ADDR, unless it is one of `settings.TRUSTED_PROXIES`: then `X-Forwarded-For` is read from the right
    (each proxy appends the address it got the request from) and the first address that is not a trusted proxy is
    the client. Anything to its left was written by the client and may be made up. A client's own X-Forwarded-For
    is never believed, because its request does not come from a trusted proxy.
    """
    remote_text = request.META.get("REMOTE_ADDR", "")
    remote = _parse_address(remote_text)
    if remote is None:
        return remote_text or "unknown"
    proxies = _networks(tuple(getattr(settings, "TRUSTED_PROXIES", ())))
    if not any(remote in network for network in proxies):
        return str(remote)
    nearest = remote
    for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = _parse_address(hop)
        if address is None:
            # Not an address: a trusted proxy would never write that, so what is left of here is the client's.
            break
        if not any(address in network for network in proxies):
            return str(address)
        nearest = address
    return str(nearest)


def address_key(request: HttpRequest) -> str:
    """The client address as the throttles count it: IPv6 clients by /64, since one host usually holds a whole
    /64 and could otherwise take a new address for every request."""
    client = client_address(request)
    address = _parse_address(client)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return client


def account_key(username: str) -> str:
    """The account a login names, folded so that case and Unicode variants of one name share a counter."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


# --- counters -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    count: int  # requests counted in this window, this one included
    limit: int
    retry_in_seconds: int  # until the window ends (when refused, when to try again)
    key: str | None = None  # the cache key counted, or None when the cache could not be reached


@dataclass(frozen=True)
class Throttle:
    """`limit` requests per `window` seconds per subject; both read from settings at every use."""

    scope: str
    limit_setting: str
    window_setting: str

    @property
    def limit(self) -> int:
        return int(getattr(settings, self.limit_setting))

    @property
    def window(self) -> int:
        return int(getattr(settings, self.window_setting))

    def hit(self, *subject: str) -> Verdict:
        """Count one request by `subject` and judge it: allowed while the window's count is at most the limit."""
        limit, window, now = self.limit, self.window, clock()
        index = int(now // window)
        retry = max(1, math.ceil((index + 1) * window - now))
        digest = hashlib.sha256("\0".join(subject).encode()).hexdigest()[:32]
        key = f"throttle:{self.scope}:{digest}:{index}"
        # The key outlives its window (with a margin for slow requests), never the other way round; the next
        # window has a key of its own.
        timeout = window + 60
        try:
            cache = caches[SHARED_CACHE]
            cache.add(key, 0, timeout=timeout)
            try:
                count = cache.incr(key)
            except ValueError:  # evicted between add and incr
                count = 1 if cache.add(key, 1, timeout=timeout) else cache.incr(key)
        except Exception as exc:  # whatever the backend raises when its server is away
            # One line per request, not a traceback: during an outage there is one for every login.
            logger.error(
                "throttle cache unavailable; letting the request through",
                extra={"scope": self.scope, "error": f"{type(exc).__name__}: {exc}"},
            )
            return Verdict(True, 0, limit, retry)
        return Verdict(count <= limit, count, limit, retry, key)

    def undo(self, verdict: Verdict) -> None:
        """Take back a hit that turned out not to count (a signup form with errors)."""
        self._write(verdict, lambda cache, key: cache.decr(key))

    def forget(self, verdict: Verdict) -> None:
        """Start the subject's window again from zero (a successful login)."""
        self._write(verdict, lambda cache, key: cache.delete(key))

    def _write(self, verdict: Verdict, write: Callable[[Any, str], Any]) -> None:
        if verdict.key is None:
            return
        try:
            write(caches[SHARED_CACHE], verdict.key)
        except ValueError:  # the key expired meanwhile: nothing left to take back
            pass
        except Exception as exc:
            logger.error(
                "throttle cache unavailable", extra={"scope": self.scope, "error": f"{type(exc).__name__}: {exc}"}
            )


LOGIN_FAILURES = Throttle("login", "THROTTLE_LOGIN_FAILURES", "THROTTLE_LOGIN_FAILURES_SECONDS")
SIGNUPS = Throttle("signup", "THROTTLE_SIGNUPS", "THROTTLE_SIGNUPS_SECONDS")
API_CALLS = Throttle("api-token", "THROTTLE_API_CALLS", "THROTTLE_API_CALLS_SECONDS")
API_ANONYMOUS_CALLS = Throttle("api-address", "THROTTLE_API_ANONYMOUS_CALLS", "THROTTLE_API_ANONYMOUS_CALLS_SECONDS")


def wait_phrase(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


# --- pages --------------------------------------------------------------------------------------------------------


def login_refused_message(verdict: Verdict) -> str:
    return (
        f"Too many failed logins for this account from your network address. Try again in "
        f"{wait_phrase(verdict.retry_in_seconds)}."
    )


def signup_refused_message(verdict: Verdict) -> str:
    return (
        f"Too many accounts were created from your network address. Try again in "
        f"{wait_phrase(verdict.retry_in_seconds)}."
    )


class LoginThrottleMixin:
    """For AuthenticationForm subclasses: counts each login against (account, client address) before the password
    is checked, refuses without checking it once the limit is passed, and starts the count again on success.

    The account is the name typed, whether or not it exists, so a refusal says nothing about which accounts do."""

    throttle_verdict: Verdict | None = None

    @sensitive_variables()
    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password or self.request is None:
            return super().clean()  # nothing will be checked: nothing to count
        verdict = LOGIN_FAILURES.hit(account_key(username), address_key(self.request))
        if not verdict.allowed:
            self.throttle_verdict = verdict
            raise ValidationError(login_refused_message(verdict), code="throttled")
        cleaned = super().clean()  # a wrong password raises here, and the attempt stays counted
        LOGIN_FAILURES.forget(verdict)
        return cleaned


class LoginForm(LoginThrottleMixin, AuthenticationForm):
    pass


class AdminLoginForm(LoginThrottleMixin, AdminAuthenticationForm):
    pass


def with_throttle_status(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wraps a login view whose form is a LoginThrottleMixin: a refused login answers 429 with `Retry-After`
    (the page is the login form showing the refusal)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        form = (getattr(response, "context_data", None) or {}).get("form")
        verdict = getattr(form, "throttle_verdict", None)
        if verdict is not None and not verdict.allowed:
            response.status_code = 429
            response["Retry-After"] = str(verdict.retry_in_seconds)
        return response

    return wrapper


def form_refused(form: Form, message: str) -> Form:
    """Make `form` show `message` as its only error, without validating it (no queries, no password hashing)."""
    form._errors = ErrorDict(renderer=form.renderer)
    form.cleaned_data = {}
    form.add_error(None, ValidationError(message, code="throttled"))
    return form


def refused_page(request: HttpRequest, template_name: str, context: dict[str, Any], verdict: Verdict) -> HttpResponse:
    response = render(request, template_name, context, status=429)
    response["Retry-After"] = str(verdict.retry_in_seconds)
    return response
