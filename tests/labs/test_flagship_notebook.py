"""The grader's own test suite for the reproducible-notebook lab, through the real sandbox: the reference
scores full marks, each broken variant fails exactly its check (a dying kernel is an error, never a pass)."""

import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from bench_flagship import LABS, grade, readable  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def load_variants():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "notebook_variants", ROOT / "tests/fixtures/labs/reproducible-notebook/variants.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VARIANTS = load_variants()


def graded(variant: str) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        submission = readable(VARIANTS.materialise(variant, Path(tmp) / "submission"))
        rows = grade(LABS["reproducible-notebook"], submission)
    return {row["id"]: row for row in rows if "status" in row}


def test_the_reference_notebook_scores_full_marks():
    results = graded("reference")
    assert {cid: r["status"] for cid, r in results.items()} == {
        "runs-clean": "pass",
        "reproducible": "pass",
        "assertions": "pass",
    }
    assert sum(r["points"] for r in results.values()) == 30


@pytest.mark.parametrize("variant", sorted(VARIANTS.VARIANTS))
def test_a_broken_notebook_fails_exactly_its_check(variant):
    spec = VARIANTS.VARIANTS[variant]
    results = graded(variant)
    assert results[spec["fails"]]["status"] == spec.get("status", "fail"), results[spec["fails"]]
    for cid, row in results.items():
        if cid == spec["fails"]:
            continue
        expected = spec.get("others_status", "skipped") if cid in spec.get("also_not_passing", []) else "pass"
        assert row["status"] == expected, (cid, row["message"])
