"""Red team for the grader: hostile or lazy submissions that try to earn points they should not, or to make a
check crash (a crash is our error: retried and never charged, so a broken submission would dodge its grade).

The first half feeds hostile observations to the pure judges; the second half grades hostile submissions
through the real sandbox (Docker and the runner image), as test_flagship_quote_service.py does.
"""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml

from labs.checks import generic, notebook, obs, repro, resilience

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from bench_flagship import grade, readable  # noqa: E402

SECRET = "hidden-grader-secret-7f3a9c"


# --- judges never crash on hostile observations (a crash would make the run our error) -----------------------


def call(status=200, body=None, calls=1, elapsed=0.05, **extra):
    doc = {"status": status, "json": body, "body": json.dumps(body), "elapsed_s": elapsed, "upstream_calls": calls}
    return {**doc, **extra}


def test_health_with_a_list_body_fails_instead_of_crashing():
    observations = {"up": call(200, [1]), "down": call(503, {}), "back": call(200, [1])}
    assert resilience.judge_health(observations).status == "fail"


def test_metrics_of_a_service_that_crashed_on_the_failing_request_fail_instead_of_crashing():
    check = obs.Metrics(check_id="metrics", args={}, points=5)
    run = resilience.ScenarioRun(
        started=True,
        observations={
            "before": {**call(200, None, calls=0), "body": ""},
            "mid": {**call(200, None, calls=0), "body": ""},
            "after": {"error": "ConnectionRefusedError", "elapsed_s": 0.01, "upstream_calls": 0},
            "sent": [{"status": 200, "upstream_calls": 1}, {"status": None, "upstream_calls": 3}],
        },
        stub_log=[],
        service_stdout="",
        service_stderr="",
    )
    assert check.judge(run).status == "fail"


def test_metrics_text_that_breaks_the_parser_fails_instead_of_crashing():
    for text in ['# TYPE x counter\nx{a="1"} nan nan nan\n', "x{", "\x00\xff", "# HELP\n# TYPE\n"]:
        assert obs.judge_metrics(text, text, [200]).status == "fail"


def test_a_whitespace_python_version_in_the_manifest_is_a_problem_not_a_crash():
    problems = repro.manifest_problems(
        {"seed": 1, "python": "   ", "packages": {}, "code_sha256": "x"},
        seed=1,
        python_version="3.11.2",
        installed={},
        locked=[],
        code_sha256="x",
    )
    assert any("python is" in p for p in problems)


def test_deeply_nested_json_artifacts_and_log_lines_do_not_crash_the_judges():
    deep = b"[" * 100_000 + b"]" * 100_000
    assert repro.without_keys(deep, {"seed"}) == deep
    verdict = obs.judge_json_logs(deep.decode(), [{"sent_request_id": "r1", "path": "/quote", "status": 200}])
    assert verdict.status == "fail"
    report = generic._parse_report(b"n" * 16 + b" " + deep, "n" * 16)
    assert report["collected"] is None


# --- a service that hard-codes the answers or never calls the upstream ----------------------------------------


def test_a_service_that_never_calls_the_upstream_fails_retries():
    observations = {"transient": call(200, {"price": 15.0, "source": "live"}, calls=0), "persistent": call(503, {}, 0)}
    assert resilience.judge_retries(observations, price=31.44, max_attempts=3).status == "fail"
    # Even when it guesses the price right, a failing call that never reached the upstream is not a retry.
    observations["transient"]["json"]["price"] = 31.44
    assert resilience.judge_retries(observations, price=31.44, max_attempts=3).status == "fail"


def test_a_service_that_answers_fast_without_calling_the_slow_upstream_fails_timeout():
    observations = {"slow": call(200, {"price": 15.0, "source": "live"}, calls=0, elapsed=0.01), "delay_ms": 5000}
    assert resilience.judge_timeout(observations, bound_s=3.0).status == "fail"


def test_a_service_that_replays_its_first_answer_fails_fallback():
    observations = {
        "warm": call(200, {"price": 20.4, "source": "live"}),
        "warm_again": call(200, {"price": 20.4, "source": "cache"}, calls=0),
        "cached": call(200, {"price": 20.4, "source": "cache"}, calls=0),
        "uncached": call(503, {"error": "down"}, calls=0),
    }
    verdict = resilience.judge_fallback(observations, price=20.4, price_2=61.2, bound_s=3.0)
    assert verdict.status == "fail"
    assert "61.2" in verdict.message


def test_each_service_check_picks_a_fresh_random_upstream_price():
    check = resilience.Retries(check_id="retries", args={}, points=6)
    picks = {check.pick_prices()["params"]["upstream_price"] for _ in range(20)}
    assert len(picks) > 1
    pick = check.pick_prices()
    assert pick["quote"] == round(pick["params"]["upstream_price"] * 1.2, 2)
    assert pick["params"]["upstream_price"] != pick["params"]["upstream_price_2"]


def test_forged_upstream_error_counters_fail_metrics():
    before = "# TYPE quote_requests_total counter\n# TYPE upstream_errors_total counter\nupstream_errors_total 0\n"
    histogram = (
        "# TYPE quote_request_duration_seconds histogram\n"
        'quote_request_duration_seconds_bucket{le="+Inf"} %d\n'
        "quote_request_duration_seconds_count %d\nquote_request_duration_seconds_sum 0.1\n"
    )

    def text(ok, failed, errors):
        return (
            "# TYPE quote_requests_total counter\n"
            f'quote_requests_total{{status="200"}} {ok}\nquote_requests_total{{status="503"}} {failed}\n'
            + histogram % (ok + failed, ok + failed)
            + f"# TYPE upstream_errors_total counter\nupstream_errors_total {errors}\n"
        )

    del before
    start, mid = text(0, 0, 0), text(3, 0, 3)  # errors counted while everything was healthy
    assert obs.judge_metrics(start, text(3, 1, 4), [200, 200, 200, 503], mid_text=mid).status == "fail"
    # One error per request, whatever happened: more errors than failing upstream calls.
    assert obs.judge_metrics(start, text(3, 1, 9), [200, 200, 200, 503], failed_upstream_calls=3).status == "fail"
    honest = obs.judge_metrics(
        start, text(3, 1, 3), [200, 200, 200, 503], mid_text=text(3, 0, 0), failed_upstream_calls=3
    )
    assert honest.status == "pass", honest.message


# --- lock files and Dockerfiles that look compliant ------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "--index-url http://127.0.0.1:9/simple",
        "--find-links /work/wheels",
        "-f ./wheels",
        "-e .",
        "-r other.txt",
        "requests @ file:///work/requests-2.0-py3-none-any.whl",
        "requests@https://127.0.0.1/requests.whl",
        "./vendored/requests-2.0-py3-none-any.whl",
        "https://127.0.0.1/requests-2.0.tar.gz",
    ],
)
def test_a_lock_line_that_installs_from_elsewhere_than_the_wheelhouse_is_flagged(line):
    text = f"prometheus-client==0.21.0\n{line}\n"
    assert [e.text for e in repro.off_wheelhouse_lines(text)] == [line]
    assert [e.text for e in repro.loose_requirements(text)] == [line]


def test_a_pinned_line_with_an_index_option_is_not_pinned():
    assert repro.loose_requirements("requests==2.0 --index-url http://127.0.0.1/simple\n")


DIGEST = "@sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("dockerfile", "rule"),
    [
        # a HEALTHCHECK only in a build stage does not reach the image
        (
            f"FROM python:3.11{DIGEST} AS build\nHEALTHCHECK CMD true\nFROM python:3.11{DIGEST}\nUSER app\n",
            "healthcheck",
        ),
        (f"FROM python:3.11{DIGEST}\nUSER app\nHEALTHCHECK NONE\n", "healthcheck"),
        (f"FROM python:3.11{DIGEST}\nUSER app\nUSER root\nHEALTHCHECK CMD true\n", "non-root"),
        (f"FROM python:3.11{DIGEST}\nUSER 000\nHEALTHCHECK CMD true\n", "non-root"),
        (f'FROM python:3.11{DIGEST}\nUSER "root"\nHEALTHCHECK CMD true\n', "non-root"),
        (f"FROM python:3.11{DIGEST}\nENV A=1 \\\n    DB_PASSWORD=x\nUSER app\nHEALTHCHECK CMD true\n", "no-secrets"),
        (f"FROM python:3.11{DIGEST}\nARG API_TOKEN\nUSER app\nHEALTHCHECK CMD true\n", "no-secrets"),
        ("ARG BASE=python:latest\nFROM ${BASE}\nUSER app\nHEALTHCHECK CMD true\n", "base-digest"),
        # PIP_NO_CACHE_DIR set in a build stage does not reach the final stage's pip install
        (
            f"FROM python:3.11{DIGEST} AS build\nENV PIP_NO_CACHE_DIR=1\nFROM python:3.11{DIGEST}\n"
            "RUN pip install -r requirements.lock\nUSER app\nHEALTHCHECK CMD true\n",
            "no-cache",
        ),
    ],
)
def test_dockerfile_tricks_are_caught(dockerfile, rule):
    assert rule in {p.rule for p in repro.dockerfile_problems(dockerfile)}


# --- tests.pytest tampering, judged from the framed report -----------------------------------------------------


def framed_report(*, collected_events=1, canary_outcome="failed", marker="tok", done=True):
    report = {
        "collected": 2,
        "collected_events": collected_events,
        "nodeids": ["t.py::test_a", "test_c.py::test_c"],
        "results": {"t.py::test_a": ("passed", "")},
        "collect_errors": [],
        "done": done,
    }
    if canary_outcome:
        report["results"]["test_c.py::test_c"] = (canary_outcome, f"AssertionError: {marker}")
    return report


def test_an_honest_framed_report_is_not_tampering():
    assert generic.tampering(framed_report(), ["test_c.py::test_c"], "tok", 1) == ""


@pytest.mark.parametrize(
    ("report", "canaries", "exit_code"),
    [
        (framed_report(canary_outcome="passed"), ["test_c.py::test_c"], 1),  # everything made to pass
        (framed_report(canary_outcome=None), ["test_c.py::test_c"], 1),  # forged results skip the canary
        (framed_report(), [], 1),  # a forged collection without the canary
        (framed_report(collected_events=2), ["test_c.py::test_c"], 1),  # a forged collection before the real one
        (framed_report(marker="other"), ["test_c.py::test_c"], 1),  # a forged failure for the canary
        (framed_report(), ["test_c.py::test_c"], 0),  # a complete run that then exits 0
    ],
)
def test_tampered_framed_reports_are_recognised(report, canaries, exit_code):
    assert generic.tampering(report, canaries, "tok", exit_code)


def test_a_notebook_whose_canary_cell_did_not_fail_is_not_clean():
    doc = {"kernel_started": True, "cells": [{"index": 0, "status": "ok", "outputs": []}], "canary_ok": False}
    status, message = notebook.problem_of(doc, 30)
    assert status == "fail"
    assert "kernel runs code" in message


# --- through the real sandbox -----------------------------------------------------------------------------------

docker = [pytest.mark.docker, pytest.mark.slow]


def make_lab(root: Path, checks: list[dict], *, grader_files: dict[str, str] | None = None, **limits) -> Path:
    lab = root / "lab"
    (lab / "grader").mkdir(parents=True)
    for name, text in (grader_files or {}).items():
        path = lab / "grader" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (lab / "grader" / "secret.txt").write_text(SECRET + "\n")
    spec = {
        "title": "Red team",
        "slug": "redteam",
        "limits": {"wall_seconds": 120, "memory_mb": 256, "output_bytes": 65536, **limits},
        "checks": checks,
    }
    (lab / "lab.yaml").write_text(yaml.safe_dump(spec))
    return lab


def grade_files(lab: Path, files: dict[str, str | bytes]) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "submission"
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(textwrap.dedent(content))
        rows = grade(lab, readable(root))
    return {row["id"]: row for row in rows if "status" in row}


PYTEST_CHECK = {"id": "tests", "kind": "tests.pytest", "points": 10, "args": {"path": "tests", "timeout_s": 30}}
HIDDEN_TESTS = {
    "tests/test_answer.py": "import main\n\n\ndef test_answer_is_42():\n    assert main.answer() == 42\n\n\n"
    "def test_double_is_84():\n    assert main.answer() * 2 == 84\n"
}
WRONG = "\n\ndef answer():\n    return 0\n"

PYTEST_ATTACKS = {
    "patches-runtest": "import _pytest.python\n_pytest.python.Function.runtest = lambda self: None\n",
    "forces-passed-reports": (
        "import _pytest.reports\n_init = _pytest.reports.TestReport.__init__\n"
        "def _forced(self, *a, **k):\n    _init(self, *a, **k)\n    self.outcome = 'passed'\n"
        "_pytest.reports.TestReport.__init__ = _forced\n"
    ),
    "forges-framed-lines-with-the-nonce": (
        "import json, os, sys\n"
        "frame = sys._getframe()\n"
        "while frame and 'nonce' not in frame.f_locals:\n    frame = frame.f_back\n"
        "nonce, channel = frame.f_locals['nonce'], frame.f_locals['channel']\n"
        "ids = ['test_answer.py::test_answer_is_42', 'test_answer.py::test_double_is_84']\n"
        "def emit(**e):\n    os.write(channel, ('\\n' + nonce + ' ' + json.dumps(e) + '\\n').encode())\n"
        "emit(event='collected', n=2, nodeids=ids)\n"
        "for i in ids:\n    emit(event='result', nodeid=i, outcome='passed', longrepr='')\n"
        "emit(event='done', exitstatus=0)\nos._exit(0)\n"
    ),
    "finds-the-reporter-with-gc": (
        "import gc\n"
        "for o in gc.get_objects():\n"
        "    if type(o).__name__ == 'Reporter':\n"
        "        o.pytest_runtest_logreport = lambda report: None\n"
        "        o.__class__.pytest_runtest_logreport = lambda self, report: None\n"
    ),
    "exits-zero-on-import": "import os\nos._exit(0)\n",
    "reads-stdin-for-the-nonce": (
        "import sys\ndata = sys.stdin.read()\nprint('stdin was', repr(data))\nassert not data\n"
    ),
    "prints-fake-reports": (
        "import json\nprint('1 passed')\nopen('/work/report.json','w').write(json.dumps({'passed': 2}))\n"
        "try:\n    open('/results/report.json','w').write('{}')\nexcept OSError:\n    pass\n"
    ),
}


@pytest.mark.parametrize("attack", sorted(PYTEST_ATTACKS))
@pytest.mark.docker
@pytest.mark.slow
def test_a_submission_that_tampers_with_pytest_earns_no_points(tmp_path, attack):
    lab = make_lab(tmp_path, [PYTEST_CHECK], grader_files=HIDDEN_TESTS)
    result = grade_files(lab, {"main.py": PYTEST_ATTACKS[attack] + WRONG})["tests"]
    # A named fail: an error would be ours, retried and never charged.
    assert result["status"] == "fail", result
    assert result["points"] == 0, result


@pytest.mark.docker
@pytest.mark.slow
def test_an_honest_submission_still_passes_the_hidden_tests_with_the_canary(tmp_path):
    lab = make_lab(tmp_path, [PYTEST_CHECK], grader_files=HIDDEN_TESTS)
    result = grade_files(lab, {"main.py": "def answer():\n    return 42\n"})["tests"]
    assert (result["status"], result["points"], result["message"]) == ("pass", 10, "2 of 2 hidden tests passed.")
    wrong = grade_files(lab, {"main.py": "def answer():\n    return 21\n"})["tests"]
    assert (wrong["status"], wrong["points"]) == ("fail", 0)
    assert wrong["message"].startswith("0 of 2 hidden tests passed")


@pytest.mark.docker
@pytest.mark.slow
def test_command_output_printed_before_a_crash_or_a_killed_wrapper_does_not_pass(tmp_path):
    checks = [
        {
            "id": "crash",
            "kind": "command",
            "points": 1,
            "args": {"argv": ["python", "crash.py"], "stdout_contains": "done"},
        },
        {
            "id": "kill",
            "kind": "command",
            "points": 1,
            "args": {"argv": ["python", "kill.py"], "stdout_contains": "done"},
        },
    ]
    lab = make_lab(tmp_path, checks)
    results = grade_files(
        lab,
        {
            "crash.py": "print('done', flush=True)\nraise SystemExit(3)\n",
            "kill.py": "import os, signal\nprint('done', flush=True)\nos.kill(os.getppid(), signal.SIGKILL)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n",
        },
    )
    assert results["crash"]["status"] == "fail" and results["crash"]["points"] == 0
    assert results["kill"]["status"] == "fail" and results["kill"]["points"] == 0


@pytest.mark.docker
@pytest.mark.slow
def test_a_fake_pip_in_the_submission_does_not_pass_the_offline_install(tmp_path):
    lab = make_lab(tmp_path, [{"id": "offline", "kind": "repro.offline_install", "points": 5, "args": {}}])
    fake_pip = "raise SystemExit(0)\n"
    results = grade_files(
        lab,
        {
            "requirements.lock": "definitely-not-in-the-wheelhouse==9.9.9\n",
            "pip/__init__.py": "",
            "pip/__main__.py": fake_pip,
            ".local/lib/python3.11/site-packages/zz.pth": "import sys; sys.modules.pop('pip', None)\n",
            ".config/pip/pip.conf": "[install]\nno-deps = true\nfind-links = /work/wheels\n",
        },
    )
    assert results["offline"]["status"] == "fail", results["offline"]
    lock_with_links = grade_files(lab, {"requirements.lock": "--find-links /work/wheels\nsomething==1.0\n"})
    assert lock_with_links["offline"]["status"] == "fail"
    assert "somewhere other than" in lock_with_links["offline"]["message"]


TRAIN_LINKING_TO_THE_GRADER = """
import argparse, json, os
p = argparse.ArgumentParser(); p.add_argument('--seed', type=int); p.add_argument('--out')
a = p.parse_args()
out = os.path.dirname(a.out)
os.makedirs(out, exist_ok=True)
marker = '/work/.ran-once'
if os.path.exists(marker):
    os.symlink('/grader/secret.txt', a.out)
else:
    open(marker, 'w').close()
    open(a.out, 'w').write('x\\n')
json.dump({'seed': a.seed}, open(os.path.join(out, 'run_manifest.json'), 'w'))
"""


@pytest.mark.docker
@pytest.mark.slow
def test_an_artifact_symlinked_into_the_grader_folder_leaks_nothing(tmp_path):
    lab = make_lab(tmp_path, [{"id": "det", "kind": "repro.deterministic_output", "points": 5, "args": {}}])
    result = grade_files(lab, {"train.py": TRAIN_LINKING_TO_THE_GRADER})["det"]
    assert result["status"] == "fail"
    assert SECRET not in json.dumps(result)


SERVICE_HEAD = """
import json, os, sys, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
UP = os.environ['UPSTREAM_URL']
"""
SERVICE_TAIL = """
HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"""
HARD_CODED = (
    SERVICE_HEAD
    + """
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        body = json.dumps({'sku': 'x', 'price': 15.0, 'currency': 'EUR', 'source': 'live'}).encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
"""
    + SERVICE_TAIL
)
LINKED_LOG = (
    SERVICE_HEAD
    + """
for name in os.listdir('/work'):
    if name.startswith('.shipshape-service-') and name.endswith('.log'):
        os.remove('/work/' + name)
        os.symlink('/grader/secret.txt', '/work/' + name)
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        body = b'[1]'
        self.send_response(200); self.send_header('Content-Length', '3'); self.end_headers(); self.wfile.write(body)
"""
    + SERVICE_TAIL
)


def service_checks(*ids_kinds):
    return [{"id": i, "kind": k, "points": 5, "args": {"startup_timeout_s": 5}} for i, k in ids_kinds]


@pytest.mark.docker
@pytest.mark.slow
def test_a_service_with_hard_coded_answers_earns_no_resilience_points(tmp_path):
    lab = make_lab(
        tmp_path,
        service_checks(
            ("retries", "resilience.retries"), ("timeout", "resilience.timeout"), ("fallback", "resilience.fallback")
        ),
    )
    results = grade_files(lab, {"service.py": HARD_CODED})
    assert {cid: r["status"] for cid, r in results.items()} == {
        "retries": "fail",
        "timeout": "fail",
        "fallback": "fail",
    }


@pytest.mark.docker
@pytest.mark.slow
def test_a_service_log_symlinked_into_the_grader_folder_leaks_nothing_and_crashes_nothing(tmp_path):
    lab = make_lab(tmp_path, service_checks(("logs", "obs.json_logs"), ("health", "resilience.health")))
    results = grade_files(lab, {"service.py": LINKED_LOG})
    assert SECRET not in json.dumps(results)
    assert results["logs"]["status"] == "fail"
    assert results["health"]["status"] == "fail"  # 200 while the upstream is down, and a list for a body


def notebook_file(*sources: str) -> str:
    cells = [
        {"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None} for s in sources
    ]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


NOTEBOOK_CHECKS = [
    {"id": "clean", "kind": "notebook.runs_clean", "points": 5, "args": {"notebook": "nb.ipynb"}},
    {"id": "asserts", "kind": "notebook.assertions", "points": 5, "args": {"notebook": "nb.ipynb", "path": "a.py"}},
]


@pytest.mark.docker
@pytest.mark.slow
def test_a_notebook_that_blanks_later_cells_earns_no_points(tmp_path):
    lab = make_lab(tmp_path, NOTEBOOK_CHECKS, grader_files={"a.py": "assert result == 42, 'wrong result'\n"})
    blanking = notebook_file("result = 0", "get_ipython().input_transformers_post.append(lambda lines: [])")
    results = grade_files(lab, {"nb.ipynb": blanking})
    # The assertions need a clean run: without one they fail too, naming why (no longer "skipped").
    assert {cid: (r["status"], r["points"]) for cid, r in results.items()} == {
        "clean": ("fail", 0),
        "asserts": ("fail", 0),
    }
    assert "kernel runs code" in results["asserts"]["message"]
    honest = grade_files(lab, {"nb.ipynb": notebook_file("result = 6 * 7")})
    assert {cid: r["status"] for cid, r in honest.items()} == {"clean": "pass", "asserts": "pass"}
    wrong = grade_files(lab, {"nb.ipynb": notebook_file("result = 41")})
    assert wrong["asserts"]["status"] == "fail"
    assert "wrong result" in wrong["asserts"]["message"]


SNOOP = """
import glob, os, signal
found = []
for path in ["/grader/secret.txt", *glob.glob("/grader/**", recursive=True), *glob.glob("/tmp/*/secret.txt")]:
    try:
        found.append(open(path).read())
    except OSError as exc:
        found.append(type(exc).__name__)
for target in ["/results/report.json", "/opt/shipshape/pytest_runner.py", "/grader/x"]:
    try:
        open(target, "w").write("forged")
        found.append("wrote " + target)
    except OSError as exc:
        found.append(type(exc).__name__)
for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
    try:
        if os.stat(f"/proc/{pid}").st_uid != os.getuid():
            os.kill(pid, signal.SIGKILL)
            found.append(f"killed {pid}")
    except OSError:
        pass
print(found)
leaked = [f for f in found if "hidden-grader-secret" in f or f.startswith(("wrote", "killed"))]
raise SystemExit(1 if leaked else 0)
"""


@pytest.mark.docker
@pytest.mark.slow
def test_a_submission_cannot_read_the_grader_write_results_or_kill_trusted_processes(tmp_path):
    checks = [
        {
            "id": "snoop",
            "kind": "command",
            "points": 1,
            "args": {"argv": ["python", "snoop.py"]},
        },
        PYTEST_CHECK,
    ]
    lab = make_lab(tmp_path, checks, grader_files=HIDDEN_TESTS)
    results = grade_files(lab, {"snoop.py": SNOOP, "main.py": "def answer():\n    return 42\n"})
    # snoop.py exits 1 when it read the secret, wrote a trusted file or killed a process it does not own.
    assert results["snoop"]["status"] == "pass", results["snoop"]["message"]
    assert results["tests"]["status"] == "pass"  # the trusted programs that ran next were untouched


# --- tests.pytest: who filled what ------------------------------------------------------------------------------

FILL = """
import os, sys
target = sys.argv[1]
n = 0
try:
    while True:
        with open(os.path.join(target, f"junk-{n}"), "wb") as handle:
            handle.write(b"x" * 65536)
        n += 1
except OSError as exc:
    print("filled", target, "errno", exc.errno)
"""
CACHING_MAIN = "open('/work/answer-cache.txt', 'w').write('42' * 50000)\n\n\ndef answer():\n    return 42\n"


def fill_then_test(target: str) -> list[dict]:
    # Visible tests: they run after the fill in the same sandbox (a hidden check gets a fresh sandbox of its own,
    # which the fill never reaches).
    fill = {"id": "fill", "kind": "command", "points": 1, "args": {"argv": ["python", "fill.py", target]}}
    return [fill, PYTEST_CHECK]


@pytest.mark.docker
@pytest.mark.slow
def test_it_fails_hidden_tests_that_break_on_a_scratch_space_the_learner_filled_naming_it(tmp_path):
    lab = make_lab(tmp_path, fill_then_test("/work"), grader_files=HIDDEN_TESTS, scratch_mb=4)
    results = grade_files(lab, {"fill.py": FILL, "main.py": CACHING_MAIN})
    tests = results["tests"]
    assert (tests["status"], tests["points"]) == ("fail", 0), tests
    assert "the scratch space /work (4 MB) was full" in tests["message"], tests["message"]


@pytest.mark.docker
@pytest.mark.slow
def test_it_fails_hidden_tests_that_cannot_be_copied_into_a_tmp_the_learner_filled(tmp_path):
    lab = make_lab(tmp_path, fill_then_test("/tmp"), grader_files=HIDDEN_TESTS)
    results = grade_files(lab, {"fill.py": FILL, "main.py": "def answer():\n    return 42\n"})
    tests = results["tests"]
    assert (tests["status"], tests["points"]) == ("fail", 0), tests  # before: error, ours, retried 5 times
    assert "could not be copied into /tmp: it was full" in tests["message"]


FORKING_MAIN = """
import subprocess
children = [subprocess.Popen(["sleep", "30"]) for _ in range(300)]


def answer():
    return 42
"""


@pytest.mark.docker
@pytest.mark.slow
def test_it_fails_hidden_tests_when_the_code_exhausts_the_process_limit_naming_it(tmp_path):
    lab = make_lab(tmp_path, [PYTEST_CHECK], grader_files=HIDDEN_TESTS, pids=32)
    tests = grade_files(lab, {"main.py": FORKING_MAIN})["tests"]
    assert (tests["status"], tests["points"]) == ("fail", 0), tests
    assert "tried to start more than 32 processes" in tests["message"], tests["message"]


LIST_TMP = "import glob, sys\nleft = glob.glob('/tmp/grader-tests-*')\nprint(left)\nsys.exit(1 if left else 0)\n"


@pytest.mark.docker
@pytest.mark.slow
def test_it_leaves_no_copy_of_the_hidden_tests_in_tmp(tmp_path):
    after = {"id": "after", "kind": "command", "points": 1, "args": {"argv": ["python", "list_tmp.py"]}}
    lab = make_lab(tmp_path, [PYTEST_CHECK, after], grader_files=HIDDEN_TESTS)
    results = grade_files(lab, {"main.py": "def answer():\n    return 42\n", "list_tmp.py": LIST_TMP})
    assert results["tests"]["status"] == "pass"
    assert results["after"]["status"] == "pass", results["after"]["message"]


@pytest.mark.docker
@pytest.mark.slow
def test_it_keeps_a_missing_grader_tests_folder_as_ours(tmp_path):
    missing = {**PYTEST_CHECK, "args": {"path": "no-such-folder"}}
    lab = make_lab(tmp_path, [missing], grader_files=HIDDEN_TESTS)
    result = grade_files(lab, {"main.py": "def answer():\n    return 42\n"})["tests"]
    assert result["status"] == "error" and "lab configuration" in result["message"]
