import hashlib
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO_ROOT / "platform" / "runner-image"

pytestmark = pytest.mark.docker


def run_in_runner(docker_client, image: str, command: list[str]) -> str:
    output = docker_client.containers.run(image, command, network_mode="none", remove=True, stderr=True)
    return output.decode()


def test_runner_runs_as_the_learner_user_by_default(docker_client, runner_image):
    assert run_in_runner(docker_client, runner_image, ["id", "-u"]).strip() == "1000"
    assert run_in_runner(docker_client, runner_image, ["id", "-u", "grader"]).strip() == "1001"


def test_runner_without_network_has_only_loopback(docker_client, runner_image):
    interfaces = run_in_runner(docker_client, runner_image, ["ls", "/sys/class/net"]).split()

    assert interfaces == ["lo"]


def test_runner_imports_every_package_labs_may_use(docker_client, runner_image):
    script = "import numpy, prometheus_client, pytest, ipykernel, jupyter_client, sys; print(sys.version_info[:2])"

    assert run_in_runner(docker_client, runner_image, ["python", "-c", script]).strip() == "(3, 11)"


def test_runner_installs_from_its_wheelhouse_offline(docker_client, runner_image):
    command = [
        "sh",
        "-c",
        "pip install --quiet --no-index --find-links /opt/wheelhouse --target /tmp/offline prometheus-client"
        " && ls /tmp/offline",
    ]

    assert "prometheus_client" in run_in_runner(docker_client, runner_image, command)


def test_runner_has_the_mount_points_and_tini_as_init(docker_client, runner_image):
    image = docker_client.images.get(runner_image)

    assert image.attrs["Config"]["Entrypoint"] == ["/usr/bin/tini", "--"]
    assert image.attrs["Config"]["WorkingDir"] == "/work"
    listing = run_in_runner(docker_client, runner_image, ["ls", "-d", "/work", "/submission", "/grader", "/results"])
    assert sorted(listing.split()) == ["/grader", "/results", "/submission", "/work"]


def test_runner_image_is_built_from_the_current_inputs(docker_client, runner_image):
    # A stale image means build.sh, base-rootfs.sh or requirements.txt changed without a rebuild.
    inputs = b"".join((BUILD_DIR / name).read_bytes() for name in ("build.sh", "base-rootfs.sh", "requirements.txt"))
    expected = hashlib.sha256(inputs).hexdigest()[:16]

    labels = docker_client.images.get(runner_image).labels

    assert labels["org.shipshape.inputs"] == expected


def test_building_an_unchanged_image_does_nothing(runner_image):
    result = subprocess.run([str(BUILD_DIR / "build.sh")], capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stderr
    assert "runner image up to date" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == runner_image
