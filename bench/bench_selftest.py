"""Verdict stability: the quote-service lab's examples graded K times under load, through real Redis, Celery, Docker.

    uv run python bench/bench_selftest.py [REPEAT] [LAB]     # defaults: 5, quote-service

Imports the sample course into a temporary data dir, starts its own redis-server and a Celery worker (2 processes),
and runs `manage.py lab_selftest production-systems/LAB --repeat REPEAT --load` (every core kept busy meanwhile).
Prints the command's table, then the figures: verdict flips between repeats (target 0), disagreements with the
declared expectations (target 0), and grading time per example (claim to results stored), with the machine.
"""

# ruff: noqa: E402 - the project's modules load after benchenv has configured Django
import os
import sys

from benchenv import DATA, DB, REDIS_PORT, REPO, cleanup
from django.core.management import call_command

from courses.services.importing import course_import
from labs.models import LabSelfTest
from tests.conftest import RedisServer
from tests.labs.conftest import CeleryWorker


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    lab = sys.argv[2] if len(sys.argv) > 2 else "quote-service"
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    call_command("migrate", verbosity=0)
    course_import(path=REPO / "courses" / "content" / "production-systems")
    redis = RedisServer(data_dir=DATA / "redis", port=REDIS_PORT)
    redis.start()
    worker = CeleryWorker(redis_url=redis.url, db_path=DB, log_dir=DATA)
    status = 0
    try:
        worker.start(concurrency=2)
        try:
            call_command("lab_selftest", f"production-systems/{lab}", "--repeat", str(repeat), "--load", "--poll", "1")
        except SystemExit as exc:
            status = int(exc.code or 0)
        selftest = LabSelfTest.objects.latest("created_at")
        report = selftest.report
        seconds = sorted(run["seconds"] for row in report["examples"] for run in row["runs"] if run["seconds"])
        disagreements = sum(len(row["problems"]) for row in report["examples"])
        print(f"machine: {os.cpu_count()} cores, load average {load_before} before (then --load kept every core busy)")
        print(f"lab {lab}: {len(report['examples'])} examples x {repeat} rounds = {len(seconds)} gradings")
        print(f"verdict flips between repeats: {len(report['flips'])} (target 0)")
        print(f"disagreements with the declared verdicts: {disagreements} (target 0)")
        if seconds:
            median = seconds[len(seconds) // 2]
            print(f"grading time per example: min {seconds[0]:.1f} s, median {median:.1f} s, max {seconds[-1]:.1f} s")
        for row in report["examples"]:
            times = [run["seconds"] for run in row["runs"] if run["seconds"]]
            mean = sum(times) / len(times) if times else 0.0
            print(f"  {row['example']:<45} mean {mean:.1f} s over {len(times)} rounds")
    finally:
        worker.stop()
        redis.stop()
        cleanup()
    raise SystemExit(status)


if __name__ == "__main__":
    main()
