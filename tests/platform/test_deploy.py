"""docker-compose.yml cannot be started here (no image can be pulled), so its shape is checked instead."""

from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_compose_defines_the_production_services():
    assert set(compose()["services"]) == {"web", "worker", "beat", "kernels", "redis", "postgres"}


def test_app_services_run_the_project_image_with_their_role():
    services = compose()["services"]

    for role in ("web", "worker", "beat", "kernels"):
        service = services[role]
        assert service["build"]["dockerfile"] == "platform/deploy/Dockerfile"
        assert "PYTHON_BASE" in service["build"]["args"]
        assert service["command"] == [role]
        assert service["environment"]["DATABASE_URL"].startswith("postgres://")
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"


def test_only_the_worker_and_the_kernel_manager_get_the_docker_socket():
    services = compose()["services"]

    assert "/var/run/docker.sock:/var/run/docker.sock" in services["worker"]["volumes"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["kernels"]["volumes"]
    for name in ("web", "beat", "redis", "postgres"):
        assert not any("docker.sock" in volume for volume in services[name].get("volumes", []))


def test_redis_keeps_an_append_only_file_on_a_volume():
    redis = compose()["services"]["redis"]

    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert redis["volumes"] == ["redis-data:/data"]


def test_web_is_published_on_loopback_only():
    assert all(port.startswith("127.0.0.1:") for port in compose()["services"]["web"]["ports"])


def test_images_are_local_names_never_a_registry_path():
    services = compose()["services"]

    for service in services.values():
        image = service.get("image", "")
        assert image.startswith(("${", "shipshape-")), image
    dockerfile = (REPO_ROOT / "platform" / "deploy" / "Dockerfile").read_text()
    assert "FROM ${PYTHON_BASE}" in dockerfile
