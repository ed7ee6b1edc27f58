"""Notebook check kinds, executed with jupyter-client against an ipykernel inside the sandbox.

The kernel runs the learner's code, so it runs as the learner; /opt/shipshape/notebook_runner.py runs as the
grader and only talks to it over loopback ZMQ (see its docstring). Every execution gets a fresh kernel
(restart-and-run-all). A kernel that dies or never starts is an error, never a pass.

Hidden assertions run in the learner's kernel by design (they need the notebook's variables), so a notebook
could tamper with how its kernel runs code (an input transformer that blanks later cells, a patched
run_cell, a fake kernel module). Two guards against generic tampering: after the notebook the runner sends a
canary cell that must fail with a random message (if it does not, the run is not clean), and the assertions
count as passed only when execution reaches a closing line appended to them that raises a random token.
A targeted attack on the runner's protocol cannot be ruled out in-kernel; assertions that must be airtight
belong in a trusted program that reads exported results as data.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from labs.checks.base import Check, CheckOutcome, GradingContext, register
from labs.checks.repro import read_learner_file

RUNNER = "/opt/shipshape/notebook_runner.py"


def execute_notebook(
    ctx: GradingContext, *, notebook: str, cell_timeout_s: float, assertions: str | None = None
) -> dict[str, Any]:
    """One restart-and-run-all in a fresh learner kernel; the runner's observations."""
    box = ctx.sandbox
    prepared = box.exec(["python3", "-I", RUNNER, "prepare"], user="grader", timeout_s=15)
    connection = prepared.stdout.decode().strip()
    if prepared.exit_code != 0 or not connection.startswith("/tmp/"):
        return {"runner_error": f"could not prepare a kernel: {prepared.stderr[-500:].decode('utf-8', 'replace')}"}
    started = box.exec(
        [
            "sh",
            "-c",
            f"python -m ipykernel_launcher -f {shlex.quote(connection)} >/work/.kernel.log 2>&1 </dev/null & echo $!",
        ],
        user="learner",
        timeout_s=10,
        kill_leftovers=False,
    )
    pid = started.stdout.decode().strip()
    # The notebook as submitted (read-only), not a copy in /work that earlier learner code could have changed.
    argv = ["python3", "-I", RUNNER, "run", "--connection", connection, "--notebook", f"/submission/{notebook}"]
    argv += ["--cell-timeout", str(cell_timeout_s)]
    if pid.isdigit():
        argv += ["--kernel-pid", pid]
    if assertions:
        argv += ["--assertions", f"/grader/{assertions}"]
    try:
        run = box.exec(argv, user="grader", timeout_s=ctx.timeout_s(float(ctx.limits.wall_seconds)))
        log = read_learner_file(box, "/work/.kernel.log", limit=3000)
    finally:
        box.exec(["true"], user="learner", timeout_s=10)  # kill_leftovers: stops the kernel
    try:
        doc = json.loads(run.stdout)
    except ValueError:
        return {"runner_error": f"the notebook runner failed: {run.stderr[-800:].decode('utf-8', 'replace')}"}
    doc["kernel_log"] = log.decode("utf-8", "replace")
    return doc


def result_outputs(doc: dict[str, Any], tag: str = "result") -> list[tuple[int, str]]:
    """(cell index, text output) of every cell carrying the tag; errors are never 'outputs' here."""
    out = []
    for cell in doc.get("cells", []):
        if tag in cell.get("tags", []):
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("type") != "error")
            out.append((cell["index"], text))
    return out


def first_text_difference(a: str, b: str) -> str:
    for number, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), start=1):
        if x != y:
            return f"line {number}: {x[:120]!r} vs {y[:120]!r}"
    return f"one output has {abs(len(a.splitlines()) - len(b.splitlines()))} more line(s)"


def problem_of(doc: dict[str, Any], cell_timeout_s: float) -> tuple[str, str] | None:
    """(status, message) when an execution did not run clean; status error when it cannot be decided."""
    if doc.get("runner_error"):
        return "error", doc["runner_error"]
    if doc.get("notebook_error"):
        return "fail", doc["notebook_error"]
    if not doc.get("kernel_started"):
        return "error", "the Python kernel did not start, so the notebook could not be run"
    stopped = doc.get("stopped")
    if not stopped:
        if doc.get("canary_ok") is False:
            return "fail", (
                "the notebook changed how its kernel runs code: a check cell that must raise an error did not "
                "(code that rewrites or skips later cells is not allowed)"
            )
        return None
    cell = doc["cells"][stopped["cell"]]
    number = stopped["cell"] + 1
    if stopped["status"] == "died":
        return "error", f"the kernel died while running code cell {number} (it exited or was killed)"
    if stopped["status"] == "timeout":
        return "fail", f"code cell {number} did not finish within {cell_timeout_s:.0f} s"
    errors = [o for o in cell["outputs"] if o.get("type") == "error"]
    detail = f"{errors[0]['ename']}: {errors[0]['evalue']}" if errors else "an error"
    return "fail", f"code cell {number} raised {detail}"


class NotebookCheck(Check):
    default_category = "reproducibility"

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems = []
        if not isinstance(args.get("notebook"), str) or not args["notebook"].endswith(".ipynb"):
            problems.append("args.notebook must name the submission's notebook, e.g. analysis.ipynb")
        if "cell_timeout_s" in args and not isinstance(args["cell_timeout_s"], int | float):
            problems.append("args.cell_timeout_s must be a number of seconds")
        return problems

    @property
    def cell_timeout_s(self) -> float:
        return float(self.args.get("cell_timeout_s", 30))

    def execute(self, ctx: GradingContext, assertions: str | None = None) -> dict[str, Any]:
        return execute_notebook(
            ctx, notebook=self.args["notebook"], cell_timeout_s=self.cell_timeout_s, assertions=assertions
        )

    def not_clean(self, ctx: GradingContext, doc: dict[str, Any]) -> CheckOutcome | None:
        """For the kinds that need a clean run: skipped (with the reason) when there is none."""
        problem = problem_of(doc, self.cell_timeout_s)
        if problem is None:
            return None
        status, message = problem
        if status == "error":
            return self.undecided(message, kernel_log=ctx.evidence_text(doc.get("kernel_log", ""), 1500))
        return CheckOutcome("skipped", f"not checked: {message} (see the runs-clean check)")


@register
class RunsClean(NotebookCheck):
    kind = "notebook.runs_clean"

    def run(self, ctx: GradingContext) -> CheckOutcome:
        doc = self.execute(ctx)
        problem = problem_of(doc, self.cell_timeout_s)
        if problem is None:
            return self.passed(f"restart-and-run-all ran {len(doc['cells'])} code cells without an error")
        status, message = problem
        if status == "error":
            return self.undecided(message, kernel_log=ctx.evidence_text(doc.get("kernel_log", ""), 1500))
        cell = doc["cells"][doc["stopped"]["cell"]] if doc.get("stopped") else {}
        traceback = "\n".join(o.get("traceback", [""])[-1] for o in cell.get("outputs", []) if o.get("type") == "error")
        return self.failed(
            f"{message}; expected every cell to run in order in a fresh kernel.",
            hint="Restart the kernel and run all cells locally: hidden state from earlier runs is gone here too.",
            traceback=ctx.evidence_text(traceback, 2000),
        )


@register
class Reproducible(NotebookCheck):
    kind = "notebook.reproducible"

    def run(self, ctx: GradingContext) -> CheckOutcome:
        tag = self.args.get("tag", "result")
        first = self.execute(ctx)
        if skipped := self.not_clean(ctx, first):
            return skipped
        second = self.execute(ctx)
        if skipped := self.not_clean(ctx, second):
            return skipped
        a, b = result_outputs(first, tag), result_outputs(second, tag)
        if not a:
            return self.failed(
                f"no code cell is tagged {tag!r}; expected the cell that reports the result to carry that tag.",
                hint=f"In Jupyter: View > Cell Toolbar > Tags, add {tag!r} to the cell printing the metric.",
            )
        for (index, x), (_, y) in zip(a, b, strict=True):
            if x != y:
                return self.failed(
                    f"cell {index + 1} (tagged {tag!r}) printed different output in two fresh runs: "
                    f"{first_text_difference(x, y)}. Expected identical results.",
                    hint="Seed every random generator from one constant (np.random.default_rng(SEED)) and avoid "
                    "time, hashes of objects and unordered iteration in results.",
                )
        return self.passed(f"{len(a)} cell(s) tagged {tag!r} printed identical output in two fresh runs")


@register
class Assertions(NotebookCheck):
    kind = "notebook.assertions"
    needs_grader = True
    default_category = "correctness"

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems = super().validate_args(args)
        if not isinstance(args.get("path"), str) or not args["path"]:
            problems.append("args.path must name the assertions file in the grader folder, e.g. assertions.py")
        return problems

    def run(self, ctx: GradingContext) -> CheckOutcome:
        doc = self.execute(ctx, assertions=self.args["path"])
        if skipped := self.not_clean(ctx, doc):
            return skipped
        result = doc.get("assertions") or {}
        if result.get("status") == "died":
            return self.undecided("the kernel died while the hidden assertions ran")
        if result.get("passed") is True:
            return self.passed("the hidden assertions hold after the notebook ran")
        if result.get("status") == "ok":
            # An honest kernel always ends the assertions with the runner's closing error.
            return self.failed(
                "the hidden assertions did not run to their end: the notebook changed how its kernel runs code.",
                hint="Remove code that rewrites, skips or silences later cells.",
            )
        errors = [o for o in result.get("outputs", []) if o.get("type") == "error"]
        detail = f"{errors[0]['ename']}: {errors[0]['evalue']}" if errors else result.get("status", "no result")
        return self.failed(
            f"a hidden assertion failed: {detail}.",
            hint="Compare the metric you report with the definition in the instructions.",
        )
