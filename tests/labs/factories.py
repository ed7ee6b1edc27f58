"""Rows for lab tests, created directly (no importer), with a lab.yaml-shaped spec dict."""

from __future__ import annotations

import copy
import itertools
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model

from courses.models import Course, Enrollment, Unit
from labs.models import Lab

_seq = itertools.count(1)

DEFAULT_SPEC: dict[str, Any] = {
    "title": "The quote service",
    "files": {
        "required": ["service.py"],
        "allowed": ["*.py", "requirements.lock", "*.md"],
        "max_file_bytes": 64 * 1024,
        "max_total_bytes": 256 * 1024,
        "max_files": 10,
    },
    "run": {"command": ["python", "service.py"]},
    "limits": {"cpus": 1.0, "memory_mb": 256, "wall_seconds": 60, "pids": 128, "output_bytes": 1048576},
    "checks": [
        {
            "id": "has-service",
            "kind": "files.required",
            "category": "correctness",
            "points": 5,
            "visibility": "visible",
            "args": {},
        },
        {
            "id": "secret-tests",
            "kind": "tests.pytest",
            "category": "correctness",
            "points": 10,
            "visibility": "hidden",
            "args": {},
        },
    ],
    "policy": {"cooldown_seconds": 0, "late": "accept"},
}


def make_user(username: str | None = None, **extra: Any):
    username = username or f"user{next(_seq)}"
    return get_user_model().objects.create_user(username=username, password="pw-for-tests-only", **extra)


def make_course(slug: str | None = None) -> Course:
    slug = slug or f"course-{next(_seq)}"
    return Course.objects.create(slug=slug, title=f"Course {slug}")


def make_lab(
    *,
    course: Course | None = None,
    slug: str | None = None,
    spec: dict | None = None,
    max_revisions: int | None = None,
    cooldown_seconds: int | None = None,
    due_at: datetime | None = None,
    **fields: Any,
) -> Lab:
    """A lab row; the policy keywords go into the spec's `policy:`, the one place a lab's policy lives."""
    spec = copy.deepcopy(spec if spec is not None else DEFAULT_SPEC)
    policy = spec.setdefault("policy", {})
    if max_revisions is not None:
        policy["max_revisions"] = max_revisions
    if cooldown_seconds is not None:
        policy["cooldown_seconds"] = cooldown_seconds
    if due_at is not None:
        policy["due"] = due_at.isoformat()
    course = course or make_course()
    unit = course.units.first() or Unit.objects.create(course=course, slug="week-01", title="Week one", position=1)
    slug = slug or f"lab-{next(_seq)}"
    return Lab.objects.create(
        course=course,
        unit=unit,
        slug=slug,
        title=fields.pop("title", f"Lab {slug}"),
        source_path=f"week-01/{slug}",
        spec=spec,
        content_hash="0" * 64,
        grader_digest="1" * 64,
        **fields,
    )


def enroll(user, course: Course, role: str = Enrollment.Role.LEARNER) -> Enrollment:
    return Enrollment.objects.create(user=user, course=course, role=role)


def loop_record(revision, *, notify: bool = False):
    """Run the review loop for a revision a test created directly, as revision_submit and grading would: the
    learner's work is started (or moved to `submitted`) and, for a finished revision, autograded. Returns it."""
    from django.db import transaction

    from labs.reviews import loop

    with transaction.atomic():  # as those callers do: the loop locks the work (PostgreSQL needs a transaction)
        work = loop.work_revision_submitted(revision=revision)
        if revision.state in ("graded", "failed"):
            work = loop.work_revision_graded(revision=revision, notify=notify)
    return work


def grade_through_state(revision, results: list[dict[str, Any]], *, worker: str = "test-worker", log: str = ""):
    """Grade `revision` as a worker does, through labs.grading.state: claim, one run, one stored result per entry of
    `results` (CheckResult fields; position from the order, message defaults to ""), logs, finish with their score.
    Returns the claimed revision, refreshed."""
    from labs.grading import state
    from labs.grading.scoring import score_results

    claimed = state.revision_claim(revision_id=revision.pk)
    assert claimed is not None, f"revision {revision.pk} could not be claimed ({revision.state})"
    run = state.run_start(revision=claimed, worker=worker)
    stored = [
        state.result_store(run=run, position=position, **{"message": "", **fields})
        for position, fields in enumerate(results)
    ]
    hidden = "hidden log" if any(fields.get("hidden_until_due") for fields in results) else ""
    state.run_record(run=run, log=log, hidden_log=hidden, resources={})
    assert state.revision_finish(revision=claimed, run=run, score=score_results(stored))
    claimed.refresh_from_db()
    return claimed


def make_stored_revision(*, lab, user, files: dict[str, bytes], number: int | None = None, **fields: Any):
    """A revision whose files went through the real validator and content-addressed storage (numbered after the
    learner's last one unless `number` is given); the review loop is left to the caller (loop_record)."""
    from labs.models import Revision
    from labs.storage import tree_store
    from labs.uploads import UploadRules, validate_files

    tree = validate_files(list(files.items()), rules=UploadRules())
    tree_store(tree=tree)
    return Revision.objects.create(
        lab=lab,
        user=user,
        number=number or Revision.objects.filter(lab=lab, user=user).count() + 1,
        tree_sha256=tree.tree_sha256,
        files=tree.manifest(),
        total_bytes=tree.total_bytes,
        **fields,
    )


def make_queued_revision(*, lab=None, user=None):
    """A queued revision with a placeholder tree (nothing stored): for tests of grading state, never graded."""
    from django.utils import timezone

    from labs.models import Revision

    return Revision.objects.create(
        lab=lab or make_lab(),
        user=user or make_user(),
        number=1,
        tree_sha256="a" * 64,
        files=[{"path": "service.py", "size": 12, "sha256": "b" * 64}],
        total_bytes=12,
        queued_at=timezone.now(),
    )
