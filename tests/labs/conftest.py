"""Grading fixtures: a real Celery worker subprocess on the session's Redis, sharing the session's test database
with the test process (a file SQLite database, or Django's test_… database on PostgreSQL), grading in the real
Docker engine with the real runner image."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.conftest import ProcessGroup

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "labs"
HELLO_LAB_DIR = REPO_ROOT / "courses" / "content" / "production-systems" / "week-05-containers" / "lab-hello-pinned"
WORKER_SECRET = "worker-secret-must-never-reach-a-sandbox"


def managed_containers(client) -> list:
    # ignore_removed: a container removed between the list and its inspect (a pool replacing one) is not an error.
    return client.containers.list(all=True, filters={"label": "shipshape.managed=1"}, ignore_removed=True)


def own_containers(client) -> list:
    """Sandbox containers of this test session's database (other sessions may share the engine)."""
    from labs.sandbox.reaper import database_label

    label = database_label()
    return [c for c in managed_containers(client) if c.labels.get("shipshape.db") == label]


def worker_database_url(*, db_path: Path) -> str:
    """The URL of the session's test database for a worker subprocess: the SQLite file at `db_path`, or, when the
    session runs on PostgreSQL, Django's test database on that server (created by pytest-django, so this is
    only known once the session's database is set up)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return f"sqlite:///{db_path}"
    db = connection.settings_dict
    # DATABASE_URL names the database the session was pointed at; a worker must never write there.
    if db["NAME"] == urlsplit(os.environ.get("DATABASE_URL", "")).path.lstrip("/"):
        pytest.fail(f"the PostgreSQL test database is not set up yet (NAME is still {db['NAME']!r})")
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}@{db['HOST']}{port}/{quote(db['NAME'], safe='')}"


class CeleryWorker(ProcessGroup):
    """`celery -A config worker` as a subprocess of the test, restartable with different environment.

    `wrapper` goes before the command (e.g. `unshare ... sh -c '...; exec "$@"' sh`, for a worker in its own
    mount namespace); `name` starts the worker's hostname (`<name>-<start>@<host>`)."""

    def __init__(
        self,
        *,
        redis_url: str,
        db_path: Path,
        log_dir: Path,
        name: str = "test-worker",
        wrapper: Sequence[str] = (),
    ) -> None:
        self.redis_url = redis_url
        self.db_path = db_path
        self.log_dir = log_dir
        self.name = name
        self.wrapper = list(wrapper)
        self.process: subprocess.Popen | None = None
        self.log_file: Path | None = None
        self.starts = 0

    def env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SHIPSHAPE_DEV="1",
            DATABASE_URL=worker_database_url(db_path=self.db_path),
            REDIS_URL=self.redis_url,
            SHIPSHAPE_DB_CONN_MAX_AGE="0",
            SHIPSHAPE_WORKER_SECRET=WORKER_SECRET,
            PYTHONUNBUFFERED="1",
        )
        env.update(overrides)
        return env

    def start(self, *, concurrency: int = 1, same_name: bool = False, **env_overrides: str) -> None:
        """Start the worker, named anew each start unless `same_name` (a restart, as a service manager does)."""
        number = self.starts if same_name and self.starts else self.starts + 1
        self.starts += 1
        self.log_file = self.log_dir / f"worker-{self.starts}.log"
        handle = self.log_file.open("wb")
        self.process = subprocess.Popen(
            [
                *self.wrapper,
                *(sys.executable, "-m", "celery", "-A", "config", "worker"),
                # Every queue, as bin/run: short labs, long labs, regrade previews' copies (taken in turn).
                *("--pool", "prefork", "--concurrency", str(concurrency), "-Q", "celery,grading-long,regrades"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"),
                *("-n", f"{self.name}-{number}@%h"),
            ],
            cwd=REPO_ROOT,
            env=self.env(**env_overrides),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"celery worker exited at start:\n{self.log()[-3000:]}")
            if b" ready." in self.log_file.read_bytes():
                return
            time.sleep(0.2)
        pytest.fail(f"celery worker did not become ready:\n{self.log()[-3000:]}")


@pytest.fixture(scope="session")
def celery_worker(
    redis_server, runner_image, grading_db_path, tmp_path_factory, django_db_setup
) -> Iterator[CeleryWorker]:
    # django_db_setup first: on PostgreSQL the worker's DATABASE_URL names the test database it creates.
    worker = CeleryWorker(
        redis_url=redis_server.url, db_path=grading_db_path, log_dir=tmp_path_factory.mktemp("worker-logs")
    )
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def lab_factory():
    """Creates a Lab from a folder holding lab.yaml and grader/ (as the importer would: the grader bundle stored
    in the database and in this host's store)."""
    from courses.models import Unit
    from labs.bundles import grader_store
    from labs.labspec import parse_lab_yaml
    from labs.models import Lab
    from tests.labs.factories import make_course

    def create(lab_dir: Path, *, spec_overrides: dict | None = None):
        problems: list = []
        parsed = parse_lab_yaml(
            (lab_dir / "lab.yaml").read_text(), file="lab.yaml", folder_slug=lab_dir.name, problems=problems
        )
        assert parsed is not None and not problems, [p.format() for p in problems]
        spec = parsed.to_json()
        spec.update(spec_overrides or {})
        digest = grader_store(tree=folder_tree(lab_dir / "grader")).name
        course = make_course()
        unit = Unit.objects.create(course=course, slug="week-05-containers", title="Containers", position=1)
        slug = spec.get("slug") or lab_dir.name
        return Lab.objects.create(
            course=course,
            unit=unit,
            slug=slug,
            title=spec.get("title", slug),
            source_path=f"{unit.slug}/{slug}",
            spec=spec,
            content_hash=digest,
            grader_digest=digest,
        )

    return create


@pytest.fixture
def submit():
    """Stores a folder as a revision content-addressed (as revision_submit would, in the database and in this
    host's store, but without the upload rules: tests submit what a validator would refuse) and enqueues it."""
    from django.db import transaction
    from django.utils import timezone

    from labs.models import Revision
    from labs.services.grading import revision_enqueue
    from labs.storage import tree_store
    from labs.uploads import ValidatedTree, tree_digest
    from tests.labs.factories import make_user

    users: dict = {}

    def create(lab, folder: Path, *, user=None, enqueue: bool = True) -> Revision:
        user = user or users.setdefault("default", make_user())
        files = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            data = path.read_bytes()
            files.append((path.relative_to(folder).as_posix(), data, hashlib.sha256(data).hexdigest()))
        tree = ValidatedTree(
            files=files,
            total_bytes=sum(len(data) for _path, data, _sha in files),
            tree_sha256=tree_digest([(path, sha) for path, _data, sha in files]),
        )
        number = Revision.objects.filter(lab=lab, user=user).count() + 1
        with transaction.atomic():
            tree_store(tree=tree)
            revision = Revision.objects.create(
                lab=lab,
                user=user,
                number=number,
                tree_sha256=tree.tree_sha256,
                files=tree.manifest(),
                total_bytes=tree.total_bytes,
                queued_at=timezone.now(),
            )
            if enqueue:
                revision_enqueue(revision=revision)
        return revision

    return create


def wait_for_state(revision, states: set[str], *, timeout: float = 120):
    """Polls the database until the revision reaches one of `states` (a bound, not a performance threshold)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        revision.refresh_from_db()
        if revision.state in states:
            return revision
        time.sleep(0.2)
    raise AssertionError(f"revision {revision.pk} stayed {revision.state!r}; wanted one of {sorted(states)}")


def folder_tree(folder: Path):
    """A folder as the course loader hashes it (courses.coursefs): path, size, sha256, executable bit."""
    from courses.coursefs import TreeDigest, tree_digest

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


def _tree_digest(folder: Path) -> str:
    """A grader folder's digest as the course loader names it."""
    return folder_tree(folder).digest


@pytest.fixture
def submission(tmp_path):
    """A small submission folder for sandbox tests: greet.py and pkg/data.txt, readable by uid 1000."""
    root = tmp_path / "submission"
    (root / "pkg").mkdir(parents=True)
    (root / "greet.py").write_text("print('hi')\n")
    (root / "pkg" / "data.txt").write_text("data\n")
    for path in (root, root / "pkg"):
        path.chmod(0o755)  # the sandbox reads it as uid 1000
    return root
