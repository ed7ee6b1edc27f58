"""The sandbox container itself: its lock-down, its removal, its bounded and cleaned output."""

import pytest

from labs.sandbox import Sandbox, SandboxLimits, SandboxUnavailable, clean_output
from labs.sandbox.environment import COPY_OK

pytestmark = [pytest.mark.docker]
LIMITS = SandboxLimits(memory_mb=64, wall_seconds=30, pids=16, output_bytes=1000, scratch_mb=2, cpus=0.5)


def _managed(docker_client, container_id):
    return [c for c in docker_client.containers.list(all=True) if c.id == container_id]


def test_the_container_is_locked_down(runner_image, docker_client):
    with Sandbox(limits=LIMITS, labels={"shipshape.db": "sandbox-test"}) as box:
        attrs = docker_client.containers.get(box.container_id).attrs
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "none"
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["PidsLimit"] == 16
        assert host["Memory"] == host["MemorySwap"] == 64 * 1024 * 1024
        assert host["NanoCpus"] == 500_000_000
        assert {u["Name"] for u in host["Ulimits"]} == {"nofile", "fsize", "core"}
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "1", "max-size": "1m"}}
        assert attrs["Config"]["Labels"]["shipshape.managed"] == "1"
        assert box.image_id == runner_image
        whoami = box.exec(["id", "-u"], timeout_s=5)
        assert whoami.stdout.strip() == b"1000"
        assert box.exec(["touch", "/results/x"], timeout_s=5).exit_code != 0
        assert box.exec(["touch", "/results/x"], user="grader", timeout_s=5).exit_code == 0
    assert _managed(docker_client, box.container_id) == []


def test_the_container_is_removed_when_the_block_raises(runner_image, docker_client):
    with pytest.raises(RuntimeError), Sandbox(limits=LIMITS) as box:
        raise RuntimeError("a check crashed")
    assert _managed(docker_client, box.container_id) == []


def test_a_timed_out_command_is_reported_and_the_sandbox_stays_usable(runner_image):
    with Sandbox(limits=LIMITS) as box:
        slow = box.exec(["sleep", "30"], timeout_s=1)
        after = box.exec(["echo", "alive"], timeout_s=5)
    assert slow.timed_out and box.limit_events[0].reason == "timeout"
    assert after.stdout == b"alive\n"


def test_output_is_capped_per_stream(runner_image):
    with Sandbox(limits=LIMITS) as box:
        flood = box.exec(["sh", "-c", "yes | head -c 5000000; echo end >&2"], timeout_s=10)
    assert len(flood.stdout) == 1000 and flood.output_truncated
    assert flood.stderr == b"end\n"


def _count_execs(monkeypatch, box) -> list[list[str]]:
    """The commands the sandbox asks docker to exec (a spy around the real client call)."""
    seen: list[list[str]] = []
    api = box._client.api
    real = api.exec_create

    def spy(container, cmd, **kwargs):
        seen.append(list(cmd))
        return real(container, cmd, **kwargs)

    monkeypatch.setattr(api, "exec_create", spy)
    return seen


def test_the_first_learner_command_copies_the_submission_in_the_same_exec(runner_image, submission, monkeypatch):
    with Sandbox(limits=LIMITS, submission_dir=submission) as box:
        execs = _count_execs(monkeypatch, box)
        first = box.exec(["cat", "greet.py", "pkg/data.txt"], timeout_s=5)
        owner = box.exec(["stat", "-c", "%u", "greet.py"], timeout_s=5)
    assert first.exit_code == 0
    assert first.stdout == b"print('hi')\ndata\n"  # the wrapper's header is not part of the output
    assert owner.stdout == b"1000\n"  # copied as the learner, who may change their own files
    assert len(execs) == 2 and "--copy-submission" in execs[0] and "--copy-submission" not in execs[1]


def test_a_grader_command_first_still_sees_the_submission(runner_image, submission):
    with Sandbox(limits=LIMITS, submission_dir=submission) as box:
        listing = box.exec(["ls", "/work"], user="grader", timeout_s=5)
    assert listing.stdout.split() == [b"greet.py", b"pkg"]


def test_a_command_cannot_forge_the_copy_header(runner_image, submission):
    with Sandbox(limits=LIMITS, submission_dir=submission) as box:
        forged = box.exec(["printf", COPY_OK.decode().replace("\x00", "\\0")], timeout_s=5)
    assert forged.stdout == COPY_OK  # the command's own bytes, kept as output: only the wrapper's are removed


def test_a_submission_larger_than_scratch_is_a_platform_error_for_every_command(runner_image, submission):
    (submission / "big.bin").write_bytes(b"x" * 3 * 1024 * 1024)  # scratch is 2 MB
    with Sandbox(limits=LIMITS, submission_dir=submission) as box:
        with pytest.raises(SandboxUnavailable, match="could not copy the submission"):
            box.exec(["python", "greet.py"], timeout_s=5)
        with pytest.raises(SandboxUnavailable, match="could not copy the submission"):
            box.exec(["ls"], user="grader", timeout_s=5)


def test_background_removal_still_removes_the_container(runner_image, docker_client):
    with Sandbox(limits=LIMITS, remove_in_background=True) as box:
        assert box.exec(["true"], timeout_s=5).exit_code == 0
        assert not box.removed.is_set()
    assert box.wait_removed(timeout=60)
    assert _managed(docker_client, box.container_id) == []


def test_without_background_removal_the_container_is_gone_when_the_block_ends(runner_image, docker_client):
    with Sandbox(limits=LIMITS) as box:
        pass
    assert box.removed.is_set()
    assert _managed(docker_client, box.container_id) == []


def test_a_missing_image_is_a_platform_error(docker_client):
    with pytest.raises(SandboxUnavailable, match="missing"), Sandbox(limits=LIMITS, image="shipshape-runner:nope"):
        pass


def test_clean_output_removes_nul_escapes_and_caps():
    raw = b"a\x00b\x1b[31mred\x1b[0m\x1b]0;title\x07 \xff ok\r\n" + b"z" * 100
    text = clean_output(raw, limit=40)
    assert text.startswith("abred \ufffd ok\n")
    assert "[output truncated" in text


def test_a_command_that_kills_its_own_wrapper_leaves_nothing_running_into_the_next(runner_image):
    # The learner's program forks a child that leaves the session, then SIGKILLs the wrapper (same uid), so the
    # wrapper's sweep after the command never runs. The next learner command must still start clean.
    escape = (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid(); time.sleep(60); os._exit(0)\n"
        "time.sleep(0.3)\n"
        "os.kill(os.getppid(), signal.SIGKILL)\n"
    )
    learner_processes = (
        "import os\n"
        "mine = {os.getpid(), os.getppid()}\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        status = open(f'/proc/{pid}/status').read()\n"
        "        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n"
        "    except OSError:\n"
        "        continue\n"
        "    uid = next(line.split()[1] for line in status.splitlines() if line.startswith('Uid:'))\n"
        "    if uid == '1000' and int(pid) not in mine:\n"
        "        print(pid, cmd)\n"
    )
    with Sandbox(limits=LIMITS) as box:
        escaped = box.exec(["python3", "-c", escape], timeout_s=10)
        after = box.exec(["python3", "-c", learner_processes], timeout_s=5)
    assert escaped.exit_code == 137  # the wrapper really was killed
    assert after.exit_code == 0, after.stderr
    assert after.stdout == b"", f"learner processes left running: {after.stdout!r}"


def test_the_grader_bundle_is_readable_by_the_grader_only_whoever_runs_the_worker(runner_image, tmp_path):
    grader = tmp_path / "grader"
    (grader / "tests").mkdir(parents=True)
    (grader / "tests" / "test_secret.py").write_text("SECRET = 'hidden until the due date'\n")
    (grader / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (grader / "run.sh").chmod(0o755)

    with Sandbox(limits=LIMITS, grader_dir=grader, labels={"shipshape.db": "sandbox-test"}) as box:
        as_learner = box.exec(["cat", "/grader/tests/test_secret.py"], user="learner", timeout_s=10)
        listing = box.exec(["ls", "/grader"], user="learner", timeout_s=10)
        as_grader = box.exec(["cat", "/grader/tests/test_secret.py"], user="grader", timeout_s=10)
        owners = box.exec(["stat", "-c", "%u %a %n", "/grader", "/grader/run.sh"], user="grader", timeout_s=10)

    assert as_learner.exit_code != 0 and b"Permission denied" in as_learner.stderr
    assert listing.exit_code != 0
    assert as_grader.stdout == b"SECRET = 'hidden until the due date'\n"
    assert owners.stdout.decode().split("\n")[:2] == ["1001 700 /grader", "1001 500 /grader/run.sh"]


def test_the_sandbox_reports_pressure_from_its_own_counters(runner_image):
    with Sandbox(limits=LIMITS, labels={"shipshape.db": "sandbox-test"}) as box:
        box.exec(["sh", "-c", "head -c 1900000 /dev/zero > /work/fill"], user="learner", timeout_s=10)
        pressure = box.pressure()

    assert pressure is not None
    assert pressure.work_free_bytes < 2 * 1024 * 1024 - 1_800_000
    assert pressure.tmp_free_bytes > 15 * 1024 * 1024 and pressure.grader_free_bytes > 60 * 1024 * 1024
    assert (pressure.pids_refused, pressure.oom_kills) == (0, 0)


def test_the_submission_is_a_read_only_bind_mount_with_the_default_propagation(runner_image, submission, docker_client):
    with Sandbox(limits=LIMITS, submission_dir=submission) as box:
        mounts = docker_client.api.inspect_container(box.container_id)["Mounts"]
        write = box.exec(["touch", "/submission/planted"], user="grader", timeout_s=10)

    mount = next(m for m in mounts if m["Destination"] == "/submission")
    assert (mount["Type"], mount["Source"], mount["RW"], mount["Propagation"]) == (
        "bind",
        str(submission),
        False,
        "rprivate",
    )
    assert write.exit_code != 0 and not (submission / "planted").exists()


def test_a_missing_submission_folder_is_a_platform_error_never_an_empty_submission(runner_image, tmp_path):
    gone = tmp_path / "submissions" / ("a" * 64) / "files"  # a cache swapped out between materialize and start

    with (
        pytest.raises(SandboxUnavailable, match="cannot start a sandbox container"),
        Sandbox(limits=LIMITS, submission_dir=gone),
    ):
        pass

    assert not gone.exists()  # the engine did not create it as an empty folder


def test_a_missing_grader_bundle_is_a_platform_error_never_staged_empty(runner_image, tmp_path):
    with (
        pytest.raises(SandboxUnavailable, match="the grader bundle .* is missing"),
        Sandbox(limits=LIMITS, grader_dir=tmp_path / "grader"),
    ):
        pass


def test_an_empty_grader_bundle_stages_nothing_for_a_lab_whose_checks_are_all_built_in(runner_image, tmp_path):
    (tmp_path / "grader" / "tests").mkdir(parents=True)

    with Sandbox(limits=LIMITS, grader_dir=tmp_path / "grader") as box:
        listing = box.exec(["sh", "-c", "ls -A /grader | wc -l"], user="grader", timeout_s=5)

    assert listing.exit_code == 0 and listing.stdout.strip() == b"0"
