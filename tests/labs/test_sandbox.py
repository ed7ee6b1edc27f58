"""The sandbox container itself: its lock-down, its removal, its bounded and cleaned output."""

import pytest

from labs.sandbox import Sandbox, SandboxLimits, SandboxUnavailable, clean_output

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


def test_a_missing_image_is_a_platform_error(docker_client):
    with pytest.raises(SandboxUnavailable, match="missing"), Sandbox(limits=LIMITS, image="shipshape-runner:nope"):
        pass


def test_clean_output_removes_nul_escapes_and_caps():
    raw = b"a\x00b\x1b[31mred\x1b[0m\x1b]0;title\x07 \xff ok\r\n" + b"z" * 100
    text = clean_output(raw, limit=40)
    assert text.startswith("abred \ufffd ok\n")
    assert "[output truncated" in text
