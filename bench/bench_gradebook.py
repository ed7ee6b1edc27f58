"""Benchmark (not a test): the reviewer queue, the gradebook and a lab's analytics for a big generated course,
served by gunicorn on 127.0.0.1, and the CSV export of the whole course.

Run: `uv run python bench/bench_gradebook.py [--learners 2000] [--labs 10] [--requests 200] [--workers 2]`.
Target: p99 under 150 ms per page, with a constant number of SQL queries per page.

Everything lives in a temporary directory: its own SQLite database and data directory. The course is written
with bulk_create (no grading, no loop: the rows the loop would have left): per learner and lab a LabWork, one to
three revisions, a run per revision with five check results (one hidden), and the timeline events. Latency is
measured one request at a time on a fresh connection (gunicorn's sync workers close every connection) so p50/p99
are a page's own cost; the query counts come from the same pages through Django's test client.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from httpbench import free_port, gunicorn_start, gunicorn_stop, http_get, server_environment, session_cookie

REPO = Path(__file__).resolve().parent.parent
CHECKS = (
    ("has-service", "correctness", False),
    ("pinned-deps", "reproducibility", False),
    ("retries", "resilience", False),
    ("metrics", "observability", False),
    ("secret-tests", "correctness", True),
)
TARGET_P99_MS = 150.0


def _environment(tmp: Path) -> dict[str, str]:
    return server_environment(tmp, SHIPSHAPE_LOG_LEVEL="WARNING")


def _spec() -> dict:
    return {
        "title": "Bench lab",
        "files": {"required": ["service.py"], "allowed": ["*.py"]},
        "run": {"command": ["python", "service.py"]},
        "checks": [
            {
                "id": check_id,
                "kind": "files.required",
                "category": category,
                "points": 5,
                "visibility": "hidden" if hidden else "visible",
                "args": {},
            }
            for check_id, category, hidden in CHECKS
        ],
        "policy": {"cooldown_seconds": 0, "late": "accept"},
        "review": {"required": True, "weight": 0.3},
    }


def _course_build(tmp: Path, *, learners: int, labs: int, seed: int = 7) -> dict:
    """Create the database and the course; return the slugs and users the measurements need."""
    os.environ.update(_environment(tmp))
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from courses.models import Course, Enrollment, Unit
    from labs.models import CheckResult, GradingRun, Lab, LabWork, Revision, WorkEvent

    rng = random.Random(seed)
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    call_command("collectstatic", verbosity=0, interactive=False)
    User = get_user_model()
    course = Course.objects.create(slug="bench", title="Benchmark course", unit_label="Week")
    unit = Unit.objects.create(course=course, slug="week-01", title="Week one", position=1)
    lab_rows = Lab.objects.bulk_create(
        [
            Lab(
                course=course,
                unit=unit,
                slug=f"lab-{n:02d}",
                title=f"Lab {n}",
                source_path=f"week-01/lab-{n:02d}",
                spec=_spec(),
                content_hash="0" * 64,
                grader_digest="1" * 64,
            )
            for n in range(1, labs + 1)
        ]
    )
    instructor = User.objects.create_user(username="instructor")
    reviewer = User.objects.create_user(username="reviewer")
    User.objects.bulk_create([User(username=f"learner-{n:05d}", email=f"l{n}@example.org") for n in range(learners)])
    people = list(User.objects.filter(username__startswith="learner-").order_by("pk"))
    Enrollment.objects.bulk_create(
        [Enrollment(user=u, course=course) for u in people]
        + [
            Enrollment(user=instructor, course=course, role=Enrollment.Role.INSTRUCTOR),
            Enrollment(user=reviewer, course=course, role=Enrollment.Role.REVIEWER),
        ]
    )
    now = timezone.now()
    W, K = LabWork.State, WorkEvent.Kind
    states = [W.AWAITING_REVIEW, W.IN_REVIEW, W.CHANGES_REQUESTED, W.APPROVED, W.APPROVED, W.BELOW_THRESHOLD]
    revisions = []
    plan = []  # (user, lab, state, number of revisions, base time)
    for user in people:
        for lab in lab_rows:
            if rng.random() < 0.1:
                continue  # some learners have not started every lab
            state = rng.choice(states)
            count = rng.randint(1, 3) if state != W.CHANGES_REQUESTED else rng.randint(1, 2)
            base = now - timedelta(days=rng.randint(2, 60), minutes=rng.randint(0, 1440))
            plan.append((user, lab, state, count, base))
            for number in range(1, count + 1):
                score = Decimal(rng.choice([5, 10, 15, 20, 25]))
                revisions.append(
                    Revision(
                        lab=lab,
                        user=user,
                        number=number,
                        state=Revision.State.GRADED,
                        tree_sha256="0" * 64,
                        score=score,
                        max_score=Decimal(25),
                        is_late=rng.random() < 0.05,
                        queued_at=base + timedelta(hours=number * 20),
                    )
                )
    Revision.objects.bulk_create(revisions, batch_size=2000)
    by_key: dict[tuple[int, int], list] = {}
    for revision in Revision.objects.filter(lab__course=course).only(
        "pk", "lab_id", "user_id", "number", "score", "is_late"
    ):
        by_key.setdefault((revision.user_id, revision.lab_id), []).append(revision)
    runs = [
        GradingRun(revision_id=r.pk, attempt=1, outcome="graded", phase="results_stored") for r in revisions_of(by_key)
    ]
    GradingRun.objects.bulk_create(runs, batch_size=2000)
    results = []
    for run in GradingRun.objects.filter(revision__lab__course=course).only("pk"):
        for position, (check_id, category, hidden) in enumerate(CHECKS):
            passed = rng.random() < 0.7
            results.append(
                CheckResult(
                    run_id=run.pk,
                    position=position,
                    check_id=check_id,
                    kind="files.required",
                    category=category,
                    status="pass" if passed else "fail",
                    points=Decimal(5 if passed else 0),
                    max_points=Decimal(5),
                    message="",
                    hidden_until_due=hidden,
                )
            )
    CheckResult.objects.bulk_create(results, batch_size=5000)
    works = []
    for user, lab, state, count, base in plan:
        revs = sorted(by_key[(user.pk, lab.pk)], key=lambda r: r.number)
        newest = revs[-1]
        autograde = (newest.score * 4).quantize(Decimal("0.01"))
        rubric = Decimal(rng.randint(50, 100)) if state in (W.APPROVED, W.CHANGES_REQUESTED) else None
        final = (
            (Decimal("0.7") * autograde + Decimal("0.3") * rubric).quantize(Decimal("0.01"))
            if state == W.APPROVED
            else None
        )
        works.append(
            LabWork(
                lab=lab,
                user=user,
                state=state,
                revision_id=newest.pk,
                reviewed_revision_id=newest.pk if state in (W.APPROVED, W.CHANGES_REQUESTED) else None,
                claimed_by=reviewer if state == W.IN_REVIEW else None,
                claimed_at=now if state == W.IN_REVIEW else None,
                claim_expires_at=now + timedelta(days=30) if state == W.IN_REVIEW else None,
                waiting_since=base if state in (W.AWAITING_REVIEW, W.IN_REVIEW) else None,
                autograde=autograde,
                rubric=rubric,
                final_grade=final,
                override_grade=Decimal(90) if rng.random() < 0.01 else None,
                is_late=any(r.is_late for r in revs),
                revision_count=count,
            )
        )
    LabWork.objects.bulk_create(works, batch_size=2000)
    events = []
    for work in LabWork.objects.filter(lab__course=course).only("pk", "lab_id", "user_id", "state"):
        revs = sorted(by_key[(work.user_id, work.lab_id)], key=lambda r: r.number)
        at = now - timedelta(days=rng.randint(2, 60))
        for index, revision in enumerate(revs):
            last = index == len(revs) - 1
            events.append(WorkEvent(work_id=work.pk, revision_id=revision.pk, kind=K.SUBMITTED, created_at=at))
            events.append(WorkEvent(work_id=work.pk, revision_id=revision.pk, kind=K.AUTOGRADED, created_at=at))
            at += timedelta(hours=rng.uniform(0.2, 120))
            if not last or work.state == W.CHANGES_REQUESTED:
                events.append(
                    WorkEvent(work_id=work.pk, revision_id=revision.pk, kind=K.CHANGES_REQUESTED, created_at=at)
                )
            elif work.state == W.APPROVED:
                events.append(WorkEvent(work_id=work.pk, revision_id=revision.pk, kind=K.APPROVED, created_at=at))
            at += timedelta(hours=rng.uniform(1, 48))
    WorkEvent.objects.bulk_create(events, batch_size=5000)
    print(
        f"course: {learners} learners x {labs} labs: {len(works)} works, {len(revisions)} revisions, "
        f"{len(results)} check results, {len(events)} events; built in {time.perf_counter() - started:.1f} s"
    )
    return {"instructor": instructor, "reviewer": reviewer, "course": course, "lab": lab_rows[len(lab_rows) // 2]}


def revisions_of(by_key: dict) -> list:
    return [r for revs in by_key.values() for r in revs]


def _measure(port: int, path: str, cookie: str, requests: int) -> dict[str, float]:
    for _ in range(10):  # warm up: imports, templates, SQLite page cache
        http_get(port, path, cookie)
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        status, _ = http_get(port, path, cookie)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000,
        "max_ms": latencies[-1] * 1000,
    }


def _query_count(path: str, user) -> tuple[int, int]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    client.get(path)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    return response.status_code, len(queries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=2000)
    parser.add_argument("--labs", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200, help="per page (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is printed)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="shipshape-bench-gradebook-"))
    proc = None
    try:
        world = _course_build(tmp, learners=args.learners, labs=args.labs)
        course, lab = world["course"], world["lab"]
        instructor, reviewer = world["instructor"], world["reviewer"]
        queue = next(
            (p for p in (f"/review/{course.slug}/", "/review/") if _query_count(p, reviewer)[0] == 200), "/review/"
        )
        pages = [
            ("review queue", queue, reviewer),
            ("gradebook", f"/courses/{course.slug}/gradebook/", instructor),
            ("gradebook page 20", f"/courses/{course.slug}/gradebook/?page=20", instructor),
            ("gradebook by state", f"/courses/{course.slug}/gradebook/?state=awaiting_review&learner=9", instructor),
            ("analytics", f"/courses/{course.slug}/labs/{lab.slug}/analytics/", instructor),
        ]
        counts = {}
        for name, path, user in pages:
            status, count = _query_count(path, user)
            if status != 200:
                raise RuntimeError(f"{path} answered {status} through the test client")
            counts[name] = count

        from django.core.management import call_command

        started = time.perf_counter()
        out = io.StringIO()
        call_command("gradebook_export", course.slug, stdout=out)
        command_seconds = time.perf_counter() - started
        command_lines = out.getvalue().count("\n")

        cookies = {instructor.pk: session_cookie(instructor), reviewer.pk: session_cookie(reviewer)}
        port = free_port()
        proc = gunicorn_start(port=port, workers=args.workers, cwd=REPO, env=_environment(tmp))
        print(
            f"gunicorn: {args.workers} sync workers; one client, one connection per request, {args.requests} requests a page"
        )
        print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
        ok = True
        for name, path, user in pages:
            figures = _measure(port, path, cookies[user.pk], args.requests)
            met = figures["p99_ms"] < TARGET_P99_MS
            ok = ok and met
            print(
                f"  {name:20} {path:62} p50 {figures['p50_ms']:7.2f} ms  p99 {figures['p99_ms']:7.2f} ms  "
                f"max {figures['max_ms']:7.2f} ms  {counts[name]:3d} queries{'' if met else '  (over target)'}"
            )
        csv_path = f"/courses/{course.slug}/gradebook.csv"
        http_get(port, csv_path, cookies[instructor.pk])
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            status, size = http_get(port, csv_path, cookies[instructor.pk])
            timings.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"GET {csv_path} answered {status}")
        print(
            f"  CSV export, web      {csv_path:62} {statistics.median(timings):.2f} s (median of 3), {size / 1e6:.1f} MB"
        )
        print(
            f"  CSV export, command  manage.py gradebook_export {course.slug:36} {command_seconds:.2f} s, {command_lines} lines"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print("targets met (p99 < 150 ms on every page)" if ok else "targets NOT met")
        return 0 if ok else 1
    finally:
        if proc is not None:
            gunicorn_stop(proc)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
