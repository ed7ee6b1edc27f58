"""The grader's own test suite for the quote-service lab: the reference solution scores full marks, every
broken variant fails exactly the check it breaks, and the independently written example solutions in the lab's
examples/ folder score full marks on the service checks, all through the real sandbox (Docker and the runner
image).

A check's verdict is a function of the files it reads, so a variant is graded with the checks that read a file
it changes; the others see the same bytes as the reference, whose full grading is tested first.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests/fixtures/labs/quote-service"))
from bench_flagship import LABS, grade, readable  # noqa: E402
from variants import VARIANTS, materialise  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LAB = LABS["quote-service"]
SERVICE_CHECKS = {
    "retries",
    "backoff",
    "timeout",
    "fallback",
    "circuit-breaker",
    "contract",
    "health",
    "json-logs",
    "request-id",
    "metrics",
}
READS = {
    "service.py": SERVICE_CHECKS,
    "train.py": {"deterministic", "seed-sensitivity", "manifest"},
    "requirements.lock": {"pinned", "offline-install", "manifest", "deterministic"},
    "Dockerfile": {"dockerfile"},
}


EXAMPLES = LAB / "examples"


def graded(variant: str, only: set[str] | None = None) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        submission = readable(materialise(variant, Path(tmp) / "submission"))
        rows = grade(LAB, submission, only=only)
    return {row["id"]: row for row in rows if "status" in row}


def graded_example(name: str, only: set[str]) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        submission = Path(tmp) / "submission"
        shutil.copytree(EXAMPLES / name, submission, ignore=shutil.ignore_patterns("__pycache__"))
        rows = grade(LAB, readable(submission), only=only)
    return {row["id"]: row for row in rows if "status" in row}


def test_the_reference_solution_scores_full_marks():
    results = graded("reference")
    assert len(results) == 16
    not_passed = {cid: (r["status"], r["message"]) for cid, r in results.items() if r["status"] != "pass"}
    assert not_passed == {}
    assert sum(r["points"] for r in results.values()) == sum(r["max_points"] for r in results.values()) == 100


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_broken_variant_fails_exactly_its_check(variant):
    spec = VARIANTS[variant]
    touched = set().union(*(READS[file] for file, _, _ in spec["edits"]))
    assert spec["fails"] in touched
    results = graded(variant, only=touched)
    assert results[spec["fails"]]["status"] == "fail", results[spec["fails"]]
    assert results[spec["fails"]]["message"]
    others = {
        cid: (r["status"], r["message"])
        for cid, r in results.items()
        if cid != spec["fails"] and r["status"] != "pass" and cid not in spec.get("also_fails", [])
    }
    assert others == {}
    for cid in spec.get("also_fails", []):
        assert results[cid]["status"] == "fail", results[cid]
        assert spec["also_fails_saying"] in results[cid]["message"]


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*") if (p / "service.py").is_file()))
def test_an_example_solution_scores_full_marks_on_the_service_checks(example):
    results = graded_example(example, SERVICE_CHECKS)
    assert set(results) == SERVICE_CHECKS
    not_passed = {cid: (r["status"], r["message"]) for cid, r in results.items() if r["status"] != "pass"}
    assert not_passed == {}
