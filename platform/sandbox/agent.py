"""The in-sandbox agent of a pre-started sandbox (labs/sandbox/pool.py): runs commands on request.

    python3 -I -S /opt/shipshape/agent.py [--sweep]

A `docker exec` costs about 100 ms; a pooled sandbox starts one agent per user ("learner" and "grader") with a
`docker exec` each before any grading needs it, and every later command is a request on the agent's standard
input instead of an exec of its own. Each command runs exactly as under run_limited.py (its own session, the
timeout, the output cap, the sweep of leftover processes before and after a learner command): the agent calls
the same code, only the output is collected and sent back in one reply.

Protocol (stdin → agent, agent → stdout; every integer big-endian):
    request: u32 header length, header JSON, then `stdin_len` bytes for the command's standard input.
        {"op": "ping"} | {"op": "run", "argv": [...], "timeout": S, "max_output": N, "kill_leftovers": bool,
         "copy_submission": bool, "env": {...}, "workdir": "/work", "stdin_len": K}
        | {"op": "unpack", "dest": "/submission", "close": [folders to chmod 0700 after], "stdin_len": K}: the
          tar on stdin unpacked into dest in this process (no fork and exec: a claimed sandbox's files arrive
          ~20 ms sooner). Only plain files and folders with relative names that stay inside dest are accepted.
    reply: u32 header length, header JSON ({"exit_code", "copy_problem", "stdout_len", "stderr_len"}), then the
        output: at most max_output + 1 bytes per stream (one byte more tells the host it was cut).
The agent ends when its standard input closes (the host went away). It makes itself non-dumpable first, so the
commands it starts (the same user, for the learner's agent) can kill it but cannot trace it, read its memory or
open its file descriptors; the host never trusts the learner's agent for more than the submission could claim
about itself, keeps its own deadline and cap, and starts a new agent when one dies.
"""

import contextlib
import ctypes
import io
import json
import os
import signal
import struct
import sys
import tarfile

sys.path.insert(0, "/opt/shipshape")  # -I leaves the script's folder out of the path

import run_limited

PR_SET_DUMPABLE = 4
MAX_HEADER = 1 << 20


def _not_dumpable() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _read_exactly(size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(0, min(left, 1 << 16))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(1, view)
        view = view[written:]


def _reply(header: dict, stdout: bytes = b"", stderr: bytes = b"") -> None:
    header = {**header, "stdout_len": len(stdout), "stderr_len": len(stderr)}
    encoded = json.dumps(header).encode()
    _write_all(struct.pack(">I", len(encoded)) + encoded + stdout + stderr)


def _run(request: dict, stdin: bytes) -> None:
    cap = int(request["max_output"])
    output = {1: bytearray(), 2: bytearray()}

    def collect(stream: int, data: bytes) -> None:
        room = cap + 1 - len(output[stream])
        if room > 0:
            output[stream] += data[:room]

    code, copy_problem = run_limited.run(
        list(request["argv"]),
        timeout=float(request["timeout"]),
        max_output=cap,
        kill_leftovers=bool(request.get("kill_leftovers")),
        copy_submission=bool(request.get("copy_submission")),
        write=collect,
        env=dict(request.get("env") or {}),
        cwd=request.get("workdir") or "/work",
        stdin=stdin if request.get("stdin_len") else None,
    )
    _reply({"exit_code": code, "copy_problem": copy_problem}, bytes(output[1]), bytes(output[2]))


def _unpack(request: dict, payload: bytes) -> None:
    dest = os.path.realpath(request["dest"])
    try:
        with tarfile.open(fileobj=io.BytesIO(payload)) as archive:
            members = archive.getmembers()
            for member in members:
                target = os.path.realpath(os.path.join(dest, member.name))
                if not (member.isfile() or member.isdir()) or not target.startswith(dest + os.sep):
                    raise ValueError(f"refused archive member {member.name!r}")
            # extractall sets the folders' modes last, so a read-only folder still receives its files.
            archive.extractall(dest, members=members)  # noqa: S202 - every member was checked above
        for folder in request.get("close") or ():
            os.chmod(folder, 0o700)
    except (OSError, ValueError, tarfile.TarError) as exc:
        _reply({"exit_code": 1, "copy_problem": ""}, b"", f"unpack into {dest} failed: {exc}".encode())
        return
    _reply({"exit_code": 0, "copy_problem": ""})


def main() -> int:
    _not_dumpable()
    # The agent's own output must never reach a command: they get pipes of their own from run_limited.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if "--sweep" in sys.argv[1:]:
        # A new agent after the previous one was killed: whatever the killer left running goes first.
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
    while True:
        size = _read_exactly(4)
        if size is None:
            return 0
        (length,) = struct.unpack(">I", size)
        if length > MAX_HEADER:
            return 2
        raw = _read_exactly(length)
        if raw is None:
            return 0
        request = json.loads(raw)
        stdin = _read_exactly(int(request.get("stdin_len") or 0)) if request.get("stdin_len") else b""
        if stdin is None:
            return 0
        if request.get("op") == "ping":
            _reply({"ok": True, "uid": os.getuid()})
        elif request.get("op") == "run":
            _run(request, stdin)
        elif request.get("op") == "unpack":
            _unpack(request, stdin)
        else:
            _reply({"error": f"unknown op {request.get('op')!r}"})


if __name__ == "__main__":
    sys.exit(main())
