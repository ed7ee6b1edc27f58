"""Trusted wrapper every sandbox command runs under (bind-mounted read-only at /opt/shipshape).

    python3 -I -S /opt/shipshape/run_limited.py --timeout S --max-output N [--kill-leftovers]
        [--copy-submission] -- ARGV...

Docker exec has no timeout and its output stream stays open while any process holds it, so this wrapper:
- runs ARGV in its own session with stdout/stderr on pipes it owns (a daemonised grandchild never holds the
  exec stream open), and makes ARGV the OOM killer's first choice (oom_score_adj 1000);
- forwards at most N+1 bytes of each stream (one byte more than the cap tells the host it was truncated)
  and drains the rest without storing it;
- kills ARGV's session when S seconds have passed and exits 124;
- with --kill-leftovers, sends SIGKILL to every process of the same user (kill(-1) spares the caller) before
  ARGV starts and after it ends, so nothing a submission started outlives its command. The sweep before
  matters when the previous command killed its own wrapper (same user, so it can) to skip the sweep after.
Otherwise it exits with ARGV's exit code, or 128+signal when ARGV was killed by a signal.

With --copy-submission it first copies /submission into /work (as the learner, before ARGV starts: this saves
the host a whole `docker exec` per run) and writes COPY_OK to stdout. The host strips it; since it comes before
anything ARGV can print, ARGV cannot forge it. If the copy fails, ARGV is not run and the wrapper exits 125
without COPY_OK.

It parses its own arguments (no argparse) and needs no site-packages (`-S`): it starts on every command, and
those imports cost more than the rest of the wrapper.

It runs as the same user as ARGV, so a hostile ARGV can kill it: the host keeps its own deadline and output
cap and never trusts this wrapper for more than the submission could claim about itself.
"""

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time

TIMEOUT_EXIT = 124
COPY_FAILED_EXIT = 125
COPY_OK = b"\x00shipshape:submission-copied\n"  # keep in sync with labs/sandbox/environment.py
COPY_TIMEOUT_S = 30
CHUNK = 65536
USAGE = "usage: run_limited.py --timeout S --max-output N [--kill-leftovers] [--copy-submission] -- ARGV..."


def _parse(args: list[str]) -> tuple[float, int, bool, bool, list[str]]:
    timeout = max_output = None
    kill_leftovers = copy_submission = False
    while args and args[0] != "--":
        flag, args = args[0], args[1:]
        if flag == "--kill-leftovers":
            kill_leftovers = True
        elif flag == "--copy-submission":
            copy_submission = True
        elif flag in ("--timeout", "--max-output") and args:
            value, args = args[0], args[1:]
            if flag == "--timeout":
                timeout = float(value)
            else:
                max_output = int(value)
        else:
            raise ValueError(f"unknown or incomplete option {flag!r}")
    if timeout is None or max_output is None:
        raise ValueError("--timeout and --max-output are required")
    return timeout, max_output, kill_leftovers, copy_submission, args[1:]


def _copy_submission() -> str:
    """Copy /submission into /work; an error message, or "" when it worked."""
    try:
        done = subprocess.run(
            ["cp", "-R", "/submission/.", "/work/"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=COPY_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if done.returncode == 0 else f"cp exited {done.returncode}: {done.stderr[-500:].decode(errors='replace')}"


def _oom_first() -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass


def _pump(proc: subprocess.Popen, deadline: float, cap: int, write=os.write) -> bool:
    """Copy the child's output (to write(1 or 2, data)) until both pipes close or the deadline passes; True when
    it timed out."""
    selector = selectors.DefaultSelector()
    targets = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
    forwarded = {1: 0, 2: 0}
    for fd in targets:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    open_fds = set(targets)
    exited_at = None
    while open_fds:
        now = time.monotonic()
        if now >= deadline:
            return True
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        # Once the child is gone, leftovers holding the pipes get a short grace, not the whole budget.
        if exited_at is not None and now - exited_at > 0.5:
            break
        for key, _ in selector.select(timeout=min(0.1, deadline - now)):
            fd = key.fd
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                continue
            if not data:
                selector.unregister(fd)
                open_fds.discard(fd)
                continue
            out = targets[fd]
            room = cap + 1 - forwarded[out]
            if room > 0:
                piece = data[:room]
                forwarded[out] += len(piece)
                with contextlib.suppress(OSError):
                    write(out, piece)
    return False


def run(
    argv: list[str],
    *,
    timeout: float,
    max_output: int,
    kill_leftovers: bool = False,
    copy_submission: bool = False,
    write=os.write,
    on_copied=None,
    env: dict | None = None,
    cwd: str | None = None,
    stdin: bytes | None = None,
    inherit_stdin: bool = False,
) -> tuple[int, str]:
    """Run ARGV as described above; (exit code, copy problem). Output goes to write(1 or 2, data): this
    process's stdout and stderr for the wrapper, buffers for the agent (agent.py)."""
    if kill_leftovers:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
    if copy_submission:
        problem = _copy_submission()
        if problem:
            write(2, f"run_limited: could not copy the submission into /work: {problem}\n".encode())
            return COPY_FAILED_EXIT, problem
        if on_copied is not None:
            on_copied()
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(
            argv,
            stdin=None if inherit_stdin else (subprocess.PIPE if stdin else subprocess.DEVNULL),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_oom_first,
            env=env,
            cwd=cwd,
        )
    except OSError as exc:
        # The submission's command could not start: report like a shell would.
        write(2, f"cannot run {argv[0]!r}: {exc.strerror}\n".encode())
        return 127, ""
    if stdin:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    timed_out = _pump(proc, deadline, max_output, write)
    if not timed_out:
        # The pipes can close a moment before the process exits (or a child may close them and keep
        # running): wait for its exit before killing leftovers, or the kill would hit the child itself.
        try:
            code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
    if timed_out:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
    if kill_leftovers:
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
    try:
        code = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    if timed_out:
        return TIMEOUT_EXIT, ""
    return (128 - code if code < 0 else code), ""


def _feed(pipe, data: bytes) -> None:
    with contextlib.suppress(OSError):
        pipe.write(data)
    with contextlib.suppress(OSError):
        pipe.close()


def main() -> int:
    try:
        timeout, max_output, kill_leftovers, copy_submission, argv = _parse(sys.argv[1:])
    except ValueError as exc:
        print(f"run_limited: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    if not argv:
        print(f"run_limited: no command given\n{USAGE}", file=sys.stderr)
        return 2
    code, _ = run(
        argv,
        timeout=timeout,
        max_output=max_output,
        kill_leftovers=kill_leftovers,
        copy_submission=copy_submission,
        on_copied=lambda: os.write(1, COPY_OK),
        inherit_stdin=True,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
