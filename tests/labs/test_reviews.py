"""Reviewing revisions: access per persona, the queue, the review page, review_submit and what learners see."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from courses.models import Enrollment
from labs import sources
from labs.models import CheckResult, GradingRun, LabWork, Review, Revision
from labs.permissions import can_read_reviews, can_review, can_use_review_queue
from labs.reviews import loop, selectors
from labs.reviews.services import ReviewNotAllowed, ReviewRejected, review_submit

from .factories import DEFAULT_SPEC, enroll, loop_record, make_course, make_lab, make_stored_revision, make_user

pytestmark = [pytest.mark.django_db]

HOSTILE = "<script>alert('pwned')</script>"
RUBRIC_SPEC = {
    **DEFAULT_SPEC,
    "review": {
        "required": True,
        "rubric": [
            {"id": "clarity", "title": "Clear code", "points": 5},
            {"id": "ops", "title": "Operability", "description": "Logs and health checks.", "points": 3},
        ],
    },
}
SERVICE_PY = b"import sys\n\n\ndef main():\n    print('hello')\n\n\nmain()\n"  # 8 lines


@pytest.fixture(autouse=True)
def root(settings, tmp_path):
    # Dozens of users per test: the production password hasher would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    settings.DATA_DIR = tmp_path / "data"
    return settings.SUBMISSIONS_ROOT


def make_revision(*, lab, user, files=None, state="graded", number=None, loop=True, **fields) -> Revision:
    """A stored revision: files go through the real validator and content-addressed storage, and the review loop
    records it as revision_submit and grading would (loop=False leaves the loop out)."""
    files = files if files is not None else {"service.py": SERVICE_PY}
    fields.setdefault("score", Decimal(5))
    fields.setdefault("max_score", Decimal(15))
    revision = make_stored_revision(lab=lab, user=user, files=files, number=number, state=state, **fields)
    if loop:
        loop_record(revision)
    return revision


@pytest.fixture
def world():
    return world_create()


def world_create() -> dict:
    """A course with a rubric lab, its learner's revision, and one user per persona."""
    course = make_course()
    lab = make_lab(course=course, spec=RUBRIC_SPEC, title="The quote service")
    learner = make_user("learner")
    enroll(learner, course)
    reviewer = make_user("reviewer")
    enroll(reviewer, course, Enrollment.Role.REVIEWER)
    instructor = make_user("instructor")
    enroll(instructor, course, Enrollment.Role.INSTRUCTOR)
    classmate = make_user("classmate")
    enroll(classmate, course)
    other_reviewer = make_user("other-reviewer")
    enroll(other_reviewer, make_course(), Enrollment.Role.REVIEWER)
    return {
        "course": course,
        "lab": lab,
        "learner": learner,
        "reviewer": reviewer,
        "instructor": instructor,
        "classmate": classmate,
        "other_reviewer": other_reviewer,
        "outsider": make_user("outsider"),
        "staff": make_user("staff", is_staff=True),
        "revision": make_revision(lab=lab, user=learner),
    }


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def review_url(revision) -> str:
    return f"/review/revisions/{revision.pk}/"


def work_of(revision) -> LabWork:
    return LabWork.objects.get(lab_id=revision.lab_id, user_id=revision.user_id)


def claim(revision, reviewer) -> LabWork:
    """`reviewer` claims the learner's work, as the Claim button does: submitting needs a live claim."""
    return loop.work_claim(work=work_of(revision), reviewer=reviewer)


def submit(revision, reviewer, *, claimed: bool = True, **overrides):
    """Claim (unless claimed=False) and submit a review."""
    if claimed and can_review(user=reviewer, revision=revision) and work_of(revision).revision_id == revision.pk:
        work = work_of(revision)
        if work.claimed_by_id != reviewer.pk and work.state in ("awaiting_review", "in_review"):
            claim(revision, reviewer)
    args = {
        "decision": "approved",
        "rubric_scores": {"clarity": 4, "ops": "2.5"},
        "comment": "Solid.",
        "file_comments": [],
    }
    args.update(overrides)
    return review_submit(revision=revision, reviewer=reviewer, **args)


# --- access ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["reviewer", "instructor", "staff"])
def test_reviewers_instructors_and_staff_may_review(world, persona):
    assert can_review(user=world[persona], revision=world["revision"]) is True
    response = client_for(world[persona]).get(review_url(world["revision"]))
    assert response.status_code == 200
    assert "Your review" in response.content.decode()


@pytest.mark.parametrize("persona", ["learner", "classmate", "outsider", "other_reviewer"])
def test_everyone_else_gets_404_on_the_review_page(world, persona):
    assert can_review(user=world[persona], revision=world["revision"]) is False
    assert client_for(world[persona]).get(review_url(world["revision"])).status_code == 404
    assert client_for(world[persona]).post(review_url(world["revision"]), {"decision": "approved"}).status_code == 404
    assert not Review.objects.exists()


def test_a_reviewer_can_never_review_their_own_revision(world):
    own = make_revision(lab=world["lab"], user=world["reviewer"])
    staff_own = make_revision(lab=world["lab"], user=world["staff"])
    assert can_review(user=world["reviewer"], revision=own) is False
    assert can_review(user=world["staff"], revision=staff_own) is False
    assert client_for(world["reviewer"]).get(review_url(own)).status_code == 404
    with pytest.raises(ReviewNotAllowed):
        submit(own, world["reviewer"])


def test_anonymous_visitors_are_sent_to_log_in(world):
    response = Client().get(review_url(world["revision"]))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert Client().get("/review/").status_code == 302


def test_a_missing_revision_is_404_for_staff_too(world):
    assert client_for(world["staff"]).get("/review/revisions/999999/").status_code == 404


@pytest.mark.parametrize(
    ("persona", "allowed"),
    [
        ("reviewer", True),
        ("instructor", True),
        ("staff", True),
        ("other_reviewer", True),
        ("learner", False),
        ("outsider", False),
    ],
)
def test_the_queue_is_for_people_who_review_somewhere(world, persona, allowed):
    assert can_use_review_queue(user=world[persona]) is allowed
    assert client_for(world[persona]).get("/review/").status_code == (200 if allowed else 404)


def test_reviews_are_readable_by_the_author_and_reviewers_only(world):
    revision = world["revision"]
    assert can_read_reviews(user=world["learner"], revision=revision) is True
    assert can_read_reviews(user=world["reviewer"], revision=revision) is True
    assert can_read_reviews(user=world["classmate"], revision=revision) is False
    assert can_read_reviews(user=world["other_reviewer"], revision=revision) is False


# --- review_submit -----------------------------------------------------------------------------------------------


def test_approving_stores_the_review_and_sets_the_status(world):
    revision = world["revision"]
    review = submit(revision, world["reviewer"], file_comments=[{"path": "service.py", "line": "4", "body": "Nice."}])
    revision.refresh_from_db()
    assert revision.review_status == "approved"
    assert review.decision == "approved"
    assert review.rubric_scores == {"clarity": 4, "ops": 2.5}
    assert review.rubric_total == Decimal("6.5")
    assert review.file_comments == [{"path": "service.py", "line": 4, "body": "Nice."}]
    assert selectors.lab_review_state(lab=world["lab"], user=world["learner"]) == "approved"


def test_a_submitted_review_decides_once_and_cannot_be_submitted_again(world):
    revision = world["revision"]
    first = submit(revision, world["reviewer"], decision="changes_requested", comment="Add a health check.")
    with pytest.raises(loop.WorkStateRefused, match="nobody holds it"):
        submit(revision, world["reviewer"], claimed=False)
    assert Review.objects.get().pk == first.pk
    assert Review.objects.get().comment == "Add a health check."
    revision.refresh_from_db()
    assert revision.review_status == "changes_requested"


def test_a_second_reviewer_cannot_decide_on_work_already_decided(world):
    revision = world["revision"]
    submit(revision, world["reviewer"])
    with pytest.raises(loop.WorkStateRefused):
        submit(revision, world["instructor"], decision="changes_requested", comment="Not yet.")
    revision.refresh_from_db()
    assert Review.objects.filter(revision=revision).count() == 1
    assert revision.review_status == "approved"


@pytest.mark.parametrize(
    ("scores", "problem"),
    [
        ({"clarity": 6, "ops": 1}, "Score “Clear code”: 6 is out of range; give 0 to 5."),
        ({"clarity": -1, "ops": 1}, "Score “Clear code”: -1 is out of range; give 0 to 5."),
        ({"clarity": "lots", "ops": 1}, "Score “Clear code”: 'lots' is not a number."),
        ({"clarity": "1.005", "ops": 1}, "Score “Clear code”: use at most two decimal places, got 1.005."),
        ({"clarity": "NaN", "ops": 1}, "Score “Clear code”: 'NaN' is not a number."),
        ({"ops": 1}, "Score “Clear code”: missing; give 0 to 5 points."),
        ({"clarity": "", "ops": 1}, "Score “Clear code”: missing; give 0 to 5 points."),
        ({"clarity": 1, "ops": 1, "speed": 2}, "Score for 'speed': the lab's rubric has no such criterion."),
    ],
)
def test_rubric_scores_must_be_within_each_criterions_points(world, scores, problem):
    with pytest.raises(ReviewRejected) as caught:
        submit(world["revision"], world["reviewer"], rubric_scores=scores)
    assert caught.value.problems == [problem]
    assert not Review.objects.exists()
    world["revision"].refresh_from_db()
    assert world["revision"].review_status == ""


def test_the_bounds_themselves_are_accepted(world):
    review = submit(world["revision"], world["reviewer"], rubric_scores={"clarity": 0, "ops": "3.00"})
    assert review.rubric_scores == {"clarity": 0, "ops": 3}
    assert review.rubric_total == Decimal(3)


def test_a_lab_without_a_rubric_is_scored_on_overall_quality_out_of_10(world):
    lab = make_lab(course=world["course"])
    revision = make_revision(lab=lab, user=world["learner"])
    with pytest.raises(ReviewRejected) as caught:
        submit(revision, world["reviewer"], rubric_scores={"overall": 11})
    assert caught.value.problems == ["Score “Overall quality”: 11 is out of range; give 0 to 10."]
    assert submit(revision, world["reviewer"], rubric_scores={"overall": 10}).rubric_total == Decimal(10)


@pytest.mark.parametrize(
    ("comment", "problem"),
    [
        (
            {"path": "nope.py", "line": 1, "body": "x"},
            "Line comment 1: 'nope.py' is not a file of this revision; pick one of its files.",
        ),
        (
            {"path": "../service.py", "line": 1, "body": "x"},
            "Line comment 1: '../service.py' is not a file of this revision; pick one of its files.",
        ),
        (
            {"path": "service.py", "line": 9, "body": "x"},
            "Line comment 1: service.py has 8 lines; line 9 is out of range.",
        ),
        (
            {"path": "service.py", "line": 0, "body": "x"},
            "Line comment 1 on service.py: the line must be a whole number from 1, got 0.",
        ),
        (
            {"path": "service.py", "line": "two", "body": "x"},
            "Line comment 1 on service.py: the line must be a whole number from 1, got 'two'.",
        ),
        (
            {"path": "service.py", "line": 2, "body": "   "},
            "Line comment 1 on service.py:2: the comment is empty; write it or remove the row.",
        ),
        (
            {"path": "logo.png", "line": 1, "body": "x"},
            "Line comment 1: logo.png is binary or unreadable, so it has no lines; use the general comment.",
        ),
    ],
)
def test_line_comments_must_point_at_an_existing_line_of_a_submitted_text_file(world, comment, problem):
    revision = make_revision(
        lab=world["lab"], user=world["classmate"], files={"service.py": SERVICE_PY, "logo.png": b"\x89PNG\x00\x01"}
    )
    with pytest.raises(ReviewRejected) as caught:
        submit(revision, world["reviewer"], file_comments=[comment])
    assert caught.value.problems == [problem]


def test_line_comments_on_the_last_line_are_kept_sorted_by_file_and_line(world):
    revision = make_revision(
        lab=world["lab"], user=world["classmate"], files={"b.py": b"x = 1", "a.py": b"a\r\nb\r\nc\r\n"}
    )
    review = submit(
        revision,
        world["reviewer"],
        file_comments=[
            {"path": "b.py", "line": 1, "body": "last line without a newline"},
            {"path": "a.py", "line": 3, "body": "CRLF counted once"},
        ],
    )
    assert review.file_comments == [
        {"path": "a.py", "line": 3, "body": "CRLF counted once"},
        {"path": "b.py", "line": 1, "body": "last line without a newline"},
    ]


def test_requesting_changes_needs_something_to_act_on(world):
    with pytest.raises(ReviewRejected) as caught:
        submit(world["revision"], world["reviewer"], decision="changes_requested", comment=" ")
    assert caught.value.problems == ["Say what to change: write a general comment or at least one line comment."]
    line_only = submit(
        world["revision"],
        world["reviewer"],
        decision="changes_requested",
        comment="",
        file_comments=[{"path": "service.py", "line": 5, "body": "Log instead of print."}],
    )
    assert line_only.decision == "changes_requested"


def test_an_unknown_decision_is_refused(world):
    with pytest.raises(ReviewRejected) as caught:
        submit(world["revision"], world["reviewer"], decision="maybe")
    assert caught.value.problems == ["Choose a decision: approve, or request changes."]


@pytest.mark.parametrize("state", ["queued", "running", "error"])
def test_a_revision_still_being_graded_cannot_be_reviewed(world, state):
    revision = make_revision(lab=world["lab"], user=world["classmate"], state=state)
    with pytest.raises(ReviewRejected) as caught:
        submit(revision, world["reviewer"])
    assert caught.value.problems == [f"Revision 1 is still {state}: wait until grading finishes, then review it."]
    html = client_for(world["reviewer"]).get(review_url(revision)).content.decode()
    assert "Review it once grading has finished." in html
    assert 'name="decision"' not in html


def test_the_loop_changes_requested_then_a_new_revision_then_approved(world):
    lab, learner, reviewer = world["lab"], world["learner"], world["reviewer"]
    first = world["revision"]
    assert selectors.lab_review_state(lab=lab, user=learner) == "awaiting_review"
    submit(first, reviewer, decision="changes_requested", comment="Pin your dependencies.")
    assert selectors.lab_review_state(lab=lab, user=learner) == "changes_requested"
    assert list(selectors.review_queue(reviewer=reviewer)) == []

    second = make_revision(lab=lab, user=learner, state="queued", score=None, max_score=None)
    assert list(selectors.review_queue(reviewer=reviewer)) == []  # not graded yet
    Revision.objects.filter(pk=second.pk).update(state="graded", score=Decimal(15))
    second.refresh_from_db()
    loop.work_revision_graded(revision=second, notify=False)
    assert [w.revision for w in selectors.review_queue(reviewer=reviewer)] == [second]
    assert selectors.lab_review_state(lab=lab, user=learner) == "awaiting_review"

    submit(second, reviewer)
    assert list(selectors.review_queue(reviewer=reviewer)) == []
    assert selectors.lab_review_state(lab=lab, user=learner) == "approved"
    history = selectors.review_history(revision=second)
    assert [(h.revision.number, [r.decision for r in h.reviews]) for h in history] == [
        (2, ["approved"]),
        (1, ["changes_requested"]),
    ]


def test_a_learner_with_no_revision_has_not_submitted(world):
    assert selectors.lab_review_state(lab=world["lab"], user=world["outsider"]) == "not_submitted"


# --- the queue ---------------------------------------------------------------------------------------------------


def waiting(revision, *, hours_ago: float) -> None:
    LabWork.objects.filter(lab=revision.lab, user=revision.user).update(
        waiting_since=timezone.now() - timedelta(hours=hours_ago)
    )


def test_the_course_queue_lists_waiting_work_longest_waiting_first_with_its_age_and_claim(world):
    lab, reviewer, course = world["lab"], world["reviewer"], world["course"]
    older = world["revision"]
    newer = make_revision(lab=lab, user=world["classmate"], state="failed", score=None, max_score=None)
    waiting(older, hours_ago=5)
    waiting(newer, hours_ago=1)
    claimed_user = make_user("claimed")
    claimed = make_revision(lab=lab, user=claimed_user)
    waiting(claimed, hours_ago=3)
    claim(claimed, world["instructor"])
    # Left out: still grading, already decided, on another course, and the reviewer's own.
    make_revision(lab=lab, user=make_user("third"), state="running")
    decided = make_revision(lab=lab, user=make_user("fourth"))
    submit(decided, world["instructor"], decision="changes_requested", comment="More.")
    make_revision(lab=make_lab(), user=make_user("elsewhere"))
    make_revision(lab=lab, user=reviewer)

    queue = [w.revision for w in selectors.review_queue(reviewer=reviewer, course=course)]
    assert queue == [older, claimed, newer]

    html = client_for(reviewer).get(f"/review/{course.slug}/").content.decode()
    assert "<strong>3</strong> items in the queue" in html
    rows = html.split("<tbody>")[1]
    order = [rows.index(f'data-work="{work_of(r).pk}"') for r in (older, claimed, newer)]
    assert order == sorted(order)
    assert "5\xa0hours" in rows and "1\xa0hour" in rows
    assert "instructor until" in rows
    assert "The quote service" in rows and "learner" in rows and "classmate" in rows
    assert "33.33%" in rows
    assert f'href="/review/revisions/{older.pk}/"' in rows
    assert f'action="/review/work/{work_of(older).pk}/claim/"' in rows
    assert f'action="/review/work/{work_of(claimed).pk}/claim/"' not in rows

    looking_back = client_for(reviewer).get(f"/review/{course.slug}/?state=changes_requested").content.decode()
    assert f'data-work="{work_of(decided).pk}"' in looking_back
    assert f'data-work="{work_of(older).pk}"' not in looking_back


def test_the_queue_index_lists_the_courses_a_reviewer_reviews_with_counts(world):
    make_revision(lab=world["lab"], user=world["classmate"])
    make_revision(lab=world["lab"], user=world["reviewer"])  # their own: not counted
    claim(world["revision"], world["instructor"])
    html = client_for(world["reviewer"]).get("/review/").content.decode()
    assert f'href="/review/{world["course"].slug}/"' in html
    row = html.split(f'data-course="{world["course"].slug}"')[1].split("</tr>")[0]
    assert "<td>1</td>" in row and row.count("<td>1</td>") == 2
    elsewhere = make_course()
    assert f"/review/{elsewhere.slug}/" not in html


def test_staff_see_every_course_and_can_filter_a_queue_by_lab(world):
    other_lab = make_lab(course=world["course"], title="Elsewhere lab")
    elsewhere = make_revision(lab=other_lab, user=make_user("far"))
    far_course = make_revision(lab=make_lab(), user=make_user("farther"))
    assert {w.revision for w in selectors.review_queue(reviewer=world["staff"])} == {
        world["revision"],
        elsewhere,
        far_course,
    }
    course = world["course"]
    html = client_for(world["staff"]).get(f"/review/{course.slug}/?lab={other_lab.pk}").content.decode()
    assert "<strong>1</strong> item matching" in html
    assert f'data-work="{work_of(elsewhere).pk}"' in html
    assert f'data-work="{work_of(world["revision"]).pk}"' not in html
    assert f'<option value="{other_lab.pk}" selected>Elsewhere lab</option>' in html


def test_approved_work_leaves_the_queue(world):
    submit(world["revision"], world["reviewer"])
    assert list(selectors.review_queue(reviewer=world["reviewer"])) == []
    assert list(selectors.review_queue(reviewer=world["reviewer"], state="approved")) == [work_of(world["revision"])]


def test_the_queue_page_query_count_does_not_grow_with_the_queue(world):
    reviewer, course = world["reviewer"], world["course"]

    def count_queries() -> int:
        client = client_for(reviewer)
        client.get(f"/review/{course.slug}/")  # the header's facts are read once, then kept in the shared cache
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/review/{course.slug}/").status_code == 200
        return len(queries)

    for n in range(2):
        make_revision(lab=world["lab"], user=make_user(f"few{n}"))
    claim(world["revision"], world["instructor"])
    assert selectors.review_queue(reviewer=reviewer, course=course).count() == 3
    few = count_queries()
    for n in range(27):
        revision = make_revision(lab=world["lab"], user=make_user(f"many{n}"))
        if n % 3 == 0:
            claim(revision, world["instructor"])
    assert selectors.review_queue(reviewer=reviewer, course=course).count() == 30
    many = count_queries()
    assert few == many


# --- the review page -----------------------------------------------------------------------------------------------


def test_the_review_page_shows_numbered_highlighted_code_checks_and_the_rubric(world):
    revision = world["revision"]
    run = GradingRun.objects.create(revision=revision, attempt=1, phase="results_stored", outcome="graded")
    CheckResult.objects.create(
        run=run, position=1, check_id="secret-tests", kind="tests.pytest", category="correctness",
        status="fail", points=0, max_points=10, message="2 of 5 tests failed", evidence={"failed": ["test_quote"]},
    )  # fmt: skip
    html = client_for(world["reviewer"]).get(review_url(revision)).content.decode()
    assert 'id="file-1-L8"' in html and 'id="file-1-L9"' not in html
    assert '<span class="k">def</span>' in html  # Pygments' Python lexer ran
    assert "secret-tests" in html  # hidden checks are shown to reviewers
    assert "2 of 5 tests failed" in html and "test_quote" in html
    assert 'name="score-clarity"' in html and 'max="5"' in html
    assert 'name="score-ops"' in html and "Logs and health checks." in html
    assert 'value="approved"' in html and 'value="changes_requested"' in html


def test_hostile_file_content_renders_as_text(world):
    revision = make_revision(
        lab=world["lab"],
        user=world["classmate"],
        files={"evil.txt": HOSTILE.encode(), "evil.py": f"x = 1  # {HOSTILE}\n".encode(), "x.md": b"hi"},
    )
    # Uploads refuse '<' and '>' in file names now; a revision stored before that may still hold one.
    revision.files = [{**f, "path": f"x{HOSTILE}.md"} if f["path"] == "x.md" else f for f in revision.files]
    revision.save(update_fields=["files"])
    html = client_for(world["reviewer"]).get(review_url(revision)).content.decode()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in html or "&lt;script&gt;alert" in html
    assert html.count("&lt;script&gt;") >= 3


def test_hostile_comments_and_evidence_render_as_text(world):
    revision = world["revision"]
    run = GradingRun.objects.create(revision=revision, attempt=1)
    CheckResult.objects.create(
        run=run, position=1, check_id="c", kind="command", category="correctness", status="fail",
        points=0, max_points=1, message=HOSTILE, evidence={"stdout": HOSTILE},
    )  # fmt: skip
    submit(
        revision,
        world["reviewer"],
        decision="changes_requested",
        comment=HOSTILE,
        file_comments=[{"path": "service.py", "line": 1, "body": HOSTILE}],
    )
    for html in (
        client_for(world["instructor"]).get(review_url(revision)).content.decode(),
        render_summary(revision, world["learner"]),
    ):
        assert "<script>alert" not in html
        assert "&lt;script&gt;" in html


def test_binary_and_huge_files_show_their_size_only(world):
    huge = b"# filler\n" * 15_000  # 135 KB, over the 128 KiB shown per file
    revision = make_revision(
        lab=world["lab"],
        user=world["classmate"],
        files={"data.bin": b"\x00\x01\x02secret-bytes", "big.py": huge, "small.py": b"ok = True\n"},
    )
    html = client_for(world["reviewer"]).get(review_url(revision)).content.decode()
    assert "Binary file: not shown." in html
    assert "secret-bytes" not in html
    assert "Too large to show here" in html
    assert html.count("filler") == 0
    assert "ok" in html and 'id="file-3-L1"' in html  # small.py is the third file (sorted by path)


def test_the_page_budget_stops_showing_code_after_512_kib(world):
    chunk = b"plain words\n" * 8_000  # 96 KB each: five fit in 512 KiB, the sixth does not
    revision = make_revision(lab=world["lab"], user=world["classmate"], files={f"m{n}.txt": chunk for n in range(7)})
    files = sources.revision_source(revision=revision)
    assert [f.kind for f in files] == ["text"] * 5 + ["over_page_budget"] * 2


def test_a_file_lost_from_storage_is_reported_not_crashed_on(world, root):
    import shutil

    from labs.models import Blob

    revision = world["revision"]
    shutil.rmtree(root / revision.tree_sha256)
    # Lost from the database too: a local copy alone would be written again from there (labs.blobs).
    Blob.objects.filter(sha256__in=[f["sha256"] for f in revision.files]).delete()
    response = client_for(world["reviewer"]).get(review_url(revision))
    assert response.status_code == 200
    assert "missing from storage" in response.content.decode()


def test_posting_the_form_saves_the_review_and_redirects_back(world):
    revision = world["revision"]
    client = client_for(world["reviewer"])
    form = {
        "score-clarity": "5",
        "score-ops": "1.5",
        "comment": "Good work.",
        "fc-path": ["service.py", ""],
        "fc-line": ["5", ""],
        "fc-body": ["Use logging.", ""],
        "decision": "changes_requested",
    }
    refused = client.post(review_url(revision), form)
    assert refused.status_code == 409
    assert "Claim this work before reviewing it" in refused.content.decode()
    assert not Review.objects.exists()
    claim(revision, world["reviewer"])
    response = client.post(review_url(revision), form)
    assert response.status_code == 302
    assert response["Location"] == f"/review/revisions/{revision.pk}/#your-review"
    review = Review.objects.get()
    assert review.file_comments == [{"path": "service.py", "line": 5, "body": "Use logging."}]
    assert review.rubric_total == Decimal("6.5")
    assert review.submitted_at is not None
    page = client.get(response["Location"]).content.decode()
    assert "Your review of revision 1 was submitted." in page
    assert "You submitted your review of this revision" in page and "Use logging." in page
    again = client.post(review_url(revision), {**form, "decision": "approved"})
    assert again.status_code == 409
    assert Review.objects.count() == 1
    revision.refresh_from_db()
    assert revision.review_status == "changes_requested"


def test_a_rejected_form_lists_every_problem_and_keeps_the_input(world):
    claim(world["revision"], world["reviewer"])
    response = client_for(world["reviewer"]).post(
        review_url(world["revision"]),
        {
            "score-clarity": "9",
            "score-ops": "",
            "comment": "Keep me.",
            "fc-path": ["service.py"],
            "fc-line": ["99"],
            "fc-body": ["off the end"],
        },
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "The review was not saved (4 problems)." in html
    assert "Choose a decision" in html
    assert "9 is out of range" in html
    assert "line 99 is out of range" in html
    assert "Keep me." in html and 'value="9"' in html
    assert not Review.objects.exists()


# --- what the learner sees ------------------------------------------------------------------------------------------


def render_summary(revision, viewer) -> str:
    revision.refresh_from_db()
    reviews = selectors.reviews_for_revision(revision=revision, viewer=viewer)
    return render_to_string(
        "labs/reviews/_review_summary.html",
        {"reviews": reviews, "revision": revision, "lab": revision.lab, "show_next_step": True},
    )


def test_the_learner_sees_decision_scores_and_comments_with_a_next_step(world):
    revision = world["revision"]
    submit(
        revision,
        world["reviewer"],
        decision="changes_requested",
        rubric_scores={"clarity": 3, "ops": 1},
        comment="Add a readiness probe.",
        file_comments=[{"path": "service.py", "line": 5, "body": "Print is not logging."}],
    )
    html = render_summary(revision, world["learner"])
    assert "Changes requested" in html
    assert "by reviewer" in html
    assert "Clear code" in html and "3 / 5" in html and "Operability" in html and "1 / 3" in html
    assert "4 / 8" in html  # total
    assert "Add a readiness probe." in html
    assert "service.py:5" in html and "Print is not logging." in html
    assert f'href="/courses/{revision.lab.course.slug}/labs/{revision.lab.slug}/"' in html


def test_an_approved_revision_tells_the_learner_the_lab_is_done(world):
    submit(world["revision"], world["reviewer"])
    assert "Approved: this lab is done." in render_summary(world["revision"], world["learner"])


def test_people_who_may_not_read_reviews_get_nothing(world):
    submit(world["revision"], world["reviewer"])
    assert selectors.reviews_for_revision(revision=world["revision"], viewer=world["classmate"]) == []
    assert render_summary(world["revision"], world["classmate"]).strip() == ""


def test_reviews_for_revision_reads_in_a_constant_number_of_queries(world, django_assert_num_queries):
    submit(world["revision"], world["reviewer"])
    # A review stored before claims existed (two reviewers decided on one revision), and a draft, left out.
    Review.objects.create(revision=world["revision"], reviewer=world["instructor"], submitted_at=timezone.now())
    Review.objects.create(revision=world["revision"], reviewer=world["staff"], comment="Draft.")
    # One for the author check is skipped (the viewer is the author); one query loads reviews and reviewers.
    with django_assert_num_queries(1):
        views = selectors.reviews_for_revision(revision=world["revision"], viewer=world["learner"])
    assert [v.reviewer_name for v in views] == ["reviewer", "instructor"]


# --- double submits racing ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_submits_store_one_review(world):
    """The revision row is locked first, so two posts of the same form racing each other leave one review; the
    second finds the work decided and is refused."""
    import threading

    from django.db import connections

    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def post() -> None:
        try:
            barrier.wait()
            submit(world["revision"], world["reviewer"], claimed=False)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    claim(world["revision"], world["reviewer"])
    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [type(error) for error in errors] == [loop.WorkStateRefused]
    assert Review.objects.filter(revision=world["revision"]).count() == 1
    assert Revision.objects.get(pk=world["revision"].pk).review_status == "approved"


def test_the_review_page_query_count_does_not_grow_with_the_loop(world):
    lab, learner, reviewer = world["lab"], world["learner"], world["reviewer"]

    def count_queries(revision) -> int:
        client = client_for(reviewer)
        client.get(review_url(revision))  # the header's facts are read once, then kept in the shared cache
        with CaptureQueriesContext(connection) as queries:
            assert client.get(review_url(revision)).status_code == 200
        return len(queries)

    def next_round(previous):
        submit(previous, world["instructor"], decision="changes_requested", comment="Again.")
        return make_revision(lab=lab, user=learner, files={"service.py": SERVICE_PY, "README.md": b"# notes\n"})

    current = next_round(world["revision"])
    short = count_queries(current)
    for _ in range(5):
        current = next_round(current)
    assert current.number == 7
    assert count_queries(current) == short


def test_line_counting_past_the_budget_does_not_mistake_a_cut_character_for_binary(world):
    text = ("é" * 5 + "\n").encode() * 3  # 11 bytes a line; a 16-byte budget cuts the second line's "é" in half
    revision = make_revision(lab=world["lab"], user=world["classmate"], files={"accents.txt": text})
    assert sources.revision_file_line_count(revision=revision, path="accents.txt", max_bytes=16) == 2
    assert sources.revision_file_line_count(revision=revision, path="accents.txt", max_bytes=len(text)) == 3
    assert sources.revision_file_line_count(revision=revision, path="not-there.txt", max_bytes=100) is None


@pytest.mark.parametrize("score", ["1e999999999", "-1e999999999", "1e-999999999", "0e999999999", "1" * 5000])
def test_a_score_too_far_from_any_rubric_is_refused_quoting_what_was_typed(world, score):
    # `{points:f}` of 1e999999999 would build a ~1 GB string: the refusal quotes the input instead.
    with pytest.raises(ReviewRejected) as caught:
        submit(world["revision"], world["reviewer"], rubric_scores={"clarity": score, "ops": 1})
    assert caught.value.problems == [f"Score “Clear code”: {score[:40]!r} is out of range; give 0 to 5."]
    assert not Review.objects.exists()


def test_posting_a_score_of_1e999999999_answers_a_short_refusal(world):
    claim(world["revision"], world["reviewer"])
    response = client_for(world["reviewer"]).post(
        review_url(world["revision"]), {"decision": "approved", "score-clarity": "1e999999999", "score-ops": "1"}
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "The review was not saved (1 problem)." in html
    assert "Score “Clear code”: &#x27;1e999999999&#x27; is out of range; give 0 to 5." in html
    assert len(html) < 200_000
    assert not Review.objects.exists()
