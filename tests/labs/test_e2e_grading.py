"""End to end: upload through HTTP, a real Celery worker on real Redis grades in real Docker, the page shows it."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from labs.models import CheckResult, Revision
from tests.labs.conftest import HELLO_LAB_DIR, own_containers, wait_for_state
from tests.labs.factories import make_user

pytestmark = [pytest.mark.docker, pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
HELLO = HELLO_LAB_DIR / "examples"


def _upload(client, lab, folder):
    files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
    url = reverse("lab_detail", args=[lab.course.slug, lab.slug])
    return client.post(url, {"files": files, "paths": [f.name for f in files]})


def test_an_uploaded_good_submission_is_graded_with_full_points_and_shown(
    client, celery_worker, lab_factory, docker_client
):
    lab = lab_factory(HELLO_LAB_DIR)
    client.force_login(make_user())

    response = _upload(client, lab, HELLO / "good")

    assert response.status_code == 302, response.content[:500]
    revision = Revision.objects.get(lab=lab)
    wait_for_state(revision, {"graded", "failed", "error"})
    messages = list(CheckResult.objects.filter(run__revision=revision).values_list("check_id", "status", "message"))
    assert (revision.state, revision.score, revision.max_score, messages) == ("graded", 10, 10, messages), messages
    assert (revision.state, revision.score, revision.max_score) == ("graded", 10, 10)
    run = revision.runs.get()
    assert run.worker.startswith("test-worker-")
    assert CheckResult.objects.filter(run=run, status="pass").count() == 3
    page = client.get(reverse("revision_detail", args=[revision.pk]))
    assert page.status_code == 200
    assert b"greets-ada" in page.content or b"Hello, Ada!" in page.content
    assert own_containers(docker_client) == []


def test_a_broken_submission_is_graded_with_its_failing_checks(celery_worker, lab_factory, submit, docker_client):
    lab = lab_factory(HELLO_LAB_DIR)

    revision = wait_for_state(submit(lab, HELLO / "broken-output"), {"graded", "failed", "error"})

    assert revision.state == "graded"
    statuses = dict(CheckResult.objects.filter(run__revision=revision).values_list("check_id", "status"))
    assert statuses == {"files": "pass", "greets-ada": "fail", "hidden-tests": "fail"}
    assert own_containers(docker_client) == []
