"""The host's end of one kernel, in a process of its own: `python -m kernels.bridge` (started by kernels.sandbox).

Everything a kernel sends is the learner's, and ZeroMQ takes in a whole message (any number of frames of any size)
before anyone can look at it. So the Jupyter client that reads a kernel's sockets runs here, under an address-space
limit, and not in the kernel manager: a kernel that floods its sockets kills its own bridge (the manager sees the
pipe end and tells the learner), never the manager that holds every learner's kernel.

Lines of JSON on stdin, one answer line each on stdout:
    {"op": "connect", "connection": {...}, "timeout": s}  -> {"ready": true} | {"error": str}
    {"op": "execute", "code": str, "check": str}         -> {"items": [...]}* then {"reply": {...} | null}
A message that does not deserialize ends the bridge with {"protocol": str}. Between runs, what the kernel sends
is read and dropped, so nothing piles up. Output items are capped per run (kernels.outputs.OutputBudget).
"""

from __future__ import annotations

import json
import os
import queue
import resource
import select
import sys
import time
from typing import Any

from jupyter_client import BlockingKernelClient

from kernels.outputs import OutputBudget, items_from_message

FLUSH_SECONDS = 0.05  # output goes to the manager in batches at most this far apart
REPLY_WAIT_SECONDS = 5.0  # after "idle", how long the execute reply may take
MEMORY_ENV = "SHIPSHAPE_KERNEL_BRIDGE_MEMORY_MB"


def check_expression(check: str) -> str:
    """The check as the kernel evaluates it: true or false, also when it compares arrays (numpy's `==` gives one
    answer per element, and `bool()` of that raises): then every element must be true. On lines of its own, so a
    trailing `# comment` in the check ends at its line."""
    return (
        "__import__('builtins').bool((lambda value: value.all() if callable(getattr(value, 'all', None)) "
        f"else value)((\n{check}\n)))"
    )


def check_result(reply: dict[str, Any]) -> dict[str, Any]:
    if reply.get("status") != "ok":
        return {"passed": False, "detail": "the cell stopped with an error, so the check did not run"}
    result = (reply.get("user_expressions") or {}).get("check")
    if not isinstance(result, dict):
        return {"passed": False, "detail": "the check did not run"}
    if result.get("status") != "ok":
        ename, evalue = str(result.get("ename", ""))[:200], str(result.get("evalue", ""))[:300]
        return {"passed": False, "detail": f"the check raised {ename}: {evalue}"}
    data = result.get("data") if isinstance(result.get("data"), dict) else {}
    if data.get("text/plain") == "True":
        return {"passed": True, "detail": "the check is true"}
    return {"passed": False, "detail": "the check is false"}


class Protocol(Exception):
    """The kernel sent something that is not a Jupyter message."""


class Bridge:
    def __init__(self, out: Any) -> None:
        self.out = out
        self.client: BlockingKernelClient | None = None

    def say(self, document: dict[str, Any]) -> None:
        self.out.write(json.dumps(document, separators=(",", ":")) + "\n")
        self.out.flush()

    def connect(self, *, connection: dict[str, Any], timeout: float) -> None:
        client = BlockingKernelClient()
        client.load_connection_info(connection)
        client.start_channels()
        try:
            client.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            self.say({"error": str(exc)[:300]})
            return
        self.client = client
        self.say({"ready": True})

    def _iopub(self, timeout: float) -> dict[str, Any] | None:
        assert self.client is not None
        try:
            return self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        except Exception as exc:  # a message that does not deserialize
            raise Protocol(f"{type(exc).__name__}: {exc}"[:300]) from exc

    def drain(self) -> None:
        """Drop what the kernel said outside any run (a background thread printing, say)."""
        while self._iopub(timeout=0) is not None:
            pass

    def execute(self, *, code: str, check: str) -> None:
        assert self.client is not None
        self.drain()
        expressions = {"check": check_expression(check)} if check else {}
        msg_id = self.client.execute(
            code, silent=False, store_history=True, user_expressions=expressions, allow_stdin=False
        )
        budget = OutputBudget()
        pending: list[dict[str, Any]] = []
        last_flush = time.monotonic()
        while True:
            msg = self._iopub(timeout=FLUSH_SECONDS)
            if msg is not None and (msg.get("parent_header") or {}).get("msg_id") == msg_id:
                if msg.get("msg_type") == "status" and (msg.get("content") or {}).get("execution_state") == "idle":
                    break
                pending.extend(items_from_message(msg, budget=budget))
            if pending and time.monotonic() - last_flush >= FLUSH_SECONDS:
                self.say({"items": pending})
                pending, last_flush = [], time.monotonic()
        if pending:
            self.say({"items": pending})
        self.say({"reply": self._reply(msg_id, check=check)})

    def _reply(self, msg_id: str, *, check: str) -> dict[str, Any] | None:
        assert self.client is not None
        deadline = time.monotonic() + REPLY_WAIT_SECONDS
        while time.monotonic() < deadline:
            try:
                msg = self.client.get_shell_msg(timeout=0.2)
            except queue.Empty:
                continue
            except Exception as exc:
                raise Protocol(f"{type(exc).__name__}: {exc}"[:300]) from exc
            if (msg.get("parent_header") or {}).get("msg_id") != msg_id:
                continue
            content = msg.get("content") if isinstance(msg.get("content"), dict) else {}
            status = content.get("status") if content.get("status") in ("ok", "error", "aborted") else "error"
            count = content.get("execution_count")
            return {
                "status": status,
                "execution_count": count if isinstance(count, int) else None,
                "ename": str(content.get("ename", ""))[:200],
                "check": check_result(content) if check else None,
            }
        return None

    def serve(self, stdin: Any) -> None:
        while True:
            ready, _, _ = select.select([stdin], [], [], 0.2)
            if not ready:
                if self.client is not None:
                    self.drain()
                continue
            line = stdin.readline()
            if not line:
                return
            request = json.loads(line)
            if request.get("op") == "connect":
                self.connect(connection=request["connection"], timeout=float(request.get("timeout", 20)))
            elif request.get("op") == "execute" and self.client is not None:
                self.execute(code=str(request.get("code") or ""), check=str(request.get("check") or ""))


def main() -> None:
    limit = int(os.environ.get(MEMORY_ENV, "0")) << 20
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    bridge = Bridge(sys.stdout)
    try:
        bridge.serve(sys.stdin)
    except Protocol as exc:
        bridge.say({"protocol": str(exc)})
    except MemoryError:
        bridge.say({"memory": True})


if __name__ == "__main__":
    main()
