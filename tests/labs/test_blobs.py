"""Files every host can read (labs.blobs): a submission, a grader bundle and a starter stored as blobs in the
database reach a host whose local stores are empty, verified byte for byte; tampering on either side is caught."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone

from courses.coursefs import TreeDigest, tree_digest
from labs import bundles, storage
from labs.blobs import blob_tree_put
from labs.errors import PlatformError
from labs.models import Blob, BlobTree, Revision
from labs.services.submissions import revision_submit
from labs.uploads import UploadRules, validate_files

from .conftest import HELLO_LAB_DIR, own_containers, wait_for_state
from .factories import make_lab, make_stored_revision, make_user
from .test_uploads import GOOD, make_zip

pytestmark = pytest.mark.django_db

FILES = {"service.py": b"print('quote')\n", "pkg/util.py": b"X = 1\n", "README.md": b"# notes\n"}


@pytest.fixture
def web_host(settings, tmp_path) -> Path:
    """The host the files were submitted and imported on: its own data directory."""
    return _host(settings, tmp_path / "web")


def _host(settings, data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings.DATA_DIR = data_dir
    settings.SUBMISSIONS_ROOT = data_dir / "submissions"
    return data_dir


def _snapshot(top: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every file's bytes and every entry's permission bits under `top`, by relative path."""
    return {
        path.relative_to(top).as_posix(): (
            None if path.is_dir() else path.read_bytes(),
            stat.S_IMODE(path.stat().st_mode),
        )
        for path in [top, *top.rglob("*")]
    }


def _folder_tree(folder: Path) -> TreeDigest:
    """A folder as the course loader hashes it (courses.coursefs): path, size, sha256, executable bit."""
    files = [
        (
            p.relative_to(folder).as_posix(),
            p.stat().st_size,
            hashlib.sha256(p.read_bytes()).hexdigest(),
            bool(p.stat().st_mode & 0o111),
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]
    return TreeDigest(root=folder, digest=tree_digest(files), files=files)


@pytest.fixture
def bundle_dir(tmp_path) -> Path:
    folder = tmp_path / "course" / "grader"
    (folder / "tests").mkdir(parents=True)
    (folder / "tests" / "test_hidden.py").write_bytes(b"def test_it():\n    assert True\n")
    (folder / "run.sh").write_bytes(b"#!/bin/sh\nexec pytest -q tests\n")
    (folder / "run.sh").chmod(0o755)
    return folder


def test_it_materializes_a_submitted_tree_on_another_host_with_identical_bytes_and_modes(settings, web_host, tmp_path):
    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    on_web = _snapshot(storage.tree_path(tree_sha256=revision.tree_sha256))

    _host(settings, tmp_path / "worker")
    files_dir = storage.tree_materialize(tree_sha256=revision.tree_sha256)

    assert files_dir == storage.tree_files_dir(tree_sha256=revision.tree_sha256)
    assert files_dir.is_relative_to(tmp_path / "worker")
    assert _snapshot(files_dir.parent) == on_web
    assert {p: data for p, (data, _mode) in _snapshot(files_dir).items() if data is not None} == FILES


def test_it_materializes_a_grader_bundle_on_another_host_with_identical_bytes_and_modes(
    settings, web_host, tmp_path, bundle_dir
):
    tree = _folder_tree(bundle_dir)
    on_web = _snapshot(bundles.grader_store(tree=tree))

    _host(settings, tmp_path / "worker")
    grader = bundles.grader_materialize(digest=tree.digest)

    assert grader == bundles.grader_dir(digest=tree.digest) and grader.is_relative_to(tmp_path / "worker")
    assert _snapshot(grader) == on_web
    assert stat.S_IMODE((grader / "run.sh").stat().st_mode) == 0o555
    assert stat.S_IMODE((grader / "tests" / "test_hidden.py").stat().st_mode) == 0o444


def test_it_serves_the_starter_from_the_database_when_the_local_store_is_empty(settings, web_host, tmp_path):
    starter = tmp_path / "course" / "starter"
    starter.mkdir(parents=True)
    (starter / "greet.py").write_bytes(b"print('hi')\n")
    (starter / "run.sh").write_bytes(b"#!/bin/sh\n")
    (starter / "run.sh").chmod(0o755)
    tree = _folder_tree(starter)
    archive_on_web = bundles.starter_store(tree=tree).read_bytes()
    lab = make_lab(starter_digest=tree.digest)

    _host(settings, tmp_path / "other-web")
    response = Client().get(f"/courses/{lab.course.slug}/labs/{lab.slug}/starter.zip")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == archive_on_web
    assert bundles.starter_path(digest=tree.digest).read_bytes() == archive_on_web


def test_it_stores_the_same_content_once(web_host):
    lab, user = make_lab(), make_user()
    first = make_stored_revision(lab=lab, user=user, files=FILES)
    second = make_stored_revision(lab=lab, user=user, files=FILES)
    make_stored_revision(lab=lab, user=user, files={**FILES, "service.py": b"print('other')\n"})

    assert first.tree_sha256 == second.tree_sha256
    assert BlobTree.objects.filter(kind=BlobTree.Kind.SUBMISSION).count() == 2
    # Three files, then one changed file: four contents in all.
    assert Blob.objects.count() == len(FILES) + 1


def test_a_tampered_blob_in_the_database_raises_a_platform_error_naming_the_file(settings, web_host, tmp_path):
    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    sha = hashlib.sha256(FILES["pkg/util.py"]).hexdigest()
    Blob.objects.filter(sha256=sha).update(data=b"X = 2\n")

    _host(settings, tmp_path / "worker")
    with pytest.raises(PlatformError) as caught:
        storage.tree_materialize(tree_sha256=revision.tree_sha256)

    assert "'pkg/util.py'" in str(caught.value) and "corrupt" in str(caught.value)
    assert revision.tree_sha256 in str(caught.value) and "runbook" in str(caught.value)
    assert not storage.tree_path(tree_sha256=revision.tree_sha256).exists()  # nothing half-written left behind


def test_a_missing_blob_raises_a_clear_platform_error(settings, web_host, tmp_path, bundle_dir):
    tree = _folder_tree(bundle_dir)
    bundles.grader_store(tree=tree)
    Blob.objects.filter(sha256=hashlib.sha256((bundle_dir / "run.sh").read_bytes()).hexdigest()).delete()

    _host(settings, tmp_path / "worker")
    with pytest.raises(PlatformError) as caught:
        bundles.grader_materialize(digest=tree.digest)

    message = str(caught.value)
    assert "'run.sh'" in message and "missing from the database" in message
    assert tree.digest in message and "import the course again" in message


def test_a_tree_in_neither_store_is_a_platform_error():
    with pytest.raises(PlatformError, match="neither in the database nor at"):
        storage.tree_materialize(tree_sha256="a" * 64)


def test_a_tampered_local_file_is_rebuilt_from_the_database(web_host):
    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    files_dir = storage.tree_files_dir(tree_sha256=revision.tree_sha256)
    target = files_dir / "service.py"
    target.chmod(0o644)
    target.write_bytes(b"import os; os.system('cat /grader/*')\n")
    (files_dir / "extra.py").write_bytes(b"planted\n")

    assert storage.tree_materialize(tree_sha256=revision.tree_sha256) == files_dir

    assert (files_dir / "service.py").read_bytes() == FILES["service.py"]
    assert not (files_dir / "extra.py").exists()
    assert not [p for p in files_dir.parent.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_tampered_grader_file_is_rebuilt_with_its_modes(web_host, bundle_dir):
    tree = _folder_tree(bundle_dir)
    grader = bundles.grader_store(tree=tree)
    before = _snapshot(grader)
    (grader / "run.sh").chmod(0o755)
    (grader / "run.sh").write_bytes(b"#!/bin/sh\nexit 0\n")

    assert bundles.grader_materialize(digest=tree.digest) == grader
    assert _snapshot(grader) == before


def test_the_review_page_reads_a_file_lost_locally_from_the_database(web_host):
    from labs.sources import revision_file_read

    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    shutil.rmtree(storage.tree_path(tree_sha256=revision.tree_sha256))

    assert revision_file_read(revision=revision, path="pkg/util.py", max_bytes=100) == FILES["pkg/util.py"]


def test_a_submit_whose_transaction_rolls_back_leaves_no_tree_row(web_host, monkeypatch):
    from labs.services import submissions

    def enqueue_fails(revision):
        raise RuntimeError("broker down")

    monkeypatch.setattr(submissions, "_enqueue", enqueue_fails)
    with pytest.raises(RuntimeError):
        revision_submit(lab=make_lab(), user=make_user(), upload=make_zip(GOOD))

    assert not Revision.objects.exists()
    assert not BlobTree.objects.exists() and not Blob.objects.exists()


def test_a_put_whose_files_do_not_hash_to_the_digest_stores_nothing():
    with pytest.raises(PlatformError, match="not to its name"):
        blob_tree_put(kind=BlobTree.Kind.SUBMISSION, digest="b" * 64, entries=[("a.py", b"x", False)])
    assert not BlobTree.objects.exists() and not Blob.objects.exists()


def test_backfill_uploads_what_the_local_stores_hold_and_names_what_is_missing(web_host, bundle_dir, capsys):
    lab, user = make_lab(), make_user()
    kept = make_stored_revision(lab=lab, user=user, files=FILES)
    lost = make_stored_revision(lab=lab, user=user, files={"service.py": b"lost\n"})
    tree = _folder_tree(bundle_dir)
    bundles.grader_store(tree=tree)
    lab.grader_digest = tree.digest
    lab.save(update_fields=["grader_digest"])
    shutil.rmtree(storage.tree_path(tree_sha256=lost.tree_sha256))
    Blob.objects.all().delete()
    BlobTree.objects.all().delete()  # as a database migrated to 0010 over stores written before it

    call_command("blobs_backfill")

    out = capsys.readouterr().out
    assert lost.tree_sha256 in out and "missing" in out
    stored = set(BlobTree.objects.values_list("kind", "digest"))
    assert stored == {("submission", kept.tree_sha256), ("grader", tree.digest)}


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_worker_grades_correctly_after_its_local_copies_are_wiped(celery_worker, lab_factory, docker_client):
    """A worker whose host never saw the files (its caches wiped) grades from the database alone."""
    from labs.services.grading import revision_enqueue

    lab = lab_factory(HELLO_LAB_DIR)
    grader = _folder_tree(HELLO_LAB_DIR / "grader")
    bundles.grader_store(tree=grader)
    lab.grader_digest = grader.digest
    lab.save(update_fields=["grader_digest"])
    good = HELLO_LAB_DIR / "examples" / "good"
    tree = validate_files(
        [(p.name, p.read_bytes()) for p in sorted(good.iterdir())], rules=UploadRules.for_files(lab.labspec.files)
    )
    with transaction.atomic():
        storage.tree_store(tree=tree)
        revision = Revision.objects.create(
            lab=lab,
            user=make_user(),
            number=1,
            tree_sha256=tree.tree_sha256,
            files=tree.manifest(),
            total_bytes=tree.total_bytes,
            queued_at=timezone.now(),
        )
        shutil.rmtree(storage.tree_path(tree_sha256=tree.tree_sha256))
        shutil.rmtree(bundles.grader_dir(digest=grader.digest))
        revision_enqueue(revision=revision)

    revision = wait_for_state(revision, {"graded", "failed", "error"})

    assert (revision.state, revision.score, revision.max_score) == ("graded", 10, 10), revision.runs.last().log
    assert storage.tree_files_dir(tree_sha256=tree.tree_sha256).is_dir()  # materialized again by the worker
    assert os.access(bundles.grader_dir(digest=grader.digest) / "tests" / "test_greet.py", os.R_OK)
    assert own_containers(docker_client) == []


def test_backfill_repairs_a_tree_whose_corrupt_blob_was_deleted_from_the_local_copy(settings, web_host, tmp_path):
    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    Blob.objects.filter(sha256=hashlib.sha256(FILES["service.py"]).hexdigest()).delete()

    call_command("blobs_backfill")

    _host(settings, tmp_path / "worker")
    files_dir = storage.tree_materialize(tree_sha256=revision.tree_sha256)
    assert (files_dir / "service.py").read_bytes() == FILES["service.py"]
