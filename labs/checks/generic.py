"""Generic check kinds: files.required, command, tests.pytest.

tests.pytest trust model: the instructor's tests import the submission, so pytest runs as the learner.
Its verdict is read only from lines framed with a per-run random nonce that the trusted launcher
(platform/sandbox/pytest_runner.py) reads from stdin before any submission code is imported; the host also
requires exactly one result per collected test and a final `done` line. A submission that prints or writes
a fake report without the nonce changes nothing. A canary test (random name, must fail with a random
message, run first) catches generic tampering: code that patches pytest so every test passes, or forges
framed lines for every collected test, makes the canary pass or vanish, and the check earns nothing; so
does a second `collected` event or an exit code other than pytest's "tests failed" after a complete run.
Residual risk: submission code runs inside the pytest process, so a targeted attack (find the nonce and
the canary in memory, forge a report that fails only the canary) cannot be ruled out in-process. Labs whose
tests must be airtight should drive the submission out of process (subprocess or a second sandbox) from a
trusted program run as the grader user.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
from pathlib import Path, PurePosixPath
from typing import Any

from labs.checks.base import Check, CheckOutcome, GradingContext, register
from labs.globs import glob_problem, required_match
from labs.sandbox import TMP_INODES, TMP_MB

logger = logging.getLogger(__name__)

# The sandbox's shared /tmp (see labs.sandbox.environment) and what a copy of the tests leaves free at least.
TMP_BYTES = TMP_MB << 20
TMP_MARGIN_BYTES = 256 << 10
TMP_MARGIN_INODES = 32
RUNNER_USAGE_EXIT = 2  # pytest_runner.py's exit code when it was started wrongly (never the submission's)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)


def _submitted_paths(ctx: GradingContext) -> list[str]:
    root = ctx.submission_dir
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _grader_tests(folder: Path) -> dict[str, int] | None:
    """Size of the grader's tests folder on the host: bytes, files, and files that define tests; None when the
    folder is missing or holds no file (a lab configuration problem)."""
    if not folder.is_dir():
        return None
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    if not files:
        return None
    tests = 0
    for path in files:
        if path.suffix == ".py" and (path.name.startswith("test_") or path.stem.endswith("_test")):
            with contextlib.suppress(OSError):
                text = path.read_text("utf-8", "replace")
                tests += bool(re.search(r"^\s*(async\s+)?def test|^class Test", text, re.M))
    return {"bytes": sum(p.stat().st_size + 4096 for p in files), "files": len(files) + 8, "tests": tests}


def exhaustion_cause(before: Any, after: Any, limits: Any) -> str:
    """What the learner's code used up while a command ran, read from the sandbox's own counters ("" if nothing):
    forks the process limit refused, a full /work or /tmp."""
    causes = []
    if before is not None and after is not None and after.pids_refused > before.pids_refused:
        causes.append(f"your code tried to start more than {limits.pids} processes")
    if after is not None and after.work_full:
        causes.append(f"the scratch space /work ({limits.scratch_mb} MB) was full")
    if after is not None and after.tmp_full:
        causes.append(f"/tmp ({TMP_BYTES >> 20} MB, shared) was full")
    return "; ".join(causes)


@register
class FilesRequired(Check):
    kind = "files.required"
    default_category = "correctness"

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        if not _is_str_list(args.get("paths")):
            return ["args.paths must be a non-empty list of file paths or globs, e.g. [greet.py, '*.lock']"]
        return [
            f"args.paths has a bad glob {path!r}: {problem}"
            for path in args["paths"]
            if (problem := glob_problem(path))
        ]

    def run(self, ctx: GradingContext) -> CheckOutcome:
        present = _submitted_paths(ctx)
        missing = [
            pattern for pattern in self.args["paths"] if not any(required_match(pattern, path) for path in present)
        ]
        if missing:
            return self.failed(
                f"Missing from the submission: {', '.join(missing)}. Expected every one of: "
                f"{', '.join(self.args['paths'])}.",
                hint="Add the missing files at the top level of your submission (paths are case-sensitive).",
                missing=missing,
                submitted=[ctx.evidence_text(path, 300) for path in present[:200]],
            )
        return self.passed(f"All required files are present: {', '.join(self.args['paths'])}.")


@register
class Command(Check):
    """Run a command as the learner and compare its exit code and output with what the lab expects."""

    kind = "command"
    default_category = "correctness"

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems = []
        if not _is_str_list(args.get("argv")):
            problems.append("args.argv must be a non-empty list of strings, e.g. [python, greet.py, Ada]")
        if not isinstance(args.get("exit_code", 0), int):
            problems.append("args.exit_code must be an integer (default 0)")
        contains = args.get("stdout_contains", [])
        if not (
            isinstance(contains, str) or (isinstance(contains, list) and all(isinstance(c, str) for c in contains))
        ):
            problems.append("args.stdout_contains must be a string or a list of strings")
        if "stdout_equals" in args and not isinstance(args["stdout_equals"], str):
            problems.append("args.stdout_equals must be a string")
        if "stdout_regex" in args:
            try:
                re.compile(args["stdout_regex"])
            except (re.error, TypeError) as exc:
                problems.append(f"args.stdout_regex is not a valid regular expression: {exc}")
        timeout = args.get("timeout_s", 30)
        if not isinstance(timeout, int | float) or timeout <= 0:
            problems.append("args.timeout_s must be a positive number of seconds")
        if "stdin" in args and not isinstance(args["stdin"], str):
            problems.append("args.stdin must be a string")
        return problems

    def run(self, ctx: GradingContext) -> CheckOutcome:
        argv = self.args["argv"]
        shown = " ".join(argv)
        stdin = self.args["stdin"].encode() if "stdin" in self.args else None
        noted = len(ctx.sandbox.limit_events)
        result = ctx.sandbox.exec(
            argv, user="learner", timeout_s=ctx.timeout_s(self.args.get("timeout_s", 30)), stdin=stdin
        )
        # Limits this command hit (a refused fork, a full scratch space, a crash), named in the verdict.
        hit = [e.message for e in ctx.sandbox.limit_events[noted:] if e.reason in ("pids", "disk", "crash")]
        because = f" ({'; '.join(hit)})" if hit else ""
        stdout = ctx.evidence_text(result.stdout, limit=1_000_000)
        evidence = {
            "command": shown,
            "exit_code": result.exit_code,
            "stdout": ctx.evidence_text(result.stdout),
            "stderr": ctx.evidence_text(result.stderr),
            "duration_s": round(result.duration_s, 3),
        }
        if result.output_truncated:
            evidence["note"] = f"output was cut at {ctx.limits.output_bytes} bytes per stream"
        if result.oom_killed:
            return self.failed(
                f"`{shown}` was stopped: it used more than the memory limit of {ctx.limits.memory_mb} MB.",
                hint="Look for data structures that grow without bound.",
                **evidence,
            )
        if result.timed_out:
            return self.failed(
                f"`{shown}` did not finish: timed out after {result.duration_s:.0f} s.",
                hint="Look for loops that never end or calls that wait for input that never comes.",
                **evidence,
            )
        expected_code = self.args.get("exit_code", 0)
        if result.exit_code != expected_code:
            return self.failed(
                f"`{shown}` exited with code {result.exit_code}{because}; expected {expected_code}.",
                hint="Run the command yourself and read the error output shown below.",
                **evidence,
            )
        cut = f" (it was cut at {ctx.limits.output_bytes} bytes)" if result.output_truncated else ""
        contains = self.args.get("stdout_contains", [])
        for needle in [contains] if isinstance(contains, str) else contains:
            if needle not in stdout:
                return self.failed(f"The output of `{shown}`{cut} does not contain {needle!r}.", **evidence)
        if "stdout_equals" in self.args and stdout.strip() != self.args["stdout_equals"].strip():
            return self.failed(
                f"The output of `{shown}`{cut} is not exactly {self.args['stdout_equals'].strip()!r}.", **evidence
            )
        if "stdout_regex" in self.args and not re.search(self.args["stdout_regex"], stdout, re.MULTILINE):
            return self.failed(
                f"The output of `{shown}`{cut} does not match the pattern {self.args['stdout_regex']!r}.", **evidence
            )
        return self.passed(f"`{shown}` exited with {expected_code} and printed what was expected.", **evidence)


@register
class TestsPytest(Check):
    """The instructor's hidden pytest suite (in grader/) against the submission."""

    kind = "tests.pytest"
    needs_grader = True
    default_category = "correctness"

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems = []
        path = args.get("path", "tests")
        if not isinstance(path, str) or PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
            problems.append("args.path must be a relative folder inside grader/, e.g. tests")
        per_test = args.get("points_per_test")
        if per_test is not None and not (
            isinstance(per_test, dict) and all(isinstance(v, int | float) and v >= 0 for v in per_test.values())
        ):
            problems.append("args.points_per_test must map test names to non-negative points")
        timeout = args.get("timeout_s", 60)
        if not isinstance(timeout, int | float) or timeout <= 0:
            problems.append("args.timeout_s must be a positive number of seconds")
        return problems

    def run(self, ctx: GradingContext) -> CheckOutcome:
        box = ctx.sandbox
        rel = self.args.get("path", "tests")
        shipped = _grader_tests(ctx.grader_dir / rel)
        if shipped is None:
            return self.undecided(f"the grader's tests folder {rel}/ is missing or empty (a lab configuration problem)")
        tests_dir = f"/tmp/grader-tests-{secrets.token_hex(8)}"
        source = str(PurePosixPath("/grader") / rel)
        # A grader-owned copy the learner can read (the tests import the submission) but not change, in the shared
        # /tmp only for the run: it is removed as soon as pytest ends.
        # The canary: a test of ours that must fail with a random message. Submission code that makes every
        # test pass (patching pytest, forging framed lines) makes it pass or vanish too, and then earns nothing.
        canary = f"test_{secrets.token_hex(8)}"
        canary_token = secrets.token_hex(16)
        canary_source = f"def {canary}():\n    raise AssertionError({canary_token!r})\n"
        before = box.pressure()
        try:
            copied = box.exec(
                [
                    "sh",
                    "-c",
                    'mkdir -m 0755 "$1" && cp -R "$2"/. "$1"/ && printf "%s" "$4" > "$1/$3.py" && chmod -R a+rX,go-w "$1"',
                    "sh",
                    tests_dir,
                    source,
                    canary,
                    canary_source,
                ],
                user="grader",
                timeout_s=30,
            )
            if copied.exit_code != 0:
                return self._copy_failed(ctx, copied, shipped)
            nonce = secrets.token_hex(24)
            result = box.exec(
                ["python3", "-I", "/opt/shipshape/pytest_runner.py", tests_dir, "/work"],
                user="learner",
                timeout_s=ctx.timeout_s(self.args.get("timeout_s", 60)),
                stdin=f"{nonce}\n{canary}\n".encode(),
                env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTEST_ADDOPTS": ""},
            )
        finally:
            box.exec(["rm", "-rf", tests_dir], user="grader", timeout_s=30)
        report = _parse_report(result.stdout, nonce)
        log = ctx.evidence_text(_strip_framed(result.stdout, nonce) + b"\n" + result.stderr)
        evidence: dict[str, Any] = {"log": log}
        cause = exhaustion_cause(before, box.pressure(), ctx.limits)
        if cause:
            evidence["limit"] = cause
        if result.oom_killed:
            return self.failed(
                f"The tests were stopped: the code used more than the memory limit of {ctx.limits.memory_mb} MB.",
                **evidence,
            )
        if result.timed_out:
            return self.failed(f"The tests did not finish: timed out after {result.duration_s:.0f} s.", **evidence)
        if result.exit_code == RUNNER_USAGE_EXIT and result.stderr.startswith(b"pytest_runner:"):
            return self.undecided("the platform's pytest launcher refused to start (a problem on our side)")
        because = f" ({cause})" if cause else ""
        if report["collect_errors"]:
            evidence["collect_errors"] = [ctx.evidence_text(e, limit=1500) for e in report["collect_errors"][:5]]
            return self.failed(
                f"The tests could not load your code (an import or syntax error){because}; no test ran.",
                hint="Run `python -c 'import <your module>'` locally and fix the error shown below.",
                **evidence,
            )
        if report["collected"] is None:
            return self.failed(
                "The test run ended before any test was collected"
                + (because or " (your code may have exited the process)")
                + ".",
                hint="Importing your code must not exit, kill or replace the process.",
                **evidence,
            )
        canary_ids = [n for n in report["nodeids"] if n.rsplit("::", 1)[-1] == canary]
        tampered = tampering(report, canary_ids, canary_token, result.exit_code)
        if tampered:
            return self.failed(
                f"The test run was tampered with: {tampered}. Submission code must not change how the tests run or "
                "report; no points for this check.",
                hint="Remove code that patches pytest, exits the interpreter on import or writes test reports.",
                **evidence,
            )
        report["nodeids"] = [n for n in report["nodeids"] if n not in canary_ids]
        if not report["nodeids"]:
            if shipped["tests"]:
                return self.failed(
                    "The test run was tampered with: none of the hidden tests was collected, only the platform's "
                    "own check test; no points for this check.",
                    hint="Remove code that changes which tests pytest collects.",
                    **evidence,
                )
            return self.undecided("the grader's suite contains no tests (a lab configuration problem)")
        return self._score(ctx, report, evidence, because)

    def _copy_failed(self, ctx: GradingContext, copied: Any, shipped: dict[str, int]) -> CheckOutcome:
        """The tests could not be copied into /tmp: the learner's doing when their files filled it (or an earlier
        command of theirs got the sandbox stopped), ours otherwise."""
        box = ctx.sandbox
        if box.dead:
            if any(event.reason == "timeout" for event in box.limit_events):
                return self.failed(
                    "The hidden tests could not run: the sandbox had been stopped because an earlier command of "
                    "yours ran past its time limit."
                )
            return self.undecided("the sandbox stopped before the hidden tests could be copied")
        pressure = box.pressure()
        fits = shipped["bytes"] + TMP_MARGIN_BYTES <= TMP_BYTES and shipped["files"] + TMP_MARGIN_INODES <= TMP_INODES
        if (
            pressure is not None
            and fits
            and (
                pressure.tmp_free_bytes < shipped["bytes"] + TMP_MARGIN_BYTES
                or pressure.tmp_free_inodes < shipped["files"] + TMP_MARGIN_INODES
            )
        ):
            return self.failed(
                f"The hidden tests could not be copied into /tmp: it was full (only {pressure.tmp_free_bytes // 1024} "
                f"KB and {pressure.tmp_free_inodes} files free of its {TMP_BYTES >> 20} MB) with files your code left "
                "there.",
                hint="Delete temporary files when you are done with them (tempfile.TemporaryDirectory() does).",
            )
        logger.warning("copying the grader tests failed: %r", copied.stderr[-800:])
        return self.undecided("the grader's tests could not be prepared (a problem on our side, not yours)")

    def _score(
        self, ctx: GradingContext, report: dict[str, Any], evidence: dict[str, Any], because: str = ""
    ) -> CheckOutcome:
        expected = report["nodeids"]
        outcomes = {nodeid: report["results"].get(nodeid, ("missing", "")) for nodeid in expected}
        per_test = self.args.get("points_per_test")
        if per_test:
            weights = {n: float(per_test.get(n.rsplit("::", 1)[-1], 0)) for n in expected}
        else:
            weights = dict.fromkeys(expected, 1.0)
        total_weight = sum(weights.values()) or 1.0
        earned = sum(weights[n] for n, (outcome, _) in outcomes.items() if outcome == "passed")
        points = round(self.points * earned / total_weight, 2)
        passed = [n for n, (o, _) in outcomes.items() if o == "passed"]
        failed = {n: (o, text) for n, (o, text) in outcomes.items() if o != "passed"}
        evidence["tests"] = [
            {"name": n.rsplit("::", 1)[-1], "outcome": o, "detail": ctx.evidence_text(text, limit=800)}
            for n, (o, text) in outcomes.items()
        ][:100]
        incomplete = not report["done"] or any(n not in report["results"] for n in expected)
        if incomplete:
            evidence["note"] = "the test run ended early; tests without a result count as failed"
        summary = f"{len(passed)} of {len(expected)} hidden tests passed"
        if not failed:
            return CheckOutcome("pass", summary + ".", points=self.points, evidence=evidence)
        names = ", ".join(n.rsplit("::", 1)[-1] for n in list(failed)[:5])
        return CheckOutcome(
            "fail",
            f"{summary}; failing: {names}{' …' if len(failed) > 5 else ''}{because}.",
            points=points,
            hint="Each failing test's message below says what it expected.",
            evidence=evidence,
        )


def tampering(report: dict[str, Any], canary_ids: list[str], token: str, exit_code: int | None) -> str:
    """Why the framed report cannot be the honest record of the run ("" when nothing is wrong).

    An honest run collects the canary once, reports it failed with its token, and (when it reaches the end)
    exits with pytest's "some tests failed" code 1, which the canary guarantees.
    """
    if report["collected_events"] > 1:
        return "the collection was reported more than once"
    if len(canary_ids) != 1:
        return "the platform's own check test was not collected"
    outcome, longrepr = report["results"].get(canary_ids[0], ("missing", ""))
    if outcome != "failed" or token not in longrepr:
        return f"the platform's own check test, which always fails, was reported as {outcome}"
    if report["done"] and exit_code != 1:
        return f"pytest reported its end, but the process exited with code {exit_code} where 1 was due"
    return ""


def _parse_report(stdout: bytes, nonce: str) -> dict[str, Any]:
    """Only nonce-framed lines count; a test reported twice or not collected is ignored."""
    prefix = (nonce + " ").encode()
    report: dict[str, Any] = {
        "collected": None,
        "collected_events": 0,
        "nodeids": [],
        "results": {},
        "collect_errors": [],
        "done": False,
    }
    for line in stdout.splitlines():
        if not line.startswith(prefix):
            continue
        try:
            event = json.loads(line[len(prefix) :])
        except (ValueError, RecursionError):
            continue
        kind = event.get("event") if isinstance(event, dict) else None
        if kind == "collected":
            report["collected_events"] += 1
        if kind == "collected" and report["collected"] is None and isinstance(event.get("nodeids"), list):
            report["nodeids"] = [str(n) for n in event.get("nodeids", [])]
            report["collected"] = len(report["nodeids"])
        elif kind == "collect_error":
            report["collect_errors"].append(str(event.get("longrepr", "")))
        elif kind == "result":
            nodeid = str(event.get("nodeid"))
            if nodeid in report["nodeids"] and nodeid not in report["results"]:
                report["results"][nodeid] = (str(event.get("outcome")), str(event.get("longrepr", "")))
        elif kind == "done":
            report["done"] = True
    return report


def _strip_framed(stdout: bytes, nonce: str) -> bytes:
    prefix = (nonce + " ").encode()
    return b"\n".join(line for line in stdout.splitlines() if not line.startswith(prefix))
