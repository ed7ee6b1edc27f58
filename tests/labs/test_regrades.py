"""Regrades with a preview: copies of learners' newest revisions graded apart, a report of what would change check
by check, then apply (once), discard or cancel; the pages (instructors only, 404 for everyone else) and
`manage.py regrade`. Copies are graded here by writing their results through labs.grading.state, as a worker
would; the last test grades them with the real worker in Docker."""

from __future__ import annotations

import shutil
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from courses.models import Enrollment
from labs.errors import LearnerError
from labs.grading import state as grading_state
from labs.models import CheckResult, LabWork, Regrade, Revision, WorkEvent
from labs.regrades.selectors import regrade_progress
from labs.regrades.services import (
    REGRADE_USERNAME,
    regrade_apply,
    regrade_cancel,
    regrade_discard,
    regrade_preview_start,
)
from labs.reviews import loop
from labs.tasks import revision_queue
from tests.labs.factories import enroll, grade_through_state, make_course, make_lab, make_user

POINTS = {"has-service": 5, "secret-tests": 10}
ALL_PASS = {"has-service": "pass", "secret-tests": "pass"}
HIDDEN_FAILS = {"has-service": "pass", "secret-tests": "fail"}


@pytest.fixture
def commit_hooks(django_capture_on_commit_callbacks):
    """Runs what the code defers to commit time (no broker here: nothing is published when `send` is False)."""

    def run(*, send: bool):
        return django_capture_on_commit_callbacks(execute=send)

    return run


def submit(lab, user, *, tree: str = "a") -> Revision:
    """A learner's new revision, queued, with the loop told (as revision_submit does)."""
    number = Revision.objects.filter(lab=lab, user=user).count() + 1
    revision = Revision.objects.create(
        lab=lab,
        user=user,
        number=number,
        tree_sha256=tree * 64,
        files=[{"path": "service.py", "size": 12, "sha256": "b" * 64}],
        total_bytes=12,
    )
    loop.work_revision_submitted(revision=revision)
    return revision


def grade(revision: Revision, statuses: dict[str, str]) -> Revision:
    """Grade `revision` through labs.grading.state, as the worker does: claim, run, one result per check, finish."""
    return grade_through_state(
        revision,
        [
            {
                "check_id": check_id,
                "kind": "files.required" if check_id == "has-service" else "tests.pytest",
                "category": "correctness",
                "status": status,
                "points": Decimal(POINTS[check_id] if status == "pass" else 0),
                "max_points": Decimal(POINTS[check_id]),
                "message": f"{check_id} said {status}",
                "hidden_until_due": check_id == "secret-tests",
            }
            for check_id, status in statuses.items()
        ],
        log="visible log",
    )


def park_in_error(revision: Revision) -> None:
    """Our failure on every attempt: the revision ends in `error` (needs attention)."""
    for _ in range(grading_state.MAX_ERRORS):
        claimed = grading_state.revision_claim(revision_id=revision.pk)
        run = grading_state.run_start(revision=claimed, worker="test-worker")
        grading_state.revision_error(revision=claimed, run=run, detail="docker went away")
        revision.refresh_from_db()
    assert revision.state == "error"


class World:
    def __init__(self) -> None:
        self.course = make_course()
        self.lab = make_lab(course=self.course)
        self.instructor = make_user("teacher")
        enroll(self.instructor, self.course, Enrollment.Role.INSTRUCTOR)
        self.learners = {}
        for name in ("ada", "bob", "cy"):
            self.learners[name] = make_user(name)
            enroll(self.learners[name], self.course)

    def work(self, name: str) -> LabWork:
        return LabWork.objects.get(lab=self.lab, user=self.learners[name])


@pytest.fixture
def world(db) -> World:
    """ada and bob have graded revisions (the hidden check failing), cy's newest is still queued."""
    w = World()
    grade(submit(w.lab, w.learners["ada"]), HIDDEN_FAILS)
    grade(submit(w.lab, w.learners["bob"], tree="c"), ALL_PASS)
    submit(w.lab, w.learners["cy"], tree="d")
    return w


def start(world: World, commit_hooks) -> Regrade:
    with commit_hooks(send=False):  # no broker: the copies are graded by hand below
        return regrade_preview_start(lab=world.lab, by=world.instructor)


def grade_copies(regrade: Regrade, commit_hooks, statuses_by_user: dict[str, dict[str, str]]) -> Regrade:
    """Grade each copy with the statuses given for its learner (the changed grader), running the commit hooks."""
    with commit_hooks(send=True):
        for shadow in regrade.shadow_revisions.select_related("regrade_of__user"):
            grade(shadow, statuses_by_user[shadow.regrade_of.user.username])
    regrade.refresh_from_db()
    return regrade


def ready_preview(world: World, commit_hooks) -> Regrade:
    """The changed grader passes ada's hidden check; bob's results stay the same."""
    regrade = start(world, commit_hooks)
    return grade_copies(regrade, commit_hooks, {"ada": ALL_PASS, "bob": ALL_PASS})


# --- preview ---------------------------------------------------------------------------------------------------


def test_a_preview_copies_each_learners_newest_graded_revision_and_lists_the_others(world, commit_hooks):
    park_in_error(submit(world.lab, make_user("dee"), tree="e"))

    regrade = start(world, commit_hooks)

    shadows = list(regrade.shadow_revisions.select_related("regrade_of__user", "user"))
    assert sorted(s.regrade_of.user.username for s in shadows) == ["ada", "bob"]
    assert regrade.total == 2 and regrade.status == "running"
    for shadow in shadows:
        assert shadow.user.username == REGRADE_USERNAME and not shadow.user.is_active
        assert not shadow.user.has_usable_password()
        assert (shadow.tree_sha256, shadow.files, shadow.state) == (
            shadow.regrade_of.tree_sha256,
            shadow.regrade_of.files,
            "queued",
        )
        assert not shadow.is_learner_work
    skipped = {row["username"]: (row["state"], row["reason"]) for row in regrade.report["skipped"]}
    assert skipped == {
        "cy": ("queued", "still being graded"),
        "dee": ("error", "grading needs attention (our side)"),
    }


def test_copies_are_sent_to_the_low_priority_queue(world, commit_hooks):
    regrade = start(world, commit_hooks)

    assert {revision_queue(shadow) for shadow in regrade.shadow_revisions.all()} == {"regrades"}
    assert revision_queue(Revision.objects.learner_work().first()) == "celery"


def test_a_second_preview_of_the_lab_is_refused_while_one_runs(world, commit_hooks):
    first = start(world, commit_hooks)

    with pytest.raises(LearnerError, match=f"Preview {first.pk} of this lab is still running"):
        start(world, commit_hooks)
    assert Regrade.objects.filter(lab=world.lab).count() == 1


def test_a_preview_of_a_lab_without_graded_revisions_is_refused(db, commit_hooks):
    lab = make_lab()
    submit(lab, make_user())

    with pytest.raises(LearnerError, match="nothing to regrade"):
        regrade_preview_start(lab=lab, by=make_user())


def test_copies_never_count_as_learner_work_nor_change_a_learners_work(world, commit_hooks):
    works_before = list(LabWork.objects.order_by("pk").values())
    events_before = WorkEvent.objects.count()

    regrade = ready_preview(world, commit_hooks)

    assert regrade.status == "ready"
    assert not Revision.objects.learner_work().filter(regrade__isnull=False).exists()
    assert Revision.objects.learner_work().count() == 3
    assert list(LabWork.objects.order_by("pk").values()) == works_before
    assert WorkEvent.objects.count() == events_before
    assert not LabWork.objects.filter(user__username=REGRADE_USERNAME).exists()


def test_progress_counts_finished_copies(world, commit_hooks):
    regrade = start(world, commit_hooks)
    ada_copy = regrade.shadow_revisions.get(regrade_of__user__username="ada")

    with commit_hooks(send=True):
        grade(ada_copy, ALL_PASS)

    progress = regrade_progress(regrade=regrade)
    assert (progress.finished, progress.total, progress.percent) == (1, 2, 50)
    regrade.refresh_from_db()
    assert regrade.status == "running"


def test_the_report_lists_changed_learners_check_by_check(world, commit_hooks):
    regrade = ready_preview(world, commit_hooks)

    assert (regrade.status, regrade.changed, regrade.report["unchanged"]) == ("ready", 1, 1)
    [row] = regrade.report["learners"]
    assert row["username"] == "ada"
    assert (row["old"]["score"], row["old"]["max_score"], row["new"]["score"]) == (5.0, 15.0, 15.0)
    assert row["checks"] == [
        {
            "check_id": "secret-tests",
            "hidden": True,
            "old_status": "fail",
            "new_status": "pass",
            "old_points": 0.0,
            "new_points": 10.0,
            "max_points": 10.0,
        }
    ]
    assert regrade.finished_at is not None


def test_a_copy_that_fails_on_our_side_is_listed_and_never_counted_as_a_change(world, commit_hooks):
    regrade = start(world, commit_hooks)
    ada_copy = regrade.shadow_revisions.get(regrade_of__user__username="ada")
    bob_copy = regrade.shadow_revisions.get(regrade_of__user__username="bob")

    with commit_hooks(send=True):
        grade(bob_copy, ALL_PASS)
        park_in_error(ada_copy)

    regrade.refresh_from_db()
    assert (regrade.status, regrade.changed) == ("ready", 0)
    assert [row["username"] for row in regrade.report["errors"]] == ["ada"]
    assert regrade.report["learners"] == []


# --- apply, discard, cancel --------------------------------------------------------------------------------------


def test_applying_copies_the_results_and_moves_the_score_and_the_autograde(world, commit_hooks):
    regrade = ready_preview(world, commit_hooks)
    ada_revision = world.work("ada").revision
    bob_before = Revision.objects.filter(user=world.learners["bob"]).values().get()
    bob_runs = list(CheckResult.objects.filter(run__revision__user=world.learners["bob"]).values_list("pk"))
    assert world.work("ada").autograde == Decimal("33.33")

    regrade = regrade_apply(regrade=regrade, by=world.instructor)

    assert regrade.status == "applied" and regrade.decided_by == world.instructor
    ada_revision.refresh_from_db()
    assert (ada_revision.state, ada_revision.score, ada_revision.max_score) == ("graded", 15, 15)
    assert ada_revision.scores_by_category == {"correctness": {"score": 15.0, "max": 15.0}}
    runs = list(ada_revision.runs.order_by("attempt"))
    assert [run.attempt for run in runs] == [1, 2]
    assert dict(runs[1].check_results.values_list("check_id", "status")) == ALL_PASS
    assert dict(runs[0].check_results.values_list("check_id", "status")) == HIDDEN_FAILS  # history kept
    assert runs[1].hidden_log == "hidden log" and runs[1].check_results.get(check_id="secret-tests").hidden_until_due
    ada = world.work("ada")
    assert ada.autograde == Decimal("100.00")
    event = ada.events.filter(kind=WorkEvent.Kind.REGRADED).get()
    assert event.actor == world.instructor and event.data["regrade_id"] == regrade.pk
    assert (event.data["before"]["score"], event.data["after"]["score"]) == (5.0, 15.0)
    # bob's results would not change: untouched.
    assert Revision.objects.filter(user=world.learners["bob"]).values().get() == bob_before
    assert list(CheckResult.objects.filter(run__revision__user=world.learners["bob"]).values_list("pk")) == bob_runs
    assert not world.work("bob").events.filter(kind=WorkEvent.Kind.REGRADED).exists()
    assert [row["username"] for row in regrade.report["applied"]] == ["ada"]


def test_apply_skips_a_learner_who_resubmitted_since_the_preview(world, commit_hooks):
    regrade = ready_preview(world, commit_hooks)
    previewed = world.work("ada").revision
    newer = submit(world.lab, world.learners["ada"], tree="f")

    regrade = regrade_apply(regrade=regrade, by=world.instructor)

    previewed.refresh_from_db()
    assert previewed.score == 5 and previewed.runs.count() == 1
    assert world.work("ada").revision == newer
    assert regrade.report["applied"] == []
    [skipped] = regrade.report["apply_skipped"]
    assert (skipped["username"], skipped["reason"]) == ("ada", "submitted revision 2 since the preview")


def test_an_override_survives_an_apply(world, commit_hooks):
    regrade = ready_preview(world, commit_hooks)
    loop.work_grade_override(
        work=world.work("ada"), grade=Decimal("70"), reason="Agreed after office hours.", by=world.instructor
    )

    regrade_apply(regrade=regrade, by=world.instructor)

    ada = world.work("ada")
    assert ada.override_grade == Decimal("70") and ada.grade == Decimal("70")
    assert ada.autograde == Decimal("100.00")
    kinds = list(ada.events.values_list("kind", flat=True))
    assert kinds.index("overridden") < kinds.index("regraded")


def test_a_preview_is_applied_only_once_and_only_when_ready(world, commit_hooks):
    regrade = start(world, commit_hooks)
    with pytest.raises(LearnerError, match="still running"):
        regrade_apply(regrade=regrade, by=world.instructor)
    regrade = grade_copies(regrade, commit_hooks, {"ada": ALL_PASS, "bob": ALL_PASS})
    regrade_apply(regrade=regrade, by=world.instructor)

    with pytest.raises(LearnerError, match="already applied"):
        regrade_apply(regrade=regrade, by=world.instructor)
    with pytest.raises(LearnerError, match="already applied"):
        regrade_discard(regrade=regrade, by=world.instructor)
    assert world.work("ada").revision.runs.count() == 2


def test_discarding_changes_nothing_and_keeps_the_preview_in_the_history(world, commit_hooks):
    regrade = ready_preview(world, commit_hooks)
    revisions_before = list(Revision.objects.learner_work().order_by("pk").values())
    works_before = list(LabWork.objects.order_by("pk").values("autograde", "final_grade", "state"))

    regrade = regrade_discard(regrade=regrade, by=world.instructor)

    assert regrade.status == "discarded"
    assert list(Revision.objects.learner_work().order_by("pk").values()) == revisions_before
    assert list(LabWork.objects.order_by("pk").values("autograde", "final_grade", "state")) == works_before
    with pytest.raises(LearnerError, match="already discarded"):
        regrade_apply(regrade=regrade, by=world.instructor)
    assert Regrade.objects.filter(pk=regrade.pk).exists()


def test_cancelling_stops_the_copies_not_yet_started(world, commit_hooks):
    regrade = start(world, commit_hooks)
    ada_copy = regrade.shadow_revisions.get(regrade_of__user__username="ada")
    bob_copy = regrade.shadow_revisions.get(regrade_of__user__username="bob")
    with commit_hooks(send=True):
        grade(ada_copy, ALL_PASS)

    regrade = regrade_cancel(regrade=regrade, by=world.instructor)

    assert regrade.status == "cancelled"
    # The worker that takes the queued copy's message does nothing; the sweeper stops re-sending it.
    assert grading_state.revision_claim(revision_id=bob_copy.pk) is None
    bob_copy.refresh_from_db()
    assert (bob_copy.state, bob_copy.deadline_at, bob_copy.runs.count()) == ("queued", None, 0)
    assert [row["username"] for row in regrade.report["not_graded"]] == ["bob"]
    assert [row["username"] for row in regrade.report["learners"]] == ["ada"]
    with pytest.raises(LearnerError, match="already cancelled"):
        regrade_apply(regrade=regrade, by=world.instructor)
    with pytest.raises(LearnerError, match="already cancelled"):
        regrade_cancel(regrade=regrade, by=world.instructor)
    # A new preview may start once the old one is cancelled.
    assert start(world, commit_hooks).status == "running"


def test_a_ready_preview_cannot_be_cancelled(world, commit_hooks):
    regrade = ready_preview(world, commit_hooks)

    with pytest.raises(LearnerError, match="nothing to cancel"):
        regrade_cancel(regrade=regrade, by=world.instructor)


# --- pages -------------------------------------------------------------------------------------------------------


def _urls(world: World, regrade: Regrade) -> list[tuple[str, str]]:
    lab_url = reverse("regrades:lab", args=[world.course.slug, world.lab.slug])
    return [
        ("get", lab_url),
        ("post", lab_url),
        ("get", reverse("regrades:detail", args=[regrade.pk])),
        ("get", reverse("regrades:progress", args=[regrade.pk])),
        ("post", reverse("regrades:cancel", args=[regrade.pk])),
        ("post", reverse("regrades:apply", args=[regrade.pk])),
        ("post", reverse("regrades:discard", args=[regrade.pk])),
    ]


@pytest.mark.parametrize("persona", ["learner", "reviewer", "outsider", "other_instructor"])
def test_every_regrade_url_answers_404_to_anyone_but_the_courses_instructors(world, commit_hooks, persona):
    regrade = start(world, commit_hooks)
    other_course = make_course()
    user = {
        "learner": world.learners["ada"],
        "reviewer": make_user("rev"),
        "outsider": make_user("out"),
        "other_instructor": make_user("elsewhere"),
    }[persona]
    if persona == "reviewer":
        enroll(user, world.course, Enrollment.Role.REVIEWER)
    if persona == "other_instructor":
        enroll(user, other_course, Enrollment.Role.INSTRUCTOR)
    client = Client()
    client.force_login(user)

    answers = {f"{method} {url}": getattr(client, method)(url).status_code for method, url in _urls(world, regrade)}

    assert set(answers.values()) == {404}, answers
    regrade.refresh_from_db()
    assert regrade.status == "running" and Regrade.objects.count() == 1


def test_anonymous_visitors_are_sent_to_log_in_and_the_fragment_is_404(world, commit_hooks):
    regrade = start(world, commit_hooks)
    client = Client()

    answers = {url: getattr(client, method)(url) for method, url in _urls(world, regrade)}

    for url, response in answers.items():
        if url.endswith("/progress/"):
            assert response.status_code == 404
        else:
            assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
    assert regrade.status == "running"


def test_an_instructor_starts_watches_and_applies_a_preview_through_the_pages(world, commit_hooks):
    client = Client()
    client.force_login(world.instructor)
    lab_url = reverse("regrades:lab", args=[world.course.slug, world.lab.slug])

    with commit_hooks(send=False):
        response = client.post(lab_url)
    regrade = Regrade.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("regrades:detail", args=[regrade.pk])
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"0 of 2 graded" in page.content and b'hx-trigger="every 2s"' in page.content
    assert b"Cancel the preview" in page.content
    assert client.post(lab_url).status_code == 409  # one running preview per lab

    grade_copies(regrade, commit_hooks, {"ada": ALL_PASS, "bob": ALL_PASS})
    fragment = client.get(reverse("regrades:progress", args=[regrade.pk]), HTTP_HX_REQUEST="true")
    assert fragment["HX-Refresh"] == "true"
    page = client.get(reverse("regrades:detail", args=[regrade.pk])).content.decode()
    assert "ada" in page and "secret-tests" in page and "fail → <strong>pass</strong>" in page
    assert "Apply to 1 learner" in page and "Discard" in page and "hx-trigger" not in page

    response = client.post(reverse("regrades:apply", args=[regrade.pk]))
    assert response.status_code == 302
    assert world.work("ada").autograde == 100
    again = client.post(reverse("regrades:apply", args=[regrade.pk]), follow=True)
    assert "already applied" in again.content.decode()
    history = client.get(lab_url).content.decode()
    assert "Applied" in history and "Start a preview" in history


def test_a_learner_still_never_sees_a_hidden_check_after_a_regrade(world, commit_hooks):
    regrade_apply(regrade=ready_preview(world, commit_hooks), by=world.instructor)
    client = Client()
    client.force_login(world.learners["ada"])

    page = client.get(reverse("revision_detail", args=[world.work("ada").revision_id])).content.decode()

    assert "secret-tests" not in page and "hidden log" not in page


# --- manage.py regrade -------------------------------------------------------------------------------------------


def run_command(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("regrade", *args, stdout=out)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, out.getvalue()


def test_the_command_previews_then_applies(world, commit_hooks):
    name = f"{world.course.slug}/{world.lab.slug}"
    with commit_hooks(send=False):
        code, out = run_command(name, "--preview")
    regrade = Regrade.objects.get()
    assert code == 0 and f"preview {regrade.pk} of {name}: 2 revisions queued" in out
    assert "not previewed: cy revision 1: still being graded" in out
    assert regrade.requested_by.username == REGRADE_USERNAME
    grade_copies(regrade, commit_hooks, {"ada": ALL_PASS, "bob": ALL_PASS})

    code, out = run_command(name, "--apply", str(regrade.pk), "--by", "teacher")

    assert code == 0 and "applied to 1 learner(s): ada" in out
    assert world.work("ada").events.get(kind="regraded").actor == world.instructor


def test_the_command_waits_and_prints_the_changes(world, commit_hooks):
    regrade = ready_preview(world, commit_hooks)
    Regrade.objects.filter(pk=regrade.pk).update(status="running")  # as if the worker's notice were lost

    from labs.management.commands.regrade import Command

    out = StringIO()
    Command(stdout=out)._wait(regrade, {"timeout": 5, "poll": 0.01})

    text = out.getvalue()
    assert "2 of 2 graded" in text and "1 learner(s) would change, 1 unchanged" in text
    assert "ada revision 1: 5/15 -> 15/15" in text
    assert "secret-tests (hidden): fail -> pass (0 -> 10 of 10 points)" in text


def test_the_command_exits_non_zero_on_unknown_names_and_wrong_states(world, commit_hooks):
    name = f"{world.course.slug}/{world.lab.slug}"
    regrade = start(world, commit_hooks)
    other_lab = make_lab(course=world.course)

    assert run_command("nowhere/lab", "--preview")[0] == 2
    assert run_command(f"{world.course.slug}/nope", "--apply", "1")[0] == 2
    assert run_command(name, "--apply", "999999")[0] == 2
    assert run_command(f"{world.course.slug}/{other_lab.slug}", "--apply", str(regrade.pk))[0] == 2
    assert run_command(name, "--preview", "--by", "nobody-here")[0] == 2
    code, message = run_command(name, "--apply", str(regrade.pk))
    assert code == 1 and "still running" in message
    code, message = run_command(name, "--preview")
    assert code == 1 and "still running" in message
    assert run_command(name, "--cancel", str(regrade.pk))[0] == 0
    code, message = run_command(name, "--discard", str(regrade.pk))
    assert code == 1 and "already cancelled" in message
    with pytest.raises(CommandError):
        call_command("regrade", name)  # no action: argparse refuses


# --- end to end: the real worker, Docker, a changed grader -------------------------------------------------------


@pytest.mark.docker
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_changed_grader_is_previewed_and_applied_with_the_real_worker(
    celery_worker, lab_factory, submit, tmp_path, docker_client
):
    from tests.labs.conftest import HELLO_LAB_DIR, _tree_digest, own_containers, wait_for_state

    lab = lab_factory(HELLO_LAB_DIR)
    learner = make_user("pinless")
    revision = wait_for_state(
        submit(lab, HELLO_LAB_DIR / "examples" / "broken-unpinned", user=learner), {"graded", "failed", "error"}
    )
    assert (revision.state, revision.max_score) == ("graded", 10) and revision.score < 10
    old_score = f"{float(revision.score):g}"  # the hidden suite gives partial points: 3 of its 4 tests pass
    # The grader changes: the requirement pinning test goes (as a course re-import would store it).
    grader = tmp_path / "grader"
    shutil.copytree(HELLO_LAB_DIR / "grader", grader)
    test_file = grader / "tests" / "test_greet.py"
    text = test_file.read_text()
    test_file.write_text(text[: text.index("def test_every_requirement_is_pinned")])
    digest = _tree_digest(grader)
    target = Path(settings.DATA_DIR) / "graders" / digest
    if not target.exists():
        shutil.copytree(grader, target)
    lab.grader_digest = digest
    lab.save(update_fields=["grader_digest"])
    name = f"{lab.course.slug}/{lab.slug}"

    code, out = run_command(name, "--preview", "--wait", "--timeout", "300", "--poll", "0.2")

    regrade = Regrade.objects.get(lab=lab)
    assert code == 0, out
    assert regrade.status == "ready", out
    assert f"pinless revision 1: {old_score}/10 -> 10/10" in out
    assert "hidden-tests (hidden): fail -> pass" in out
    revision.refresh_from_db()
    assert f"{float(revision.score):g}" == old_score  # a preview changes nothing

    code, out = run_command(name, "--apply", str(regrade.pk))

    assert code == 0 and "applied to 1 learner(s): pinless" in out, out
    revision.refresh_from_db()
    assert (revision.score, revision.max_score, revision.runs.count()) == (10, 10, 2)
    assert LabWork.objects.get(lab=lab, user=learner).autograde == 100
    assert own_containers(docker_client) == []
