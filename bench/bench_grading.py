"""Submit-to-graded latency and throughput for the sample lab (hello-pinned) with real Redis, Celery, Docker.

    uv run python bench/bench_grading.py [IDLE_RUNS]

Starts its own redis-server, a file SQLite database and Celery workers in a temporary data dir. Prints:
p50/p95 of queued_at -> results_stored_at when idle (one at a time, 1 worker process) and with 20 submitted at
once (1 worker process), gradings per minute with 2 worker processes, and the checks' own time per grading, with
the machine (cores, load average before and after: the machine is shared, so run it twice and compare).
"""

# ruff: noqa: E402 - the project's modules load after benchenv has configured Django
import os
import statistics
import sys
import time

from benchenv import DATA, DB, REDIS_PORT, cleanup
from django.core.management import call_command
from django.db.models import Sum

from courses.models import Course, Unit
from labs.models import CheckResult, Lab, Revision
from tests.conftest import RedisServer
from tests.labs.conftest import HELLO_LAB_DIR, CeleryWorker, _folder_tree

GOOD = HELLO_LAB_DIR / "examples" / "good"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def make_lab() -> Lab:
    from labs.bundles import grader_store
    from labs.labspec import parse_lab_yaml

    parsed = parse_lab_yaml((HELLO_LAB_DIR / "lab.yaml").read_text(), file="lab.yaml", folder_slug="x", problems=[])
    spec = parsed.to_json()
    # As the course import stores it: blobs in the database plus this host's copy (labs.bundles).
    grader = _folder_tree(HELLO_LAB_DIR / "grader")
    grader_store(tree=grader)
    course = Course.objects.create(slug="bench", title="Bench")
    unit = Unit.objects.create(course=course, slug="week-05-containers", title="Containers", position=1)
    return Lab.objects.create(
        course=course,
        unit=unit,
        slug="hello-pinned",
        title="Hello",
        source_path="x",
        spec=spec,
        content_hash=grader.digest,
        grader_digest=grader.digest,
    )


def submit_many(lab: Lab, user, n: int) -> list[Revision]:
    # The same storage and enqueue path as the pytest fixture `submit`: the tree stored through labs.storage
    # (blobs and tree row in the database, this host's copy), then on_commit sends.
    import hashlib

    from django.db import transaction
    from django.utils import timezone

    from labs.services.grading import revision_enqueue
    from labs.storage import tree_store
    from labs.uploads import ValidatedTree, tree_digest

    files = []
    for path in sorted(p for p in GOOD.rglob("*") if p.is_file()):
        data = path.read_bytes()
        files.append((path.relative_to(GOOD).as_posix(), data, hashlib.sha256(data).hexdigest()))
    tree = ValidatedTree(
        files=files,
        total_bytes=sum(len(data) for _path, data, _sha in files),
        tree_sha256=tree_digest([(path, sha) for path, _data, sha in files]),
    )
    revisions = []
    with transaction.atomic():
        tree_store(tree=tree)
        start = Revision.objects.filter(lab=lab, user=user).count()
        for i in range(n):
            revision = Revision.objects.create(
                lab=lab,
                user=user,
                number=start + i + 1,
                tree_sha256=tree.tree_sha256,
                files=tree.manifest(),
                total_bytes=tree.total_bytes,
                queued_at=timezone.now(),
            )
            revision_enqueue(revision=revision)
            revisions.append(revision)
    return revisions


def wait(revisions: list[Revision], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    ids = [r.pk for r in revisions]
    while time.monotonic() < deadline:
        if not Revision.objects.filter(pk__in=ids, state__in=["queued", "running"]).exists():
            return
        time.sleep(0.1)
    raise SystemExit("timed out waiting for gradings")


def latencies(revisions: list[Revision]) -> list[float]:
    out = []
    for revision in Revision.objects.filter(pk__in=[r.pk for r in revisions]):
        assert revision.state == "graded" and revision.score == 10, (revision.state, revision.score)
        run = revision.runs.get()
        out.append((run.results_stored_at - revision.queued_at).total_seconds())
    return out


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    from django.contrib.auth import get_user_model

    idle_runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    load_before = _load()
    call_command("migrate", verbosity=0)
    redis = RedisServer(data_dir=DATA / "redis", port=REDIS_PORT)
    redis.start()
    worker = CeleryWorker(redis_url=redis.url, db_path=DB, log_dir=DATA)
    try:
        lab = make_lab()
        user = get_user_model().objects.create_user(username="bench")
        worker.start(concurrency=1)
        wait(submit_many(lab, user, 1))  # warm-up
        idle = []
        for _ in range(idle_runs):
            batch = submit_many(lab, user, 1)
            wait(batch)
            idle += latencies(batch)
        batch = submit_many(lab, user, 20)
        wait(batch)
        burst = latencies(batch)
        checks_ms = CheckResult.objects.filter(run__revision__in=batch).aggregate(total=Sum("duration_ms"))["total"]
        worker.stop()
        worker.start(concurrency=2)
        started = time.monotonic()
        batch = submit_many(lab, user, 20)
        wait(batch)
        elapsed = time.monotonic() - started
        latencies(batch)
        print(f"machine: {os.cpu_count()} cores, load average {load_before} before, {_load()} after")
        print(f"idle ({idle_runs} runs, 1 process):  p50 {statistics.median(idle):.2f} s  p95 {pct(idle, 0.95):.2f} s")
        print(f"20 at once (1 process):    p50 {statistics.median(burst):.2f} s  p95 {pct(burst, 0.95):.2f} s")
        print(f"checks' own time per grading (sum of check durations): {checks_ms / 20 / 1000:.2f} s")
        print(f"throughput (2 processes, 20 gradings): {20 / elapsed * 60:.1f} gradings/minute")
    finally:
        worker.stop()
        redis.stop()
        cleanup()


if __name__ == "__main__":
    main()
