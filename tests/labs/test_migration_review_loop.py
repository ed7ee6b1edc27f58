"""Migration 0008 on a database with work from before the review loop: every learner's work gets its LabWork in
the state its reviews imply, reviews become submitted ones, and several reviews of one revision are all kept."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("labs", "0007_api_token_expiry"), ("courses", "0003_lesson_unit_position")]
AFTER = [("labs", "0008_review_loop"), ("courses", "0003_lesson_unit_position")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def old_apps():
    apps = migrate(BEFORE)
    yield apps
    migrate(executor_leaf_nodes())


def executor_leaf_nodes():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def test_existing_work_enters_the_loop_in_the_state_its_reviews_imply(old_apps):
    User = old_apps.get_model("auth", "User")
    Course = old_apps.get_model("courses", "Course")
    Unit = old_apps.get_model("courses", "Unit")
    Lab = old_apps.get_model("labs", "Lab")
    Revision = old_apps.get_model("labs", "Revision")
    Review = old_apps.get_model("labs", "Review")
    course = Course.objects.create(slug="c", title="C")
    unit = Unit.objects.create(course=course, slug="u", title="U", position=1, number=1)
    lab = Lab.objects.create(course=course, unit=unit, slug="l", title="L", spec={}, content_hash="x")
    users = {name: User.objects.create(username=name) for name in ("ada", "bob", "cy", "dee", "r1", "r2")}

    def revision(user, number, state="graded", review_status="", score=5):
        return Revision.objects.create(
            lab=lab, user=users[user], number=number, state=state, review_status=review_status,
            tree_sha256="a" * 64, score=score, max_score=10,
        )  # fmt: skip

    approved = revision("ada", 1, review_status="approved", score=8)
    revision("bob", 1, review_status="changes_requested")
    bob_newest = revision("bob", 2, review_status="changes_requested", score=6)
    cy_newest = revision("cy", 1)
    revision("dee", 1, state="queued", score=None)
    # Two reviewers reviewed Ada's revision before claims existed: both reviews stay.
    Review.objects.create(revision=approved, reviewer=users["r1"], decision="changes_requested")
    Review.objects.create(revision=approved, reviewer=users["r2"], decision="approved")

    apps = migrate(AFTER)
    LabWork = apps.get_model("labs", "LabWork")
    works = {w.user.username: w for w in LabWork.objects.select_related("user")}
    assert {name: w.state for name, w in works.items()} == {
        "ada": "approved",
        "bob": "changes_requested",
        "cy": "awaiting_review",
        "dee": "submitted",
    }
    assert works["ada"].autograde == 80
    assert works["bob"].revision_id == bob_newest.pk
    assert works["bob"].revision_count == 2
    assert works["cy"].revision_id == cy_newest.pk
    assert works["cy"].waiting_since is not None
    assert works["dee"].autograde is None
    ReviewAfter = apps.get_model("labs", "Review")
    assert ReviewAfter.objects.filter(revision_id=approved.pk).count() == 2
    assert not ReviewAfter.objects.filter(submitted_at__isnull=True).exists()
    WorkEvent = apps.get_model("labs", "WorkEvent")
    assert WorkEvent.objects.count() == 4
