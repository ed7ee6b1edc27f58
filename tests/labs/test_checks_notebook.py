"""The notebook kinds: how runner observations become verdicts (pure, on recorded documents), the runner's own
defences (bounded output, malformed kernel messages), and attribution through the real sandbox: whatever the
notebook makes its kernel do is the learner's named `fail`; only our own side is `error`."""

from __future__ import annotations

import importlib.util
import json
import queue
import tempfile
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from labs.checks import notebook
from labs.checks.notebook import first_text_difference, problem_of, result_outputs, traceback_text

ROOT = Path(__file__).resolve().parents[2]


def load_runner():
    spec = importlib.util.spec_from_file_location("notebook_runner", ROOT / "platform/sandbox/notebook_runner.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = load_runner()
OBSERVED = {"oom": False, "pids": False, "work_full": False, "memory_mb": 512, "pids_limit": 128, "scratch_mb": 64}


def cell(index, status="ok", tags=(), text="", errors=()):
    return {"index": index, "status": status, "tags": list(tags), "text": text, "errors": list(errors)}


def doc(*, stopped=None, cells=(), started=True, observed=None, **extra):
    return {
        "kernel_started": started,
        "cells_run": len(cells),
        "cells": list(cells),
        "stopped": stopped,
        "observed": {**OBSERVED, **(observed or {})},
        **extra,
    }


# --- verdicts from recorded observations -------------------------------------------------------------------------


def test_it_finds_no_problem_in_a_clean_run():
    assert problem_of(doc(cells=[cell(0), cell(1)], canary_ok=True), 30) is None


def test_it_fails_a_kernel_that_dies_in_a_cell_naming_the_cell():
    died = doc(stopped={"cell": 1, "status": "died"})
    status, message = problem_of(died, 30)
    assert status == "fail"
    assert "kernel died while running code cell 2" in message and "exited or was killed" in message


def test_it_names_out_of_memory_when_the_kernel_was_oom_killed():
    status, message = problem_of(doc(stopped={"cell": 0, "status": "died"}, observed={"oom": True}), 30)
    assert (status, "ran out of memory (the limit is 512 MB)" in message) == ("fail", True)


def test_it_names_a_shadowing_file_when_the_kernel_dies_or_never_starts():
    status, message = problem_of(doc(started=False, kernel_died=True, observed={"shadowing": ["warnings.py"]}), 30)
    assert status == "fail" and "warnings.py" in message and "name of a Python module" in message
    status, message = problem_of(doc(stopped={"cell": 0, "status": "died"}, observed={"shadowing": ["random.py"]}), 30)
    assert status == "fail" and "random.py" in message


def test_it_names_a_file_of_the_submission_that_failed_at_kernel_start_up():
    status, message = problem_of(doc(started=False, kernel_died=True, observed={"ran_from_work": ["/work/x.py"]}), 30)
    assert status == "fail" and "/work/x.py" in message


def test_it_fails_a_kernel_that_cannot_start_because_the_notebook_filled_the_scratch_space():
    status, message = problem_of(doc(started=False, kernel_died=True, observed={"work_full": True}), 30)
    assert status == "fail" and "/work (64 MB) was full" in message


def test_it_keeps_a_kernel_that_fails_to_start_for_no_reason_of_the_learners_as_ours():
    assert problem_of(doc(started=False, kernel_died=True), 30)[0] == "error"
    assert problem_of(doc(started=False, kernel_died=False), 30)[0] == "error"


def test_it_fails_a_raising_cell_with_its_exception_even_with_an_empty_traceback():
    error = {"ename": "NameError", "evalue": "name 'intercep' is not defined", "traceback": []}
    raised = doc(stopped={"cell": 0, "status": "error"}, cells=[cell(0, "error", errors=[error])])
    assert problem_of(raised, 30) == ("fail", "code cell 1 raised NameError: name 'intercep' is not defined")
    assert traceback_text(raised["cells"][0]) == "NameError: name 'intercep' is not defined"


def test_it_fails_a_slow_cell_and_a_notebook_too_slow_for_the_budget():
    assert problem_of(doc(stopped={"cell": 0, "status": "timeout"}), 12) == (
        "fail",
        "code cell 1 did not finish within 12 s",
    )
    status, message = problem_of(doc(stopped={"cell": 3, "status": "budget"}, observed={"wall_seconds": 180}), 30)
    assert status == "fail" and "code cell 4" in message and "time budget" in message and "180 s" in message
    status, message = problem_of({"runner_stopped": "budget", "observed": OBSERVED}, 30)
    assert status == "fail" and "time budget" in message


def test_it_fails_a_kernel_that_sends_messages_the_runner_cannot_read():
    status, message = problem_of(doc(stopped={"cell": 0, "status": "protocol"}), 30)
    assert status == "fail" and "cannot read" in message


def test_it_fails_a_file_that_is_not_a_notebook():
    assert problem_of({"notebook_error": "cannot read nb.ipynb as a notebook: x"}, 30)[0] == "fail"


def test_it_keeps_our_own_failures_as_errors():
    assert problem_of({"grader_error": "cannot read the assertions file"}, 30)[0] == "error"
    assert problem_of({"runner_error": "could not prepare"}, 30)[0] == "error"
    assert problem_of({"runner_stopped": "crashed", "observed": OBSERVED}, 30)[0] == "error"
    # ...unless the notebook's kernel took the runner down with it.
    crashed = {"runner_stopped": "crashed", "observed": {**OBSERVED, "pids": True}}
    assert problem_of(crashed, 30)[0] == "fail"


def test_it_fails_a_notebook_whose_canary_cell_did_not_raise():
    status, message = problem_of(doc(cells=[cell(0)], canary_ok=False), 30)
    assert status == "fail" and "kernel runs code" in message


def test_it_reads_tagged_outputs_and_shows_the_first_difference():
    recorded = {"cells": [cell(1, tags=["result"], text="mse=1\n2"), cell(4, "error", errors=[{}])]}
    assert result_outputs(recorded) == [(1, "mse=1\n2")]
    assert first_text_difference("a\nmse=1\n", "a\nmse=2\n") == "line 2: 'mse=1' vs 'mse=2'"
    assert first_text_difference("same", "same") == "they differ past the part the grader keeps"


class FakeSandbox:
    def __init__(self):
        self.limit_events = []

    def note_limit(self, reason, message):
        self.limit_events.append((reason, message))


def run_kind(monkeypatch, kind, docs, **args):
    """A notebook kind's verdict when its executions observe `docs`, in order."""
    pending = list(docs)
    monkeypatch.setattr(notebook, "execute_notebook", lambda ctx, **kw: pending.pop(0))
    limits = SimpleNamespace(memory_mb=512, pids=128, scratch_mb=64, output_bytes=1 << 20, wall_seconds=180)
    ctx = SimpleNamespace(
        sandbox=FakeSandbox(), limits=limits, evidence_text=lambda text, limit=4000: str(text)[:limit]
    )
    cls = {"clean": notebook.RunsClean, "repro": notebook.Reproducible, "asserts": notebook.Assertions}[kind]
    return cls(check_id=kind, args={"notebook": "nb.ipynb", "path": "a.py", **args}, points=10).run(ctx)


def test_it_fails_reproducible_and_assertions_with_the_cause_when_the_notebook_does_not_run_clean(monkeypatch):
    died = doc(stopped={"cell": 1, "status": "died"}, observed={"oom": True})
    for kind in ("repro", "asserts"):
        outcome = run_kind(monkeypatch, kind, [died])
        assert outcome.status == "fail", outcome
        assert "does not run clean" in outcome.message and "ran out of memory" in outcome.message


def test_it_passes_reproducible_only_on_identical_digests(monkeypatch):
    tagged = cell(2, tags=["result"], text="mse=1.5\n")
    same = doc(cells=[{**tagged, "text_sha256": "aa"}], canary_ok=True, tagged_digest="d1")
    assert run_kind(monkeypatch, "repro", [same, same]).status == "pass"
    # Equal kept text but a different digest: the outputs differ past the part that is kept.
    other = doc(cells=[{**tagged, "text_sha256": "bb"}], canary_ok=True, tagged_digest="d2")
    outcome = run_kind(monkeypatch, "repro", [same, other])
    assert outcome.status == "fail" and "cell 3" in outcome.message


def test_it_fails_reproducible_at_once_when_no_cell_carries_the_tag(monkeypatch):
    untagged = doc(cells=[], canary_ok=True, tagged_digest="x")
    outcome = run_kind(monkeypatch, "repro", [untagged])
    assert outcome.status == "fail" and "no code cell is tagged 'result'" in outcome.message


@pytest.mark.parametrize(
    ("assertions", "status", "fragment"),
    [
        ({"status": "error", "passed": True, "errors": []}, "pass", "hold"),
        ({"status": "error", "passed": False, "errors": [{"ename": "AssertionError", "evalue": "m"}]}, "fail", "m"),
        ({"status": "died", "passed": False, "errors": []}, "fail", "kernel died"),
        ({"status": "timeout", "passed": False, "errors": []}, "fail", "did not finish"),
        ({"status": "ok", "passed": False, "errors": []}, "fail", "did not run to their end"),
    ],
)
def test_it_judges_the_hidden_assertions(monkeypatch, assertions, status, fragment):
    outcome = run_kind(monkeypatch, "asserts", [doc(cells=[cell(0)], canary_ok=True, assertions=assertions)])
    assert outcome.status == status and fragment in outcome.message


def test_it_keeps_a_missing_assertions_file_as_ours(monkeypatch):
    assert run_kind(monkeypatch, "asserts", [{"grader_error": "cannot read the assertions file"}]).status == "error"


# --- the runner's own defences ------------------------------------------------------------------------------------


def test_the_runner_turns_a_message_it_cannot_read_into_a_protocol_status_instead_of_crashing():
    def bad_signature(timeout):
        raise ValueError("Invalid Signature: b'x'")

    with pytest.raises(runner.Malformed):
        runner._message(bad_signature, 0.1)
    for shape in ([1, 2], {"msg_type": "stream", "parent_header": [], "content": {}}, {"msg_type": 3}):
        with pytest.raises(runner.Malformed):
            runner._message(lambda timeout, shape=shape: shape, 0.1)

    def empty(timeout):
        raise queue.Empty

    with pytest.raises(queue.Empty):
        runner._message(empty, 0.1)


def test_the_runner_keeps_its_document_within_the_output_limit_and_keeps_digests():
    record = runner.CellRecord()
    for _ in range(100):
        record.add_text("x" * 10_000 + "\x00")
    record.add_error({"ename": "E" * 50_000, "evalue": "v", "traceback": ["t" * 50_000] * 50})
    assert record.kept == runner.OUTPUT_CAP and record.chars == 1_000_100
    cells = [{"index": i, "status": "ok", "tags": ["result"], "elapsed_s": 0, **record.as_dict()} for i in range(300)]
    document = {"kernel_started": True, "cells": cells, "stopped": None, "tagged_digest": "d", "assertions": None}
    text = runner.fit(document, 65_000)
    assert len(text) <= 65_000
    parsed = json.loads(text)
    assert parsed["tagged_digest"] == "d" and parsed["cells"][0]["text_sha256"] == record.digest.hexdigest()


# --- through the real sandbox ---------------------------------------------------------------------------------------

docker = [pytest.mark.docker, pytest.mark.slow]


def notebook_file(*sources: str, tag_last: bool = False) -> str:
    cells = [
        {"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None} for s in sources
    ]
    if tag_last:
        cells[-1]["metadata"]["tags"] = ["result"]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def grade_notebook(tmp_path: Path, files: dict[str, str], *, cell_timeout_s: float = 10, **limits) -> dict[str, dict]:
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_flagship import grade, readable

    lab = tmp_path / "lab"
    (lab / "grader").mkdir(parents=True)
    (lab / "grader" / "a.py").write_text("assert result == 42, 'wrong result'\n")
    args = {"notebook": "nb.ipynb", "cell_timeout_s": cell_timeout_s}
    spec = {
        "title": "Notebook attribution",
        "slug": "notebook-attribution",
        "limits": {"wall_seconds": 120, "memory_mb": 256, "output_bytes": 65536, **limits},
        "checks": [
            {"id": "clean", "kind": "notebook.runs_clean", "points": 5, "args": args},
            {"id": "repro", "kind": "notebook.reproducible", "points": 5, "args": args},
            {"id": "asserts", "kind": "notebook.assertions", "points": 5, "args": {**args, "path": "a.py"}},
        ],
    }
    (lab / "lab.yaml").write_text(yaml.safe_dump(spec))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "submission"
        for name, content in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(textwrap.dedent(content))
        rows = grade(lab, readable(root))
    return {row["id"]: row for row in rows if "status" in row}


def assert_named_fail_everywhere(results: dict[str, dict], *fragments: str) -> None:
    for cid, row in results.items():
        assert row["status"] == "fail", (cid, row)
        assert row["points"] == 0
        for fragment in fragments:
            assert fragment in row["message"], (cid, fragment, row["message"])


@pytest.mark.docker
@pytest.mark.slow
def test_it_fails_a_notebook_whose_kernel_is_killed_naming_the_cell(tmp_path):
    killed = notebook_file("result = 42", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", tag_last=True)
    results = grade_notebook(tmp_path, {"nb.ipynb": killed})
    assert_named_fail_everywhere(results, "kernel died while running code cell 2", "exited or was killed")


@pytest.mark.docker
@pytest.mark.slow
def test_it_fails_a_notebook_whose_kernel_runs_out_of_memory_naming_the_limit(tmp_path):
    hungry = notebook_file("result = 42", "import numpy as np\nbig = np.ones(100_000_000)", tag_last=True)
    results = grade_notebook(tmp_path, {"nb.ipynb": hungry})
    assert_named_fail_everywhere(results, "ran out of memory (the limit is 256 MB)")


@pytest.mark.docker
@pytest.mark.slow
def test_it_fails_a_notebook_next_to_a_file_that_shadows_a_module_the_kernel_needs(tmp_path):
    files = {"nb.ipynb": notebook_file("result = 42", tag_last=True), "warnings.py": "import os\nos._exit(3)\n"}
    results = grade_notebook(tmp_path, files)
    assert_named_fail_everywhere(results, "kernel did not start", "warnings.py")


@pytest.mark.docker
@pytest.mark.slow
def test_it_fails_a_notebook_that_writes_startup_files_only_if_they_break_its_own_run(tmp_path):
    # A notebook that plants IPython startup files and a kernel config for the next kernel: every execution gets a
    # fresh IPython folder, so nothing it wrote runs at the next start and the notebook is graded on its cells.
    planting = notebook_file(
        "import os\n"
        "for d in ('/work/.ipython/profile_default/startup', '/work/.jupyter'):\n"
        "    os.makedirs(d, exist_ok=True)\n"
        "open('/work/.ipython/profile_default/startup/00.py', 'w').write('import time; time.sleep(600)')\n"
        "open('/work/ipython_kernel_config.py', 'w').write('import os; os._exit(4)')\n"
        "result = 42",
        "print(result)",
        tag_last=True,
    )
    results = grade_notebook(tmp_path, {"nb.ipynb": planting})
    assert {cid: r["status"] for cid, r in results.items()} == {"clean": "pass", "repro": "pass", "asserts": "pass"}


@pytest.mark.docker
@pytest.mark.slow
def test_it_fails_a_slow_cell_and_a_too_slow_notebook_in_the_sandbox(tmp_path):
    slow = notebook_file("result = 42", "import time\ntime.sleep(5)", tag_last=True)
    results = grade_notebook(tmp_path, {"nb.ipynb": slow}, cell_timeout_s=2)
    assert_named_fail_everywhere(results, "code cell 2 did not finish within 2 s")
    # Each cell within its limit, but the whole notebook longer than the run's budget.
    many = notebook_file("result = 42", *["import time\ntime.sleep(4)"] * 6, "print(result)", tag_last=True)
    results = grade_notebook(tmp_path / "budget", {"nb.ipynb": many}, wall_seconds=30)
    assert results["clean"]["status"] == "fail" and "time budget" in results["clean"]["message"]
    assert all(row["status"] in ("fail", "skipped") for row in results.values()), results


@pytest.mark.docker
@pytest.mark.slow
def test_it_fails_a_kernel_that_sends_garbage_to_the_runner(tmp_path):
    garbage = notebook_file(
        "result = 42",
        "k = get_ipython().kernel\n"
        "k.iopub_socket.send_multipart([b'x', b'<IDS|MSG>', b'bad-signature', b'{}', b'{}', b'{}', b'{}'])\n"
        "import time; time.sleep(1)",
        tag_last=True,
    )
    results = grade_notebook(tmp_path, {"nb.ipynb": garbage})
    assert_named_fail_everywhere(results, "messages the runner cannot read")


@pytest.mark.docker
@pytest.mark.slow
def test_it_passes_a_clean_notebook_whose_output_is_larger_than_the_output_limit(tmp_path):
    loud = notebook_file(
        "result = 42\nfor i in range(20000):\n    print('line', i, 'x' * 40)", "print(result)", tag_last=True
    )
    results = grade_notebook(tmp_path, {"nb.ipynb": loud}, output_bytes=8192)
    assert {cid: r["status"] for cid, r in results.items()} == {"clean": "pass", "repro": "pass", "asserts": "pass"}
