"""Trusted pytest launcher (read-only at /opt/shipshape); runs as the learner because it imports the submission.

    python3 -I /opt/shipshape/pytest_runner.py TESTS_DIR SUBMISSION_DIR
    stdin: a per-run nonce line, then optionally the name of the host's canary test (moved to the front)

It reads the nonce from stdin before anything imports submission code, keeps a private duplicate of stdout,
and writes one line per event there: `<nonce> {"event": ...}`: `collected` (count), `collect_error`,
`result` (one per test), `done`. The host counts only nonce-framed lines and requires one result per
collected test; everything else on stdout is data.

Isolation from the submission: `-I` (no PYTHON* variables, no cwd on sys.path), the submission directory is
appended to sys.path (the stdlib and installed packages win over a submission's `pytest.py` or `json.py`),
`-c` points at an empty ini so the submission's pytest.ini/pyproject/setup.cfg are never read, rootdir and
confcutdir are the tests' directory (a grader-owned copy), so the submission's conftest.py files are never
loaded, and plugin autoload is off (PYTEST_DISABLE_PLUGIN_AUTOLOAD). Residual risk: submission code runs in
this process and could find the nonce in memory; see labs/checks/generic.py.
"""

import json
import os
import sys

EMPTY_INI = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pytest-grader.ini")
LONGREPR_LIMIT = 2000


def main() -> int:
    nonce = sys.stdin.readline().strip()
    canary = sys.stdin.readline().strip()  # optional: the name of the host's canary test, run first
    if len(nonce) < 16:
        print("pytest_runner: no nonce on stdin", file=sys.stderr)
        return 2
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    channel = os.dup(1)
    tests_dir, submission_dir = sys.argv[1], sys.argv[2]

    def emit(event: str, **data: object) -> None:
        # Leading newline: pytest's progress dots (or the submission) may have left a line unfinished.
        line = "\n" + nonce + " " + json.dumps({"event": event, **data}) + "\n"
        os.write(channel, line.encode())

    class Reporter:
        def pytest_collectreport(self, report):
            if report.failed:
                emit("collect_error", nodeid=report.nodeid, longrepr=str(report.longrepr)[:LONGREPR_LIMIT])

        def pytest_collection_modifyitems(self, session, config, items):
            # The canary (a test that must fail) runs first, so a run that dies later still has its verdict.
            if canary:
                items.sort(key=lambda item: item.name != canary)

        def pytest_collection_finish(self, session):
            emit("collected", n=len(session.items), nodeids=[item.nodeid for item in session.items])

        def pytest_runtest_logreport(self, report):
            # One result per test: its call phase, or the setup phase when setup failed or skipped the test.
            if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
                outcome = report.outcome
                if report.when == "setup" and report.failed:
                    outcome = "error"
                longrepr = "" if report.passed else str(report.longrepr)[:LONGREPR_LIMIT]
                emit("result", nodeid=report.nodeid, outcome=outcome, longrepr=longrepr)

        def pytest_sessionfinish(self, session, exitstatus):
            emit("done", exitstatus=int(exitstatus))

    sys.path.append(submission_dir)
    os.chdir(submission_dir)
    import pytest

    args = [
        tests_dir,
        "-c",
        EMPTY_INI,
        "--rootdir",
        tests_dir,
        "--confcutdir",
        tests_dir,
        "-p",
        "no:cacheprovider",
        "-q",
        "--tb=short",
        "--show-capture=no",
        "--color=no",
    ]
    return int(pytest.main(args, plugins=[Reporter()]))


if __name__ == "__main__":
    sys.exit(main())
