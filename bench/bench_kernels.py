"""Code cells on sandboxed kernels (issue 14): how long a Run takes as the page sees it, and how many idle kernels
one host holds.

    SHIPSHAPE_DEV=1 uv run --frozen python bench/bench_kernels.py [--runs 50] [--cold 10] [--kernels 40] [--wave 4]

Everything is the script's own: a temporary data dir with a SQLite database (migrated, one course whose lessons have
a runnable cell), a private redis-server on a free loopback port, and a real `manage.py kernel_manager` subprocess
on the real Docker engine (kernels in the runner image, grading limits, no network). The web runs in-process: a
logged-in django.test.Client with CSRF enforced goes through the real middleware, POSTs /kernels/lessons/<id>/cells/
0/run and polls /kernels/executions/<id>/?after=N on the page's schedule (kernels/static/kernels/cells.js: first poll
after 60 ms, then x1.5 per empty answer up to 500 ms, back to 60 ms when items arrive).

Figures (targets beside them):
1. Warm cell: --runs runs of `x = x + 1 if 'x' in dir() else 1; x` on one warm kernel; p50/p95/max from the POST to
   the poll answer holding the "done" item (the page's view; target p95 < 300 ms) and from the POST to the "done"
   item appearing in Redis, polled every 5 ms by a thread (the manager's delivery): the difference is the polling.
2. Cold kernel: --cold restarts (POST restart until its "done") and --cold first runs on pages without a kernel
   (the kernel starts, then runs the cell; each is stopped after): p50/p95/max (target < 3 s).
3. Idle kernels: --kernels learners, each on a page of their own, run `import numpy; x = 1` (--wave at a time) and
   leave their kernel idle. Then: each kernel container's memory (its cgroup), the host's MemAvailable before and
   after, the CPU the idle kernels use, and the warm-cell figures again while they idle. The number one host holds is
   printed twice: measured (what was started and held) and estimated (memory arithmetic, not measured). Kernels stop
   being started when MemAvailable falls under 1 GiB.

The kernels run on a private Docker engine (bin/dockerd-private.sh, named bench-kernels; the runner image is copied
into it once and its data-root under var/dockerd/ is kept for the next run), so that nothing else on a shared
machine's main engine can remove its kernels (a kernel-test teardown that removed every kernel container did, before
d83d16f) and the engine's work is the benchmark's own; --main-engine uses the main engine instead.

Cleanup, always: the manager is stopped with SIGTERM (it removes its kernels), then any container still carrying
this run's kernel label is removed, Redis is stopped, the temporary folders deleted and the private engine stopped.
"""

# ruff: noqa: E402 - the project's modules load after benchenv has configured Django
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
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
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERD = REPO_ROOT / "bin" / "dockerd-private.sh"
ENGINE = "bench-kernels"
MAIN_ENGINE = "--main-engine" in sys.argv

# Kernel sockets live under this folder and AF_UNIX paths are short: keep it short. Set before Django is.
KERNELS_DIR = Path("/tmp") / f"skb-{secrets.token_hex(3)}"
os.environ["SHIPSHAPE_KERNELS_DIR"] = str(KERNELS_DIR)
# One learner runs every warm and cold cell here, far past the per-learner throttle meant for people (60 a minute):
# lift it, and the per-page queue stays as shipped.
os.environ["SHIPSHAPE_THROTTLE_CODE_RUNS"] = "1000000"
if not MAIN_ENGINE:
    # A private engine: on a shared machine other runs on the main engine could remove this run's kernels.
    _image = os.environ.get("SHIPSHAPE_RUNNER_IMAGE", "shipshape-runner:latest")
    _started = subprocess.run(
        [str(DOCKERD), "start", ENGINE, _image], check=True, capture_output=True, text=True, timeout=900
    )
    os.environ["DOCKER_HOST"] = _started.stdout.strip().splitlines()[-1]

import docker
from benchenv import DATA, REDIS_PORT, cleanup
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from courses.models import Course, Lesson, Unit
from kernels import protocol
from kernels.manager import owner_label
from kernels.sandbox import KERNEL_LABEL
from tests.conftest import RedisServer
from tests.kernels.conftest import KernelManagerProcess

# The page's polling schedule (kernels/static/kernels/cells.js).
FIRST_DELAY = 0.060
MAX_DELAY = 0.500
BACKOFF = 1.5
TIGHT_POLL = 0.005

WARM_CODE = "x = x + 1 if 'x' in dir() else 1; x"
IDLE_CODE = "import numpy; x = 1"
MEM_FLOOR = 1 << 30  # stop starting kernels under 1 GiB available
WARM_TARGET_MS = 300
COLD_TARGET_MS = 3000
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory/docker")
CGROUP_CPU = Path("/sys/fs/cgroup/cpuacct/docker")


# --- measuring ------------------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summary(values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return f"p50 {statistics.median(ms):7.1f} ms   p95 {pct(ms, 0.95):7.1f} ms   max {max(ms):7.1f} ms"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def docker_version() -> str:
    with contextlib.suppress(Exception):
        return "Docker " + docker.DockerClient(base_url=settings.DOCKER_HOST, timeout=10).version()["Version"]
    return "Docker version unknown"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


class DoneWatcher(threading.Thread):
    """The manager's delivery: when the "done" item appears in Redis, read every 5 ms on a connection of its own."""

    def __init__(self, execution_id: str, deadline_s: float) -> None:
        super().__init__(daemon=True)
        self.execution_id = execution_id
        self.deadline = time.perf_counter() + deadline_s
        self.at: float | None = None

    def run(self) -> None:
        client = protocol.redis_client()
        try:
            while time.perf_counter() < self.deadline:
                if protocol.execution_answered(client=client, execution_id=self.execution_id):
                    self.at = time.perf_counter()
                    return
                time.sleep(TIGHT_POLL)
        finally:
            client.close()


@dataclass
class Run:
    page_s: float  # POST to the poll answer holding "done"
    manager_s: float | None  # POST to "done" in Redis
    post_s: float  # the POST's own answer
    polls: int
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> dict[str, Any]:
        return self.items[-1]


class Learner:
    """A logged-in browser: a session cookie, the CSRF cookie the lesson page sets, the header cells.js sends."""

    def __init__(self, user, lesson: Lesson) -> None:
        self.user = user
        self.client = Client(enforce_csrf_checks=True)
        self.client.force_login(user)
        page = self.client.get(lesson_url(lesson))
        if page.status_code != 200 or "csrftoken" not in self.client.cookies:
            raise RuntimeError(f"the lesson page answered {page.status_code} without a CSRF cookie")
        self.csrf = self.client.cookies["csrftoken"].value

    def post(self, url: str, body: dict[str, Any] | None = None):
        return self.client.post(
            url, data=json.dumps(body or {}), content_type="application/json", headers={"X-CSRFToken": self.csrf}
        )

    def start(self, url: str, body: dict[str, Any] | None = None) -> tuple[float, str, str, float]:
        """POST a run or a restart: (when it was sent, execution id, poll URL, the POST's own time)."""
        started = time.perf_counter()
        answer = self.post(url, body)
        posted = time.perf_counter() - started
        if answer.status_code != 202:
            raise RuntimeError(f"POST {url} answered {answer.status_code}: {answer.content[:300]!r}")
        data = answer.json()
        return started, data["execution"], data["poll"], posted

    def follow(self, poll: str, started: float, *, timeout_s: float = 120) -> tuple[float, list[dict[str, Any]], int]:
        """Poll as cells.js does until "done": (POST to done, the items, the number of polls)."""
        items: list[dict[str, Any]] = []
        after, delay, polls = 0, FIRST_DELAY, 0
        time.sleep(FIRST_DELAY)
        while time.perf_counter() - started < timeout_s:
            answer = self.client.get(poll, {"after": str(after)})
            polls += 1
            if answer.status_code != 200:
                raise RuntimeError(f"GET {poll} answered {answer.status_code}: {answer.content[:300]!r}")
            data = answer.json()
            items.extend(data["items"])
            after = data["next"]
            if data["done"]:
                return time.perf_counter() - started, items, polls
            delay = FIRST_DELAY if data["items"] else min(MAX_DELAY, delay * BACKOFF)
            time.sleep(delay)
        raise RuntimeError(f"no done item within {timeout_s} s: {items}")

    def run(self, url: str, body: dict[str, Any] | None = None, *, expect: str = "ok") -> Run:
        started, execution_id, poll, posted = self.start(url, body)
        watcher = DoneWatcher(execution_id, deadline_s=120)
        watcher.start()
        page_s, items, polls = self.follow(poll, started)
        watcher.join(timeout=5)
        manager_s = watcher.at - started if watcher.at is not None else None
        result = Run(page_s=page_s, manager_s=manager_s, post_s=posted, polls=polls, items=items)
        if result.done.get("status") != expect:
            raise RuntimeError(f"{url}: expected a done item with status {expect}, got {result.done}")
        return result


def lesson_url(lesson: Lesson) -> str:
    return f"/courses/{lesson.course.slug}/{lesson.unit.slug}/{lesson.slug}/"


def run_url(lesson: Lesson) -> str:
    return f"/kernels/lessons/{lesson.id}/cells/0/run"


# --- the fixture: course, learners, manager ---------------------------------------------------------------------------


def lessons_create(count: int) -> list[Lesson]:
    course = Course.objects.create(
        slug="bench-kernels", title="Kernel benchmark", content_version="bench-1", imported_at=timezone.now()
    )
    unit = Unit.objects.create(course=course, slug="week-01", title="Week 1", position=1)
    cell = {"index": 0, "language": "python", "code": WARM_CODE, "check": ""}
    Lesson.objects.bulk_create(
        Lesson(
            course=course,
            unit=unit,
            slug=f"lesson-{n:03d}",
            position=n,
            title=f"Cells {n}",
            source_path=f"week-01/{n:03d}.md",
            content_hash=str(n),
            html=f'<div class="code-cell" id="code-cell-0" data-code-cell="0"><pre><code>{WARM_CODE}</code></pre></div>',
            code_cells=[cell],
        )
        for n in range(1, count + 1)
    )
    return list(Lesson.objects.select_related("course", "unit").order_by("position"))


def my_containers(api: docker.DockerClient) -> list:
    """This run's kernel containers only: other runs on the same engine (tests, ./bin/run) carry other owners."""
    owner = owner_label(host=socket.gethostname())
    return api.containers.list(all=True, filters={"label": f"{KERNEL_LABEL}={owner}"})


def manager_stop(manager: KernelManagerProcess, timeout_s: float = 300) -> None:
    """SIGTERM: the manager removes its kernels one by one, which takes a while with many."""
    if manager.process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(manager.process.pid, signal.SIGTERM)
    try:
        manager.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        print(f"the manager did not stop within {timeout_s:.0f} s; killed")
        manager.kill()
    manager.process = None


def manager_rss(manager: KernelManagerProcess) -> int:
    if manager.process is None:
        return 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{manager.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def start_seconds(manager: KernelManagerProcess) -> list[float]:
    """The manager's own "kernel … started … in X s" lines: container created to kernel answering."""
    return [float(m) for m in re.findall(r"kernel \w+ started for user \d+ lesson \d+ in ([0-9.]+) s", manager.log())]


# --- the three parts ------------------------------------------------------------------------------------------------


def warm_runs(learner: Learner, lesson: Lesson, n: int) -> list[Run]:
    runs = []
    for _ in range(n):
        run = learner.run(run_url(lesson), {"code": WARM_CODE})
        if not any(item.get("type") == "text" for item in run.items):
            raise RuntimeError(f"the warm cell showed no value: {run.items}")
        runs.append(run)
    return runs


def warm_report(title: str, runs: list[Run]) -> float:
    page = [r.page_s for r in runs]
    managed = [r.manager_s for r in runs if r.manager_s is not None]
    p95 = pct(page, 0.95) * 1000
    verdict = "met" if p95 < WARM_TARGET_MS else "NOT met"
    print(f"{title} ({len(runs)} runs)")
    print(f"  as the page sees it  {summary(page)}   target p95 < {WARM_TARGET_MS} ms: {verdict}")
    print(f"  manager delivery     {summary(managed)}   (done item in Redis, read every 5 ms)")
    polling = [r.page_s - r.manager_s for r in runs if r.manager_s is not None]
    print(
        f"  polling cost         p50 {statistics.median(polling) * 1000:7.1f} ms   "
        f"polls per run p50 {statistics.median(r.polls for r in runs):.0f}   "
        f"POST answer p50 {statistics.median(r.post_s for r in runs) * 1000:.1f} ms"
    )
    return p95


def cold_runs(learner: Learner, warm_lesson: Lesson, fresh: list[Lesson]) -> tuple[list[Run], list[Run]]:
    restarts = []
    for _ in fresh:
        restarts.append(learner.run(f"/kernels/lessons/{warm_lesson.id}/restart"))
    firsts = []
    for lesson in fresh:
        firsts.append(learner.run(run_url(lesson), {"code": WARM_CODE}))
        # Stopped at once, so the learner stays under the per-learner cap and the host keeps one warm kernel.
        answer = learner.post(f"/kernels/lessons/{lesson.id}/stop")
        if answer.status_code != 202:
            raise RuntimeError(f"stop answered {answer.status_code}")
        deadline = time.monotonic() + 60
        while learner.client.get(f"/kernels/lessons/{lesson.id}/").json()["kernel"]["state"] not in ("gone", "none"):
            if time.monotonic() > deadline:
                raise RuntimeError("a stopped kernel did not go")
            time.sleep(0.1)
    return restarts, firsts


def cold_report(restarts: list[Run], firsts: list[Run]) -> float:
    worst = 0.0
    for title, runs in (("restart (POST restart to its done)", restarts), ("first run on a new page", firsts)):
        page = [r.page_s for r in runs]
        managed = [r.manager_s for r in runs if r.manager_s is not None]
        p95 = pct(page, 0.95) * 1000
        worst = max(worst, p95)
        verdict = "met" if p95 < COLD_TARGET_MS else "NOT met"
        print(f"  {title} ({len(runs)})")
        print(f"    as the page sees it  {summary(page)}   target < {COLD_TARGET_MS / 1000:.0f} s at p95: {verdict}")
        print(f"    manager delivery     {summary(managed)}")
    return worst


def container_memory(container_id: str) -> dict[str, int] | None:
    """The container's cgroup (v1): usage, working set (usage minus inactive file cache, what `docker stats`
    shows) and RSS. None when the files are not readable."""
    folder = CGROUP_MEMORY / container_id
    try:
        usage = int((folder / "memory.usage_in_bytes").read_text())
        stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
    except (OSError, ValueError):
        return None
    inactive = int(stat.get("total_inactive_file", 0))
    return {"usage": usage, "working": max(0, usage - inactive), "rss": int(stat.get("total_rss", 0))}


def docker_stats_memory(container) -> int:
    stats = container.stats(stream=False)["memory_stats"]
    return int(stats.get("usage", 0)) - int(stats.get("stats", {}).get("total_inactive_file", 0))


def cpu_ns(container_ids: list[str]) -> int | None:
    total = 0
    for cid in container_ids:
        try:
            total += int((CGROUP_CPU / cid / "cpuacct.usage").read_text())
        except (OSError, ValueError):
            return None
    return total


def idle_part(args, manager: KernelManagerProcess, learner: Learner, warm_lesson: Lesson, lessons: list[Lesson]):
    User = get_user_model()
    api = docker.DockerClient(base_url=settings.DOCKER_HOST, timeout=60)
    before_containers = len(my_containers(api))
    rss_before = manager_rss(manager)
    available_start = mem_available()
    started_at = time.monotonic()
    learners = []
    stopped_reason = None
    first_runs: list[float] = []
    for i, lesson in enumerate(lessons):
        learners.append((Learner(User.objects.create_user(username=f"idle-{i:03d}"), lesson), lesson))
    pending = list(learners)
    held = 0
    while pending:
        if mem_available() < MEM_FLOOR:
            stopped_reason = f"MemAvailable {gib(mem_available())} < 1 GiB after {held} kernels"
            break
        wave, pending = pending[: args.wave], pending[args.wave :]
        started = [(who, who.start(run_url(lesson), {"code": IDLE_CODE})) for who, lesson in wave]
        for who, (t0, _execution_id, poll, _posted) in started:
            seconds, items, _polls = who.follow(poll, t0)
            if items[-1].get("status") != "ok":
                raise RuntimeError(f"an idle kernel's first run ended {items[-1]}")
            first_runs.append(seconds)
            held += 1
    print(
        f"  started {held} kernels in waves of {args.wave} in {time.monotonic() - started_at:.0f} s; first run "
        f"(start + import numpy) {summary(first_runs)}"
    )
    if stopped_reason:
        print(f"  stopped starting kernels: {stopped_reason}")
    time.sleep(args.settle)
    containers = my_containers(api)
    idle_ids = [c.id for c in containers]
    available_after = mem_available()
    memories = [m for m in (container_memory(cid) for cid in idle_ids) if m is not None]
    cpu_start, cpu_clock = cpu_ns(idle_ids), time.monotonic()
    time.sleep(10)
    cpu_end, cpu_elapsed = cpu_ns(idle_ids), time.monotonic() - cpu_clock
    stats_sample = [docker_stats_memory(c) for c in containers[:3]]
    rss_after = manager_rss(manager)
    print(f"  kernel containers of this run: {len(containers)} (before the idle part: {before_containers})")
    per_kernel_cgroup = None
    if memories:
        working = [m["working"] for m in memories]
        per_kernel_cgroup = statistics.median(working)
        print(
            f"  per kernel (cgroup, {len(memories)} containers): working set median {mib(per_kernel_cgroup)}, "
            f"max {mib(max(working))}; usage median {mib(statistics.median(m['usage'] for m in memories))}; "
            f"RSS median {mib(statistics.median(m['rss'] for m in memories))}"
        )
    else:
        print("  per kernel (cgroup): the cgroup files are not readable here")
    print(f"  per kernel (docker stats, {len(stats_sample)} containers): {', '.join(mib(s) for s in stats_sample)}")
    delta = available_start - available_after
    per_kernel_host = delta / held if held else 0
    print(
        f"  host MemAvailable {gib(available_start)} before, {gib(available_after)} after: {mib(delta)} for {held} "
        f"kernels = {mib(per_kernel_host)} per kernel (container, its shim, the manager's side; other work on the "
        "machine moves this too)"
    )
    print(f"  kernel manager RSS {mib(rss_before)} -> {mib(rss_after)}")
    if cpu_start is not None and cpu_end is not None:
        share = (cpu_end - cpu_start) / 1e9 / cpu_elapsed
        print(f"  CPU of the {len(idle_ids)} idle kernels over {cpu_elapsed:.0f} s: {share * 100:.2f} % of one core")
    print(f"  load average now {load()}")
    runs = warm_runs(learner, warm_lesson, args.runs)
    warm_p95 = warm_report(f"  warm cell while {held} kernels idle", runs)
    per_kernel = max(per_kernel_host, per_kernel_cgroup or 0)
    print(f"  MEASURED: this host held {held} idle kernels at once (all that were started) plus the warm one")
    if per_kernel > 0:
        estimate = int(available_start / per_kernel)
        limit = settings.KERNEL_MEMORY_MB << 20
        print(
            f"  ESTIMATE (not measured): MemAvailable at the start {gib(available_start)} / {mib(per_kernel)} per idle "
            f"kernel = {estimate} idle kernels on this host ({(1 << 30) / per_kernel:.1f} per GiB); if every kernel "
            f"filled its {settings.KERNEL_MEMORY_MB} MB limit: {int(available_start / limit)}"
        )
    return held, warm_p95


# --- main -----------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="warm-cell runs (default 50)")
    parser.add_argument("--cold", type=int, default=10, help="restarts and first runs (default 10 each)")
    parser.add_argument("--kernels", type=int, default=40, help="idle kernels to start (default 40; 0 skips)")
    parser.add_argument("--wave", type=int, default=4, help="idle kernels started at once (default 4)")
    parser.add_argument("--settle", type=float, default=10, help="seconds to wait before measuring idle kernels")
    parser.add_argument(
        "--main-engine", action="store_true", help="use the machine's Docker engine, not a private one (bench-kernels)"
    )
    args = parser.parse_args()
    load_start = load()
    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}, {gib(mem_available())} available, load average {load_start}"
    )
    engine = "the main engine" if MAIN_ENGINE else f"a private engine ({ENGINE})"
    print(f"Docker: {engine} at {settings.DOCKER_HOST}, {docker_version()}")
    call_command("migrate", verbosity=0)
    lessons = lessons_create(1 + args.cold + args.kernels)
    warm_lesson, cold_lessons, idle_lessons = lessons[0], lessons[1 : 1 + args.cold], lessons[1 + args.cold :]
    redis_server = RedisServer(data_dir=DATA / "redis", port=REDIS_PORT)
    manager = KernelManagerProcess(redis_url=f"redis://127.0.0.1:{REDIS_PORT}/0", log_dir=DATA, kernels_dir=KERNELS_DIR)
    api = docker.DockerClient(base_url=settings.DOCKER_HOST, timeout=60)
    results: dict[str, Any] = {}
    try:
        redis_server.start()
        # Room for the idle part, the warm kernel and one cold page at a time.
        manager.start(KERNELS_PER_HOST=args.kernels + 5, LOG_LEVEL="INFO")
        print(
            f"kernel manager: up to {args.kernels + 5} kernels; kernel limits {settings.KERNEL_MEMORY_MB} MB, "
            f"{settings.KERNEL_CPUS:g} CPU, {settings.KERNEL_PIDS} processes; image {settings.RUNNER_IMAGE}"
        )
        learner = Learner(get_user_model().objects.create_user(username="bench"), warm_lesson)
        first = learner.run(run_url(warm_lesson), {"code": WARM_CODE})
        print(f"first run on the warm page (kernel start included): {first.page_s * 1000:.0f} ms")
        results["warm_p95"] = warm_report("1. warm cell", warm_runs(learner, warm_lesson, args.runs))
        print("2. cold kernel")
        results["cold_p95"] = cold_report(*cold_runs(learner, warm_lesson, cold_lessons))
        starts = start_seconds(manager)
        if starts:
            print(
                f"  the manager's kernel start (container to kernel ready): p50 {statistics.median(starts):.2f} s, "
                f"max {max(starts):.2f} s over {len(starts)} starts"
            )
        if args.kernels:
            print(f"3. idle kernels ({args.kernels} learners, one page each)")
            results["held"], results["idle_warm_p95"] = idle_part(args, manager, learner, warm_lesson, idle_lessons)
    except BaseException:
        print(f"the kernel manager's log, its end:\n{manager.log()[-4000:]}")
        raise
    finally:
        manager_stop(manager)
        left = my_containers(api)
        for container in left:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        if left:
            print(f"removed {len(left)} kernel containers the manager left")
        redis_server.stop()
        shutil.rmtree(KERNELS_DIR, ignore_errors=True)
        cleanup()
        if not MAIN_ENGINE:
            # Its data-root (var/dockerd/bench-kernels/) stays, so the next run need not copy the image again.
            subprocess.run([str(DOCKERD), "stop", ENGINE], check=False, timeout=600)
    print(f"load average at the start {load_start}, at the end {load()}")


if __name__ == "__main__":
    main()
