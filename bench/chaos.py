"""Chaos run (not a test): gradings must survive crashes. Every grading submitted is graded exactly once, with the
verdict its submission deserves, while workers are killed, Redis, the Docker engine and PostgreSQL restart.

    uv run python bench/chaos.py              # 20 worker kills, 5 Redis restarts, 1 Docker, 1 PostgreSQL restart
    uv run python bench/chaos.py --quick      # smoke run: 2 kills, 1 restart of each
    uv run python bench/chaos.py --kills 20 --redis-restarts 5 --docker-restarts 1 --postgres-restarts 1 --rate 0.4

Runs as root (a Docker engine and a PostgreSQL cluster are started) and brings up everything it uses itself, so
nothing of the machine's is touched: Redis on 127.0.0.1:6397 (append-only file, fsync always, as bin/lib.sh) in
var/chaos/redis; a PostgreSQL cluster on 127.0.0.1:6398 in var/chaos/postgres owned by the system user
shipshape-pg (as bin/postgres.sh); the private Docker engine `chaos` (bin/dockerd-private.sh); the data dir
var/chaos/data; two Celery workers (2 processes each) and beat (the sweep of stuck revisions every 30 s).
Logs: var/chaos/logs. Data and logs are wiped at the next start, the engine's images kept.

The sample course is imported; a thread submits the examples of hello-pinned (lab.yaml `examples:`) through
revision_submit, from --learners accounts in turn (more when the lab's cooldown or revision limit leaves none
free), at --rate per second. Meanwhile the chaos events run one after another, in bounded loops: kill -9 of a worker (main process
and pool) while one of its runs is in its checks, then restart it; Redis stopped (SIGKILL and SIGTERM in turn)
and started on the same append-only file; the Docker engine restarted; `pg_ctl restart -m fast`. A kill waits
(--kill-wait) for a run whose sandbox is up; if none comes, it kills nothing and says so. Then submitting
stops and the script waits (bounded by --drain-seconds) until no revision is queued or running.

Prints: submitted; graded (a final verdict: graded or failed); needs attention (`error`: ours, never scored);
lost (never reached a final state, or acknowledged and not in the database); graded twice (a revision with more
than one run that stored a verdict, or more than one autograde entry in its work's timeline: a verdict
overwritten or announced twice); wrong verdicts (a graded revision whose final run's check statuses differ from
its example's declared expectation); submit-to-graded latency (queued_at to the verdict's results_stored_at),
p50, p95 and worst. Exits 1 if anything was lost, graded twice or wrongly graded.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHAOS = REPO / "var" / "chaos"
DATA = CHAOS / "data"
LOGS = CHAOS / "logs"
REDIS_PORT = 6397
PG_PORT = 6398
PG_USER = "shipshape-pg"  # the cluster's owner when run as root, as bin/postgres.sh
ENGINE = "chaos"
IMAGE = "shipshape-runner:latest"
DOCKERD = REPO / "bin" / "dockerd-private.sh"
LAB_DIR = REPO / "courses" / "content" / "production-systems" / "week-05-containers" / "lab-hello-pinned"
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
DATABASE_URL = f"postgres://shipshape@127.0.0.1:{PG_PORT}/chaos"
DOCKER_HOST = f"unix://{REPO}/var/dockerd/{ENGINE}/docker.sock"
HOST = socket.gethostname()


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# --- the services it owns ---------------------------------------------------------------------------------------


class Redis:
    def __init__(self) -> None:
        self.dir = CHAOS / "redis"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                *("redis-server", "--bind", "127.0.0.1", "--port", str(REDIS_PORT), "--dir", str(self.dir)),
                *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
                *("--daemonize", "no", "--logfile", str(LOGS / "redis.log")),
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        until = time.monotonic() + 30
        while subprocess.run(["redis-cli", "-p", str(REDIS_PORT), "ping"], capture_output=True).stdout != b"PONG\n":
            if self.process.poll() is not None or time.monotonic() > until:
                raise RuntimeError(f"redis-server did not start on 127.0.0.1:{REDIS_PORT} (log: {LOGS}/redis.log)")
            time.sleep(0.1)

    def stop(self, *, hard: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        # SIGTERM flushes the append-only file; SIGKILL relies on `appendfsync always` having written every write.
        self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


class Postgres:
    """A private cluster, started and stopped with pg_ctl as its owner (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        self.dir = CHAOS / "postgres"
        self.data = self.dir / "data"
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
        if not found:
            raise RuntimeError("no PostgreSQL server here; ./bin/test installs it (Debian package postgresql)")
        self.bin = found[-1].parent
        self.started = False

    def _as_owner(self, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", PG_USER, "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *argv], check=True, **kwargs)

    def _pg_ctl(self, *argv: str) -> None:
        self._as_owner(str(self.bin / "pg_ctl"), "-D", str(self.data), *argv, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, PG_USER, PG_USER)
        self.dir.chmod(0o700)
        if not (self.data / "PG_VERSION").is_file():
            with (self.dir / "initdb.log").open("wb") as out:
                self._as_owner(
                    *(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres"),
                    *("--auth-local=trust", "--auth-host=trust", "-E", "UTF8", "--locale=C.UTF-8"),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
        try:
            self._pg_ctl("status")
            running = True
        except subprocess.CalledProcessError:
            running = False
        if not running:  # not left running by an earlier, interrupted run
            options = f"-c listen_addresses=127.0.0.1 -p {PG_PORT} -c unix_socket_directories={self.data}"
            self._pg_ctl("-l", str(self.dir / "postgres.log"), "-w", "-t", "60", "-o", options, "start")
        self.started = True
        # A fresh database each run: the counts below are this run's alone.
        sql = (
            "SET client_min_messages = warning;\n"
            "SELECT 'CREATE ROLE shipshape LOGIN CREATEDB' WHERE NOT EXISTS "
            "(SELECT FROM pg_roles WHERE rolname = 'shipshape')\\gexec\n"
            "DROP DATABASE IF EXISTS chaos WITH (FORCE);\n"
            "CREATE DATABASE chaos OWNER shipshape;\n"
        )
        subprocess.run(
            [
                *(str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"),
                *("-p", str(PG_PORT), "-U", "postgres", "-d", "postgres"),
            ],
            input=sql.encode(),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def restart(self) -> None:
        # -m fast: open connections are cut, as a failover or a crash-restart of the server would cut them.
        self._pg_ctl("-l", str(self.dir / "postgres.log"), "-m", "fast", "-w", "-t", "60", "restart")

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._pg_ctl("-m", "fast", "-w", "stop")
            self.started = False


class Engine:
    """The private Docker engine `chaos`; never the machine's main engine."""

    def __init__(self) -> None:
        self.started = False

    def _script(self, *argv: str, check: bool = True) -> None:
        # Without our DOCKER_HOST: the script copies the image from the main engine, which the plain `docker` finds.
        env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
        subprocess.run([str(DOCKERD), *argv], check=check, stdout=subprocess.DEVNULL, env=env)

    def start(self) -> None:
        self.started = True
        self._script("start", ENGINE, IMAGE)

    def restart(self) -> None:
        self._script("restart", ENGINE)

    def stop(self) -> None:
        if self.started:
            self._script("stop", ENGINE, check=False)
            self.started = False


class Celery:
    """`celery -A config worker` (or beat) in its own session, so kill -9 takes its whole pool at once."""

    def __init__(self, name: str, *argv: str) -> None:
        self.name = name
        self.argv = argv
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.hostname = ""

    def start(self, *, ready: bytes = b" ready.") -> None:
        self.starts += 1
        # Restarted under the same name, as a service manager does: the worker then takes back at its start what
        # its killed process was grading (labs.tasks), instead of leaving it to the sweeper's deadline.
        self.hostname = f"{self.name}@{HOST}"
        log_file = LOGS / f"{self.name}-{self.starts}.log"
        argv = [*self.argv, "-n", self.hostname] if "worker" in self.argv else list(self.argv)
        with log_file.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", *argv],
                cwd=REPO,
                env={**os.environ, "SHIPSHAPE_LOG_LEVEL": "INFO"},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        until = time.monotonic() + 120
        while ready not in log_file.read_bytes():
            if self.process.poll() is not None or time.monotonic() > until:
                raise RuntimeError(f"{self.name} did not start; see {log_file}")
            time.sleep(0.2)

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
            self.process = None
        except subprocess.TimeoutExpired:
            self.kill()


# --- the database, through a restarting PostgreSQL ----------------------------------------------------------------


def db_retry(fn, *, attempts: int = 60):
    """Call fn(); while PostgreSQL restarts the connection breaks: drop it and try again a second later."""
    from django.db import InterfaceError, OperationalError, connection

    for attempt in range(attempts):
        try:
            return fn()
        except (OperationalError, InterfaceError):
            connection.close()
            if attempt == attempts - 1:
                raise
            time.sleep(1)


class SendFailures(logging.Filter):
    """Counts (and keeps off the screen) the uploads whose grading message could not be sent because Redis was
    down: revision_enqueue logs them and carries on; the sweeper re-sends those revisions."""

    count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "on_commit" in record.getMessage():
            SendFailures.count += 1
            return False
        return True


# --- the steady stream of submissions ------------------------------------------------------------------------------


@dataclass
class Stream:
    lab: object
    examples: list[tuple[str, list[tuple[str, bytes]]]]  # (folder, files) per example of lab.yaml
    rate: float
    learners: int
    submitted: dict[int, str] = field(default_factory=dict)  # acknowledged revision id -> example folder
    refused: int = 0
    failed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db import InterfaceError, OperationalError, close_old_connections, connection

        from labs.errors import LearnerError
        from labs.services.submissions import revision_submit

        policy = self.lab.labspec.policy
        cooldown = (policy.cooldown_seconds or 0) + 0.5
        limit = policy.max_revisions or 10**9
        learners: list[list] = []  # [user, revisions submitted, monotonic time of the last]
        n = 0
        while not self.stop.wait(1 / self.rate):
            close_old_connections()
            now = time.monotonic()
            # In turn over --learners accounts (more when the cooldown or the revision limit leaves none free), so
            # a learner held up behind a killed grading delays only their own share of the stream.
            free = [row for row in learners if row[1] < limit and now - row[2] >= cooldown]
            try:
                if len(learners) < self.learners or not free:
                    user = get_user_model().objects.create_user(username=f"chaos-learner-{len(learners) + 1}")
                    learners.append(row := [user, 0, 0.0])
                else:
                    row = min(free, key=lambda row: row[2])
                folder, files = self.examples[n % len(self.examples)]
                revision = revision_submit(lab=self.lab, user=row[0], upload=files)
            except LearnerError:
                self.refused += 1
                continue
            except (OperationalError, InterfaceError):
                # PostgreSQL restarting: this upload was refused with an error page; the learner submits again.
                connection.close()
                self.failed += 1
                continue
            row[1], row[2] = row[1] + 1, time.monotonic()
            self.submitted[revision.pk] = folder
            n += 1


# --- the chaos events ------------------------------------------------------------------------------------------------


def run_in_checks(worker: Celery, engine):
    """A run of `worker` that is in its checks now, or None. Its row alone is not proof: a run whose worker lost
    PostgreSQL mid-grading stays `running` until the sweeper takes it, so its sandbox must be up as well."""
    from labs.models import GradingRun, Revision

    runs = GradingRun.objects.filter(
        worker=worker.hostname,
        outcome=GradingRun.Outcome.RUNNING,
        phase__in=[GradingRun.Phase.SANDBOX_READY, GradingRun.Phase.CHECKS],
        revision__state=Revision.State.RUNNING,
    ).order_by("-started_at")
    for run in runs[:4]:
        with contextlib.suppress(Exception):  # the engine may be restarting
            if engine.containers.list(filters={"label": f"shipshape.run={run.pk}", "status": "running"}):
                return run
    return None


def kill_mid_grading(workers: list[Celery], *, wait_s: float = 90) -> bool:
    """kill -9 a worker (main process and pool) while one of its runs is in its checks; restart it. True when the
    killed run had not finished (re-read after the kill)."""
    import docker

    from labs.models import GradingRun

    engine = docker.DockerClient(base_url=DOCKER_HOST, timeout=10)
    until = time.monotonic() + wait_s
    while time.monotonic() < until:
        for worker in random.sample(workers, len(workers)):
            run = db_retry(lambda w=worker: run_in_checks(w, engine))
            if run is None:
                continue
            worker.kill()
            landed = db_retry(lambda r=run: GradingRun.objects.get(pk=r.pk).outcome == GradingRun.Outcome.RUNNING)
            log(f"  killed {worker.hostname} during run {run.pk} (revision {run.revision_id}); unfinished: {landed}")
            worker.start()
            engine.close()
            return landed
        time.sleep(0.2)
    engine.close()
    log("  no run in flight within the wait; killed nothing")
    return False


def event_plan(args: argparse.Namespace) -> list[str]:
    """The kills, with the restarts spread evenly between them."""
    others = ["redis"] * args.redis_restarts + ["docker"] * args.docker_restarts
    others += ["postgres"] * args.postgres_restarts
    random.Random(7).shuffle(others)
    plan = ["kill"] * args.kills
    for i, event in enumerate(others):
        plan.insert(round((i + 1) * len(plan) / (len(others) + 1)), event)
    return plan


# --- the figures ------------------------------------------------------------------------------------------------------


def figures(stream: Stream, expected: dict[str, set[str]]) -> dict:
    from labs.models import CheckResult, GradingRun, Revision, WorkEvent

    S, Out, K = Revision.State, GradingRun.Outcome, WorkEvent.Kind
    learner_revisions = Revision.objects.filter(lab=stream.lab, user__username__startswith="chaos-learner-")
    revisions = {r.pk: r for r in learner_revisions}
    missing = [pk for pk in stream.submitted if pk not in revisions]
    unacknowledged = [pk for pk in revisions if pk not in stream.submitted]
    runs: dict[int, list] = {}
    for run in GradingRun.objects.filter(revision__in=revisions.values()).order_by("attempt"):
        runs.setdefault(run.revision_id, []).append(run)
    grade_kinds = [K.AUTOGRADED, K.BELOW_THRESHOLD, K.AWAITING_REVIEW]
    events: dict[int, int] = {}
    for revision_id in WorkEvent.objects.filter(revision__in=revisions.values(), kind__in=grade_kinds).values_list(
        "revision_id", flat=True
    ):
        events[revision_id] = events.get(revision_id, 0) + 1
    graded, attention, lost, twice, wrong, latencies, attempts = [], [], list(missing), [], [], [], {}
    first_run: list[float] = []  # revisions graded by their first run (only waiting, if anything, delayed them)
    for pk, revision in revisions.items():
        mine = runs.get(pk, [])
        attempts[len(mine)] = attempts.get(len(mine), 0) + 1
        verdict_runs = [run for run in mine if run.outcome in (Out.GRADED, Out.FAILED)]
        if len(verdict_runs) > 1 or events.get(pk, 0) > 1:
            twice.append(pk)
        if revision.state in (S.QUEUED, S.RUNNING):
            lost.append(pk)
            continue
        if revision.state == S.ERROR:
            attention.append(pk)
            continue
        graded.append(pk)
        run = verdict_runs[-1] if verdict_runs else None
        if run is None or run.results_stored_at is None:
            wrong.append((pk, "graded without a run that stored its verdict"))
            continue
        latencies.append((run.results_stored_at - revision.queued_at).total_seconds())
        if len(mine) == 1:
            first_run.append(latencies[-1])
        folder = stream.submitted.get(pk) or _folder_of(revision, stream)
        statuses = dict(CheckResult.objects.filter(run=run).values_list("check_id", "status"))
        want = {check.id: "fail" if check.id in expected[folder] else "pass" for check in stream.lab.labspec.checks}
        if revision.state != S.GRADED or statuses != want:
            wrong.append((pk, f"{folder}: {revision.state} {statuses}, expected graded {want}"))
    return {
        "revisions": revisions,
        "missing": missing,
        "unacknowledged": unacknowledged,
        "graded": graded,
        "attention": attention,
        "lost": lost,
        "twice": twice,
        "wrong": wrong,
        "latencies": latencies,
        "first_run": first_run,
        "attempts": attempts,
        "abandoned": GradingRun.objects.filter(revision__in=revisions.values(), outcome=Out.ABANDONED).count(),
        "errored_runs": GradingRun.objects.filter(revision__in=revisions.values(), outcome=Out.ERROR).count(),
    }


def _folder_of(revision, stream: Stream) -> str:
    """The example a revision stored without acknowledgement holds (matched by its content)."""
    from labs.storage import tree_materialize

    stored = {p.name: p.read_bytes() for p in tree_materialize(tree_sha256=revision.tree_sha256).iterdir()}
    return next(folder for folder, files in stream.examples if dict(files) == stored)


# --- the run -------------------------------------------------------------------------------------------------------------


def _interrupted(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--redis-restarts", type=int, default=5)
    parser.add_argument("--docker-restarts", type=int, default=1)
    parser.add_argument("--postgres-restarts", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0.4, help="submissions per second (default 0.4)")
    parser.add_argument("--learners", type=int, default=30, help="learner accounts submitting in turn (default 30)")
    parser.add_argument(
        "--kill-wait", type=float, default=300, help="how long a kill waits for a run in its checks (default 300)"
    )
    parser.add_argument("--gap", type=float, default=8, help="seconds between two events (default 8)")
    parser.add_argument("--redis-down", type=float, default=3, help="seconds Redis stays down (default 3)")
    parser.add_argument("--drain-seconds", type=float, default=900, help="bound on the final wait (default 900)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 kills, 1 restart of each kind")
    args = parser.parse_args()
    if args.quick:
        args.kills, args.redis_restarts, args.docker_restarts, args.postgres_restarts = 2, 1, 1, 1
    if os.geteuid() != 0:
        raise SystemExit("bench/chaos.py starts a Docker engine and a PostgreSQL cluster: run it as root")

    for path in (DATA, LOGS, CHAOS / "redis"):
        shutil.rmtree(path, ignore_errors=True)
    LOGS.mkdir(parents=True)
    DATA.mkdir(parents=True)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    os.environ.update(
        SHIPSHAPE_DEV="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        SHIPSHAPE_DATA_DIR=str(DATA),
        DATABASE_URL=DATABASE_URL,
        REDIS_URL=REDIS_URL,
        SHIPSHAPE_CACHE_URL=REDIS_URL,
        DOCKER_HOST=DOCKER_HOST,
        SHIPSHAPE_RUNNER_IMAGE=IMAGE,
        SHIPSHAPE_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    sys.path.insert(0, str(REPO))
    # Ctrl-C and SIGTERM both end in the `finally` below, which stops everything this script started.
    signal.signal(signal.SIGTERM, _interrupted)

    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    redis, postgres, engine = Redis(), Postgres(), Engine()
    queues = "celery,grading-long,regrades"
    workers = [Celery(f"chaos{i}", "worker", "--pool", "prefork", "--concurrency", "2", "-Q", queues) for i in (1, 2)]
    for worker in workers:
        worker.argv += ("--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO")
    beat = Celery("beat", "beat", "-l", "INFO", "-s", str(CHAOS / "data" / "celerybeat-schedule"))
    beat.argv += ("--pidfile", str(CHAOS / "data" / "celerybeat.pid"))
    stream: Stream | None = None
    thread: threading.Thread | None = None
    counts = {"kill": 0, "landed": 0, "redis": 0, "docker": 0, "postgres": 0}
    started = time.monotonic()
    try:
        log("starting Redis, PostgreSQL and the private Docker engine `chaos`")
        redis.start()
        postgres.start()
        engine.start()
        import django

        django.setup()
        logging.getLogger("django.db.backends.base").addFilter(SendFailures())
        from django.core.management import call_command

        from courses.services.importing import course_import
        from labs.models import Lab, Revision

        call_command("migrate", verbosity=0)
        course_import(path=REPO / "courses" / "content" / "production-systems")
        lab = Lab.objects.get(course__slug="production-systems", slug="hello-pinned")
        examples, expected = [], {}
        for example in lab.labspec.examples:
            folder = LAB_DIR / example.folder
            files = [(p.relative_to(folder).as_posix(), p.read_bytes()) for p in sorted(folder.rglob("*"))]
            examples.append((example.folder, [f for f in files if (folder / f[0]).is_file()]))
            expected[example.folder] = set(example.expect_fail)
        log("starting 2 workers (2 processes each) and beat")
        for worker in workers:
            worker.start()
        beat.start(ready=b"beat: Starting")

        stream = Stream(lab=lab, examples=examples, rate=args.rate, learners=args.learners)
        thread = threading.Thread(target=stream.run, name="submissions", daemon=True)
        thread.start()
        plan = event_plan(args)
        log(f"submitting {args.rate}/s; events: {' '.join(plan)}")
        time.sleep(args.gap)
        for number, event in enumerate(plan, 1):
            log(f"event {number}/{len(plan)}: {event} ({len(stream.submitted)} submitted so far)")
            if event == "kill":
                counts["landed"] += kill_mid_grading(workers, wait_s=args.kill_wait)
            elif event == "redis":
                redis.stop(hard=counts["redis"] % 2 == 0)
                time.sleep(args.redis_down)
                redis.start()
            elif event == "docker":
                engine.restart()
            elif event == "postgres":
                postgres.restart()
            counts[event] += 1
            time.sleep(args.gap)
        stream.stop.set()
        thread.join(timeout=60)
        log(f"submissions stopped ({len(stream.submitted)}); waiting for every grading to finish")

        unfinished = Revision.objects.filter(lab=lab, state__in=[Revision.State.QUEUED, Revision.State.RUNNING])
        until = time.monotonic() + args.drain_seconds
        drained_at = None
        while time.monotonic() < until:
            left = db_retry(unfinished.count)
            if left == 0:
                drained_at = time.monotonic()
                break
            time.sleep(2)
        log("drained" if drained_at else f"drain bound of {args.drain_seconds:.0f} s reached")

        f = figures(stream, expected)
        lat = f["latencies"]
        print()
        print(f"machine: {os.cpu_count()} cores, load average {load_before} before, ", end="")
        print(" ".join(f"{x:.2f}" for x in os.getloadavg()) + " after")
        print(f"wall time: {time.monotonic() - started:.0f} s; rate {args.rate}/s; events: ", end="")
        print(
            f"{counts['kill']} worker kills ({counts['landed']} mid-grading), {counts['redis']} Redis, "
            f"{counts['docker']} Docker, {counts['postgres']} PostgreSQL restarts"
        )
        print(
            f"submitted: {len(stream.submitted)} acknowledged (+{len(f['unacknowledged'])} stored unacknowledged; "
            f"{stream.failed} refused with an error while PostgreSQL restarted, {stream.refused} by the lab's policy)"
        )
        print(f"grading messages not sent (Redis down; the sweeper re-sent them): {SendFailures.count}")
        print(f"graded: {len(f['graded'])}   needs attention (ours): {len(f['attention'])}")
        print(f"lost: {len(f['lost'])} {f['lost'][:20]}   graded twice: {len(f['twice'])} {f['twice'][:20]}")
        print(f"wrong verdicts: {len(f['wrong'])}")
        for pk, why in f["wrong"][:10]:
            print(f"  revision {pk}: {why}")
        attempts = ", ".join(f"{n} run(s): {c}" for n, c in sorted(f["attempts"].items()))
        print(f"runs per revision: {attempts}; abandoned runs {f['abandoned']}, runs ended in our error ", end="")
        print(f"{f['errored_runs']}")
        if lat:
            print(
                f"submit-to-graded latency: p50 {statistics.median(lat):.1f} s, p95 {pct(lat, 0.95):.1f} s, "
                f"worst {max(lat):.1f} s"
            )
        if f["first_run"]:
            one = f["first_run"]
            print(
                f"  of which graded by their first run ({len(one)}): p50 {statistics.median(one):.1f} s, "
                f"p95 {pct(one, 0.95):.1f} s, worst {max(one):.1f} s"
            )
        bad = bool(f["lost"] or f["twice"] or f["wrong"])
        print("RESULT:", "FAIL" if bad else "ok (0 lost, 0 graded twice, 0 wrong verdicts)")
        return 1 if bad else 0
    finally:
        if stream is not None:
            stream.stop.set()
        if thread is not None:
            thread.join(timeout=30)
        for process in (beat, *workers):
            process.stop()
        engine.stop()
        redis.stop()
        postgres.stop()
        log(f"stopped everything it started; logs in {LOGS}")


if __name__ == "__main__":
    sys.exit(main())
