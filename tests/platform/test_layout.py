import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Files owned by the platform set-up; none may send anything off this machine.
SETUP_FILES = [
    *sorted((REPO_ROOT / "bin").iterdir()),
    *sorted(p for p in (REPO_ROOT / "platform" / "runner-image").rglob("*") if p.is_file()),
    *sorted(p for p in (REPO_ROOT / "platform" / "deploy").rglob("*") if p.is_file()),
    REPO_ROOT / ".ci" / "run",
    REPO_ROOT / "docker-compose.yml",
]
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://([^/\s\"'`]*)")
# Loopback, and the service names of docker-compose.yml's private network.
LOCAL_HOSTS = {"", "127.0.0.1", "localhost", "::1", "redis", "postgres", "web"}


def url_host(authority: str) -> str:
    host = authority.rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.split(":", 1)[0]


def test_platform_folder_is_not_a_python_package():
    # A `platform` package would shadow the standard library's `platform` module for every import.
    assert (REPO_ROOT / "platform").is_dir()
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()
    assert list((REPO_ROOT / "platform").rglob("__init__.py")) == []


def test_set_up_files_name_no_remote_host():
    # Mirrors and package indexes are read from the machine's own configuration at run time.
    remote = []
    for path in SETUP_FILES:
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            line = re.sub(r"\$\{[^}]*\}", "X", line)  # compose/shell ${VAR:?message} placeholders
            for host in map(url_host, URL.findall(line)):
                if host not in LOCAL_HOSTS and not host.startswith("$"):
                    remote.append(f"{path.relative_to(REPO_ROOT)}:{number}: {host}")
    assert remote == []


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()

    assert "set -euo pipefail" in ci
    assert "exec ./bin/test" in ci
