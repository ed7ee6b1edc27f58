"""One locked-down Docker container per grading run; commands are `docker exec`-ed into it.

The container's own process is a sleep as long as the run's wall budget (plus a margin), so a container
whose worker died stops by itself; `__exit__` always kills and removes it, and the reaper removes any left
behind. Commands run through /opt/shipshape/run_limited.py (timeout, output cap, leftover processes) and
the host keeps its own deadline and cap too, because the wrapper runs as the same user as the code it runs.

Where the time goes (bench/bench_sandbox.py; docs/benchmarks.md): container start (runc, ~250 ms) and removal
(~80 ms) are the engine's own; each `docker exec` costs ~100 ms. So the hot path makes no call it can avoid:
one DockerClient per process, create without the follow-up inspect, the submission copied into /work by the
first learner command's wrapper instead of an exec of its own, peak memory read from the host's cgroup file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import struct
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from django.conf import settings

from labs.errors import SandboxUnavailable
from labs.sandbox.agents import AgentBroken, AgentConnection, AgentLost, AgentTimeout
from labs.sandbox.limits import SandboxLimits

logger = logging.getLogger(__name__)

USERS = {"learner": "1000:1000", "grader": "1001:1001"}
GRADER_UID = 1001
TMP_MB = 16  # /tmp: shared by the learner and the grader's helpers, small, noexec
TMP_INODES = 2048
# The grader's writable space (tmpfs, 0700, uid 1001): the learner can neither read nor fill it.
GRADER_SCRATCH = "/results"
GRADER_SCRATCH_MB = 64
GRADER_BUNDLE_MB = 128  # /grader: the lab's grader bundle, staged at start (courses allow 100 MB of grader files)
WRAPPER = "/opt/shipshape/run_limited.py"
TIMEOUT_EXIT = 124  # run_limited's exit code for "ran out of time"
COPY_OK = b"\x00shipshape:submission-copied\n"  # run_limited --copy-submission's first bytes on stdout
COPY_TIMEOUT_S = 30
HOST_GRACE_S = 3.0  # how long past a command's timeout the host waits for the wrapper before killing all
LIFETIME_MARGIN_S = 30
MANAGED_LABEL = "shipshape.managed"
PLATFORM_SANDBOX_DIR = Path(__file__).resolve().parents[2] / "platform" / "sandbox"
BASE_ENV = {
    "PATH": "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "HOME": "/work",
    "TMPDIR": "/tmp",
}
_DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


@dataclass
class ExecResult:
    exit_code: int | None  # None when the host had to kill the container
    stdout: bytes
    stderr: bytes
    timed_out: bool
    duration_s: float
    output_truncated: bool
    oom_killed: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.oom_killed


# Why a learner command was stopped or cut short. The first two stop the code: the orchestrator turns them into a
# `failed` revision. The others are noted on the run and fail only the check that observed their effect.
STOPPING_REASONS = ("timeout", "oom")
NOTED_REASONS = ("output_limit", "pids", "disk", "crash")
_CRASH_SIGNALS = {4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 11: "SIGSEGV"}
_DISK_FULL_BYTES = 64 * 1024  # less free scratch than this after a failed command: the learner filled it


@dataclass
class LimitEvent:
    """A limit a submission's command hit (see STOPPING_REASONS and NOTED_REASONS)."""

    reason: str
    message: str

    @property
    def stops_run(self) -> bool:
        return self.reason in STOPPING_REASONS


@dataclass(frozen=True)
class Pressure:
    """What a sandbox's limits look like right now (see Sandbox.pressure)."""

    work_free_bytes: int
    work_free_inodes: int
    tmp_free_bytes: int
    tmp_free_inodes: int
    grader_free_bytes: int
    grader_free_inodes: int
    pids_refused: int  # forks the pids limit refused since the container started
    oom_kills: int  # processes the OOM killer ended since the container started

    @property
    def work_full(self) -> bool:
        return self.work_free_bytes < _DISK_FULL_BYTES or self.work_free_inodes == 0

    @property
    def tmp_full(self) -> bool:
        return self.tmp_free_bytes < _DISK_FULL_BYTES or self.tmp_free_inodes == 0


_PRESSURE_PROGRAM = """
import os
out = []
for path in ('/work', '/tmp', '/results'):
    s = os.statvfs(path)
    out += [s.f_bavail * s.f_frsize, s.f_favail]
def counter(paths, name):
    for path in paths:
        try:
            for line in open(path):
                key, _, value = line.partition(' ')
                if key == name:
                    return int(value)
        except OSError:
            pass
    return -1
out.append(counter(('/sys/fs/cgroup/pids/pids.events', '/sys/fs/cgroup/pids.events'), 'max'))
out.append(counter(('/sys/fs/cgroup/memory/memory.oom_control', '/sys/fs/cgroup/memory.events'), 'oom_kill'))
print(*out)
"""


@dataclass
class _Frames:
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    truncated: bool = False


def docker_client() -> docker.DockerClient:
    """A new client for settings.DOCKER_HOST (the caller closes it); SandboxUnavailable when no engine answers."""
    try:
        client = docker.DockerClient(base_url=settings.DOCKER_HOST, timeout=60)
        client.ping()
    except _DOCKER_ERRORS as exc:
        raise SandboxUnavailable(
            f"Docker engine at {settings.DOCKER_HOST} is not reachable ({exc}). Start the engine or fix DOCKER_HOST."
        ) from exc
    return client


_pool: tuple[int, Any] | None = None  # (pid, labs.sandbox.pool.SandboxPool): set by pool_start


def pool_use(pool: Any) -> None:
    """Make `pool` the one this process's sandboxes claim from (None: none). Called by labs.sandbox.pool."""
    global _pool
    _pool = (os.getpid(), pool) if pool is not None else None


def pool_in_use() -> Any:
    """This process's pool, or None (a forked child never claims from its parent's)."""
    current = _pool
    return current[1] if current is not None and current[0] == os.getpid() else None


_shared: tuple[int, str, docker.DockerClient] | None = None
_shared_lock = threading.Lock()


def _shared_client() -> docker.DockerClient:
    """One client per process for sandboxes: a new one costs a version query and a ping (~15 ms) per run.

    Keyed by pid because a Celery prefork child must not share its parent's connections.
    """
    global _shared
    with _shared_lock:
        if _shared is None or _shared[:2] != (os.getpid(), settings.DOCKER_HOST):
            _shared = (os.getpid(), settings.DOCKER_HOST, docker_client())
        return _shared[2]


def _forget_shared_client() -> None:
    """After a Docker error: the next sandbox connects afresh (the engine may have restarted)."""
    global _shared
    with _shared_lock:
        _shared = None


class Sandbox:
    """Context manager for one sandbox container. See labs.sandbox for the API and guarantees."""

    def __init__(
        self,
        *,
        limits: SandboxLimits,
        submission_dir: Path | None = None,
        grader_dir: Path | None = None,
        revision_id: int | None = None,
        run_id: int | None = None,
        image: str | None = None,
        network_mode: str = "none",
        copy_submission: bool = True,
        labels: dict[str, str] | None = None,
        remove_in_background: bool = False,
    ) -> None:
        if network_mode != "none" and not network_mode.startswith("container:"):
            raise ValueError("sandboxes get no network: network_mode must be 'none' or 'container:<id>'")
        self.limits = limits
        self.submission_dir = Path(submission_dir) if submission_dir else None
        self.grader_dir = Path(grader_dir) if grader_dir else None
        self.revision_id = revision_id
        self.run_id = run_id
        self.image = image or settings.RUNNER_IMAGE
        self.network_mode = network_mode
        self.copy_submission = copy_submission
        self.extra_labels = dict(labels or {})
        # With remove_in_background, leaving the block does not wait for the engine to remove the container
        # (~80 ms): call wait_removed() once the results are stored. Removal is still guaranteed by the
        # thread, and by the reaper if the worker dies first.
        self.remove_in_background = remove_in_background
        self.removed = threading.Event()
        self.container = None
        self.container_id = ""
        self.image_id = ""
        self.dead = False  # set when the host had to kill the container
        self.limit_events: list[LimitEvent] = []
        self.peak_memory_bytes: int | None = None
        self.final_state: dict[str, Any] = {}
        self._client: docker.DockerClient | None = None
        self._started = 0.0
        self._lifetime_s = limits.wall_seconds + LIFETIME_MARGIN_S
        self._oom_kills_seen = 0
        self._pids_max_seen = 0
        self._copy_pending = False
        self._copy_problem = ""  # once the copy failed, every later command raises it (never an empty /work)
        # A pooled sandbox's agents (labs.sandbox.pool): commands go to them instead of a `docker exec` each.
        self._agents: dict[str, AgentConnection | None] | None = None
        self.pooled = False

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        try:
            self._start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._cleanup()

    def wait_removed(self, timeout: float | None = None) -> bool:
        """Block until the container is removed (at once unless remove_in_background); True when it is."""
        return self.removed.wait(timeout)

    def _start(self) -> None:
        try:
            self._client = _shared_client()
        except SandboxUnavailable:
            _forget_shared_client()
            raise
        try:
            image = self._client.images.get(self.image)
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailable(
                f"runner image {self.image!r} is missing. Build it with platform/runner-image/build.sh."
            ) from exc
        except _DOCKER_ERRORS as exc:
            _forget_shared_client()
            raise SandboxUnavailable(f"cannot inspect runner image {self.image!r}: {exc}") from exc
        self.image_id = image.id
        if self._adopt_pooled():
            return
        mounts = []
        if self.submission_dir:
            # A Mount, not a Binds entry: the engine refuses a missing source instead of creating it as an empty
            # folder, so a submission cache swapped out at the wrong moment is our error, never an empty submission.
            # Read-only, default propagation (rprivate): as the bind it replaces.
            mounts.append(
                docker.types.Mount(target="/submission", source=str(self.submission_dir), type="bind", read_only=True)
            )
        api = self._client.api
        try:
            self.container_id = container_create(
                api,
                image=self.image,
                limits=self.limits,
                network_mode=self.network_mode,
                mounts=mounts,
                lifetime_s=self._lifetime_s,
                labels={
                    MANAGED_LABEL: "1",
                    "shipshape.revision": str(self.revision_id or ""),
                    "shipshape.run": str(self.run_id or ""),
                    **self.extra_labels,
                },
            )
            self.container = self._client.containers.prepare_model({"Id": self.container_id})
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailable(f"runner image {self.image!r} is missing: {exc}") from exc
        except _DOCKER_ERRORS as exc:
            _forget_shared_client()
            raise SandboxUnavailable(f"cannot start a sandbox container: {exc}") from exc
        self._started = time.monotonic()
        if self.grader_dir:
            self._stage_grader(self.grader_dir)
        # The first learner command copies the submission into /work itself (run_limited --copy-submission);
        # any other first command gets a copy exec of its own before it (see exec()).
        self._copy_pending = bool(self.copy_submission and self.submission_dir)

    def _adopt_pooled(self) -> bool:
        """Take a pre-started container from this process's pool when one matches; True when one was taken."""
        pool = pool_in_use()
        if pool is None or self.network_mode != "none":
            return False
        if self.submission_dir and not self.submission_dir.is_dir():
            raise SandboxUnavailable(
                f"cannot start a sandbox container: the submission {self.submission_dir} is missing"
            )
        entry = pool.claim(limits=self.limits, image_id=self.image_id, labels=self.extra_labels)
        if entry is None:
            return False
        self.container_id = entry.container_id
        self.container = self._client.containers.prepare_model({"Id": entry.container_id})
        self._agents = {"learner": entry.learner, "grader": entry.grader}
        self.pooled = True
        logger.info(
            "sandbox %s taken from the pool (revision %s, run %s)",
            entry.container_id[:12],
            self.revision_id,
            self.run_id,
        )
        self._started = time.monotonic()
        if self.submission_dir:
            self._stage_submission(self.submission_dir)
        if self.grader_dir:
            self._stage_grader(self.grader_dir)
        self._copy_pending = bool(self.copy_submission)
        return True

    def _stage_submission(self, submission_dir: Path) -> None:
        """A pooled container has no bind mount: the submission travels as a tar to the grader's agent, which
        writes it into /submission (a tmpfs the learner can read and not write), as the bind mount shows it."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for path in sorted(submission_dir.rglob("*")):
                if path.is_symlink() or not (path.is_file() or path.is_dir()):
                    continue  # stored trees hold files and folders only
                info = tarfile.TarInfo(path.relative_to(submission_dir).as_posix())
                status = path.stat()
                info.mode, info.mtime = status.st_mode & 0o777, int(status.st_mtime)
                if path.is_dir():
                    info.type = tarfile.DIRTYPE
                    archive.addfile(info)
                    continue
                info.size = status.st_size
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
        self._unpack_by_agent(buffer.getvalue(), dest="/submission", close=[])

    def _unpack_by_agent(self, archive: bytes, *, dest: str, close: list[str]) -> None:
        """A pooled sandbox's files: the grader's agent unpacks the tar into dest itself (no command to start)."""
        request = {"op": "unpack", "dest": dest, "close": close}
        try:
            reply = self._agent("grader").call(request, archive, deadline=time.monotonic() + COPY_TIMEOUT_S, cap=4096)
        except (AgentLost, AgentTimeout, AgentBroken) as exc:
            raise SandboxUnavailable(f"could not stage files into {dest}: {exc}") from exc
        if reply.header.get("exit_code") != 0:
            raise SandboxUnavailable(f"could not stage files into {dest}: {reply.stderr[-500:]!r}")

    def _copy_now(self) -> None:
        self._copy_pending = False
        copied = self.exec(["cp", "-R", "/submission/.", "/work/"], user="learner", timeout_s=COPY_TIMEOUT_S)
        if copied.exit_code != 0:
            self._copy_failed(copied)

    def _copy_failed(self, result: ExecResult) -> None:
        # The upload was validated before storage, so a failed copy is ours (or a scratch too small for the files
        # the lab allows: a lab configuration error, also ours).
        self._copy_problem = (
            f"could not copy the submission into scratch (exit {result.exit_code}): {result.stderr[-500:]!r}"
        )
        raise SandboxUnavailable(self._copy_problem)

    def _stage_grader(self, grader_dir: Path) -> None:
        """Copy the grader bundle into /grader, a tmpfs only the grader user (1001) can read.

        The files travel as a tar on the standard input of a command run as the grader, so they are owned by 1001
        whatever user the worker runs as (root or not, compose included): no chown on the host is needed.
        """
        if not grader_dir.is_dir():
            # Materialized and verified before the sandbox started: a missing bundle here is ours, and grading
            # without its hidden tests would score the learner against nothing. (An empty one is a lab whose
            # checks are all built in: nothing to stage.)
            raise SandboxUnavailable(f"the grader bundle {grader_dir} is missing; nothing was staged")
        files = sorted(p for p in grader_dir.rglob("*") if p.is_file() and not p.is_symlink())
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for path in files:
                info = tarfile.TarInfo(path.relative_to(grader_dir).as_posix())
                info.size = path.stat().st_size
                info.mode = 0o500 if path.stat().st_mode & 0o111 else 0o400
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
        # The engine gives a tmpfs the mode of the image's mount point, not the one asked for: close both grader
        # folders to everyone but their owner, so the learner cannot even list them.
        if self._agents is not None:
            self._unpack_by_agent(buffer.getvalue(), dest="/grader", close=["/grader", GRADER_SCRATCH])
            return
        staged = self._exec(
            [
                "sh",
                "-c",
                "tar -x -C /grader --no-same-owner --no-same-permissions --delay-directory-restore"
                f" && chmod 700 /grader {GRADER_SCRATCH}",
            ],
            user="grader",
            timeout_s=COPY_TIMEOUT_S,
            stdin=buffer.getvalue(),
        )
        if staged.exit_code != 0:
            raise SandboxUnavailable(
                f"could not stage the grader bundle (exit {staged.exit_code}): {staged.stderr[-500:]!r}"
            )

    def _cleanup(self) -> None:
        # What needs the container alive is read now; the removal itself may go to a thread.
        if self.container is not None:
            if not self.dead and self.peak_memory_bytes is None:
                self._read_peak_memory()
            if self.dead:
                with contextlib.suppress(*_DOCKER_ERRORS):
                    self.container.reload()
                    self.final_state = dict(self.container.attrs.get("State", {}))
        container, self.container = self.container, None
        for agent in (self._agents or {}).values():
            if agent is not None:
                agent.close()
        if self.remove_in_background and container is not None:
            threading.Thread(
                target=self._remove, args=(container,), name=f"sandbox-remove-{self.container_id[:12]}"
            ).start()
        else:
            self._remove(container)

    def _remove(self, container: Any) -> None:
        try:
            if container is not None:
                for attempt in range(3):
                    try:
                        # force=True kills first (SIGKILL), so a separate kill would only cost a round trip.
                        container.remove(force=True, v=True)
                        break
                    except docker.errors.NotFound:
                        break
                    except _DOCKER_ERRORS:
                        logger.warning(
                            "removing sandbox container %s failed (attempt %s)", self.container_id, attempt + 1
                        )
                        _forget_shared_client()
                        time.sleep(0.5)
        finally:
            self.removed.set()

    # -- commands --------------------------------------------------------------------------------------

    def remaining_s(self) -> float:
        """Seconds left of the container's lifetime."""
        return max(0.0, self._lifetime_s - (time.monotonic() - self._started))

    def exec(
        self,
        argv: list[str],
        *,
        user: str = "learner",
        timeout_s: float,
        env: dict[str, str] | None = None,
        workdir: str = "/work",
        stdin: bytes | None = None,
        kill_leftovers: bool | None = None,
    ) -> ExecResult:
        """Run argv in the sandbox as `user` with a timeout; output capped at limits.output_bytes per stream.

        kill_leftovers (default: True for learner, False for grader) kills every process of that user once
        argv ends, so a daemonised child cannot outlive its command.
        """
        if user not in USERS:
            raise ValueError(f"user must be one of {sorted(USERS)}")
        if self._copy_problem:
            raise SandboxUnavailable(self._copy_problem)
        if self.container is None or self.dead:
            return ExecResult(None, b"", b"sandbox is no longer running", True, 0.0, False)
        # Only a learner command in /work can do the copy itself: /work is the learner's, and docker enters
        # the workdir before the wrapper runs.
        copy_here = self._copy_pending and user == "learner" and workdir == "/work"
        if self._copy_pending and not copy_here:
            self._copy_now()
        self._copy_pending = False
        return self._exec(
            argv,
            user=user,
            timeout_s=timeout_s,
            env=env,
            workdir=workdir,
            stdin=stdin,
            kill_leftovers=kill_leftovers,
            copy_here=copy_here,
        )

    def _exec(
        self,
        argv: list[str],
        *,
        user: str,
        timeout_s: float,
        env: dict[str, str] | None = None,
        workdir: str = "/work",
        stdin: bytes | None = None,
        kill_leftovers: bool | None = None,
        copy_here: bool = False,
    ) -> ExecResult:
        if kill_leftovers is None:
            kill_leftovers = user == "learner"
        cap = self.limits.output_bytes
        timeout_s = max(0.1, min(float(timeout_s), self.remaining_s()))
        if self._agents is not None:
            request = {
                "op": "run",
                "argv": list(argv),
                "timeout": timeout_s,
                "max_output": cap,
                "kill_leftovers": kill_leftovers,
                "copy_submission": copy_here,
                "env": {**BASE_ENV, **(env or {})},
                "workdir": workdir,
            }
            return self._exec_by_agent(request, user=user, stdin=stdin)
        # -S: the wrapper needs only the standard library, and site's .pth files cost ~6 ms per command.
        wrapped = ["python3", "-I", "-S", WRAPPER, "--timeout", f"{timeout_s:.3f}", "--max-output", str(cap)]
        if kill_leftovers:
            wrapped.append("--kill-leftovers")
        if copy_here:
            wrapped.append("--copy-submission")
        wrapped += ["--", *argv]
        api = self._client.api
        started = time.monotonic()
        try:
            exec_id = api.exec_create(
                self.container_id,
                wrapped,
                stdout=True,
                stderr=True,
                stdin=stdin is not None,
                user=USERS[user],
                environment={**BASE_ENV, **(env or {})},
                workdir=workdir,
            )["Id"]
            sock = api.exec_start(exec_id, socket=True)
        except _DOCKER_ERRORS as exc:
            _forget_shared_client()
            raise SandboxUnavailable(f"docker exec failed: {exc}") from exc
        raw: socket.socket = getattr(sock, "_sock", sock)
        frames = _Frames()
        host_deadline = started + timeout_s + HOST_GRACE_S + (COPY_TIMEOUT_S if copy_here else 0)
        try:
            if stdin is not None:
                raw.sendall(stdin)
                raw.shutdown(socket.SHUT_WR)
            finished = _read_frames(raw, frames, cap, host_deadline, stdout_prefix=len(COPY_OK) if copy_here else 0)
        except OSError as exc:
            logger.warning("reading sandbox output failed: %s", exc)
            finished = False
        finally:
            with contextlib.suppress(OSError):
                sock.close()
        duration = time.monotonic() - started
        # The wrapper writes COPY_OK before the command starts, so the command cannot forge it.
        copied = not copy_here or frames.stdout.startswith(COPY_OK)
        if copy_here and copied:
            del frames.stdout[: len(COPY_OK)]
        if not finished:
            # The wrapper did not end in time (hung, or killed and replaced by something holding the stream):
            # the host kills the whole container; later commands in this sandbox report it as gone.
            self._kill_dead()
            result = ExecResult(None, bytes(frames.stdout), bytes(frames.stderr), True, duration, frames.truncated)
        else:
            try:
                code = api.exec_inspect(exec_id).get("ExitCode")
            except _DOCKER_ERRORS as exc:
                _forget_shared_client()
                raise SandboxUnavailable(f"docker exec inspect failed: {exc}") from exc
            timed_out = code == TIMEOUT_EXIT and duration >= timeout_s - 0.2
            result = ExecResult(code, bytes(frames.stdout), bytes(frames.stderr), timed_out, duration, frames.truncated)
            if not copied:
                self._copy_failed(result)
        if user == "learner":
            self._note_limits(result, timeout_s)
        return result

    def _exec_by_agent(self, request: dict[str, Any], *, user: str, stdin: bytes | None) -> ExecResult:
        """_exec for a pooled sandbox: a request to the user's agent, with the same deadline, cap and verdicts."""
        cap, timeout_s, copy_here = request["max_output"], request["timeout"], request["copy_submission"]
        started = time.monotonic()
        host_deadline = started + timeout_s + HOST_GRACE_S + (COPY_TIMEOUT_S if copy_here else 0)
        agent = self._agent(user)
        try:
            reply = agent.call(request, stdin or b"", deadline=host_deadline, cap=cap)
        except (AgentTimeout, AgentBroken):
            # As with a wrapper that does not end: the host kills the whole container.
            self._kill_dead()
            result = ExecResult(None, b"", b"", True, time.monotonic() - started, False)
        except AgentLost:
            # The agent died under its command: the learner's command can kill its own agent (same user), like
            # it can kill run_limited. Reported as that command being killed; the next command gets a new agent.
            self._agents[user] = None
            if not self._container_running():
                raise SandboxUnavailable("the sandbox container stopped while a command ran") from None
            result = ExecResult(137, b"", b"", False, time.monotonic() - started, False)
        else:
            duration = time.monotonic() - started
            code = reply.header.get("exit_code")
            code = code if isinstance(code, int) else None
            stdout, stderr = reply.stdout, reply.stderr
            truncated = len(stdout) > cap or len(stderr) > cap
            timed_out = code == TIMEOUT_EXIT and duration >= timeout_s - 0.2
            result = ExecResult(code, stdout[:cap], stderr[:cap], timed_out, duration, truncated)
            if copy_here and reply.header.get("copy_problem"):
                self._copy_failed(result)
        if user == "learner":
            self._note_limits(result, timeout_s)
        return result

    def _agent(self, user: str) -> AgentConnection:
        agent = self._agents.get(user)
        if agent is not None and not agent.closed:
            return agent
        try:
            # A new agent sweeps first what the command that killed the last one may have left running.
            agent = AgentConnection.start(
                self._client.api, self.container_id, user=USERS[user], env=dict(BASE_ENV), sweep=user == "learner"
            )
        except _DOCKER_ERRORS as exc:
            _forget_shared_client()
            raise SandboxUnavailable(f"could not start the sandbox's agent: {exc}") from exc
        self._agents[user] = agent
        return agent

    def _container_running(self) -> bool:
        try:
            state = self._client.api.inspect_container(self.container_id).get("State", {})
        except _DOCKER_ERRORS:
            return False
        return bool(state.get("Running"))

    def _note_limits(self, result: ExecResult, timeout_s: float) -> None:
        if result.exit_code in (137, -9) or result.exit_code is None:
            kills = self._oom_kill_count()
            if kills > self._oom_kills_seen:
                self._oom_kills_seen = kills
                result.oom_killed = True
                self.note_limit("oom", f"out of memory: used more than the limit of {self.limits.memory_mb} MB")
                return
        if result.timed_out:
            self.note_limit("timeout", f"timed out after {timeout_s:.0f} s")
            return
        if result.output_truncated:
            self.note_limit("output_limit", f"printed more than {self.limits.output_bytes} bytes; the rest was cut")
        signal_number = _signal_of(result.exit_code)
        if signal_number in _CRASH_SIGNALS:
            self.note_limit("crash", f"a program crashed ({_CRASH_SIGNALS[signal_number]})")
        if result.exit_code not in (0, None):
            self._note_exhaustion()

    def _note_exhaustion(self) -> None:
        """After a failed learner command: was the process limit reached, or scratch space left full?"""
        pressure = self.pressure()
        if pressure is None:
            return
        if pressure.work_full:
            self.note_limit("disk", f"filled the scratch space of {self.limits.scratch_mb} MB")
        if pressure.pids_refused > self._pids_max_seen:
            self._pids_max_seen = pressure.pids_refused
            self.note_limit("pids", f"tried to start more than {self.limits.pids} processes")

    def pressure(self) -> Pressure | None:
        """The container's own counters, read as the grader user (the learner cannot forge them): free space in
        /work, /tmp and the grader's scratch, how often the process limit refused a fork, OOM kills so far. None
        when they cannot be read (the sandbox is gone)."""
        try:
            out = self._exec(["python3", "-I", "-S", "-c", _PRESSURE_PROGRAM], user="grader", timeout_s=10)
        except SandboxUnavailable:
            return None
        words = out.stdout.decode("ascii", "replace").split()
        if out.exit_code != 0 or len(words) != 8 or not all(w.lstrip("-").isdigit() for w in words):
            return None
        numbers = [int(w) for w in words]
        return Pressure(
            work_free_bytes=numbers[0],
            work_free_inodes=numbers[1],
            tmp_free_bytes=numbers[2],
            tmp_free_inodes=numbers[3],
            grader_free_bytes=numbers[4],
            grader_free_inodes=numbers[5],
            pids_refused=max(0, numbers[6]),
            oom_kills=max(0, numbers[7]),
        )

    def note_oom(self, message: str) -> None:
        """A process that is not a learner command (a kernel, a service) was OOM-killed: recorded like a learner
        command's, and counted, so a later command's exit 137 is not blamed on memory a second time."""
        self._oom_kills_seen = max(self._oom_kills_seen + 1, self._oom_kill_count())
        self.note_limit("oom", message)

    def note_limit(self, reason: str, message: str) -> None:
        """Record a limit hit (once per reason; the first message is kept)."""
        if not any(event.reason == reason for event in self.limit_events):
            self.limit_events.append(LimitEvent(reason, message))

    def _grader_read(self, path: str) -> str:
        if self.container is None or self.dead:
            return ""
        try:
            out = self.exec(["cat", path], user="grader", timeout_s=10)
        except SandboxUnavailable:
            return ""
        return out.stdout.decode("ascii", "replace") if out.exit_code == 0 else ""

    def _oom_kill_count(self) -> int:
        try:
            text = (Path("/sys/fs/cgroup/memory/docker") / self.container_id / "memory.oom_control").read_text()
        except OSError:
            text = self._grader_read("/sys/fs/cgroup/memory/memory.oom_control")
        if not text and self.container is not None:
            # cgroup v2 layout
            text = self._grader_read("/sys/fs/cgroup/memory.events")
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                return int(value)
        if self.dead and self.final_state.get("OOMKilled"):
            return self._oom_kills_seen + 1
        return self._oom_kills_seen

    def _read_peak_memory(self) -> None:
        # The worker can usually read the container's cgroup directly (cgroup v1, cgroupfs driver): one file
        # read instead of a docker exec. Otherwise ask inside the container, as the grader user.
        host_file = Path("/sys/fs/cgroup/memory/docker") / self.container_id / "memory.max_usage_in_bytes"
        try:
            text = host_file.read_text().strip()
        except OSError:
            text = self._grader_read("/sys/fs/cgroup/memory/memory.max_usage_in_bytes").strip()
            if not text:
                text = self._grader_read("/sys/fs/cgroup/memory.peak").strip()
        if text.isdigit():
            self.peak_memory_bytes = int(text)

    def _kill_dead(self) -> None:
        self.dead = True
        try:
            self.container.kill()
            self.container.reload()
            self.final_state = dict(self.container.attrs.get("State", {}))
        except _DOCKER_ERRORS:
            pass

    def resources(self) -> dict[str, Any]:
        """What the run used against its limits, for the revision page."""
        if self.peak_memory_bytes is None and not self.dead:
            self._read_peak_memory()
        return {
            "wall_seconds": round(time.monotonic() - self._started, 3) if self._started else 0.0,
            "peak_memory_bytes": self.peak_memory_bytes,
            "limits": self.limits.as_dict(),
        }


def container_create(
    api: docker.APIClient,
    *,
    image: str,
    limits: SandboxLimits,
    network_mode: str,
    mounts: list,
    lifetime_s: float,
    labels: dict[str, str],
    submission_tmpfs: bool = False,
    command: list[str] | None = None,
    user: str | None = None,
    init: bool = False,
) -> str:
    """Create and start one locked-down sandbox container; its id. Docker errors propagate to the caller.

    The low-level calls: containers.create() would inspect the new container, a round trip we never use. A pooled
    container (labs.sandbox.pool) is started before its submission exists: it gets /submission as a tmpfs the
    grader's agent fills when the container is claimed (submission_tmpfs) instead of the read-only bind mount.
    Everything else is the same for both, so a pooled sandbox has exactly the limits and isolation of a fresh one.
    A code cell's kernel (kernels.sandbox) is a third user of the same lock-down: it runs its own `command` as the
    learner (`user`), under Docker's init (`init`) so a fork bomb's zombies are reaped and an interrupt reaches it.
    """
    lim = limits
    memory = f"{lim.memory_mb}m"
    tmpfs = {
        "/work": f"rw,exec,nosuid,nodev,size={lim.scratch_mb}m,nr_inodes={lim.scratch_inodes},"
        "uid=1000,gid=1000,mode=0755",
        "/tmp": f"rw,noexec,nosuid,nodev,size={TMP_MB}m,nr_inodes={TMP_INODES},mode=1777",
        # The grader's own space: its bundle and its scratch, unreadable to the learner (0700, uid 1001).
        "/grader": f"rw,noexec,nosuid,nodev,size={GRADER_BUNDLE_MB}m,uid=1001,gid=1001,mode=0700",
        GRADER_SCRATCH: f"rw,noexec,nosuid,nodev,size={GRADER_SCRATCH_MB}m,nr_inodes=4096,"
        "uid=1001,gid=1001,mode=0700",
    }
    if submission_tmpfs:
        # Written once by the grader when the container is claimed; the learner can read it, never write it.
        tmpfs["/submission"] = (
            f"rw,nosuid,nodev,size={lim.scratch_mb}m,nr_inodes={lim.scratch_inodes},uid=1001,gid=1001,mode=0755"
        )
    host_config = api.create_host_config(
        binds={str(PLATFORM_SANDBOX_DIR): {"bind": "/opt/shipshape", "mode": "ro"}},
        mounts=mounts,
        network_mode=network_mode,
        read_only=True,
        tmpfs=tmpfs,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        pids_limit=lim.pids,
        mem_limit=memory,
        memswap_limit=memory,
        nano_cpus=int(lim.cpus * 1e9),
        ulimits=[
            docker.types.Ulimit(name="nofile", soft=lim.open_files, hard=lim.open_files),
            docker.types.Ulimit(name="fsize", soft=lim.file_size_mb << 20, hard=lim.file_size_mb << 20),
            docker.types.Ulimit(name="core", soft=0, hard=0),
        ],
        log_config=docker.types.LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        init=init or None,
    )
    container_id = api.create_container(
        image,
        command=command or ["sleep", str(int(lifetime_s))],
        detach=True,
        # PID 1's child runs as grader so a learner's kill(-1) (run_limited --kill-leftovers) spares it.
        user=user or USERS["grader"],
        working_dir="/work",
        environment=dict(BASE_ENV),
        host_config=host_config,
        labels=labels,
        hostname="sandbox",
    )["Id"]
    try:
        api.start(container_id)
    except BaseException:
        with contextlib.suppress(*_DOCKER_ERRORS):
            api.remove_container(container_id, force=True, v=True)
        raise
    return container_id


def _signal_of(exit_code: int | None) -> int | None:
    """The signal that ended a command (run_limited exits 128+N), or None."""
    if exit_code is None:
        return None
    if exit_code < 0:
        return -exit_code
    return exit_code - 128 if 128 < exit_code < 160 else None


def _read_frames(raw: socket.socket, frames: _Frames, cap: int, deadline: float, *, stdout_prefix: int = 0) -> bool:
    """Read docker's multiplexed exec stream until EOF (True) or the deadline (False), storing <= cap bytes
    per stream (plus stdout_prefix bytes of the wrapper's own header on stdout)."""
    buffer = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        raw.settimeout(remaining)
        try:
            chunk = raw.recv(65536)
        except TimeoutError:
            return False
        if not chunk:
            return True
        buffer += chunk
        while len(buffer) >= 8:
            stream, size = buffer[0], struct.unpack(">I", buffer[4:8])[0]
            if len(buffer) < 8 + size:
                break
            payload, buffer = buffer[8 : 8 + size], buffer[8 + size :]
            target = frames.stderr if stream == 2 else frames.stdout
            room = cap + (0 if stream == 2 else stdout_prefix) - len(target)
            if len(payload) > room:
                frames.truncated = True
            if room > 0:
                target += payload[:room]
