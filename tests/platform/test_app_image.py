"""The production app image, built offline by platform/deploy/build-app-image.sh and run with no network at all.

The image must pass Django's deployment checks with a deployment's environment, resolve every role of its
entrypoint, and have the layout platform/deploy/Dockerfile gives the same image where the engine can pull.
"""

import json
import re
import secrets
import shlex
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "platform" / "deploy" / "build-app-image.sh"
DOCKERFILE = REPO_ROOT / "platform" / "deploy" / "Dockerfile"

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# What docker-compose.yml gives the app containers, with a database `check` never opens and a Redis it never reaches.
DEPLOYMENT_ENV = {
    "SHIPSHAPE_SECRET_KEY": secrets.token_urlsafe(50),
    "SHIPSHAPE_ALLOWED_HOSTS": "shipshape.example.org",
    "SHIPSHAPE_SECURE_COOKIES": "1",
    "DATABASE_URL": "sqlite:////srv/shipshape/shipshape.sqlite3",
    "REDIS_URL": "redis://redis:6379/0",
}
# HSTS comes from config.security's middleware (not SECURE_HSTS_SECONDS) and the TLS proxy in front redirects to
# HTTPS, so Django's two settings-based warnings about them are expected; any other warning is not.
EXPECTED_DEPLOY_WARNINGS = {"security.W004", "security.W008"}


def build() -> subprocess.CompletedProcess:
    return subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800, check=False)


@pytest.fixture(scope="module")
def app_image() -> str:
    """The image id of the app image built from the current inputs."""
    result = build()
    if result.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT.relative_to(REPO_ROOT)} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def run_in_app(image: str, *command: str) -> subprocess.CompletedProcess:
    env_args = [arg for name, value in DEPLOYMENT_ENV.items() for arg in ("-e", f"{name}={value}")]
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", *env_args, image, *command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_it_passes_the_deployment_checks_without_network(app_image):
    result = run_in_app(app_image, "python", "manage.py", "check", "--deploy")

    assert result.returncode == 0, result.stderr
    warnings = set(re.findall(r"\((security\.W\d+)\)", result.stdout + result.stderr))
    assert warnings <= EXPECTED_DEPLOY_WARNINGS, result.stdout + result.stderr


def test_its_web_role_migrates_collects_static_files_and_loads_the_wsgi_app(app_image):
    # gunicorn's --check-config imports config.wsgi and exits instead of serving.
    result = run_in_app(app_image, "web", "--check-config")

    assert result.returncode == 0, result.stderr
    assert "Applying labs.0001_initial... OK" in result.stdout
    assert "static files copied to '/srv/shipshape/static'" in result.stdout


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_its_celery_roles_find_the_celery_app(app_image, role):
    # `celery -A config` loads the app before the subcommand reads --help; an app it cannot import exits 2.
    result = run_in_app(app_image, role, "--help")

    assert result.returncode == 0, result.stderr
    assert f"Usage: celery {role}" in result.stdout


def test_its_kernels_role_finds_the_kernel_manager(app_image):
    # The role execs `manage.py kernel_manager`: --help loads Django, the kernels app and the command.
    result = run_in_app(app_image, "kernels", "--help")

    assert result.returncode == 0, result.stderr
    assert "kernel manager" in result.stdout


def test_its_celery_app_knows_every_task_beat_schedules(app_image):
    script = (
        "from config.celery import app; import django; django.setup(); from django.conf import settings; "
        "app.loader.import_default_modules(); "
        "print(sorted({entry['task'] for entry in settings.CELERY_BEAT_SCHEDULE.values()} - set(app.tasks)))"
    )

    result = run_in_app(app_image, "python", "-c", script)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_it_has_the_layout_the_dockerfile_gives(app_image):
    dockerfile = DOCKERFILE.read_text()
    config = image_config(app_image)

    assert config["User"] == instruction(dockerfile, "USER")
    assert config["WorkingDir"] == instruction(dockerfile, "WORKDIR")
    assert config["Entrypoint"] == ["/usr/local/bin/shipshape-entrypoint"]
    assert f'ENTRYPOINT ["{config["Entrypoint"][0]}"]' in dockerfile
    assert config["Cmd"] == ["web"] and 'CMD ["web"]' in dockerfile
    assert set(config["ExposedPorts"]) == {"8000/tcp"} and "EXPOSE 8000" in dockerfile
    env = dict(item.split("=", 1) for item in config["Env"])
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONPATH", "SHIPSHAPE_DATA_DIR"):
        assert f"{name}={env[name]}" in dockerfile, name
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert dockerfile_copied_paths(dockerfile) == script_app_paths()


def test_its_code_is_read_only_to_the_user_that_owns_the_data_directory(app_image):
    result = run_in_app(
        app_image, "sh", "-c", "id -u; stat -c %u /srv/shipshape; ls /app; touch /app/manage.py 2>/dev/null || echo ro"
    )

    assert result.returncode == 0, result.stderr
    uid, data_owner, *listing = result.stdout.split()
    assert uid == data_owner == "10001"
    assert listing[-1] == "ro"
    assert set(listing[:-1]) == set(script_app_paths())


def test_building_unchanged_inputs_does_nothing(app_image):
    result = build()

    assert result.returncode == 0, result.stderr
    assert "app image up to date" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == app_image


def image_config(image: str) -> dict:
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config}}", image],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def instruction(dockerfile: str, name: str) -> str:
    (value,) = re.findall(rf"^{name} (.+)$", dockerfile, flags=re.MULTILINE)
    return value.strip()


def dockerfile_copied_paths(dockerfile: str) -> list[str]:
    # Single-source COPYs into the working directory: the code (the lock files are COPYed together, earlier).
    return sorted(re.findall(r"^COPY (\S+) \./\S*$", dockerfile, flags=re.MULTILINE))


def script_app_paths() -> list[str]:
    (line,) = re.findall(r"^APP_PATHS=\((.+)\)$", BUILD_SCRIPT.read_text(), flags=re.MULTILINE)
    return sorted(shlex.split(line))
