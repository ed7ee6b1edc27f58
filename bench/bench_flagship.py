"""Grade a flagship lab's submission through the real sandbox and time every check.

    SHIPSHAPE_DEV=1 uv run python bench/bench_flagship.py [--lab quote-service|reproducible-notebook] [--variant NAME]

Prints the time per check, the slowest checks and the total; the target for the quote-service reference is
under 60 s of wall time in total (figures go to docs/benchmarks.md).
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
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

LABS = {
    "quote-service": ROOT / "courses/content/production-systems/week-05-containers/lab-quote-service",
    "reproducible-notebook": ROOT
    / "courses/content/production-systems/chapter-19-reproducibility-controls/lab-reproducible-notebook",
}
FIXTURES = ROOT / "tests/fixtures/labs"


def grade(lab_dir: Path, submission_dir: Path, *, only: set[str] | None = None) -> list[dict[str, Any]]:
    """Run every check of lab.yaml against the submission in one sandbox; one row per check, in order."""
    from labs.checks.base import CheckOutcome, GradingContext, check_kind
    from labs.labspec import parse_lab_yaml
    from labs.sandbox import Sandbox

    problems: list = []
    spec = parse_lab_yaml(
        (lab_dir / "lab.yaml").read_text(), file="lab.yaml", folder_slug=lab_dir.name, problems=problems
    )
    if spec is None or problems:
        raise SystemExit("\n".join(p.format() for p in problems))
    limits = spec.limits.sandbox_limits()
    rows = []
    started = time.monotonic()
    with Sandbox(limits=limits, submission_dir=submission_dir, grader_dir=lab_dir / "grader") as box:
        ctx = GradingContext(
            sandbox=box,
            submission_dir=submission_dir,
            grader_dir=lab_dir / "grader",
            limits=limits,
            deadline=time.monotonic() + limits.wall_seconds,
        )
        rows.append({"id": "(sandbox start)", "seconds": time.monotonic() - started})
        for check in spec.checks:
            if only and check.id not in only:
                continue
            cls = check_kind(check.kind)
            instance = cls(check_id=check.id, args=dict(check.args), points=check.points)
            t0 = time.monotonic()
            try:
                outcome = instance.run(ctx)
            except Exception as exc:  # the orchestrator does the same: an escaping error is "error"
                outcome = CheckOutcome("error", f"{type(exc).__name__}: {exc}")
            rows.append(
                {
                    "id": check.id,
                    "kind": check.kind,
                    "status": outcome.status,
                    "message": outcome.message,
                    "points": outcome.points,
                    "max_points": check.points,
                    "seconds": time.monotonic() - t0,
                }
            )
    rows.append({"id": "(total)", "seconds": time.monotonic() - started})
    return rows


def readable(root: Path) -> Path:
    """Stored submissions are world-readable (the sandbox's learner uid reads them); so must a test copy be."""
    root.parent.chmod(0o755)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", choices=sorted(LABS), default="quote-service")
    parser.add_argument("--variant", default="reference")
    parser.add_argument("--only", nargs="*", help="check ids to run")
    args = parser.parse_args()
    import django

    django.setup()
    sys.path.insert(0, str(FIXTURES / args.lab))
    from variants import materialise

    with tempfile.TemporaryDirectory() as tmp:
        submission = readable(materialise(args.variant, Path(tmp) / "submission"))
        rows = grade(LABS[args.lab], submission, only=set(args.only) if args.only else None)
    checks = [r for r in rows if "status" in r]
    for r in rows:
        status = r.get("status", "")
        print(f"{r['id']:<20} {status:<8} {r['seconds']:7.2f} s  {r.get('message', '')[:110]}")
    slowest = sorted(checks, key=lambda r: -r["seconds"])[:5]
    print("slowest:", ", ".join(f"{r['id']} {r['seconds']:.2f} s" for r in slowest))
    score = sum(r["points"] for r in checks)
    total = rows[-1]["seconds"]
    print(f"score {score:g}/{sum(r['max_points'] for r in checks):g}; total {total:.2f} s (target < 60 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
