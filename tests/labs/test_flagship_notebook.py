"""The grader's own test suite for the reproducible-notebook lab, through the real sandbox: the reference and every
independently written example solution score full marks; each broken variant fails exactly its check with the
cause named (a dying, out-of-memory or slow kernel is the learner's fail, never our error and never skipped)."""

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from bench_flagship import LABS, grade, readable  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.slow]
LAB = LABS["reproducible-notebook"]
EXAMPLES = sorted(p.name for p in (LAB / "examples").glob("*/") if (p / "analysis.ipynb").is_file())


def load_variants():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "notebook_variants", ROOT / "tests/fixtures/labs/reproducible-notebook/variants.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VARIANTS = load_variants()


def graded_dir(submission: Path) -> dict[str, dict]:
    rows = grade(LAB, readable(submission))
    return {row["id"]: row for row in rows if "status" in row}


def graded(variant: str) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        return graded_dir(VARIANTS.materialise(variant, Path(tmp) / "submission"))


def test_it_gives_the_reference_notebook_full_marks():
    results = graded("reference")
    assert {cid: r["status"] for cid, r in results.items()} == {
        "runs-clean": "pass",
        "reproducible": "pass",
        "assertions": "pass",
    }
    assert sum(r["points"] for r in results.values()) == 30


@pytest.mark.parametrize("example", EXAMPLES)
def test_it_gives_every_example_solution_full_marks(example):
    with tempfile.TemporaryDirectory() as tmp:
        submission = Path(tmp) / "submission"
        shutil.copytree(LAB / "examples" / example, submission, ignore=shutil.ignore_patterns("*.md", ".*"))
        results = graded_dir(submission)
    assert {cid: (r["status"], r["message"]) for cid, r in results.items() if r["status"] != "pass"} == {}
    assert sum(r["points"] for r in results.values()) == 30


@pytest.mark.parametrize("variant", sorted(VARIANTS.VARIANTS))
def test_it_fails_a_broken_notebook_on_exactly_its_check_with_the_cause_named(variant):
    spec = VARIANTS.VARIANTS[variant]
    results = graded(variant)
    failing = results[spec["fails"]]
    assert failing["status"] == "fail", failing
    assert failing["points"] == 0
    for fragment in spec["message"]:
        assert fragment in failing["message"], (fragment, failing["message"])
    for cid, row in results.items():
        if cid == spec["fails"]:
            continue
        if cid in spec.get("also_failing", []):
            # A check that needs a clean run fails too, naming the same cause.
            assert row["status"] == "fail", (cid, row["message"])
            assert "does not run clean" in row["message"] and spec["message"][0] in row["message"], row["message"]
        else:
            assert row["status"] == "pass", (cid, row["message"])
