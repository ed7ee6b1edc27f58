"""The set-up shared by ./bin/run and ./bin/test (bin/lib.sh), run for real in bash."""

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_lib(script: str, *, as_nobody: bool = False, path_prefix: Path | None = None) -> subprocess.CompletedProcess:
    command = ["bash", "-c", f"source bin/lib.sh; {script}"]
    if as_nobody:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = dict(os.environ)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_missing_packages_without_root_are_listed_with_the_install_command():
    result = run_lib(
        'SYSTEM_NEEDS=("cmd:shipshape-no-such-tool fake-package" "cmd:bash bash"); ensure_system_packages',
        as_nobody=True,
    )

    assert result.returncode == 1
    assert "missing on this machine: shipshape-no-such-tool" in result.stderr
    assert "apt-get install -y --no-install-recommends fake-package" in result.stderr
    missing_line = next(line for line in result.stderr.splitlines() if line.startswith("error: missing"))
    assert "bash" not in missing_line  # present things are not reported


def test_a_ready_machine_installs_nothing(tmp_path):
    # apt-get is shadowed by a script that records any call; the real list of needs must all be present here.
    calls = tmp_path / "apt-calls"
    fake = tmp_path / "apt-get"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit 1\n')
    fake.chmod(0o755)

    result = run_lib("ensure_system_packages && echo ready", path_prefix=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ready"
    assert not calls.exists()


def test_redis_url_host_and_port_are_parsed_for_starting_a_local_redis():
    result = run_lib("REDIS_URL=redis://127.0.0.1:6391/2; redis_host_port")

    assert result.stdout.split() == ["127.0.0.1", "6391"]


def test_the_commands_are_executable():
    for command in (".ci/run", "bin/run", "bin/test", "platform/runner-image/build.sh"):
        assert os.access(REPO_ROOT / command, os.X_OK), command
