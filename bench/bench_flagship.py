"""Grade a flagship lab's submission through the real sandbox and time every check.

    SHIPSHAPE_DEV=1 uv run python bench/bench_flagship.py [--lab quote-service|reproducible-notebook]
        [--variant NAME] [--parallel N]

Grades as the orchestrator schedules checks (labs.grading.schedule: independent checks each in a sandbox of their
own, at most N at once, N from GRADING_PARALLEL_CHECKS unless given; 1 = one after another) and prints the time per
check (a check in a sandbox of its own includes that sandbox's start), when it started, the slowest checks, the
critical path (the chain of checks, one after another in one lane, that bounds the wall time) and the total beside
the target: the quote-service reference graded in under 10 s of wall time (issue 12; it was 60 s in issue 4), with
the machine's load average. Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SHIPSHAPE_DEV", "1")
os.environ.setdefault("SHIPSHAPE_LOG_LEVEL", "WARNING")  # the pool logs each claim at INFO
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

LABS = {
    "quote-service": ROOT / "courses/content/production-systems/week-05-containers/lab-quote-service",
    "reproducible-notebook": ROOT
    / "courses/content/production-systems/chapter-19-reproducibility-controls/lab-reproducible-notebook",
}
FIXTURES = ROOT / "tests/fixtures/labs"
TARGET_S = {("quote-service", "reference"): 10.0}  # issue 12: wall time from the sandbox's start to the last check


def grade(
    lab_dir: Path, submission_dir: Path, *, only: set[str] | None = None, parallel: int | None = None
) -> list[dict[str, Any]]:
    """One row per check of lab.yaml, in the lab's order, between a "(sandbox start)" and a "(total)" row."""
    graded = grade_timed(lab_dir, submission_dir, only=only, parallel=parallel)
    return [
        {"id": "(sandbox start)", "seconds": graded["sandbox_start"]},
        *graded["rows"],
        {"id": "(total)", "seconds": graded["total"]},
    ]


def grade_timed(
    lab_dir: Path, submission_dir: Path, *, only: set[str] | None = None, parallel: int | None = None
) -> dict[str, Any]:
    """Grade the submission on lab.yaml's checks as the orchestrator schedules them (labs.grading.schedule: the
    in-order chain in the main sandbox, independent checks each in a sandbox of their own, at most `parallel` at
    once, GRADING_PARALLEL_CHECKS unless given); rows per check in the lab's order, the schedule's timings."""
    from django.conf import settings

    from labs.checks.base import CheckOutcome, GradingContext, check_kind
    from labs.grading.schedule import own_sandbox, plan_checks, run_checks
    from labs.labspec import parse_lab_yaml
    from labs.sandbox import Sandbox

    problems: list = []
    spec = parse_lab_yaml(
        (lab_dir / "lab.yaml").read_text(), file="lab.yaml", folder_slug=lab_dir.name, problems=problems
    )
    if spec is None or problems:
        raise SystemExit("\n".join(p.format() for p in problems))
    checks = [c for c in spec.checks if not only or c.id in only]
    limits = spec.limits.sandbox_limits()

    def run_one(ctx: GradingContext, position: int) -> CheckOutcome:
        check = checks[position]
        instance = check_kind(check.kind)(check_id=check.id, args=dict(check.args), points=check.points)
        try:
            return instance.run(ctx)
        except Exception as exc:  # the orchestrator does the same: an escaping error is "error"
            return CheckOutcome("error", f"{type(exc).__name__}: {exc}")

    started = time.monotonic()
    with Sandbox(limits=limits, submission_dir=submission_dir, grader_dir=lab_dir / "grader") as box:
        ctx = GradingContext(
            sandbox=box,
            submission_dir=submission_dir,
            grader_dir=lab_dir / "grader",
            limits=limits,
            deadline=time.monotonic() + limits.wall_seconds,
        )
        sandbox_start = time.monotonic() - started

        def in_own(position: int) -> CheckOutcome:
            with own_sandbox(ctx) as (own_ctx, _):
                return run_one(own_ctx, position)

        plan = plan_checks(checks, parallel=parallel or settings.GRADING_PARALLEL_CHECKS)
        ran = run_checks(plan, in_main=lambda position: run_one(ctx, position), in_own=in_own)
    total = time.monotonic() - started
    rows = [
        {
            "id": check.id,
            "kind": check.kind,
            "status": ran.results[p].status,
            "message": ran.results[p].message,
            "points": ran.results[p].points,
            "max_points": check.points,
            "seconds": ran.timings[p].seconds,  # for one in a sandbox of its own, that sandbox's start included
            "start": ran.timings[p].started - started,
            "own_sandbox": p in plan.own_sandbox,
        }
        for p, check in enumerate(checks)
    ]
    path = [checks[t.position].id for t in ran.critical_path()]
    critical = [
        {"id": checks[t.position].id, "start": t.started - started, "seconds": t.seconds} for t in ran.critical_path()
    ]
    return {
        "rows": rows,
        "sandbox_start": sandbox_start,
        "total": total,
        "critical_path": critical,
        "path_ids": path,
        "most_at_once": ran.most_at_once,
        "parallel": plan.parallel,
    }


def warm_pool(lab_dir: Path, *, size: int) -> Any:
    """This process's pool of pre-started sandboxes for the lab's limits, full, as a worker process keeps one."""
    from labs.labspec import parse_lab_yaml
    from labs.sandbox.pool import pool_start
    from labs.sandbox.reaper import database_label

    spec = parse_lab_yaml((lab_dir / "lab.yaml").read_text(), file="lab.yaml", folder_slug=lab_dir.name, problems=[])
    pool = pool_start(default_limits=spec.limits.sandbox_limits(), labels={"shipshape.db": database_label()}, size=size)
    if not pool.fill(timeout=120):
        print(f"pool: not full after 120 s ({pool.idle_count()} of {size})")
    return pool


def readable(root: Path) -> Path:
    """Stored submissions are world-readable (the sandbox's learner uid reads them); so must a test copy be."""
    root.parent.chmod(0o755)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def main() -> int:
    from django.conf import settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", choices=sorted(LABS), default="quote-service")
    parser.add_argument("--variant", default="reference")
    parser.add_argument("--only", nargs="*", help="check ids to run")
    parser.add_argument(
        "--parallel", type=int, help="checks at once (default: GRADING_PARALLEL_CHECKS; 1 = one after another)"
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=0,
        help="pre-start this many sandboxes first, as a worker process does (labs.sandbox.pool); 0: none",
    )
    args = parser.parse_args()
    import django

    django.setup()
    parallel = args.parallel or settings.GRADING_PARALLEL_CHECKS
    sys.path.insert(0, str(FIXTURES / args.lab))
    from variants import materialise

    with tempfile.TemporaryDirectory() as tmp:
        submission = readable(materialise(args.variant, Path(tmp) / "submission"))
        pool = warm_pool(LABS[args.lab], size=args.pool) if args.pool else None
        load_before = os.getloadavg()
        try:
            graded = grade_timed(
                LABS[args.lab], submission, only=set(args.only) if args.only else None, parallel=parallel
            )
        finally:
            load_after = os.getloadavg()
            if pool is not None:
                from labs.sandbox.pool import pool_stop

                print(f"pool: {pool.stats}")
                pool_stop()
    rows = graded["rows"]
    print(f"{'(main sandbox start)':<20} {'':<8} {graded['sandbox_start']:7.2f} s")
    for r in rows:
        where = "own sandbox" if r["own_sandbox"] else "main sandbox"
        print(
            f"{r['id']:<20} {r['status']:<8} {r['seconds']:7.2f} s  from {r['start']:5.2f} s  {where:<12}  "
            f"{r['message'][:80]}"
        )
    slowest = sorted(rows, key=lambda r: -r["seconds"])[:5]
    print("slowest:", ", ".join(f"{r['id']} {r['seconds']:.2f} s" for r in slowest))
    path = graded["critical_path"]
    print(
        "critical path (the chain of checks that bounds the wall time): main sandbox start "
        f"{graded['sandbox_start']:.2f} s -> "
        + " -> ".join(f"{c['id']} {c['seconds']:.2f} s" for c in path)
        + f" (ends at {path[-1]['start'] + path[-1]['seconds']:.2f} s)"
        if path
        else "critical path: none"
    )
    score = sum(r["points"] for r in rows)
    total = graded["total"]
    target = None if args.only else TARGET_S.get((args.lab, args.variant))
    beside = f"target < {target:g} s: {'met' if total < target else 'NOT met'}" if target else "no target"
    print(
        f"score {score:g}/{sum(r['max_points'] for r in rows):g}; total {total:.2f} s ({beside}); "
        f"parallel {graded['parallel']} (at most {graded['most_at_once']} checks ran at once); "
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
