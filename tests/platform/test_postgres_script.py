"""bin/postgres.sh's failure messages: each of its functions run by bash in a subprocess with a controlled PATH and
environment. Fake server programs and a fake apt-get stand in where the real ones would install or reach something;
the one real start (a port already taken) is on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the script's functions call besides the server programs and apt-get.
TOOLS = ("find", "sort", "tail", "dirname", "id", "python3", "cat", "mkdir", "chmod", "chown", "runuser", "test")


def run_script(call: str, *, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Sources bin/lib.sh and bin/postgres.sh, then runs `call`, in bash with exactly `env`."""
    return subprocess.run(
        ["/bin/bash", "-c", f'source bin/lib.sh; source bin/postgres.sh; {call}; echo "returned $?"'],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def fake_program(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def machine(tmp_path) -> dict[str, str]:
    """A PATH of the tools the script needs and a fake apt-get that records its calls and installs nothing; an empty
    server tree; Debian and root as seen by the script (each test changes what it is about)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is not installed"
        (bin_dir / tool).symlink_to(found)
    fake_program(bin_dir / "apt-get", f'echo "$@" >> {tmp_path / "apt-get.calls"}')
    (tmp_path / "postgresql").mkdir()
    debian_version = tmp_path / "debian_version"
    debian_version.write_text("12.0\n")
    return {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "POSTGRES_LIB_DIR": str(tmp_path / "postgresql"),
        "POSTGRES_DEBIAN_VERSION_FILE": str(debian_version),
        "POSTGRES_AS_UID": "0",
    }


def apt_get_calls(env: dict[str, str]) -> list[str]:
    calls = Path(env["HOME"]) / "apt-get.calls"
    return calls.read_text().splitlines() if calls.exists() else []


MISSING_SERVER = "error: missing on this machine: the PostgreSQL server (postgres, initdb, pg_ctl)"


def test_it_names_the_missing_server_and_the_package_when_the_machine_is_not_debian(machine):
    machine["POSTGRES_DEBIAN_VERSION_FILE"] = str(Path(machine["HOME"]) / "no-such-file")

    finished = run_script("ensure_postgres_package", env=machine)

    assert finished.returncode == 1, finished
    assert MISSING_SERVER in finished.stderr
    assert "apt-get install -y --no-install-recommends postgresql" in finished.stderr
    assert "SHIPSHAPE_TEST_DATABASES=sqlite" in finished.stderr
    assert apt_get_calls(machine) == []


def test_it_names_the_missing_server_and_installs_nothing_when_not_root(machine):
    machine["POSTGRES_AS_UID"] = "1000"

    finished = run_script("ensure_postgres_package", env=machine)

    assert finished.returncode == 1, finished
    assert MISSING_SERVER in finished.stderr
    assert "On Debian 12, as root:" in finished.stderr
    assert apt_get_calls(machine) == []


def test_it_names_the_missing_server_when_there_is_no_apt_get(machine):
    (Path(machine["PATH"]) / "apt-get").unlink()

    finished = run_script("ensure_postgres_package", env=machine)

    assert finished.returncode == 1, finished
    assert MISSING_SERVER in finished.stderr


def test_it_fails_when_apt_get_left_no_server_program_behind(machine):
    finished = run_script("ensure_postgres_package", env=machine)

    assert finished.returncode == 1, finished
    assert apt_get_calls(machine) == ["update", "install -y --no-install-recommends postgresql"]
    assert (
        f"error: apt-get installed postgresql but no server program is in {machine['POSTGRES_LIB_DIR']}/*/bin."
        in finished.stderr
    )


def test_it_returns_at_once_when_a_server_is_installed(machine):
    fake_program(Path(machine["POSTGRES_LIB_DIR"]) / "16" / "bin" / "postgres", "exit 0")

    finished = run_script("ensure_postgres_package", env=machine)

    assert finished.stdout.strip() == "returned 0"
    assert apt_get_calls(machine) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://shipshape@127.0.0.1:6391/shipshape", "must be a postgres:// URL, not 'mysql://"),
        ("127.0.0.1:6391", "must be a postgres:// URL, not '127.0.0.1:6391'"),
        (
            "postgres://shipshape@127.0.0.1:port/shipshape",
            "has no valid port: use e.g. postgres://shipshape@127.0.0.1:6391/shipshape",
        ),
        ("postgres://shipshape@127.0.0.1:99999/shipshape", "has no valid port"),
    ],
)
def test_it_refuses_a_test_database_url_it_cannot_read(machine, tmp_path, url, message):
    fake_program(Path(machine["POSTGRES_LIB_DIR"]) / "16" / "bin" / "postgres", "exit 0")

    finished = run_script(
        f"ensure_postgres {tmp_path / 'cluster'}", env={**machine, "SHIPSHAPE_TEST_DATABASE_URL": url}
    )

    assert finished.returncode == 1, finished
    assert "error: SHIPSHAPE_TEST_DATABASE_URL" in finished.stderr
    assert message in finished.stderr
    assert not (tmp_path / "cluster").exists()


def test_it_starts_no_server_for_a_database_on_another_host(machine, tmp_path):
    # pg_isready is a fake that answers "no response" without sending anything anywhere.
    bindir = Path(machine["POSTGRES_LIB_DIR"]) / "16" / "bin"
    fake_program(bindir / "postgres", "exit 0")
    fake_program(bindir / "pg_isready", "exit 2")
    fake_program(bindir / "initdb", f"touch {tmp_path / 'initdb-ran'}")
    url = "postgres://shipshape@db.invalid:5432/shipshape"

    finished = run_script(
        f"ensure_postgres {tmp_path / 'cluster'}", env={**machine, "SHIPSHAPE_TEST_DATABASE_URL": url}
    )

    assert finished.returncode == 1, finished
    assert (
        "error: PostgreSQL at db.invalid:5432 does not answer, and only a local one (127.0.0.1) can be started here."
        in finished.stderr
    )
    assert not (tmp_path / "initdb-ran").exists()


@pytest.fixture
def searchable_dir() -> Iterator[Path]:
    """A directory every user can traverse (pytest's own are private to root), for a cluster owned by another user."""
    path = Path(tempfile.mkdtemp(prefix="shipshape-pg-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_it_says_the_port_may_be_taken_when_the_server_cannot_start(searchable_dir):
    # The real server programs, as ./bin/test uses them; something else already listens on the port.
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not installed:
        pytest.fail("The PostgreSQL server is not installed. Run ./bin/test, which installs it (Debian: postgresql).")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        taken.settimeout(0)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(searchable_dir),
            "SHIPSHAPE_TEST_DATABASE_URL": f"postgres://shipshape@127.0.0.1:{port}/shipshape",
        }

        finished = run_script(f"ensure_postgres {searchable_dir / 'cluster'}", env=env)

    assert finished.returncode == 1, finished
    assert f"error: PostgreSQL did not start on 127.0.0.1:{port}" in finished.stderr
    assert "Is the port taken?" in finished.stderr
