"""Notebook executor. Trusted: runs as the grader user; the kernel it talks to runs as the learner.

The learner's code must never run as the grader (it could write /results), so the kernel is started by the
check as the learner, and this program only talks to it over ZMQ on 127.0.0.1:

    python3 -I notebook_runner.py prepare --dir DIR   -> writes DIR/kernel-<hex>.json (the grader's copy) and
                                                         prints its path, then the connection JSON, one line each
    (the check writes that JSON into a folder of the learner's and starts, as the learner, in the background:
     python -m ipykernel_launcher -f FILE)
    python3 -I notebook_runner.py run --connection FILE --notebook NB [--kernel-pid PID] [--cell-timeout S]
           [--startup-timeout S] [--budget S] [--tag TAG] [--assertions FILE] [--max-output BYTES]
                                                      -> prints ONE JSON document of observations

`run` executes every code cell in order in that fresh kernel (restart-and-run-all semantics: a new kernel per
execution), stops at the first error, a cell timeout, the end of its time budget, the kernel's death or a
message it cannot read, then optionally runs the hidden assertions in the same kernel. It never judges.

Everything the kernel sends is the learner's data: a message that does not deserialize or has the wrong shape
ends the execution with status "protocol" (an honest kernel never sends one) instead of crashing this program,
and the document it prints stays within --max-output bytes however much the notebook prints (texts are cut,
their SHA-256 over a much larger prefix is kept so comparisons still see differences past the cut).

The document: kernel_started, kernel_died (when it never started), startup_s, cells_total, cells_run,
stopped ({cell, status} or null; status error | timeout | died | budget | protocol), canary_ok, cells (only
the stopped cell and the cells carrying --tag, each {index, status, tags, text, text_sha256, text_chars,
errors, elapsed_s}), tagged_digest (over every tagged cell), tagged_cut (cells left out to fit), assertions
({status, passed, errors, text, elapsed_s} or null); or notebook_error (the file is not a notebook: the
learner's) or grader_error (our side: no jupyter_client, an unreadable connection or assertions file).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import secrets
import socket
import sys
import time
from typing import Any

OUTPUT_CAP = 20_000  # characters of text output kept per cell
HASH_CAP = 4_000_000  # characters of text output hashed per cell
FIELD_CAP = 2_000  # characters kept of ename, evalue and each traceback line
TRACEBACK_LINES = 8
ERRORS_KEPT = 3
DEFAULT_MAX_OUTPUT = 1_000_000


class Malformed(Exception):
    """The kernel sent something that is not a well-formed Jupyter message."""


def _free_ports(n: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def prepare(directory: str) -> tuple[str, dict[str, Any]]:
    """Write the grader's copy of a fresh connection file into `directory` (the grader's own scratch, which the
    learner can neither read nor fill); O_EXCL so a planted file is never reused."""
    ports = _free_ports(5)
    info = {
        "transport": "tcp",
        "ip": "127.0.0.1",
        "shell_port": ports[0],
        "iopub_port": ports[1],
        "stdin_port": ports[2],
        "control_port": ports[3],
        "hb_port": ports[4],
        "key": secrets.token_hex(16),
        "signature_scheme": "hmac-sha256",
        "kernel_name": "python3",
    }
    path = os.path.join(directory, f"kernel-{secrets.token_hex(8)}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
    return path, info


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is just not ours
    return True


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(str(part) for part in src) if isinstance(src, list) else str(src)


def _tags(cell: dict[str, Any]) -> list[str]:
    metadata = cell.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    return [str(tag)[:100] for tag in tags[:50]] if isinstance(tags, list) else []


def _cap(value: Any, limit: int = FIELD_CAP) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "…"


class CellRecord:
    """What one execution printed: text capped for display, hashed over a much longer prefix, first errors."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.kept = 0
        self.hashed = 0
        self.chars = 0
        self.digest = hashlib.sha256()
        self.errors: list[dict[str, Any]] = []

    def add_text(self, text: str) -> None:
        self.chars += len(text)
        if self.hashed < HASH_CAP:
            piece = text[: HASH_CAP - self.hashed]
            self.digest.update(piece.encode("utf-8", "surrogatepass"))
            self.hashed += len(piece)
        if self.kept < OUTPUT_CAP:
            piece = text[: OUTPUT_CAP - self.kept]
            self.text.append(piece)
            self.kept += len(piece)

    def add_error(self, content: dict[str, Any]) -> None:
        if len(self.errors) >= ERRORS_KEPT:
            return
        traceback = content.get("traceback")
        lines = traceback[-TRACEBACK_LINES:] if isinstance(traceback, list) else []
        self.errors.append(
            {
                "ename": _cap(content.get("ename")),
                "evalue": _cap(content.get("evalue")),
                "traceback": [_cap(line) for line in lines],
            }
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": "".join(self.text),
            "text_sha256": self.digest.hexdigest(),
            "text_chars": self.chars,
            "errors": self.errors,
        }


def _message(get: Any, timeout: float) -> dict[str, Any]:
    """One message from a channel; queue.Empty when none came, Malformed when it is not a Jupyter message."""
    try:
        msg = get(timeout=timeout)
    except queue.Empty:
        raise
    except Exception as exc:  # the learner's kernel can send anything its key signs
        raise Malformed(f"{type(exc).__name__}: {_cap(exc, 200)}") from exc
    if not isinstance(msg, dict):
        raise Malformed("a message that is not a mapping")
    parent, content = msg.get("parent_header"), msg.get("content")
    if not isinstance(parent, dict) or not isinstance(content, dict) or not isinstance(msg.get("msg_type"), str):
        raise Malformed("a message without a header, a type or a content mapping")
    return msg


class Kernel:
    def __init__(self, connection: str, pid: int | None) -> None:
        from jupyter_client import BlockingKernelClient

        self.pid = pid
        self.client = BlockingKernelClient()
        self.client.load_connection_file(connection)
        with contextlib.suppress(OSError):
            os.remove(connection)  # the grader's copy is read; nothing is left behind
        # No heartbeat thread (the kernel's pid tells whether it is alive), no stdin or control channel: fewer
        # threads to start in a container whose process limit the learner's code may have used up.
        self.client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)  # noqa: S604

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the kernel answers a kernel_info request; Malformed when it answers garbage."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _pid_alive(self.pid):
                return False
            request = self.client.kernel_info()
            waited_until = min(deadline, time.monotonic() + 2.0)
            while time.monotonic() < waited_until:
                try:
                    reply = _message(self.client.get_shell_msg, max(0.05, waited_until - time.monotonic()))
                except queue.Empty:
                    break
                if reply["parent_header"].get("msg_id") == request:
                    self._drain_iopub()
                    return True
        return False

    def _drain_iopub(self) -> None:
        # The iopub messages of the kernel_info request (status busy/idle); a malformed one shows up later.
        for _ in range(100):
            try:
                self.client.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                return
            except Exception:
                return

    def execute(self, code: str, timeout_s: float, *, budget_end: float) -> tuple[dict[str, Any], CellRecord]:
        """Run one cell: status (ok | error | timeout | budget | died | protocol), elapsed time, and what it printed.

        timeout_s is the cell's own limit; budget_end (time.monotonic()) the end of the whole execution's time,
        which may come first ("budget")."""
        started = time.monotonic()
        record = CellRecord()
        cell_end = started + timeout_s
        end = min(cell_end, budget_end)
        try:
            msg_id = self.client.execute(code, store_history=True, allow_stdin=False, stop_on_error=True)
            status = self._collect(msg_id, record, end)
        except Malformed as exc:
            status = "protocol"
            record.errors.append({"ename": "protocol", "evalue": str(exc), "traceback": []})
        if status == "timeout" and budget_end < cell_end:
            status = "budget"
        return {"status": status, "elapsed_s": round(time.monotonic() - started, 3)}, record

    def _collect(self, msg_id: str, record: CellRecord, end: float) -> str:
        status, idle = "ok", False
        while not idle:
            if time.monotonic() > end:
                return "timeout"
            try:
                msg = _message(self.client.get_iopub_msg, 0.25)
            except queue.Empty:
                if not _pid_alive(self.pid):
                    return "died"
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind == "stream":
                record.add_text(str(content.get("text", "")))
            elif kind in ("execute_result", "display_data"):
                data = content.get("data")
                record.add_text(str(data.get("text/plain", "")) if isinstance(data, dict) else "")
            elif kind == "error":
                status = "error"
                record.add_error(content)
        if status == "ok":
            # The execute_reply says whether the cell failed without an error message on iopub.
            while True:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return "timeout"
                try:
                    reply = _message(self.client.get_shell_msg, min(remaining, 0.5))
                except queue.Empty:
                    if not _pid_alive(self.pid):
                        return "died"
                    continue
                if reply["parent_header"].get("msg_id") == msg_id:
                    return "error" if reply["content"].get("status") == "error" else "ok"
        return status

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop_channels()


def _raised(observed: dict[str, Any], record: CellRecord, token: str) -> bool:
    """The execution ended with the RuntimeError(token) that its last line raises."""
    return observed["status"] == "error" and bool(record.errors) and record.errors[-1].get("evalue") == token


def _open_notebook(path: str) -> Any:
    # Read as the grader: never through a link, never outside the submission (the grader can read /grader).
    real = os.path.realpath(path)
    if not real.startswith(("/work/", "/submission/")):
        raise OSError(f"{path} is outside the submission")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    return os.fdopen(fd, encoding="utf-8")


def _read_cells(path: str) -> list[dict[str, Any]]:
    with _open_notebook(path) as handle:
        notebook = json.load(handle)
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells", []), list):
        raise ValueError("the file is not a Jupyter notebook (no list of cells)")
    return [c for c in notebook.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    budget_end = started + args.budget
    try:
        cells = _read_cells(args.notebook)
    except (OSError, ValueError, AttributeError, TypeError, RecursionError) as exc:
        return {"notebook_error": f"cannot read {os.path.basename(args.notebook)} as a notebook: {_cap(exc, 300)}"}
    assertions = None
    if args.assertions:
        try:
            with open(args.assertions, encoding="utf-8") as handle:
                assertions = handle.read()
        except (OSError, ValueError) as exc:
            return {"grader_error": f"cannot read the assertions file: {type(exc).__name__}"}
    try:
        kernel = Kernel(args.connection, args.kernel_pid)
    except Exception as exc:  # our side: jupyter_client missing, the grader's connection file unreadable
        return {"grader_error": f"cannot connect to the kernel: {type(exc).__name__}: {_cap(exc, 300)}"}
    result: dict[str, Any] = {
        "kernel_started": False,
        "cells_total": len(cells),
        "cells_run": 0,
        "cells": [],
        "stopped": None,
        "assertions": None,
    }
    tagged: list[dict[str, Any]] = []
    try:
        try:
            ready = kernel.wait_ready(max(0.5, min(args.startup_timeout, budget_end - time.monotonic())))
        except Malformed:
            ready = False
            result["stopped"] = {"cell": -1, "status": "protocol"}
        result["startup_s"] = round(time.monotonic() - started, 3)
        if not ready:
            result["kernel_died"] = not _pid_alive(args.kernel_pid)
            result["startup_budget"] = budget_end - time.monotonic() <= 0.5
            return result
        result["kernel_started"] = True
        for index, cell in enumerate(cells):
            if time.monotonic() >= budget_end:
                observed, record = {"status": "budget", "elapsed_s": 0.0}, CellRecord()
            else:
                observed, record = kernel.execute(_source(cell), args.cell_timeout, budget_end=budget_end)
            tags = _tags(cell)
            entry = {"index": index, "status": observed["status"], "tags": tags, "elapsed_s": observed["elapsed_s"]}
            result["cells_run"] = index + 1
            if args.tag and args.tag in tags:
                tagged.append({**entry, **record.as_dict()})
            if observed["status"] != "ok":
                result["stopped"] = {"cell": index, "status": observed["status"]}
                if not tagged or tagged[-1]["index"] != index:
                    result["cells"].append({**entry, **record.as_dict()})
                break
        if result["stopped"] is None:
            # The kernel runs the learner's code, which can change how later code runs (an input transformer
            # that blanks cells, a patched run_cell). A cell that must fail with a random message shows
            # whether the kernel still runs what it is sent.
            canary = secrets.token_hex(12)
            observed, record = kernel.execute(
                f"raise RuntimeError({canary!r})", args.cell_timeout, budget_end=budget_end
            )
            result["canary_ok"] = _raised(observed, record, canary)
            if observed["status"] in ("died", "budget", "protocol"):
                result["stopped"] = {"cell": len(cells), "status": observed["status"], "what": "canary"}
        if result["stopped"] is None and assertions is not None:
            # The assertions pass only if execution reaches their last line, which raises a random token:
            # a kernel that skips the code (or reports success without running it) cannot produce it.
            done = f"shipshape-assertions-passed-{secrets.token_hex(12)}"
            observed, record = kernel.execute(
                f"{assertions}\n\nraise RuntimeError({done!r})\n", args.cell_timeout, budget_end=budget_end
            )
            passed = _raised(observed, record, done)
            if passed:
                record.errors = record.errors[:-1]
            result["assertions"] = {**observed, "passed": passed, **record.as_dict()}
    finally:
        kernel.close()
    result["cells"] = sorted(result["cells"] + tagged, key=lambda c: c["index"])
    result["tagged_digest"] = hashlib.sha256(
        json.dumps([(c["index"], c["text_sha256"]) for c in tagged]).encode()
    ).hexdigest()
    return result


def fit(doc: dict[str, Any], max_bytes: int) -> str:
    """The document as JSON within max_bytes: tagged cells' texts are cut shorter, then cells are left out (the
    stopped cell last); digests and counts always stay."""
    text = json.dumps(doc)
    if len(text) <= max_bytes:
        return text
    stopped = (doc.get("stopped") or {}).get("cell")
    for cap in (2_000, 200, 0):
        for cell in doc.get("cells", []):
            cell["text"] = cell["text"][:cap]
            for error in cell.get("errors", []):
                error["traceback"] = [line[:cap] for line in error["traceback"][-2:]] if cap else []
        if doc.get("assertions"):
            doc["assertions"]["text"] = doc["assertions"]["text"][:cap]
        text = json.dumps(doc)
        if len(text) <= max_bytes:
            return text
    cells = doc.get("cells", [])
    keep = [c for c in cells if c["index"] == stopped]
    others = [c for c in cells if c["index"] != stopped]
    doc["tagged_cut"] = len(others)
    doc["cells"] = keep
    while others:
        candidate = {**doc, "cells": sorted([*keep, others[0]], key=lambda c: c["index"])}
        if len(json.dumps(candidate)) > max_bytes:
            break
        keep.append(others.pop(0))
        doc["tagged_cut"] = len(others)
        doc["cells"] = sorted(keep, key=lambda c: c["index"])
    text = json.dumps(doc)
    if len(text) <= max_bytes:
        return text
    for cell in doc["cells"]:
        cell["errors"] = [{k: str(v)[:200] if k != "traceback" else [] for k, v in e.items()} for e in cell["errors"]]
    if doc.get("assertions"):
        doc["assertions"]["errors"] = [
            {k: str(v)[:200] if k != "traceback" else [] for k, v in e.items()} for e in doc["assertions"]["errors"]
        ]
    return json.dumps(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    preparer = sub.add_parser("prepare")
    preparer.add_argument("--dir", default="/results")
    runner = sub.add_parser("run")
    runner.add_argument("--connection", required=True)
    runner.add_argument("--notebook", required=True)
    runner.add_argument("--kernel-pid", type=int)
    runner.add_argument("--cell-timeout", type=float, default=30.0)
    runner.add_argument("--startup-timeout", type=float, default=60.0)
    runner.add_argument("--budget", type=float, default=3600.0)
    runner.add_argument("--tag", default="")
    runner.add_argument("--assertions")
    runner.add_argument("--max-output", type=int, default=DEFAULT_MAX_OUTPUT)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        path, info = prepare(args.dir)
        print(path)
        print(json.dumps(info))
        return 0
    doc = run(args)
    sys.stdout.write(fit(doc, max(4096, args.max_output - 64)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
