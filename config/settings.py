"""Django settings for Shipshape. Every value that differs between machines comes from the environment."""

import ipaddress
from pathlib import Path

import dj_database_url

from config.env import ImproperlyConfiguredEnv, env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("SHIPSHAPE_DEBUG", default=False)
# Development and tests may run without a secret; production must set one.
_DEV_SECRET = "insecure-development-key-never-used-in-production"
SECRET_KEY = env_str("SHIPSHAPE_SECRET_KEY", _DEV_SECRET if env_bool("SHIPSHAPE_DEV", default=False) else None)
if SECRET_KEY == _DEV_SECRET and not env_bool("SHIPSHAPE_DEV", default=False):
    raise ImproperlyConfiguredEnv("SHIPSHAPE_SECRET_KEY must be set outside development (SHIPSHAPE_DEV=1).")

ALLOWED_HOSTS = env_list("SHIPSHAPE_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("SHIPSHAPE_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "courses",
    "labs",
    "notifications",
    "kernels",
]

MIDDLEWARE = [
    "config.observability.RequestIdMiddleware",
    "config.security.SecurityHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.context_processors.navigation",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

DATA_DIR = Path(env_str("SHIPSHAPE_DATA_DIR", str(BASE_DIR / "var")))

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'shipshape.sqlite3'}"),
        conn_max_age=env_int("SHIPSHAPE_DB_CONN_MAX_AGE", 60, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes results.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Password reset mail: printed to the console in development, SMTP (Django's EMAIL_* settings) otherwise.
EMAIL_BACKEND = env_str(
    "SHIPSHAPE_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if env_bool("SHIPSHAPE_DEV", default=False)
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("SHIPSHAPE_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("SHIPSHAPE_EMAIL_PORT", 25, minimum=1)
DEFAULT_FROM_EMAIL = env_str("SHIPSHAPE_FROM_EMAIL", "shipshape@localhost")
# How long the link that verifies an account's email address works (notifications are mailed to verified ones).
EMAIL_VERIFICATION_DAYS = env_int("SHIPSHAPE_EMAIL_VERIFICATION_DAYS", 3, minimum=1)
# Links in mail point here (the site's public address, without a trailing path).
SHIPSHAPE_SITE_URL = env_str("SHIPSHAPE_SITE_URL", "http://127.0.0.1:8000")
# How long a reviewer's claim on a piece of work lasts before another reviewer may take it.
REVIEW_CLAIM_MINUTES = env_int("SHIPSHAPE_REVIEW_CLAIM_MINUTES", 30, minimum=1)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "catalog"
LOGOUT_REDIRECT_URL = "catalog"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SHIPSHAPE_SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Redis and Celery
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Longer than the longest grading a lab may declare, so Redis never redelivers a run still going.
GRADING_MAX_WALL_SECONDS = env_int("SHIPSHAPE_GRADING_MAX_WALL_SECONDS", 900, minimum=10)
# Fair queues (labs.tasks.revision_queue): labs whose wall budget is over this many seconds grade on `grading-long`.
GRADING_LONG_LAB_SECONDS = env_int("SHIPSHAPE_LONG_LAB_SECONDS", 120, minimum=1)
# Platform maxima a lab.yaml may not exceed (validate_course reports a lab asking for more).
GRADING_MAX_CPUS = env_int("SHIPSHAPE_GRADING_MAX_CPUS", 2, minimum=1)
GRADING_MAX_MEMORY_MB = env_int("SHIPSHAPE_GRADING_MAX_MEMORY_MB", 2048, minimum=64)
GRADING_MAX_PIDS = env_int("SHIPSHAPE_GRADING_MAX_PIDS", 1024, minimum=16)
GRADING_MAX_OUTPUT_BYTES = env_int("SHIPSHAPE_GRADING_MAX_OUTPUT_BYTES", 16 * 1024 * 1024, minimum=1024)
GRADING_MAX_SCRATCH_MB = env_int("SHIPSHAPE_GRADING_MAX_SCRATCH_MB", 1024, minimum=16)
# Pre-started sandboxes per worker process (labs/sandbox/pool.py); 0 starts every sandbox when it is needed.
SANDBOX_POOL_SIZE = env_int("SHIPSHAPE_SANDBOX_POOL_SIZE", 3, minimum=0)
# A pooled sandbox nobody claimed in this long is replaced (its container's own lifetime runs out after it).
SANDBOX_POOL_MAX_IDLE_SECONDS = env_int("SHIPSHAPE_SANDBOX_POOL_MAX_IDLE_SECONDS", 300, minimum=10)
GRADING_PARALLEL_CHECKS = env_int("SHIPSHAPE_GRADING_PARALLEL_CHECKS", 3, minimum=1)  # checks at once per grading
# Code cells (kernels app): one kernel per learner per lesson page, run by `manage.py kernel_manager` on each host.
# The folder holds each kernel's sockets and is bind-mounted into its sandbox: keep its path short (socket paths are
# limited to about 100 bytes) and the same inside and outside the manager's container.
KERNELS_DIR = Path(env_str("SHIPSHAPE_KERNELS_DIR", str(DATA_DIR / "kernels")))
KERNELS_PER_HOST = env_int("SHIPSHAPE_KERNELS_PER_HOST", 20, minimum=1)
KERNELS_PER_LEARNER = env_int("SHIPSHAPE_KERNELS_PER_LEARNER", 3, minimum=1)
KERNEL_IDLE_SECONDS = env_int("SHIPSHAPE_KERNEL_IDLE_SECONDS", 900, minimum=1)
KERNEL_CELL_TIMEOUT_SECONDS = env_int("SHIPSHAPE_KERNEL_CELL_TIMEOUT_SECONDS", 60, minimum=1)
KERNEL_START_TIMEOUT_SECONDS = env_int("SHIPSHAPE_KERNEL_START_TIMEOUT_SECONDS", 30, minimum=5)
KERNEL_QUEUED_PER_PAGE = env_int("SHIPSHAPE_KERNEL_QUEUED_PER_PAGE", 5, minimum=1)  # runs waiting on one kernel
THROTTLE_CODE_RUNS = env_int("SHIPSHAPE_THROTTLE_CODE_RUNS", 60, minimum=1)  # runs and restarts per learner
THROTTLE_CODE_RUNS_SECONDS = env_int("SHIPSHAPE_THROTTLE_CODE_RUNS_SECONDS", 60, minimum=1)
# A kernel's sandbox: the grading defaults (labs.labspec.LimitsSpec).
KERNEL_CPUS = float(env_int("SHIPSHAPE_KERNEL_CPUS", 1, minimum=1))
KERNEL_MEMORY_MB = env_int("SHIPSHAPE_KERNEL_MEMORY_MB", 256, minimum=64)
KERNEL_PIDS = env_int("SHIPSHAPE_KERNEL_PIDS", 128, minimum=16)
KERNEL_SCRATCH_MB = env_int("SHIPSHAPE_KERNEL_SCRATCH_MB", 64, minimum=8)
# The address space of each kernel's bridge (kernels/bridge.py), the host process reading the kernel's messages:
# a kernel sending more at once than this loses its bridge and is stopped; the manager is never at risk.
KERNEL_BRIDGE_MEMORY_MB = env_int("SHIPSHAPE_KERNEL_BRIDGE_MEMORY_MB", 512, minimum=256)
CODE_CELL_SCRIPTS = ["kernels/cells.js"]
CODE_CELL_STYLES = ["kernels/cells.css"]
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": GRADING_MAX_WALL_SECONDS * 2 + 60}
# Workers log through LOGGING above (JSON lines), not Celery's own plain-text root handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ALWAYS_EAGER = env_bool("SHIPSHAPE_CELERY_EAGER", default=False)
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-revisions": {"task": "labs.tasks.revisions_sweep", "schedule": 30.0},
    "reap-orphan-containers": {"task": "labs.tasks.containers_reap", "schedule": 60.0},
    "expire-review-claims": {"task": "labs.tasks.work_claims_expire", "schedule": 60.0},
}


def _shared_cache(name: str, url: str) -> dict:
    """The "shared" cache at `url`: Redis, or `locmem://` for a single process (tests)."""
    scheme, separator, _ = url.partition("://")
    if url == "locmem://":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "shipshape-shared"}
    if separator and scheme.lower() in {"redis", "rediss", "unix"}:
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            # The broker's Redis: the prefix keeps cache keys apart from Celery's. Never call clear() on this
            # cache, which flushes the whole Redis database, queued gradings included.
            "KEY_PREFIX": "shipshape-cache",
            # An unreachable Redis must not hang a login: the throttles let requests through when it is down.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    raise ImproperlyConfiguredEnv(
        f"{name}={url!r} is not a cache URL. Use redis://host:port/db, rediss://…, unix://… or locmem:// (one process)."
    )


def _networks(name: str) -> list[str]:
    """A comma-separated list of IP addresses and CIDR networks, each checked."""
    values = env_list(name, [])
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ImproperlyConfiguredEnv(
                f"{name}: {value!r} is not an IP address or network. Use a comma-separated list such as "
                "127.0.0.1,127.0.1.0/24."
            ) from None
    return values


# Caches. "default" is per process, for what each process may keep on its own (rendered lesson pages, the shells
# of logged-in lesson pages and lesson neighbours, keyed by content version; losing them costs nothing). "shared"
# is seen by every process (Redis): the throttles count there. A lesson takes up to three entries (page ~35 KB,
# shell ~45 KB, neighbours <1 KB): Django's default of 300 would drop the least recently used third once 100 lessons
# are read; 1,500 holds 500 lessons in at most ~40 MB a process.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "OPTIONS": {"MAX_ENTRIES": 1500}},
    "shared": _shared_cache("SHIPSHAPE_CACHE_URL", env_str("SHIPSHAPE_CACHE_URL", REDIS_URL)),
}

# Throttles (config/throttle.py): at most N per window of SECONDS, counted in the shared cache.
THROTTLE_LOGIN_FAILURES = env_int("SHIPSHAPE_THROTTLE_LOGIN_FAILURES", 5, minimum=1)  # per account and address
THROTTLE_LOGIN_FAILURES_SECONDS = env_int("SHIPSHAPE_THROTTLE_LOGIN_FAILURES_SECONDS", 900, minimum=1)
THROTTLE_SIGNUPS = env_int("SHIPSHAPE_THROTTLE_SIGNUPS", 20, minimum=1)  # accounts created per address
THROTTLE_SIGNUPS_SECONDS = env_int("SHIPSHAPE_THROTTLE_SIGNUPS_SECONDS", 3600, minimum=1)
THROTTLE_API_CALLS = env_int("SHIPSHAPE_THROTTLE_API_CALLS", 120, minimum=1)  # per token
THROTTLE_API_CALLS_SECONDS = env_int("SHIPSHAPE_THROTTLE_API_CALLS_SECONDS", 60, minimum=1)
THROTTLE_API_ANONYMOUS_CALLS = env_int("SHIPSHAPE_THROTTLE_API_ANONYMOUS_CALLS", 30, minimum=1)  # per address
THROTTLE_API_ANONYMOUS_CALLS_SECONDS = env_int("SHIPSHAPE_THROTTLE_API_ANONYMOUS_CALLS_SECONDS", 60, minimum=1)
# Reverse proxies whose X-Forwarded-For is believed (addresses or CIDR networks). Behind a proxy this must be set,
# or every client has the proxy's address and shares its throttles.
TRUSTED_PROXIES = _networks("SHIPSHAPE_TRUSTED_PROXIES")

# Sandboxes
SUBMISSIONS_ROOT = Path(env_str("SHIPSHAPE_SUBMISSIONS_ROOT", str(DATA_DIR / "submissions")))
RUNNER_IMAGE = env_str("SHIPSHAPE_RUNNER_IMAGE", "shipshape-runner:latest")
DOCKER_HOST = env_str("DOCKER_HOST", "unix:///var/run/docker.sock")

# Courses
COURSE_CONTENT_DIR = BASE_DIR / "courses" / "content"

LOG_LEVEL = env_str("SHIPSHAPE_LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "config.observability.JsonFormatter"}},
    "filters": {"request_id": {"()": "config.observability.RequestIdFilter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
    },
}

# Telemetry (TELEMETRY helper; config/metrics.py, labs/heartbeat.py, docs/architecture.md "Telemetry").
# /metrics and /readyz's details need `Authorization: Bearer <token>`; without a token, only loopback callers.
METRICS_TOKEN = env_str("SHIPSHAPE_METRICS_TOKEN", "")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfiguredEnv("SHIPSHAPE_METRICS_TOKEN is shorter than 16 characters. Use a long random value.")
# Celery queues (Redis lists) whose depth /metrics reports.
METRICS_QUEUES = env_list("SHIPSHAPE_METRICS_QUEUES", ["celery", "regrades", "grading-long"])
# Seconds between a worker's heartbeats; a heartbeat older than three of them no longer counts.
HEARTBEAT_SECONDS = env_int("SHIPSHAPE_HEARTBEAT_SECONDS", 10, minimum=1)
if (_multiproc_dir := env_str("PROMETHEUS_MULTIPROC_DIR", "")) and not Path(_multiproc_dir).is_dir():
    raise ImproperlyConfiguredEnv(f"PROMETHEUS_MULTIPROC_DIR={_multiproc_dir!r} is not a directory. Create it first.")


def _listen_address(name: str, *, token: str) -> tuple[str, int] | None:
    """`IP:port` (IPv6 in brackets: `[::1]:9101`) to listen on, or None when unset. A non-loopback address needs
    the metrics token: without one, anyone who can reach the host would read the metrics."""
    raw = env_str(name, "").strip()
    if not raw:
        return None
    host, _, port = raw.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        address, number = None, 0
    if address is None or not 1 <= number <= 65535:
        raise ImproperlyConfiguredEnv(
            f"{name}={raw!r} is not an IP address and port. Use e.g. 127.0.0.1:9101 or [::1]:9101."
        )
    if not address.is_loopback and not token:
        raise ImproperlyConfiguredEnv(
            f"{name}={raw!r} is not a loopback address, and SHIPSHAPE_METRICS_TOKEN is not set: the worker's metrics "
            "would be open to anyone who can reach it. Set SHIPSHAPE_METRICS_TOKEN, or listen on 127.0.0.1."
        )
    return str(address), number


# A worker on any host serves its own metrics (its pool processes' added up) at http://<this>/metrics, with the
# same token rule as the web's /metrics; the worker needs PROMETHEUS_MULTIPROC_DIR then. Unset: no endpoint.
WORKER_METRICS_ADDR = _listen_address("SHIPSHAPE_WORKER_METRICS_ADDR", token=METRICS_TOKEN)
