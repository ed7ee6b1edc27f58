"""revision_submit: access, revision policy, storage, numbering and the hand-off to the grading queue."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from courses.models import Enrollment
from labs import storage
from labs.errors import LearnerError, SubmissionLimitReached, SubmissionNotAllowed, SubmissionTooSoon
from labs.models import Revision
from labs.services.submissions import revision_submit
from labs.uploads import UploadRejected

from .factories import DEFAULT_SPEC, make_lab, make_user
from .test_uploads import GOOD, HOSTILE, make_zip

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(settings, tmp_path) -> Path:
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    return settings.SUBMISSIONS_ROOT


def written(root: Path) -> list[Path]:
    return list(root.rglob("*")) if root.exists() else []


def spec_with(**policy) -> dict:
    return {**DEFAULT_SPEC, "policy": {**DEFAULT_SPEC["policy"], **policy}}


@pytest.mark.parametrize(("case", "build", "expected"), HOSTILE, ids=[case for case, _, _ in HOSTILE])
def test_a_hostile_upload_writes_nothing_and_uses_no_revision(root, case, build, expected):
    lab = make_lab()
    user = make_user()
    with pytest.raises(UploadRejected) as caught:
        revision_submit(lab=lab, user=user, upload=build())
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems
    assert caught.value.hint.startswith("Fix every problem listed")
    assert written(root) == []
    assert not Revision.objects.exists()


def enqueues(callbacks: list) -> list:
    """The on-commit callbacks that send the grading task (an enrollment's header invalidation may add its own)."""
    return [callback for callback in callbacks if "revision_enqueue" in callback.__qualname__]


def test_it_stores_the_tree_and_queues_revision_one(root, django_capture_on_commit_callbacks):
    lab = make_lab()
    user = make_user()
    with django_capture_on_commit_callbacks() as callbacks:
        revision = revision_submit(lab=lab, user=user, upload=make_zip(GOOD, ("pkg/util.py", b"X = 1\n")))
    assert (revision.number, revision.state, revision.total_bytes) == (1, Revision.State.QUEUED, len(GOOD[1]) + 6)
    assert revision.queued_at is not None
    assert [f["path"] for f in revision.files] == ["pkg/util.py", "service.py"]
    assert len(enqueues(callbacks)) == 1, "the grading task must be enqueued only once the revision is committed"
    stored = root / revision.tree_sha256
    assert (stored / "files" / "service.py").read_bytes() == GOOD[1]
    assert storage.tree_files_dir(tree_sha256=revision.tree_sha256) == stored / "files"
    assert stat.S_IMODE((stored / "files" / "pkg" / "util.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((stored / "files" / "pkg").stat().st_mode) == 0o755
    assert stat.S_IMODE(stored.stat().st_mode) == 0o755
    manifest = json.loads((stored / "manifest.json").read_text())
    assert manifest["files"] == revision.files
    assert manifest["tree_sha256"] == revision.tree_sha256
    assert not [p for p in root.iterdir() if p.name.startswith(".incoming-")]


def test_two_submits_get_numbers_one_and_two_and_identical_content_is_stored_once(root):
    lab = make_lab()
    user = make_user()
    first = revision_submit(lab=lab, user=user, upload=make_zip(GOOD))
    second = revision_submit(lab=lab, user=user, upload=[("service.py", GOOD[1])])
    assert (first.number, second.number) == (1, 2)
    assert first.tree_sha256 == second.tree_sha256
    assert [p.name for p in root.iterdir()] == [first.tree_sha256]


def test_numbers_are_per_learner(root):
    lab = make_lab()
    revision_submit(lab=lab, user=make_user(), upload=make_zip(GOOD))
    other = revision_submit(lab=lab, user=make_user(), upload=make_zip(GOOD))
    assert other.number == 1


def test_a_rejected_upload_does_not_use_up_a_revision(root):
    lab = make_lab(max_revisions=1)
    user = make_user()
    with pytest.raises(UploadRejected):
        revision_submit(lab=lab, user=user, upload=make_zip(("../x.py", b"x")))
    assert revision_submit(lab=lab, user=user, upload=make_zip(GOOD)).number == 1


def test_the_cooldown_says_when_the_next_submission_is_possible(root):
    lab = make_lab(cooldown_seconds=30)
    user = make_user()
    first = revision_submit(lab=lab, user=user, upload=make_zip(GOOD))
    Revision.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(seconds=10))
    with pytest.raises(SubmissionTooSoon) as caught:
        revision_submit(lab=lab, user=user, upload=make_zip(GOOD))
    assert caught.value.retry_in_seconds == 20
    assert caught.value.message.startswith("You can submit again at ")
    assert caught.value.message.endswith(" UTC, in 20 seconds.")
    assert caught.value.retry_at.strftime("%H:%M:%S") in caught.value.message
    assert "cooldown of 30 seconds" in caught.value.hint
    assert Revision.objects.count() == 1


def test_the_cooldown_comes_from_the_spec_when_the_column_is_unset(root):
    lab = make_lab(spec=spec_with(cooldown_seconds=600))
    user = make_user()
    revision_submit(lab=lab, user=user, upload=make_zip(GOOD))
    with pytest.raises(SubmissionTooSoon) as caught:
        revision_submit(lab=lab, user=user, upload=make_zip(GOOD))
    assert caught.value.retry_in_seconds in (599, 600)


def test_max_revisions_says_how_many_were_used(root):
    lab = make_lab(max_revisions=2)
    user = make_user()
    for _ in range(2):
        revision_submit(lab=lab, user=user, upload=make_zip(GOOD))
    with pytest.raises(SubmissionLimitReached) as caught:
        revision_submit(lab=lab, user=user, upload=make_zip(GOOD))
    assert caught.value.message == "You have used all 2 of the 2 revisions this lab allows."
    assert Revision.objects.count() == 2


def test_a_late_submission_is_refused_when_the_lab_rejects_late_work(root):
    lab = make_lab(spec=spec_with(late="reject"), due_at=timezone.now() - timedelta(hours=1))
    with pytest.raises(SubmissionNotAllowed) as caught:
        revision_submit(lab=lab, user=make_user(), upload=make_zip(GOOD))
    assert "has passed and this lab does not accept late submissions" in caught.value.message
    assert written(root) == []


def test_a_late_submission_is_marked_late_when_accepted(root):
    lab = make_lab(spec=spec_with(due="2020-01-01T00:00:00Z", late="accept"))
    revision = revision_submit(lab=lab, user=make_user(), upload=make_zip(GOOD))
    assert revision.is_late is True


def test_an_anonymous_user_cannot_submit(root):
    with pytest.raises(SubmissionNotAllowed) as caught:
        revision_submit(lab=make_lab(), user=AnonymousUser(), upload=make_zip(GOOD))
    assert caught.value.message == "You need to log in to submit."
    assert isinstance(caught.value, LearnerError)


def test_submitting_enrolls_the_user_as_a_learner(root):
    lab = make_lab()
    user = make_user()
    revision_submit(lab=lab, user=user, upload=make_zip(GOOD))
    assert Enrollment.objects.get(user=user, course=lab.course).role == Enrollment.Role.LEARNER


def test_storage_refuses_a_path_outside_the_root_even_if_validation_were_bypassed(root, tmp_path):
    from labs.errors import PlatformError
    from labs.uploads import ValidatedTree

    forged = ValidatedTree(files=[("../../outside.py", b"x", "0" * 64)], total_bytes=1, tree_sha256="f" * 64)
    with pytest.raises(PlatformError):
        storage.tree_store(tree=forged)
    assert not (tmp_path / "outside.py").exists()
    assert written(root) == []


# --- a refused upload changes nothing, enrollment included ---------------------------------------------------------


def nothing_changed(root: Path, user) -> None:
    assert not Enrollment.objects.filter(user=user).exists(), "a refused upload must not enroll"
    assert not Revision.objects.filter(user=user).exists()
    assert written(root) == []


@pytest.mark.parametrize(("case", "build", "expected"), HOSTILE, ids=[case for case, _, _ in HOSTILE])
def test_an_outsiders_rejected_upload_leaves_no_enrollment_no_revision_and_no_file(root, case, build, expected):
    outsider = make_user()  # logged in, enrolled nowhere
    with pytest.raises(UploadRejected):
        revision_submit(lab=make_lab(), user=outsider, upload=build())
    nothing_changed(root, outsider)


def test_an_outsiders_submission_refused_by_the_lab_policy_leaves_no_enrollment(root):
    lab = make_lab(spec=spec_with(late="reject"), due_at=timezone.now() - timedelta(hours=1))
    outsider = make_user()
    with pytest.raises(SubmissionNotAllowed):
        revision_submit(lab=lab, user=outsider, upload=make_zip(GOOD))
    nothing_changed(root, outsider)


def test_a_disabled_account_is_refused_without_being_enrolled(root):
    disabled = make_user(is_active=False)
    with pytest.raises(SubmissionNotAllowed):
        revision_submit(lab=make_lab(), user=disabled, upload=make_zip(GOOD))
    nothing_changed(root, disabled)


def test_an_outsiders_enrollment_is_rolled_back_when_storing_the_revision_fails(root, monkeypatch):
    from labs.errors import PlatformError

    def broken_store(*, tree):
        raise PlatformError("disk full")

    monkeypatch.setattr(storage, "tree_store", broken_store)
    outsider = make_user()
    with pytest.raises(PlatformError):
        revision_submit(lab=make_lab(), user=outsider, upload=make_zip(GOOD))
    nothing_changed(root, outsider)


def test_an_outsiders_first_stored_revision_enrolls_them_in_the_same_transaction(
    root, django_capture_on_commit_callbacks
):
    lab = make_lab()
    outsider = make_user()
    with django_capture_on_commit_callbacks() as callbacks:
        revision = revision_submit(lab=lab, user=outsider, upload=make_zip(GOOD))
    enrollment = Enrollment.objects.get(user=outsider, course=lab.course)
    assert enrollment.role == Enrollment.Role.LEARNER
    assert enrollment.created_at <= revision.created_at
    assert len(enqueues(callbacks)) == 1


def test_a_reviewer_who_submits_keeps_the_reviewer_role(root):
    lab = make_lab()
    reviewer = make_user()
    Enrollment.objects.create(user=reviewer, course=lab.course, role=Enrollment.Role.REVIEWER)
    revision_submit(lab=lab, user=reviewer, upload=make_zip(GOOD))
    assert Enrollment.objects.get(user=reviewer, course=lab.course).role == Enrollment.Role.REVIEWER


def test_an_outsiders_rejected_upload_on_the_lab_page_leaves_no_enrollment(root, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    lab = make_lab()
    outsider = make_user()
    client.force_login(outsider)
    upload = SimpleUploadedFile("work.zip", make_zip(GOOD, ("evil\u202egpj.py", b"x")))
    response = client.post(f"/courses/{lab.course.slug}/labs/{lab.slug}/", {"files": [upload]})
    assert response.status_code == 400
    assert "bidirectional text control" in response.content.decode()
    nothing_changed(root, outsider)


def test_an_outsiders_rejected_upload_through_the_api_leaves_no_enrollment(root, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from labs.services.tokens import api_token_create

    lab = make_lab()
    outsider = make_user()
    raw = api_token_create(user=outsider)[1]
    upload = SimpleUploadedFile("work.zip", make_zip(("../evil.py", b"x")))
    response = client.post(
        f"/api/labs/{lab.course.slug}/{lab.slug}/revisions",
        {"archive": upload},
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 400
    nothing_changed(root, outsider)
