"""docker-compose.yml as the compose tool reads it: what must be set, the pinned defaults, and Compose v2's rules.

Nothing is started (nothing can be pulled here): `config` interpolates, validates and prints the file. The tool is
the compose plugin (`docker compose`) when the engine's CLI has it, else Debian's docker-compose 1.29, which
./bin/test installs on Debian as root.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

REQUIRED = {
    "SHIPSHAPE_SECRET_KEY": "a-long-random-secret-for-the-config-test",
    "POSTGRES_PASSWORD": "compose-test-password",
    "SHIPSHAPE_ALLOWED_HOSTS": "shipshape.example.org",
    "DOCKER_GID": "998",
}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
PINNED = {
    "SHIPSHAPE_PYTHON_BASE": "python:3.11-slim-bookworm@sha256:",
    "SHIPSHAPE_REDIS_IMAGE": "redis:7-bookworm@sha256:",
    "SHIPSHAPE_POSTGRES_IMAGE": "postgres:16-bookworm@sha256:",
}
V2_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail(
        "No compose tool: ./bin/test installs Debian's docker-compose when run as root on Debian "
        "(apt-get install docker-compose); elsewhere install it or the compose plugin."
    )


def compose_config(command: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    # Only the given variables: neither the caller's environment nor a .env file next to the compose file leaks in.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    return subprocess.run(
        [*command, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def resolved(command: list[str], env: dict[str, str], tmp_path: Path) -> dict:
    result = compose_config(command, env, tmp_path)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_it_resolves_with_only_the_documented_required_variables(compose_command, tmp_path):
    config = resolved(compose_command, REQUIRED, tmp_path)

    assert set(config["services"]) == {"web", "worker", "beat", "kernels", "redis", "postgres"}
    assert config["services"]["web"]["environment"]["SHIPSHAPE_SECRET_KEY"] == REQUIRED["SHIPSHAPE_SECRET_KEY"]
    assert config["services"]["worker"]["group_add"] == [REQUIRED["DOCKER_GID"]]
    assert config["services"]["kernels"]["group_add"] == [REQUIRED["DOCKER_GID"]]
    assert config["services"]["kernels"]["command"] == ["kernels"]


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_it_refuses_to_start_and_names_each_missing_required_variable(compose_command, tmp_path, missing):
    env = {name: value for name, value in REQUIRED.items() if name != missing}

    result = compose_config(compose_command, env, tmp_path)

    assert result.returncode != 0
    assert f"set {missing}" in result.stderr, result.stderr


def test_it_defaults_to_images_pinned_by_tag_and_digest(compose_command, tmp_path):
    services = resolved(compose_command, REQUIRED, tmp_path)["services"]

    python_base = services["web"]["build"]["args"]["PYTHON_BASE"]
    assert python_base.startswith(PINNED["SHIPSHAPE_PYTHON_BASE"]) and DIGEST.search(python_base)
    assert services["redis"]["image"].startswith(PINNED["SHIPSHAPE_REDIS_IMAGE"])
    assert DIGEST.search(services["redis"]["image"])
    assert services["postgres"]["image"].startswith(PINNED["SHIPSHAPE_POSTGRES_IMAGE"])
    assert DIGEST.search(services["postgres"]["image"])
    assert {services[role]["image"] for role in ("web", "worker", "beat", "kernels")} == {"shipshape-app:latest"}


def test_it_names_where_each_default_digest_came_from():
    text = COMPOSE_FILE.read_text()

    for name in ("python/remote/3.11-slim-bookworm.md", "redis/remote/7-bookworm.md", "postgres/remote/16-bookworm.md"):
        assert f"docker-library/repo-info repos/{name}" in text
    assert text.count("not verified against the registry from here") == 3


def test_override_variables_win_over_the_pinned_defaults(compose_command, tmp_path):
    overrides = {
        "SHIPSHAPE_PYTHON_BASE": "local/python:3.11",
        "SHIPSHAPE_REDIS_IMAGE": "local/redis:7",
        "SHIPSHAPE_POSTGRES_IMAGE": "local/postgres:16",
        "SHIPSHAPE_APP_IMAGE": "shipshape-app:0123456789abcdef",
    }

    services = resolved(compose_command, {**REQUIRED, **overrides}, tmp_path)["services"]

    assert {services[role]["build"]["args"]["PYTHON_BASE"] for role in ("web", "worker", "beat", "kernels")} == {
        "local/python:3.11"
    }
    assert services["redis"]["image"] == "local/redis:7"
    assert services["postgres"]["image"] == "local/postgres:16"
    assert {services[role]["image"] for role in ("web", "worker", "beat", "kernels")} == {"shipshape-app:0123456789abcdef"}


def test_it_keeps_to_what_compose_v2_accepts():
    # Compose v2 warns that a top-level `version` is obsolete and reads the Compose Specification, where a
    # dependency waits on a named condition and service_healthy needs the dependency to have a healthcheck.
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    services = raw["services"]

    assert "version" not in raw
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert rule["condition"] in V2_CONDITIONS, (name, dependency)
            if rule["condition"] == "service_healthy":
                assert services[dependency]["healthcheck"]["test"][0] == "CMD", (name, dependency)
        for key in ("links", "external_links", "volumes_from"):
            assert key not in service, (name, key)


def test_it_validates_against_the_compose_spec_schema_the_tool_ships():
    # Debian's docker-compose ships the Compose Specification's JSON schema (an older revision of the one v2
    # reads); the compose plugin embeds its schema in its binary, so with the plugin alone there is none to read.
    jsonschema = pytest.importorskip("jsonschema")
    schema_path = compose_spec_schema()
    if schema_path is None:
        pytest.skip("no compose_spec.json on this machine (Debian's docker-compose ships one)")

    schema = json.loads(schema_path.read_text())
    raw = yaml.safe_load(COMPOSE_FILE.read_text())

    # The file names draft 2019-09 with a trailing "#" that jsonschema does not recognise, so name the draft here.
    errors = [error.message for error in jsonschema.Draft201909Validator(schema).iter_errors(raw)]

    assert errors == []


def compose_spec_schema() -> Path | None:
    script = shutil.which("docker-compose")
    if script is None:
        return None
    interpreter = Path(script).read_text(errors="replace").splitlines()[0].removeprefix("#!").split()
    result = subprocess.run(
        [*interpreter, "-c", "import compose.config, os; print(os.path.dirname(compose.config.__file__))"],
        capture_output=True,
        text=True,
        check=False,
    )
    path = Path(result.stdout.strip()) / "compose_spec.json"
    return path if result.returncode == 0 and path.is_file() else None
