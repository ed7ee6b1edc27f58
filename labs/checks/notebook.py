"""Notebook check kinds, executed with jupyter-client against an ipykernel inside the sandbox.

The kernel runs the learner's code, so it runs as the learner; /opt/shipshape/notebook_runner.py runs as the
grader and only talks to it over loopback ZMQ (see its docstring). Every execution gets a fresh kernel
(restart-and-run-all) with an IPython folder of its own, so startup files a notebook wrote earlier never run.

Attribution: whatever the notebook makes its kernel do is the learner's `fail` with the cause named: a cell
that raises or runs past its limit, a kernel that dies (out of memory, os._exit, a crash), that cannot start
because files in the submission folder shadow modules it imports or because the notebook filled the scratch
space, a notebook too slow for the run's time budget, a kernel that sends garbage. `error` is kept for our
side only: the runner cannot connect (jupyter_client missing), the grader's assertions file is missing, or the
kernel fails to start with nothing of the learner's to explain it.

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
import logging
import re
import secrets
from typing import Any

from labs.checks.base import Check, CheckOutcome, GradingContext, register
from labs.checks.repro import read_learner_file
from labs.sandbox import GRADER_SCRATCH

logger = logging.getLogger(__name__)

RUNNER = "/opt/shipshape/notebook_runner.py"
STARTUP_TIMEOUT_S = 60  # a kernel starts in 1-3 s; this much is for a busy machine
BUDGET_RESERVE_S = 5  # of the run's time left, kept for what follows the runner (log, pressure, cleanup)
# Start the learner's kernel in a folder of its own: the connection file (0600), a fresh IPython/Jupyter
# configuration (no startup files or configs from earlier runs) and its log. Prints the kernel's pid.
KERNEL_START = (
    'mkdir "$1" "$1/ipython" "$1/jupyter" && (umask 077 && cat > "$1/connection.json") && '
    '{ IPYTHONDIR="$1/ipython" JUPYTER_CONFIG_DIR="$1/jupyter" JUPYTER_DATA_DIR="$1/jupyter" '
    'JUPYTER_RUNTIME_DIR="$1/jupyter" python -m ipykernel_launcher -f "$1/connection.json" '
    '>"$1/kernel.log" 2>&1 </dev/null & echo $!; }'
)
# Top-level entries of /work that Python would import instead of a module of the standard library or of the
# runner image (the kernel's own dependencies included). Names only: nothing is read or followed.
SHADOW_PROGRAM = r"""
import importlib.metadata as m, json, os, sys
names = set(sys.stdlib_module_names)
try:
    names.update(m.packages_distributions())
except Exception:
    pass
found = []
for entry in sorted(os.listdir('/work'))[:5000]:
    path = os.path.join('/work', entry)
    if entry.endswith(('.py', '.pyc')):
        module = entry.rsplit('.', 1)[0]
    elif entry.endswith('.so'):
        module = entry.split('.', 1)[0]
    elif os.path.islink(path) or any(os.path.lexists(os.path.join(path, i)) for i in ('__init__.py', '__init__.pyc')):
        module = entry
    else:
        continue
    if module in names and not module.startswith('_'):
        found.append(entry)
print(json.dumps(found[:20]))
"""


def execute_notebook(
    ctx: GradingContext,
    *,
    notebook: str,
    cell_timeout_s: float,
    assertions: str | None = None,
    tag: str = "",
) -> dict[str, Any]:
    """One restart-and-run-all in a fresh learner kernel: the runner's observations, plus what the host saw
    (under "observed": out-of-memory kills, refused forks, full scratch, shadowing files, the kernel log)."""
    box = ctx.sandbox
    before = box.pressure()
    prepared = box.exec(["python3", "-I", RUNNER, "prepare", "--dir", GRADER_SCRATCH], user="grader", timeout_s=30)
    lines = prepared.stdout.decode("utf-8", "replace").splitlines()
    if prepared.exit_code != 0 or len(lines) < 2 or not lines[0].startswith(GRADER_SCRATCH + "/"):
        logger.warning("notebook runner prepare failed: %r", prepared.stderr[-800:])
        return {"runner_error": "the notebook runner could not prepare a kernel connection"}
    connection, info = lines[0], lines[1]
    folder = f"/work/.shipshape-kernel-{secrets.token_hex(6)}"
    doc: dict[str, Any]
    run = None
    try:
        started = box.exec(
            ["sh", "-c", KERNEL_START, "sh", folder],
            user="learner",
            timeout_s=30,
            stdin=info.encode() + b"\n",
            kill_leftovers=False,
        )
        pid = started.stdout.decode("utf-8", "replace").strip()
        if started.exit_code != 0 or not pid.isdigit():
            doc = {"kernel_started": False, "start_failed": True, "kernel_died": True}
            box.exec(["rm", "-f", connection], user="grader", timeout_s=10)
        else:
            budget = max(1.0, ctx.remaining_s() - BUDGET_RESERVE_S)
            argv = ["python3", "-I", RUNNER, "run", "--connection", connection, "--kernel-pid", pid]
            # The notebook as submitted (read-only), not a copy in /work that earlier learner code could change.
            argv += ["--notebook", f"/submission/{notebook}", "--cell-timeout", str(cell_timeout_s)]
            argv += ["--startup-timeout", str(STARTUP_TIMEOUT_S), "--budget", f"{budget:.1f}"]
            argv += ["--max-output", str(ctx.limits.output_bytes)]
            if tag:
                argv += ["--tag", tag]
            if assertions:
                argv += ["--assertions", f"/grader/{assertions}"]
            run = box.exec(argv, user="grader", timeout_s=budget + 15)
            doc = _runner_doc(run, budget)
        log = read_learner_file(box, f"{folder}/kernel.log", limit=3000).decode("utf-8", "replace")
    finally:
        box.exec(["true"], user="learner", timeout_s=10)  # kill_leftovers: stops the kernel and its children
    doc["observed"] = _observed(ctx, before, box.pressure(), doc, log)
    doc["kernel_log"] = log
    return doc


def _runner_doc(run: Any, budget: float) -> dict[str, Any]:
    """The runner's JSON document, or what its absence means."""
    try:
        doc = json.loads(run.stdout)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict):
        return doc
    if run.timed_out:
        # The runner stops itself at its budget; still running past it means the notebook left no time at all.
        return {"runner_stopped": "budget", "budget_s": budget}
    logger.warning("notebook runner failed (exit %s): %r", run.exit_code, run.stderr[-1500:])
    return {"runner_stopped": "crashed", "exit_code": run.exit_code}


def _observed(ctx: GradingContext, before: Any, after: Any, doc: dict[str, Any], log: str) -> dict[str, Any]:
    limits = ctx.limits
    observed: dict[str, Any] = {
        "oom": bool(before and after and after.oom_kills > before.oom_kills),
        "pids": bool(before and after and after.pids_refused > before.pids_refused),
        "work_full": bool(after and after.work_full),
        "memory_mb": limits.memory_mb,
        "pids_limit": limits.pids,
        "scratch_mb": limits.scratch_mb,
        "wall_seconds": limits.wall_seconds,
    }
    if observed["oom"]:
        ctx.sandbox.note_oom(f"out of memory: used more than the limit of {limits.memory_mb} MB")
    if observed["pids"]:
        ctx.sandbox.note_limit("pids", f"tried to start more than {limits.pids} processes")
    if observed["work_full"]:
        ctx.sandbox.note_limit("disk", f"filled the scratch space of {limits.scratch_mb} MB")
    stopped = doc.get("stopped") or {}
    if not doc.get("kernel_started", True) or stopped.get("status") == "died":
        listed = ctx.sandbox.exec(["python3", "-I", "-c", SHADOW_PROGRAM], user="grader", timeout_s=20)
        try:
            shadowing = json.loads(listed.stdout)
        except (ValueError, RecursionError):
            shadowing = []
        observed["shadowing"] = [str(s)[:100] for s in shadowing if isinstance(s, str)][:10]
        observed["ran_from_work"] = sorted(set(re.findall(r'File "(/work/[^"]{1,200})"', log)))[:5]
    return observed


def result_outputs(doc: dict[str, Any], tag: str = "result") -> list[tuple[int, str]]:
    """(cell index, text output) of every cell carrying the tag; errors are never 'outputs' here."""
    return [(int(c.get("index", -1)), str(c.get("text", ""))) for c in doc.get("cells", []) if tag in c.get("tags", [])]


def result_digests(doc: dict[str, Any], tag: str = "result") -> list[tuple[int, str]]:
    """(cell index, SHA-256 of the text output over far more than is kept) of every cell carrying the tag."""
    return [
        (int(c.get("index", -1)), str(c.get("text_sha256", "")))
        for c in doc.get("cells", [])
        if tag in c.get("tags", [])
    ]


def first_text_difference(a: str, b: str) -> str:
    for number, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), start=1):
        if x != y:
            return f"line {number}: {x[:120]!r} vs {y[:120]!r}"
    if len(a.splitlines()) != len(b.splitlines()):
        return f"one output has {abs(len(a.splitlines()) - len(b.splitlines()))} more line(s)"
    return "they differ past the part the grader keeps"


def _cell(doc: dict[str, Any], index: int) -> dict[str, Any]:
    return next((c for c in doc.get("cells", []) if isinstance(c, dict) and c.get("index") == index), {})


def _first_error(entry: dict[str, Any]) -> dict[str, Any] | None:
    errors = [e for e in entry.get("errors", []) if isinstance(e, dict)]
    return errors[0] if errors else None


def traceback_text(entry: dict[str, Any]) -> str:
    """The last traceback line of each error the cell raised (an empty traceback is allowed)."""
    lines = []
    for error in entry.get("errors", []):
        traceback = error.get("traceback") if isinstance(error, dict) else None
        if isinstance(traceback, list) and traceback:
            lines.append(str(traceback[-1]))
        elif isinstance(error, dict):
            lines.append(f"{error.get('ename', '')}: {error.get('evalue', '')}")
    return "\n".join(lines)


def _died_cause(observed: dict[str, Any]) -> str:
    if observed.get("oom"):
        return f"it ran out of memory (the limit is {observed.get('memory_mb')} MB)"
    if observed.get("pids"):
        return f"it tried to start more than {observed.get('pids_limit')} processes"
    return "it exited or was killed (os._exit, sys.exit from a thread, a crash or a signal)"


def _budget_message(observed: dict[str, Any], where: str) -> str:
    return (
        f"{where} was still running when the run's time budget ran out: the notebook needs more than the time "
        f"left of the run's {observed.get('wall_seconds')} s, in which it runs several times"
    )


def problem_of(doc: dict[str, Any], cell_timeout_s: float) -> tuple[str, str] | None:
    """(status, message) when an execution did not run clean: `fail` (the notebook's doing, cause named) or
    `error` (ours: the runner could not work)."""
    observed = doc.get("observed") or {}
    if doc.get("runner_error") or doc.get("grader_error"):
        return "error", doc.get("runner_error") or doc.get("grader_error")
    if doc.get("notebook_error"):
        return "fail", str(doc["notebook_error"])
    stopped_runner = doc.get("runner_stopped")
    if stopped_runner:
        if stopped_runner == "budget":
            return "fail", _budget_message(observed, "the notebook")
        if observed.get("oom") or observed.get("pids"):
            return "fail", f"the notebook's kernel brought its grading down: {_died_cause(observed)}"
        return "error", "the notebook runner failed"
    stopped = doc.get("stopped") or {}
    if not doc.get("kernel_started"):
        return _not_started(doc, observed)
    if not stopped:
        if doc.get("canary_ok") is False:
            return "fail", (
                "the notebook changed how its kernel runs code: a check cell that must raise an error did not "
                "(code that rewrites or skips later cells is not allowed)"
            )
        return None
    status = stopped.get("status")
    index = int(stopped.get("cell", 0))
    where = (
        "the platform's check cell after the last cell"
        if stopped.get("what") == "canary"
        else (f"code cell {index + 1}")
    )
    if status == "died":
        shadowing = observed.get("shadowing") or []
        also = (
            f" ({', '.join(shadowing)} in the notebook's folder has the name of a Python module and is imported "
            "instead of it)"
            if shadowing and not observed.get("oom")
            else ""
        )
        return "fail", f"the kernel died while running {where}: {_died_cause(observed)}{also}"
    if status == "timeout":
        return "fail", f"{where} did not finish within {cell_timeout_s:g} s"
    if status == "budget":
        return "fail", _budget_message(observed, where)
    if status == "protocol":
        return "fail", (
            f"the kernel sent messages the runner cannot read while running {where} (code that writes to the "
            "kernel's own channels is not allowed)"
        )
    error = _first_error(_cell(doc, index))
    detail = f"{error.get('ename')}: {error.get('evalue')}" if error else "an error"
    return "fail", f"{where} raised {detail}"


def _not_started(doc: dict[str, Any], observed: dict[str, Any]) -> tuple[str, str]:
    shadowing = observed.get("shadowing") or []
    ran = observed.get("ran_from_work") or []
    if shadowing:
        return "fail", (
            f"the Python kernel did not start: {', '.join(shadowing)} in the notebook's folder "
            "has the name of a Python module, so Python imported it instead of the real one"
        )
    if ran:
        return "fail", (
            f"the Python kernel did not start: at start-up it ran {', '.join(ran)} from the notebook's folder, "
            "which failed (see the kernel log)"
        )
    if observed.get("oom"):
        return "fail", f"the Python kernel did not start: it ran out of memory ({observed.get('memory_mb')} MB)"
    if observed.get("pids"):
        return "fail", f"the Python kernel did not start: more than {observed.get('pids_limit')} processes were running"
    if observed.get("work_full"):
        return "fail", (
            f"the Python kernel did not start: the scratch space /work ({observed.get('scratch_mb')} MB) was full "
            "of files the notebook wrote"
        )
    if (doc.get("stopped") or {}).get("status") == "protocol":
        return "fail", "the Python kernel sent messages the runner cannot read at start-up"
    if doc.get("startup_budget"):
        return "fail", _budget_message(observed, "the kernel's start")
    if doc.get("kernel_died"):
        return "error", "the Python kernel exited at start-up, with nothing in the submission to explain it"
    return "error", "the Python kernel did not answer at start-up"


HINTS = {
    "memory": "Use less memory: smaller arrays, fewer copies, `del` what you no longer need.",
    "shadow": "Rename files that have the name of a Python module (json.py, random.py, asyncio.py, ...).",
    "slow": "Restart the kernel and run all cells locally and time it: keep the whole notebook well under the limit.",
    "raise": "Restart the kernel and run all cells locally: hidden state from earlier runs is gone here too.",
}


def _hint(message: str) -> str:
    if "memory" in message:
        return HINTS["memory"]
    if "name of a Python module" in message or "from the notebook's folder" in message:
        return HINTS["shadow"]
    if "time budget" in message or "did not finish" in message:
        return HINTS["slow"]
    return HINTS["raise"]


class NotebookCheck(Check):
    default_category = "reproducibility"

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems = []
        if not isinstance(args.get("notebook"), str) or not args["notebook"].endswith(".ipynb"):
            problems.append("args.notebook must name the submission's notebook, e.g. analysis.ipynb")
        timeout = args.get("cell_timeout_s", 30)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            problems.append("args.cell_timeout_s must be a positive number of seconds")
        if "tag" in args and not (isinstance(args["tag"], str) and args["tag"]):
            problems.append("args.tag must be a non-empty string, e.g. result")
        return problems

    @property
    def cell_timeout_s(self) -> float:
        return float(self.args.get("cell_timeout_s", 30))

    def execute(self, ctx: GradingContext, assertions: str | None = None, tag: str = "") -> dict[str, Any]:
        return execute_notebook(
            ctx, notebook=self.args["notebook"], cell_timeout_s=self.cell_timeout_s, assertions=assertions, tag=tag
        )

    def not_clean(self, ctx: GradingContext, doc: dict[str, Any], what: str) -> CheckOutcome | None:
        """For the kinds that need a clean run: the cause, failed (or ours: error) when there is none."""
        problem = problem_of(doc, self.cell_timeout_s)
        if problem is None:
            return None
        status, message = problem
        if status == "error":
            return self.undecided(message)
        entry = _cell(doc, int((doc.get("stopped") or {}).get("cell", -1)))
        return self.failed(
            f"{what} could not be checked because the notebook does not run clean: {message}.",
            hint=_hint(message),
            traceback=ctx.evidence_text(traceback_text(entry), 2000),
            kernel_log=ctx.evidence_text(doc.get("kernel_log", ""), 1500),
        )


@register
class RunsClean(NotebookCheck):
    kind = "notebook.runs_clean"

    def run(self, ctx: GradingContext) -> CheckOutcome:
        doc = self.execute(ctx)
        problem = problem_of(doc, self.cell_timeout_s)
        if problem is None:
            return self.passed(f"restart-and-run-all ran {doc.get('cells_run', 0)} code cells without an error")
        status, message = problem
        if status == "error":
            return self.undecided(message)
        entry = _cell(doc, int((doc.get("stopped") or {}).get("cell", -1)))
        return self.failed(
            f"{message}; expected every cell to run in order in a fresh kernel.",
            hint=_hint(message),
            traceback=ctx.evidence_text(traceback_text(entry), 2000),
            kernel_log=ctx.evidence_text(doc.get("kernel_log", ""), 1500),
        )


@register
class Reproducible(NotebookCheck):
    kind = "notebook.reproducible"

    def run(self, ctx: GradingContext) -> CheckOutcome:
        tag = self.args.get("tag", "result")
        first = self.execute(ctx, tag=tag)
        if outcome := self.not_clean(ctx, first, "Reproducibility"):
            return outcome
        if not result_outputs(first, tag):
            return self.failed(
                f"no code cell is tagged {tag!r}; expected the cell that reports the result to carry that tag.",
                hint=f"In Jupyter: View > Cell Toolbar > Tags, add {tag!r} to the cell printing the metric.",
            )
        second = self.execute(ctx, tag=tag)
        if outcome := self.not_clean(ctx, second, "Reproducibility"):
            return outcome
        a, b = result_outputs(first, tag), result_outputs(second, tag)
        same_digest = first.get("tagged_digest") == second.get("tagged_digest")
        if same_digest and result_digests(first, tag) == result_digests(second, tag):
            return self.passed(f"{len(a)} cell(s) tagged {tag!r} printed identical output in two fresh runs")
        texts_b = dict(b)
        digests_b = dict(result_digests(second, tag))
        for (index, x), (_, digest) in zip(a, result_digests(first, tag), strict=True):
            if texts_b.get(index) != x or digests_b.get(index) != digest:
                shown = first_text_difference(x, texts_b.get(index, ""))
                return self.failed(
                    f"cell {index + 1} (tagged {tag!r}) printed different output in two fresh runs: {shown}. "
                    "Expected identical results.",
                    hint="Seed every random generator from one constant (np.random.default_rng(SEED)) and avoid "
                    "time, hashes of objects and unordered iteration in results.",
                )
        return self.failed(
            f"the cells tagged {tag!r} printed different output in two fresh runs (in cells the grader could not "
            "keep in full). Expected identical results.",
            hint="Print less in the tagged cells, and derive every random number from one seed.",
        )


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
        if outcome := self.not_clean(ctx, doc, "The hidden assertions"):
            return outcome
        result = doc.get("assertions") if isinstance(doc.get("assertions"), dict) else {}
        if result.get("passed") is True:
            return self.passed("the hidden assertions hold after the notebook ran")
        status = result.get("status")
        observed = doc.get("observed") or {}
        if status == "died":
            return self.failed(
                f"the kernel died while the hidden assertions ran: {_died_cause(observed)}.",
                hint=_hint(_died_cause(observed)),
            )
        if status == "timeout":
            return self.failed(
                f"the hidden assertions did not finish within {self.cell_timeout_s:g} s after the notebook ran.",
                hint="Keep the variables the instructions name small enough to check quickly.",
            )
        if status == "budget":
            return self.failed(_budget_message(observed, "the hidden assertions") + ".", hint=HINTS["slow"])
        if status == "protocol":
            return self.failed(
                "the kernel sent messages the runner cannot read while the hidden assertions ran.",
                hint="Remove code that writes to the kernel's own channels.",
            )
        if status == "ok" or not result:
            # An honest kernel always ends the assertions with the runner's closing error.
            return self.failed(
                "the hidden assertions did not run to their end: the notebook changed how its kernel runs code.",
                hint="Remove code that rewrites, skips or silences later cells.",
            )
        error = _first_error(result)
        detail = f"{error.get('ename')}: {error.get('evalue')}" if error else "an error"
        return self.failed(
            f"a hidden assertion failed: {detail}.",
            hint="Compare the metric you report with the definition in the instructions.",
        )
