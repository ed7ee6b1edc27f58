"""Benchmark (not a test): a lesson page against a static file, both served by gunicorn on 127.0.0.1.

Run: `uv run python bench/bench_lesson_page.py [--requests 3000] [--concurrency 4] [--workers 2]`, or `--cpu 1000`
for the CPU time per request in-process (no server).
Targets on 2 cores: the lesson page at least 40% of the static file's requests per second, p99 under 50 ms;
the logged-in page at least 50% of the static file's rate, p99 under 20 ms (issue 12).
"lesson" is an anonymous reader (the whole page cached once warm); "learner" is a logged-in reader: the shell shared
by logged-in readers is cached once warm, and their own parts (progress, marks, account links) are added per request.

Everything lives in a temporary directory: its own SQLite database, data and static directories. The course
has 200 lessons whose body is a real lesson of the sample course, rendered by the real Markdown renderer. The
load generator is a few processes opening one connection per request (gunicorn's sync workers close every
connection), so its own cost is the same for both targets and the ratio is the figure to compare. A private
redis-server on a free loopback port is the shared cache, as in production (sessions and the header's cached facts
live there: docs/architecture.md, "Request path").
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from httpbench import free_port, gunicorn_start, gunicorn_stop, http_get, server_environment, session_cookie

REPO = Path(__file__).resolve().parent.parent
SAMPLE_LESSON = REPO / "courses/content/production-systems/module-03-production-deployment/01-production-deployment.md"
UNITS = 10
LESSONS_PER_UNIT = 20

FALLBACK_BODY = """## Packaging

A service you cannot rebuild is a service you cannot roll back. The image pins its base by digest.

| Metric | Alert threshold |
|---|---|
| p99 latency | > 500 ms for 5 min |
| error rate | > 1% for 10 min |

```dockerfile
FROM python:3.11.9-slim
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
```
"""


def _lesson_source() -> str:
    """The sample course's production-deployment lesson without its front matter, else a small stand-in."""
    if not SAMPLE_LESSON.exists():
        return FALLBACK_BODY * 10
    text = SAMPLE_LESSON.read_text(encoding="utf-8")
    if text.startswith("---"):
        text = text.split("\n---", 2)[-1].split("\n", 1)[-1]
    return text


REDIS_PORT = free_port()


def _environment(tmp: Path) -> dict[str, str]:
    redis_url = f"redis://127.0.0.1:{REDIS_PORT}/0"
    return server_environment(tmp, REDIS_URL=redis_url, SHIPSHAPE_CACHE_URL=redis_url)


def _course_build(tmp: Path) -> str:
    """Create the database and a 200-lesson course; return the path of a lesson in the middle."""
    os.environ.update(_environment(tmp))
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from courses.markdown import render_markdown
    from courses.models import Course, Lesson, Unit

    call_command("migrate", verbosity=0)
    call_command("collectstatic", verbosity=0, interactive=False)
    rendered = render_markdown(_lesson_source())
    course = Course.objects.create(
        slug="bench", title="Benchmark course", unit_label="Week", content_version="bench-1", imported_at=timezone.now()
    )
    lessons = []
    for u in range(1, UNITS + 1):
        unit = Unit.objects.create(course=course, slug=f"week-{u:02d}", title=f"Week {u}", position=u)
        for n in range(1, LESSONS_PER_UNIT + 1):
            lessons.append(
                Lesson(
                    course=course,
                    unit=unit,
                    slug=f"lesson-{n:02d}",
                    position=n,
                    title=f"Production deployment, part {n}",
                    tagline="Production is more than running code.",
                    objective="Package, observe and roll back a service.",
                    deliverable="A Dockerfile and a dashboard.",
                    outcomes=["Package a service", "Pick alert thresholds"],
                    prerequisites=["Containers"],
                    estimated_minutes=40,
                    references=[
                        {"kind": "official-doc", "title": "Dockerfile reference", "url": "https://example.org/a"},
                        {"kind": "article", "title": "Alerting on symptoms", "url": "https://example.org/b"},
                    ],
                    source_path=f"week-{u:02d}/{n:02d}-lesson.md",
                    content_hash=f"{u}-{n}",
                    html=rendered.html,
                    toc=rendered.toc,
                )
            )
    Lesson.objects.bulk_create(lessons)
    print(f"course: {len(lessons)} lessons, lesson body {len(rendered.html):,} bytes of HTML")
    return f"/courses/bench/week-{UNITS // 2:02d}/lesson-{LESSONS_PER_UNIT // 2:02d}/"


def _learner_cookie() -> str:
    """A logged-in learner's session cookie: their pages are personal, so never served whole from the cache."""
    from django.contrib.auth import get_user_model

    return session_cookie(get_user_model().objects.create_user(username="bench"))  # no password: forged session


def _worker(args: tuple[int, str, str, int]) -> list[float]:
    port, path, cookie, count = args
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        status, _ = http_get(port, path, cookie)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
    return latencies


def _measure(pool, port: int, path: str, requests: int, concurrency: int, cookie: str = "") -> dict[str, float]:
    pool.map(_worker, [(port, path, cookie, 50)] * concurrency)  # warm up: imports, template and SQLite caches
    per = requests // concurrency
    started = time.perf_counter()
    results = pool.map(_worker, [(port, path, cookie, per)] * concurrency)
    elapsed = time.perf_counter() - started
    latencies = sorted(x for chunk in results for x in chunk)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def _cpu_per_request(path: str, cookie: str, requests: int) -> None:
    """CPU time per request (process_time) in this process, through Django's WSGI handler without a server: less
    swayed by the machine's load than the rates, and it shows the queries of one logged-in page."""
    import io
    import logging

    from django.core.handlers.wsgi import WSGIHandler
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    app = WSGIHandler()
    logging.disable(logging.CRITICAL)  # the access log line, not the page, would be measured

    def get(cookie: str) -> None:
        environ = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http",
        }  # fmt: skip
        if cookie:
            environ["HTTP_COOKIE"] = cookie
        statuses: list[str] = []
        b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))
        if not statuses[0].startswith("200"):
            raise RuntimeError(f"GET {path} answered {statuses[0]}")

    for _ in range(50):
        get("")
        get(cookie)
    with CaptureQueriesContext(connection) as queries:
        get(cookie)
    print(f"in-process, load average {os.getloadavg()[0]:.2f}: a logged-in page makes {len(queries)} queries")
    for name, reader in (("lesson", ""), ("learner", cookie)) * 2:
        times = []
        for _ in range(requests):
            started = time.process_time()
            get(reader)
            times.append(time.process_time() - started)
        times.sort()
        print(
            f"  {name:7} CPU per request: p10 {times[len(times) // 10] * 1000:.2f} ms, "
            f"median {statistics.median(times) * 1000:.2f} ms ({requests} requests)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per target over all rounds (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--concurrency", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument(
        "--cpu", type=int, default=0, metavar="N", help="instead of the server, N requests each in this process"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="shipshape-bench-lesson-"))
    proc = None
    sys.path.insert(0, str(REPO))
    from tests.conftest import RedisServer

    redis = RedisServer(data_dir=tmp / "redis", port=REDIS_PORT)
    redis.start()
    try:
        lesson_path = _course_build(tmp)
        cookie = _learner_cookie()
        if args.cpu:
            _cpu_per_request(lesson_path, cookie, args.cpu)
            return 0
        from django.templatetags.static import static

        static_path = static("courses/css/site.css")
        port = free_port()
        proc = gunicorn_start(port=port, workers=args.workers, cwd=REPO, env=_environment(tmp))
        statuses = [
            http_get(port, lesson_path)[0],
            http_get(port, static_path)[0],
            http_get(port, lesson_path, cookie)[0],
        ]
        assert statuses == [200, 200, 200], f"the server answered {statuses}; run gunicorn by hand to see why"
        print(f"gunicorn: {args.workers} sync workers; clients: {args.concurrency} processes, 1 connection/request")
        print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
        # Rounds interleave the targets so a burst of load from elsewhere on the machine hits both alike; the
        # ratio reported is the median of the per-round ratios.
        rounds: list[dict[str, dict[str, float]]] = []
        per_round = max(args.requests // args.rounds, args.concurrency * 10)
        with multiprocessing.Pool(args.concurrency) as pool:
            for _ in range(args.rounds):
                rounds.append(
                    {
                        "static": _measure(pool, port, static_path, per_round, args.concurrency),
                        "lesson": _measure(pool, port, lesson_path, per_round, args.concurrency),
                        "learner": _measure(pool, port, lesson_path, per_round // 3, args.concurrency, cookie),
                    }
                )
        for index, figures in enumerate(rounds, start=1):
            print(f"round {index}:")
            for name, label in (
                ("static", static_path),
                ("lesson", lesson_path + " (anonymous)"),
                ("learner", lesson_path + " (logged in, shell + fragments)"),
            ):
                f = figures[name]
                print(
                    f"  {name:7} {label:66} {f['rps']:8.1f} req/s  "
                    f"p50 {f['p50_ms']:6.2f} ms  p99 {f['p99_ms']:6.2f} ms  ({f['requests']} requests)"
                )
        ratio = statistics.median(r["lesson"]["rps"] / r["static"]["rps"] for r in rounds)
        learner_ratio = statistics.median(r["learner"]["rps"] / r["static"]["rps"] for r in rounds)
        p99 = statistics.median(r["lesson"]["p99_ms"] for r in rounds)
        print(f"median ratio lesson/static: {ratio:.0%} (target >= 40%); lesson p99 {p99:.1f} ms (target < 50)")
        learner_p99 = statistics.median(r["learner"]["p99_ms"] for r in rounds)
        print(
            f"median ratio learner/static: {learner_ratio:.0%} (target >= 50%); "
            f"learner p99 {learner_p99:.1f} ms (target < 20)"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        ok = ratio >= 0.40 and p99 < 50
        learner_ok = learner_ratio >= 0.50 and learner_p99 < 20
        print("anonymous targets met" if ok else "anonymous targets NOT met")
        print("logged-in targets met" if learner_ok else "logged-in targets NOT met")
        return 0 if ok and learner_ok else 1
    finally:
        if proc is not None:
            gunicorn_stop(proc)
        redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
