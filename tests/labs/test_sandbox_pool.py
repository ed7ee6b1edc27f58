"""The warm pool of pre-started sandboxes (labs/sandbox/pool.py) and the agents inside them."""

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from labs.sandbox import Sandbox, SandboxLimits
from labs.sandbox.pool import POOL_LABEL, SandboxPool, pool_start, pool_stop, process_pool
from labs.sandbox.reaper import containers_reap
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.docker]
LIMITS = SandboxLimits(memory_mb=64, wall_seconds=30, pids=16, output_bytes=1000, scratch_mb=2, cpus=0.5)
OTHER_LIMITS = SandboxLimits(memory_mb=96, wall_seconds=30, pids=16, output_bytes=1000, scratch_mb=2, cpus=0.5)
LABELS = {"shipshape.db": "pool-test"}
DOCKERD_PRIVATE = REPO_ROOT / "bin" / "dockerd-private.sh"


def _pool(size: int = 2, limits: SandboxLimits = LIMITS) -> SandboxPool:
    pool = pool_start(size=size, default_limits=limits, labels=LABELS)
    assert pool is not None and process_pool() is pool
    assert pool.fill(timeout=120), pool.stats
    return pool


@pytest.fixture
def pool(runner_image) -> Iterator[SandboxPool]:
    pool = _pool()
    yield pool
    pool_stop()


def _pool_containers(client, owner: str) -> list:
    # The low-level list: the high-level one inspects each container, and one removed meanwhile raises NotFound.
    return client.api.containers(all=True, filters={"label": f"{POOL_LABEL}={owner}"})


def _exists(client, container_id: str) -> bool:
    return bool(client.api.containers(all=True, filters={"id": container_id}))


def _host(client, container_id: str) -> dict:
    host = dict(client.api.inspect_container(container_id)["HostConfig"])
    tmpfs = dict(host.pop("Tmpfs") or {})
    for name in ("Mounts", "Binds"):
        host.pop(name, None)
    return {"host": host, "tmpfs": {k: v for k, v in tmpfs.items() if k != "/submission"}}


def test_a_pooled_sandbox_has_the_limits_and_isolation_of_a_fresh_one(pool, docker_client, submission, tmp_path):
    grader = tmp_path / "grader"
    grader.mkdir()
    (grader / "secret.txt").write_text("hidden\n")
    probe = ["sh", "-c", "id -u; cat /proc/net/dev | tail -n +3 | cut -d: -f1; touch /opt/x /submission/x; ls /work"]
    seen = {}
    for kind in ("fresh", "pooled"):
        if kind == "fresh":
            pool_stop()
        else:
            _pool()
        with Sandbox(limits=LIMITS, submission_dir=submission, grader_dir=grader, labels=LABELS) as box:
            assert box.pooled is (kind == "pooled")
            config = _host(docker_client, box.container_id)
            attrs = docker_client.api.inspect_container(box.container_id)["Config"]
            seen[kind] = {
                "config": config,
                "user": attrs["User"],
                "env": sorted(attrs["Env"]),
                "learner": box.exec(probe, timeout_s=10).stdout,
                "learner reads grader": box.exec(["cat", "/grader/secret.txt"], timeout_s=10).exit_code,
                "grader reads grader": box.exec(["cat", "/grader/secret.txt"], user="grader", timeout_s=10).stdout,
                "grader uid": box.exec(["id", "-u"], user="grader", timeout_s=10).stdout,
                "caps": box.exec(["grep", "CapEff", "/proc/self/status"], timeout_s=10).stdout,
            }
    assert seen["pooled"] == seen["fresh"]
    assert seen["pooled"]["config"]["host"]["NetworkMode"] == "none"
    assert seen["pooled"]["learner"].split(b"\n")[:2] == [b"1000", b"    lo"]
    assert seen["pooled"]["learner reads grader"] != 0
    assert seen["pooled"]["caps"].split() == [b"CapEff:", b"0000000000000000"]


def test_no_sandbox_serves_two_gradings(pool, docker_client, submission):
    used = []
    for _ in range(4):
        with Sandbox(limits=LIMITS, submission_dir=submission, labels=LABELS) as box:
            used.append((box.container_id, box.pooled))
            box.exec(["sh", "-c", "echo planted > /work/left-by-the-last-grading"], timeout_s=10)
            assert box.container_id not in pool.idle_ids()
        assert not _exists(docker_client, box.container_id)
        pool.fill(timeout=120)
    ids = [container_id for container_id, _ in used]
    assert len(set(ids)) == 4
    assert all(pooled for _, pooled in used)


def test_the_pool_never_exceeds_its_size(pool, docker_client, submission):
    counts = []
    for _ in range(3):
        with Sandbox(limits=LIMITS, submission_dir=submission, labels=LABELS):
            counts.append(len(_pool_containers(docker_client, pool.owner)) - 1)  # minus the claimed one
        for _ in range(20):
            counts.append(len(_pool_containers(docker_client, pool.owner)))
            time.sleep(0.1)
    assert max(counts) <= pool.size
    assert pool.fill(timeout=120) and len(_pool_containers(docker_client, pool.owner)) == pool.size


def test_a_lab_with_other_limits_gets_a_fresh_sandbox_and_the_pool_learns_them(pool, submission):
    with Sandbox(limits=OTHER_LIMITS, submission_dir=submission, labels=LABELS) as box:
        assert not box.pooled
        assert box.exec(["cat", "greet.py"], timeout_s=10).exit_code == 0
    assert pool.stats.missed >= 1

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(e.limits == OTHER_LIMITS for e in list(pool._idle)):
        time.sleep(0.1)
    with Sandbox(limits=OTHER_LIMITS, submission_dir=submission, labels=LABELS) as box:
        assert box.pooled  # the full pool made room for the limits asked for
        assert box.exec(["cat", "greet.py"], timeout_s=10).exit_code == 0
    assert pool.idle_count() <= pool.size


def test_a_rebuilt_runner_image_drops_the_pool(pool):
    before = pool.idle_count()

    assert pool.claim(limits=LIMITS, image_id="sha256:" + "0" * 64, labels=LABELS) is None

    assert pool.stats.dropped_image == before
    assert pool.idle_count() == 0


def test_stopped_containers_are_dropped_from_the_pool_and_sandboxes_still_start(pool, docker_client, submission):
    # An engine restart stops every container: the agents' streams end, and the pool notices without a Docker call.
    for container_id in pool.idle_ids():
        docker_client.api.kill(container_id)
    time.sleep(0.5)

    with Sandbox(limits=LIMITS, submission_dir=submission, labels=LABELS) as box:
        ran = box.exec(["cat", "greet.py"], timeout_s=10)

    assert ran.exit_code == 0
    assert pool.stats.dropped_stale >= 1
    assert pool.fill(timeout=120)


def test_a_learner_command_that_kills_its_agent_leaves_nothing_running_into_the_next(pool):
    escape = (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid(); time.sleep(60); os._exit(0)\n"
        "time.sleep(0.3)\n"
        "os.kill(-1, signal.SIGKILL)\n"
    )
    learner_processes = (
        "import os\n"
        "mine = {os.getpid(), os.getppid()}\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        status = open(f'/proc/{pid}/status').read()\n"
        "    except OSError:\n"
        "        continue\n"
        "    uid = next(line.split()[1] for line in status.splitlines() if line.startswith('Uid:'))\n"
        "    if uid == '1000' and int(pid) not in mine:\n"
        "        print(pid, open(f'/proc/{pid}/cmdline', 'rb').read())\n"
    )
    with Sandbox(limits=LIMITS, labels=LABELS) as box:
        assert box.pooled
        escaped = box.exec(["python3", "-c", escape], timeout_s=10)
        after = box.exec(["python3", "-c", learner_processes], timeout_s=5)

    assert escaped.exit_code == 137
    assert after.exit_code == 0, after.stderr
    # Only the new agent (the command's own parent, excluded above) runs as the learner.
    assert after.stdout == b"", f"learner processes left running: {after.stdout!r}"


def test_a_learner_command_cannot_read_or_trace_its_agent(pool):
    snoop = (
        "import os\n"
        "agent = os.getppid()\n"
        "for path in (f'/proc/{agent}/environ', f'/proc/{agent}/mem', f'/proc/{agent}/fd/1'):\n"
        "    try:\n"
        "        open(path, 'rb').read(1); print('read', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.errno)\n"
    )
    with Sandbox(limits=LIMITS, labels=LABELS) as box:
        out = box.exec(["python3", "-c", snoop], timeout_s=10)

    assert out.exit_code == 0, out.stderr
    assert b"read " not in out.stdout and out.stdout.count(b"refused") == 3


def test_a_timeout_and_the_output_cap_hold_in_a_pooled_sandbox(pool):
    with Sandbox(limits=LIMITS, labels=LABELS) as box:
        slow = box.exec(["sleep", "30"], timeout_s=1)
        loud = box.exec(["python3", "-c", "print('x' * 5000)"], timeout_s=10)
        after = box.exec(["echo", "alive"], timeout_s=5)

    assert slow.timed_out and box.limit_events[0].reason == "timeout"
    assert loud.output_truncated and len(loud.stdout) == LIMITS.output_bytes
    assert after.stdout == b"alive\n"


def test_the_reaper_removes_pool_containers_whose_owner_is_gone(runner_image, docker_client, settings):
    from labs.sandbox.reaper import database_label

    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = f"{os.uname().nodename}:{dead.pid}"
    orphan = docker_client.containers.create(
        runner_image,
        ["sleep", "60"],
        network_mode="none",
        labels={"shipshape.managed": "1", "shipshape.db": database_label(), POOL_LABEL: owner},
    )
    live = docker_client.containers.create(
        runner_image,
        ["sleep", "60"],
        network_mode="none",
        labels={"shipshape.managed": "1", "shipshape.db": database_label(), POOL_LABEL: f"{os.uname().nodename}:1"},
    )
    try:
        containers_reap(live_runs=lambda ids: set())
        assert not _exists(docker_client, orphan.id)
        assert _exists(docker_client, live.id)  # pid 1 runs: its owner is alive, and it is young
    finally:
        for container in (orphan, live):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


@pytest.mark.slow
def test_a_restarted_engine_empties_the_pool_and_sandboxes_still_start(runner_image, submission, settings):
    if os.geteuid() != 0:
        pytest.fail("a private Docker engine needs root; run ./bin/test as root")
    started = subprocess.run(
        [str(DOCKERD_PRIVATE), "start", "pool-restart", settings.RUNNER_IMAGE],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert started.returncode == 0, started.stderr[-3000:]
    settings.DOCKER_HOST = started.stdout.strip().splitlines()[-1]
    try:
        pool = _pool()
        restarted = subprocess.run(
            [str(DOCKERD_PRIVATE), "restart", "pool-restart"], capture_output=True, text=True, cwd=REPO_ROOT
        )
        assert restarted.returncode == 0, restarted.stderr[-3000:]
        with Sandbox(limits=LIMITS, submission_dir=submission, labels=LABELS) as box:
            ran = box.exec(["cat", "greet.py"], timeout_s=10)
        assert ran.exit_code == 0
        assert pool.stats.dropped_stale + pool.stats.dropped_image >= 1 or not box.pooled
        assert pool.fill(timeout=120), pool.stats
        with Sandbox(limits=LIMITS, submission_dir=submission, labels=LABELS) as box:
            assert box.pooled and box.exec(["cat", "greet.py"], timeout_s=10).exit_code == 0
    finally:
        pool_stop()
        subprocess.run([str(DOCKERD_PRIVATE), "stop", "pool-restart"], cwd=REPO_ROOT, check=False)


def test_the_grader_agent_refuses_an_archive_member_that_leaves_its_folder(pool):
    import io
    import tarfile

    from labs.sandbox import SandboxUnavailable

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("../results/planted")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"x\n"))
    with Sandbox(limits=LIMITS, labels=LABELS) as box:
        with pytest.raises(SandboxUnavailable, match="refused archive member"):
            box._unpack_by_agent(buffer.getvalue(), dest="/submission", close=[])
        listing = box.exec(["ls", "-A", "/results"], user="grader", timeout_s=10)

    assert listing.exit_code == 0 and listing.stdout == b""
