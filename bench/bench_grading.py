"""Submit-to-graded latency and throughput for the sample lab (hello-pinned) with real Redis, Celery, Docker.

    uv run python bench/bench_grading.py [IDLE_RUNS]

Starts its own redis-server, a file SQLite database and Celery workers in a temporary data dir. Prints:
p50/p95 of queued_at -> results_stored_at when idle (one at a time, 1 worker process) and with 20 submitted at
once (1 worker process), gradings per minute with 2 worker processes, and the checks' own time per grading, with
the machine (cores, load average before and after: the machine is shared, so run it twice and compare).

Everything is measured twice in one run: workers without a sandbox pool, then with a warm pool of
SHIPSHAPE_BENCH_POOL_SIZE (default 2) per process (labs/sandbox/pool.py). Idle runs are 1.5 s apart.
"""

# ruff: noqa: E402 - the project's modules load after benchenv has configured Django
import itertools
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
from tests.labs.conftest import HELLO_LAB_DIR, CeleryWorker, folder_tree

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
    grader = folder_tree(HELLO_LAB_DIR / "grader")
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


def measure(lab: Lab, user, worker: CeleryWorker, *, idle_runs: int, pool_size: int) -> dict[str, float]:
    """Idle latency, a burst of 20 with one process, throughput with two: workers with `pool_size` warm sandboxes."""
    pool_env = {"SHIPSHAPE_SANDBOX_POOL_SIZE": str(pool_size)}
    worker.start(concurrency=1, **pool_env)
    wait(submit_many(lab, user, 1))  # warm-up (and, with a pool, it learns the lab's limits)
    idle, idle_checks, idle_batch_ids = [], [], []
    for _ in range(idle_runs):
        time.sleep(1.5)  # idle: nothing else running, and a pool has refilled
        batch = submit_many(lab, user, 1)
        idle_batch_ids += [r.pk for r in batch]
        wait(batch)
        idle += latencies(batch)
        idle_checks.append(_checks_s(batch))
    phases = _phases(idle_batch_ids)
    batch = submit_many(lab, user, 20)
    wait(batch)
    burst = latencies(batch)
    checks_s = _checks_s(batch) / 20
    worker.stop()
    worker.start(concurrency=2, **pool_env)
    wait(submit_many(lab, user, 2))  # both processes' pools learn the lab's limits
    time.sleep(3)
    started = time.monotonic()
    batch = submit_many(lab, user, 20)
    wait(batch)
    elapsed = time.monotonic() - started
    latencies(batch)
    worker.stop()
    return {
        "idle_p50": statistics.median(idle),
        "idle_p95": pct(idle, 0.95),
        "idle_checks_p50": statistics.median(idle_checks),
        "burst_p50": statistics.median(burst),
        "burst_p95": pct(burst, 0.95),
        "checks_s": checks_s,
        "per_minute": 20 / elapsed * 60,
        "phases": phases,
    }


def _phases(revision_ids: list[int]) -> dict[str, float]:
    """Where an idle grading's time goes: p50 seconds between the run's phase marks."""
    from labs.models import GradingRun

    steps = ("queued_at", "started_at", "sandbox_ready_at", "checks_finished_at", "results_stored_at")
    spans: dict[str, list[float]] = {f"{a[:-3]} -> {b[:-3]}": [] for a, b in itertools.pairwise(steps)}
    for run in GradingRun.objects.filter(revision_id__in=revision_ids):
        for a, b in itertools.pairwise(steps):
            if getattr(run, a) and getattr(run, b):
                spans[f"{a[:-3]} -> {b[:-3]}"].append((getattr(run, b) - getattr(run, a)).total_seconds())
    return {name: statistics.median(values) for name, values in spans.items() if values}


def _checks_s(batch: list[Revision]) -> float:
    total = CheckResult.objects.filter(run__revision__in=batch).aggregate(total=Sum("duration_ms"))["total"]
    return (total or 0) / 1000


def main() -> None:
    from django.contrib.auth import get_user_model

    idle_runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    pool_size = int(os.environ.get("SHIPSHAPE_BENCH_POOL_SIZE", "2"))
    load_before = _load()
    call_command("migrate", verbosity=0)
    redis = RedisServer(data_dir=DATA / "redis", port=REDIS_PORT)
    redis.start()
    worker = CeleryWorker(redis_url=redis.url, db_path=DB, log_dir=DATA)
    try:
        lab = make_lab()
        user = get_user_model().objects.create_user(username="bench")
        figures = {
            "no pool": measure(lab, user, worker, idle_runs=idle_runs, pool_size=0),
            f"pool of {pool_size}": measure(lab, user, worker, idle_runs=idle_runs, pool_size=pool_size),
        }
        print(f"machine: {os.cpu_count()} cores, load average {load_before} before, {_load()} after")
        for name, f in figures.items():
            print(f"{name}:")
            print(f"  idle ({idle_runs} runs, 1 process):  p50 {f['idle_p50']:.2f} s  p95 {f['idle_p95']:.2f} s")
            print(
                f"  idle p50 minus the checks' own time: {f['idle_p50'] - f['idle_checks_p50']:.2f} s"
                " (target < 0.5 s plus the checks' own time)"
            )
            print("  idle, p50 between phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in f["phases"].items()))
            print(f"  20 at once (1 process):    p50 {f['burst_p50']:.2f} s  p95 {f['burst_p95']:.2f} s")
            print(f"  checks' own time per grading (sum of check durations): {f['checks_s']:.2f} s")
            print(f"  throughput (2 processes, 20 gradings): {f['per_minute']:.1f} gradings/minute")
    finally:
        worker.stop()
        redis.stop()
        cleanup()


if __name__ == "__main__":
    main()
