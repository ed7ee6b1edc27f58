"""Docker sandboxes for grading: one locked-down container per grading run.

API (stable; check kinds build on it):

    from labs.sandbox import Sandbox, SandboxLimits, ExecResult, SandboxUnavailable, clean_output

    with Sandbox(limits=lab.labspec.limits.sandbox_limits(), submission_dir=..., grader_dir=...,
                 revision_id=..., run_id=...) as sb:
        r: ExecResult = sb.exec(["python", "greet.py"], user="learner", timeout_s=10)
        r.exit_code, r.stdout, r.stderr, r.timed_out, r.oom_killed, r.output_truncated, r.duration_s
        sb.exec(["cat", "/grader/expected.txt"], user="grader", timeout_s=5)   # trusted reads
        sb.limit_events      # [LimitEvent(reason, message)] hit by learner commands, once per reason:
                             # timeout, oom (stop the code: .stops_run) or output_limit, pids, disk, crash
        sb.resources()       # {"wall_seconds", "peak_memory_bytes", "limits"}
        sb.pressure()        # Pressure: free space in /work, /tmp, /results; pids refusals; OOM kills
        sb.image_id, sb.container_id

    # Optional: leave the block without waiting for the engine to remove the container (~80 ms); store the
    # results, then wait. Removal still always happens (the thread; the reaper if the worker dies).
    with Sandbox(..., remove_in_background=True) as sb:
        ...
    store_results()
    sb.wait_removed()   # True once the container is gone; sb.removed is a threading.Event

Container (see environment.py): the runner image, `network_mode="none"` (or "container:<id>" to join
another sandbox's namespace), read-only root, tmpfs /work (learner-owned scratch, size and inode caps), /tmp
(small, noexec), /grader (the lab's grader bundle, staged at start by a command run as the grader: a tmpfs
readable only by uid 1001, whatever user the worker runs as), /results (GRADER_SCRATCH: the grader's own
writable space, 0700), the submission read-only at /submission (copied into /work, as
the learner, by the wrapper of the first learner command run in /work, or by an exec of its own before any other
first command: one `docker exec` less per run; a failed copy raises SandboxUnavailable on that and every later
command), platform/sandbox read-only
at /opt/shipshape, user 1000, cap_drop ALL, no-new-privileges, pids/memory(=swap)/CPU limits, ulimits
nofile/fsize/core=0, tini as PID 1, capped json-file logs, labels shipshape.managed=1 / .revision / .run,
and an explicit minimal environment (the worker's never reaches it).

Warm pool (labs/sandbox/pool.py; docs/architecture.md "Warm sandboxes"): when this process started a pool
(Celery pool processes do, SHIPSHAPE_SANDBOX_POOL_SIZE), `Sandbox(...)` takes a pre-started container whose
limits, image and labels match, instead of starting one: the same container configuration, except /submission
(a tmpfs the grader's agent fills from a tar); commands go to its in-sandbox agents (platform/sandbox/agent.py)
instead of a `docker exec` each, with the same timeouts, caps and verdicts. `sb.pooled` says which it got.

Users: "learner" (1000) runs submission code; "grader" (1001) runs trusted programs from /opt/shipshape,
which the submission cannot modify; results come only from the host's own observations (exit codes, docker
state) and from trusted programs' output.

Guarantees: every exec has a timeout enforced twice (the wrapper /opt/shipshape/run_limited.py kills the
command's session; the host kills the whole container HOST_GRACE_S later if the wrapper does not end) and an
output cap per stream enforced twice; after a learner command every learner process is killed (no
daemonised leftovers); `__exit__` always kills and removes the container, also on exceptions, and the
reaper (labs.sandbox.reaper.containers_reap) removes containers a dead worker left. Docker or image
problems raise SandboxUnavailable (a PlatformError: ours, retried). Output is bytes: show it only through
clean_output() (UTF-8 with replacement, no NUL, no terminal escapes, capped).
"""

from labs.errors import PlatformError, SandboxUnavailable
from labs.sandbox.environment import (
    GRADER_SCRATCH,
    TMP_INODES,
    TMP_MB,
    ExecResult,
    LimitEvent,
    Pressure,
    Sandbox,
    docker_client,
)
from labs.sandbox.limits import SandboxLimits
from labs.sandbox.output import clean_output

__all__ = [
    "GRADER_SCRATCH",
    "TMP_INODES",
    "TMP_MB",
    "ExecResult",
    "LimitEvent",
    "PlatformError",
    "Pressure",
    "Sandbox",
    "SandboxLimits",
    "SandboxUnavailable",
    "clean_output",
    "docker_client",
]
