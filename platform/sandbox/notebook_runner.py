"""Notebook executor. Trusted: runs as the grader user; the kernel it talks to runs as the learner.

The learner's code must never run as the grader (it could write /results), so the kernel is started by the
check as the learner, and this program only talks to it over ZMQ on 127.0.0.1:

    python3 -I notebook_runner.py prepare            -> prints the path of a fresh connection file in /tmp
    (the check starts: python -m ipykernel_launcher -f FILE, as the learner, in the background)
    python3 -I notebook_runner.py run --connection FILE --notebook NB [--kernel-pid PID]
           [--cell-timeout S] [--startup-timeout S] [--assertions FILE]
                                                     -> prints ONE JSON document of observations

`run` executes every code cell in order in that fresh kernel (restart-and-run-all semantics: a new kernel per
execution), stops at the first error, a cell timeout or the kernel's death, collects each cell's outputs with
its tags, then optionally runs the hidden assertions in the same kernel. It never judges.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import socket
import sys
import time
from typing import Any

OUTPUT_CAP = 20_000  # characters of text output kept per cell


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


def prepare() -> str:
    """Write a connection file the learner's kernel can read; O_EXCL so a planted file is never reused."""
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
    path = f"/tmp/shipshape-kernel-{secrets.token_hex(8)}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
    os.chmod(path, 0o644)  # the umask must not hide it from the learner's kernel
    return path


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
    return "".join(src) if isinstance(src, list) else str(src)


def _text_of(msg: dict[str, Any]) -> dict[str, Any] | None:
    # Every field is what the learner's kernel sent: coerced to plain strings so the host never meets a
    # surprise type (a list where a traceback line should be would crash the check, which is our error).
    kind, content = msg["msg_type"], msg["content"]
    if not isinstance(content, dict):
        return None
    if kind == "stream":
        return {"type": "stream", "name": str(content.get("name")), "text": str(content.get("text", ""))}
    if kind in ("execute_result", "display_data"):
        data = content.get("data")
        data = data if isinstance(data, dict) else {}
        return {"type": kind, "text": str(data.get("text/plain", "")), "mime": sorted(str(k) for k in data)}
    if kind == "error":
        traceback = content.get("traceback")
        return {
            "type": "error",
            "ename": str(content.get("ename")),
            "evalue": str(content.get("evalue")),
            "traceback": [str(line) for line in traceback[-8:]] if isinstance(traceback, list) else [],
        }
    return None


def _raised(observed: dict[str, Any], token: str) -> bool:
    """The execution ended with the RuntimeError(token) that its last line raises."""
    errors = [o for o in observed["outputs"] if o.get("type") == "error"]
    return observed["status"] == "error" and bool(errors) and errors[-1].get("evalue") == token


def _open_notebook(path: str) -> Any:
    # Read as the grader: never through a link, never outside the submission (the grader can read /grader).
    real = os.path.realpath(path)
    if not real.startswith(("/work/", "/submission/")):
        raise OSError(f"{path} is outside the submission")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    return os.fdopen(fd, encoding="utf-8")


class Kernel:
    def __init__(self, connection: str, pid: int | None) -> None:
        from jupyter_client import BlockingKernelClient

        self.pid = pid
        self.client = BlockingKernelClient()
        self.client.load_connection_file(connection)
        self.client.start_channels()

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _pid_alive(self.pid):
                return False
            try:
                self.client.kernel_info()
                self.client.get_shell_msg(timeout=1.0)
                # Drain the iopub messages of the kernel_info request (status busy/idle).
                while True:
                    try:
                        self.client.get_iopub_msg(timeout=0.2)
                    except queue.Empty:
                        break
                return True
            except queue.Empty:
                continue
        return False

    def execute(self, code: str, timeout_s: float) -> dict[str, Any]:
        """Run one cell; outputs, status (ok | error | timeout | died) and elapsed time."""
        started = time.monotonic()
        msg_id = self.client.execute(code, store_history=True, allow_stdin=False, stop_on_error=True)
        outputs: list[dict[str, Any]] = []
        status = "ok"
        size = 0
        idle = False
        while not idle:
            if time.monotonic() - started > timeout_s:
                status = "timeout"
                break
            try:
                msg = self.client.get_iopub_msg(timeout=0.25)
            except queue.Empty:
                if not _pid_alive(self.pid):
                    status = "died"
                    break
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
                idle = True
                continue
            out = _text_of(msg)
            if out is None:
                continue
            if out["type"] == "error":
                status = "error"
            if size < OUTPUT_CAP:
                for key in ("text",):
                    if key in out:
                        out[key] = str(out[key])[: OUTPUT_CAP - size]
                        size += len(out[key])
                outputs.append(out)
        if status == "ok" and idle:
            try:
                reply = self.client.get_shell_msg(timeout=max(0.5, timeout_s - (time.monotonic() - started)))
                if reply["content"].get("status") == "error":
                    status = "error"
            except queue.Empty:
                status = "died" if not _pid_alive(self.pid) else "timeout"
        return {"status": status, "outputs": outputs, "elapsed_s": round(time.monotonic() - started, 3)}

    def close(self) -> None:
        self.client.stop_channels()


def run(args: argparse.Namespace) -> dict[str, Any]:
    try:
        with _open_notebook(args.notebook) as handle:
            notebook = json.load(handle)
        cells = [c for c in notebook.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"]
    except (OSError, ValueError, AttributeError, RecursionError) as exc:
        return {"notebook_error": f"cannot read {args.notebook} as a notebook: {exc}"}
    kernel = Kernel(args.connection, args.kernel_pid)
    result: dict[str, Any] = {"kernel_started": False, "cells": [], "stopped": None, "assertions": None}
    try:
        if not kernel.wait_ready(args.startup_timeout):
            result["kernel_died"] = not _pid_alive(args.kernel_pid)
            return result
        result["kernel_started"] = True
        for index, cell in enumerate(cells):
            observed = kernel.execute(_source(cell), args.cell_timeout)
            observed["index"] = index
            observed["tags"] = list(cell.get("metadata", {}).get("tags", []))
            result["cells"].append(observed)
            if observed["status"] != "ok":
                result["stopped"] = {"cell": index, "status": observed["status"]}
                break
        if result["stopped"] is None:
            # The kernel runs the learner's code, which can change how later code runs (an input transformer
            # that blanks cells, a patched run_cell). A cell that must fail with a random message shows
            # whether the kernel still runs what it is sent.
            canary = secrets.token_hex(12)
            observed = kernel.execute(f"raise RuntimeError({canary!r})", args.cell_timeout)
            result["canary_ok"] = _raised(observed, canary)
        if result["stopped"] is None and args.assertions:
            with open(args.assertions, encoding="utf-8") as handle:
                code = handle.read()
            # The assertions pass only if execution reaches their last line, which raises a random token:
            # a kernel that skips the code (or reports success without running it) cannot produce it.
            done = f"shipshape-assertions-passed-{secrets.token_hex(12)}"
            observed = kernel.execute(f"{code}\n\nraise RuntimeError({done!r})\n", args.cell_timeout)
            observed["passed"] = _raised(observed, done)
            if observed["passed"]:
                observed["outputs"] = [o for o in observed["outputs"] if o.get("type") != "error"]
            result["assertions"] = observed
    finally:
        kernel.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare")
    runner = sub.add_parser("run")
    runner.add_argument("--connection", required=True)
    runner.add_argument("--notebook", required=True)
    runner.add_argument("--kernel-pid", type=int)
    runner.add_argument("--cell-timeout", type=float, default=30.0)
    runner.add_argument("--startup-timeout", type=float, default=20.0)
    runner.add_argument("--assertions")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        print(prepare())
        return 0
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
