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

from labs import bundles, storage
from labs.blobs import blob_tree_put
from labs.errors import PlatformError
from labs.models import Blob, BlobTree, Revision
from labs.services.submissions import revision_submit

from .conftest import HELLO_LAB_DIR, folder_tree, own_containers, wait_for_state
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
    tree = folder_tree(bundle_dir)
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
    tree = folder_tree(starter)
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
    tree = folder_tree(bundle_dir)
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
    left = sorted(p.name.split("-")[0] for p in files_dir.parent.parent.iterdir() if p.name.startswith("."))
    # The replaced copy is set aside for the sweep (a sandbox may still mount it), beside the lock; no temporary.
    assert left == [f".{revision.tree_sha256}.lock", ".stale"]


def test_a_tampered_grader_file_is_rebuilt_with_its_modes(web_host, bundle_dir):
    tree = folder_tree(bundle_dir)
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
    tree = folder_tree(bundle_dir)
    bundles.grader_store(tree=tree)
    lab.grader_digest = tree.digest
    lab.save(update_fields=["grader_digest"])
    shutil.rmtree(storage.tree_path(tree_sha256=lost.tree_sha256))
    Blob.objects.all().delete()
    BlobTree.objects.all().delete()  # as a database migrated to 0010 over stores written before it

    call_command("blobs_backfill")

    out = capsys.readouterr().out
    assert lost.tree_sha256 in out
    assert out.strip().splitlines()[-1] == "2 uploaded, 0 already stored, 1 missing"
    stored = set(BlobTree.objects.values_list("kind", "digest"))
    assert stored == {("submission", kept.tree_sha256), ("grader", tree.digest)}


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_worker_grades_correctly_after_its_local_copies_are_wiped(celery_worker, lab_factory, docker_client):
    """A worker whose host never saw the files (its caches wiped) grades from the database alone."""
    from labs.services.grading import revision_enqueue

    lab = lab_factory(HELLO_LAB_DIR)
    grader = folder_tree(HELLO_LAB_DIR / "grader")
    bundles.grader_store(tree=grader)
    lab.grader_digest = grader.digest
    lab.save(update_fields=["grader_digest"])
    with transaction.atomic():
        revision = _good_example_stored_then_wiped(lab)
        shutil.rmtree(bundles.grader_dir(digest=grader.digest))
        revision_enqueue(revision=revision)

    revision = wait_for_state(revision, {"graded", "failed", "error"})

    assert (revision.state, revision.score, revision.max_score) == ("graded", 10, 10), revision.runs.last().log
    assert storage.tree_files_dir(tree_sha256=revision.tree_sha256).is_dir()  # materialized again by the worker
    assert os.access(bundles.grader_dir(digest=grader.digest) / "tests" / "test_greet.py", os.R_OK)
    assert own_containers(docker_client) == []


def test_backfill_repairs_a_tree_whose_corrupt_blob_was_deleted_from_the_local_copy(settings, web_host, tmp_path):
    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    Blob.objects.filter(sha256=hashlib.sha256(FILES["service.py"]).hexdigest()).delete()

    call_command("blobs_backfill")

    _host(settings, tmp_path / "worker")
    files_dir = storage.tree_materialize(tree_sha256=revision.tree_sha256)
    assert (files_dir / "service.py").read_bytes() == FILES["service.py"]


# --- two workers, one host: the lock, the set-aside copy and the sweep ---------------------------------------


def _tamper(files_dir: Path) -> None:
    (files_dir / "service.py").write_bytes(b"changed\n")


def test_a_rebuild_leaves_the_replaced_copy_readable_for_a_sandbox_that_mounts_it(web_host):
    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    files_dir = storage.tree_materialize(tree_sha256=revision.tree_sha256)
    mounted = os.open(files_dir, os.O_RDONLY | os.O_DIRECTORY)  # what a running sandbox's bind mount holds
    try:
        _tamper(files_dir)

        storage.tree_materialize(tree_sha256=revision.tree_sha256)

        assert sorted(os.listdir(mounted)) == sorted(["README.md", "pkg", "service.py"])
    finally:
        os.close(mounted)
    assert (files_dir / "service.py").read_bytes() == FILES["service.py"]


def test_it_swaps_a_stale_copy_only_while_holding_the_tree_lock(web_host, monkeypatch):
    import fcntl

    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    dest = storage.tree_path(tree_sha256=revision.tree_sha256)
    _tamper(dest / "files")
    real_rename = os.rename
    renames: list[tuple[str, bool]] = []

    def rename(src, dst, *args, **kwargs):
        if dest in (Path(src), Path(dst)):
            probe = os.open(dest.parent / f".{dest.name}.lock", os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                renames.append((Path(dst).name, False))
            except BlockingIOError:
                renames.append((Path(dst).name, True))  # another worker would wait here
            finally:
                os.close(probe)
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    storage.tree_materialize(tree_sha256=revision.tree_sha256)

    assert [held for _name, held in renames] == [True, True]  # set aside, then the new copy in, both locked
    assert renames[0][0].startswith(".stale-") and renames[1][0] == dest.name


def test_a_second_rebuilder_keeps_the_fresh_copy_another_worker_swapped_in(web_host, monkeypatch):
    from labs import blobs

    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    files_dir = storage.tree_files_dir(tree_sha256=revision.tree_sha256)
    _tamper(files_dir)
    real_read = blobs.blob_tree_read
    worker_a: dict = {}

    def read(*, tree):
        # Worker B saw the stale copy and is writing its own; meanwhile worker A rebuilds and starts grading.
        if not worker_a:
            worker_a["started"] = True
            worker_a["root"] = storage.tree_materialize(tree_sha256=revision.tree_sha256)
            worker_a["mount"] = os.open(worker_a["root"], os.O_RDONLY | os.O_DIRECTORY)
            worker_a["inode"] = worker_a["root"].stat().st_ino
        yield from real_read(tree=tree)

    monkeypatch.setattr(blobs, "blob_tree_read", read)
    _tamper(files_dir)  # still stale when B checks
    try:
        assert storage.tree_materialize(tree_sha256=revision.tree_sha256) == files_dir
        assert files_dir.stat().st_ino == worker_a["inode"]  # B found A's copy good under the lock: kept it
        assert sorted(os.listdir(worker_a["mount"])) == sorted(["README.md", "pkg", "service.py"])
    finally:
        if "mount" in worker_a:
            os.close(worker_a["mount"])


def test_the_sweep_removes_old_set_aside_copies_temporaries_and_free_locks_only(settings, web_host):
    import fcntl
    import time

    from labs.blobs import caches_sweep

    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    root = storage.submissions_root()
    graders = Path(settings.DATA_DIR) / "graders"
    graders.mkdir()
    old = time.time() - 2 * settings.GRADING_MAX_WALL_SECONDS - 60
    for folder in [
        root / ".stale-0123456789ab-1",
        graders / ".0123456789ab-xyz",
        root / ".incoming-abc",
        root / ".stale-young",
    ]:
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "f.py").write_bytes(b"x\n")
        (folder / "sub" / "f.py").chmod(0o444)
    free_lock, held_lock = root / f".{revision.tree_sha256}.lock", root / f".{'c' * 64}.lock"
    free_lock.touch()
    held_lock.touch()
    for path in [
        root / ".stale-0123456789ab-1",
        graders / ".0123456789ab-xyz",
        root / ".incoming-abc",
        free_lock,
        held_lock,
    ]:
        os.utime(path, (old, old))
    os.utime(storage.tree_path(tree_sha256=revision.tree_sha256), (old, old))
    holder = os.open(held_lock, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        assert caches_sweep() == 4
    finally:
        os.close(holder)

    assert sorted(p.name for p in root.iterdir()) == sorted([".stale-young", held_lock.name, revision.tree_sha256])
    assert list(graders.iterdir()) == []
    assert storage.tree_materialize(tree_sha256=revision.tree_sha256)  # the tree itself is never swept


# --- verification: unreadable files and wrong modes ---------------------------------------------------------


def test_a_copy_with_closed_modes_is_rebuilt_readable_for_the_sandbox(web_host):
    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    files_dir = storage.tree_files_dir(tree_sha256=revision.tree_sha256)
    for path in files_dir.rglob("*"):
        path.chmod(0o700 if path.is_dir() else 0o600)  # a backup restored with umask 077
    files_dir.chmod(0o700)

    storage.tree_materialize(tree_sha256=revision.tree_sha256)

    modes = {p: mode for p, (_data, mode) in _snapshot(files_dir).items()}
    assert modes == {".": 0o755, "pkg": 0o755, "pkg/util.py": 0o644, "service.py": 0o644, "README.md": 0o644}


def test_a_file_the_worker_cannot_read_is_a_problem_to_rebuild_not_a_crash(web_host, monkeypatch):
    from labs import blobs

    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=FILES)
    stored = BlobTree.objects.get(digest=revision.tree_sha256)

    def unreadable(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(blobs, "file_sha256", unreadable)
    problem = blobs.blob_tree_local_problem(
        tree=stored, files_root=storage.tree_files_dir(tree_sha256=revision.tree_sha256)
    )

    assert "cannot be read" in problem and "Permission denied" in problem


# --- the database side: insert order, read batches, hostile paths -------------------------------------------


def test_it_inserts_new_blobs_in_sha_order_so_concurrent_submits_cannot_deadlock(web_host):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    files = {f"f{n}.py": f"x = {n}\n".encode() for n in range(8)}
    shas = [hashlib.sha256(data).hexdigest() for data in files.values()]
    assert shas != sorted(shas)  # by path, the contents are not in sha order

    with CaptureQueriesContext(connection) as queries:
        make_stored_revision(lab=make_lab(), user=make_user(), files=files)

    insert = next(
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith("INSERT") and 'blob"' in q["sql"].split("(")[0]
    )
    positions = [insert.index(sha) for sha in shas]
    assert [sha for _pos, sha in sorted(zip(positions, shas, strict=True))] == sorted(shas)


def test_it_materializes_a_fifty_file_tree_in_a_handful_of_queries(
    settings, web_host, django_assert_max_num_queries, monkeypatch
):
    from labs import blobs

    files = {f"pkg/m{n:02}.py": f"N = {n % 40}\n".encode() for n in range(50)}  # ten contents appear twice
    revision = make_stored_revision(lab=make_lab(), user=make_user(), files=files)

    _host(settings, Path(settings.DATA_DIR).parent / "worker")
    with django_assert_max_num_queries(3):
        files_dir = storage.tree_materialize(tree_sha256=revision.tree_sha256)
    assert {p.relative_to(files_dir).as_posix(): p.read_bytes() for p in files_dir.rglob("*.py")} == files

    # Small batches (by bytes) still yield every file, in manifest order, repeated contents fetched again.
    monkeypatch.setattr(blobs, "READ_BATCH_BYTES", 20)
    stored = BlobTree.objects.get(digest=revision.tree_sha256)
    read = list(blobs.blob_tree_read(tree=stored))
    assert [(entry["path"], data) for entry, data in read] == sorted(files.items())


@pytest.mark.parametrize("path", ["a/./b.py", "../evil.py", "/etc/evil.py", "a//b.py", "a/", "", "a/../b.py", "."])
def test_a_put_with_an_unnormalised_or_hostile_path_is_refused(path):
    with pytest.raises(PlatformError, match="not a plain relative path"):
        blob_tree_put(kind=BlobTree.Kind.SUBMISSION, digest="b" * 64, entries=[(path, b"x", False)])
    assert not BlobTree.objects.exists() and not Blob.objects.exists()


def test_a_hostile_path_already_in_the_database_is_refused_naming_the_tree(web_host):
    from labs.blobs import tree_digest_of

    data = b"evil\n"
    sha = hashlib.sha256(data).hexdigest()
    manifest = [{"path": "../../evil.py", "size": len(data), "sha256": sha, "executable": False}]
    digest = tree_digest_of(kind=BlobTree.Kind.SUBMISSION, manifest=manifest)
    Blob.objects.create(sha256=sha, size=len(data), data=data)
    BlobTree.objects.create(kind=BlobTree.Kind.SUBMISSION, digest=digest, manifest=manifest, total_bytes=len(data))

    with pytest.raises(PlatformError) as caught:
        storage.tree_materialize(tree_sha256=digest)

    assert f"submission tree {digest}" in str(caught.value) and "refusing to materialize" in str(caught.value)
    assert not (storage.submissions_root().parent / "evil.py").exists()


# --- starters: verified once per change, our error when the database cannot supply one -------------------------


def _starter_lab(tmp_path) -> tuple:
    starter = tmp_path / "course" / "starter"
    starter.mkdir(parents=True)
    (starter / "greet.py").write_bytes(b"print('hi')\n")
    tree = folder_tree(starter)
    archive = bundles.starter_store(tree=tree).read_bytes()
    return make_lab(starter_digest=tree.digest), tree, archive


def test_a_starter_archive_is_hashed_again_only_when_its_file_changed(web_host, tmp_path, monkeypatch):
    lab, tree, archive = _starter_lab(tmp_path)
    url = f"/courses/{lab.course.slug}/labs/{lab.slug}/starter.zip"
    real_digest = bundles._zip_digest
    hashed: list[int] = []

    def counting(handle):
        hashed.append(1)
        return real_digest(handle)

    monkeypatch.setattr(bundles, "_zip_digest", counting)
    monkeypatch.setattr(bundles, "_STARTERS_VERIFIED", {})
    downloads = [b"".join(Client().get(url).streaming_content) for _ in range(3)]
    assert downloads == [archive] * 3 and len(hashed) == 1  # verified on the first download only

    path = bundles.starter_path(digest=tree.digest)
    path.write_bytes(bundles.starter_zip([("greet.py", b"print('changed')\n", False)]))  # changed in place
    hashed.clear()
    assert b"".join(Client().get(url).streaming_content) == archive
    assert len(hashed) == 2  # the changed archive, then the one rebuilt from the database


def test_a_starter_whose_blob_is_missing_is_our_error_a_503_logged(settings, web_host, tmp_path, caplog):
    lab, _tree, _archive = _starter_lab(tmp_path)
    Blob.objects.filter(sha256=hashlib.sha256(b"print('hi')\n").hexdigest()).delete()
    _host(settings, tmp_path / "other-web")

    response = Client().get(f"/courses/{lab.course.slug}/labs/{lab.slug}/starter.zip")

    assert response.status_code == 503
    assert b"unavailable because of a problem on our side; try again later" in response.content
    assert any(r.levelname == "ERROR" and "'greet.py'" in r.getMessage() for r in caplog.records)


def test_a_starter_the_host_cannot_write_is_our_error_a_503(web_host, tmp_path, monkeypatch):
    from labs import views

    lab, _tree, _archive = _starter_lab(tmp_path)

    def unwritable(*, digest):
        raise PermissionError(13, "Permission denied", "starters")

    monkeypatch.setattr(views, "starter_materialize", unwritable)
    response = Client().get(f"/courses/{lab.course.slug}/labs/{lab.slug}/starter.zip")

    assert response.status_code == 503


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_grading_whose_blob_is_missing_is_our_error_never_a_score(celery_worker, lab_factory):
    """The worker's host never saw the files and the database lost one: an error naming the file, no verdict."""
    import time

    from labs.models import CheckResult, GradingRun
    from labs.services.grading import revision_enqueue

    lab = lab_factory(HELLO_LAB_DIR)
    with transaction.atomic():
        revision = _good_example_stored_then_wiped(lab)
        lost = revision.files[0]
        lost_path = lost["path"]
        Blob.objects.filter(sha256=lost["sha256"]).delete()
        revision_enqueue(revision=revision)

    deadline = time.monotonic() + 120  # a bound, not a performance threshold
    while time.monotonic() < deadline and not GradingRun.objects.filter(revision=revision, outcome="error").exists():
        time.sleep(0.2)

    revision.refresh_from_db()
    run = GradingRun.objects.filter(revision=revision, outcome="error").first()
    assert revision.state in {"queued", "error"} and revision.error_count >= 1  # ours: retried, never "failed"
    assert f"{lost_path!r}" in run.error_detail and "missing from the database" in run.error_detail
    assert revision.score is None and not revision.failure_reason
    assert not CheckResult.objects.filter(run__revision=revision).exists()


def _good_example_stored_then_wiped(lab) -> Revision:
    """hello-pinned's good example stored as a submit stores it (database and local copy), then its local copy
    removed, as on a worker's host that never saw it. Call inside the transaction that enqueues it."""
    good = HELLO_LAB_DIR / "examples" / "good"
    revision = make_stored_revision(
        lab=lab,
        user=make_user(),
        files={p.name: p.read_bytes() for p in sorted(good.iterdir())},
        queued_at=timezone.now(),
    )
    shutil.rmtree(storage.tree_path(tree_sha256=revision.tree_sha256))
    return revision
