"""Claims, drafts and line comments on the review page, through the real views, templates and the loop."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from labs.models import LabWork, Review
from labs.reviews import selectors

from .test_reviews import SERVICE_PY, claim, client_for, make_revision, review_url, submit, work_of, world_create

pytestmark = [pytest.mark.django_db]

SCORES = {"score-clarity": "4", "score-ops": "2"}


@pytest.fixture(autouse=True)
def root(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SUBMISSIONS_ROOT = tmp_path / "submissions"
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def world():
    """A course with a rubric lab, its learner's graded revision waiting for review, one user per persona."""
    return world_create()


def claim_url(work) -> str:
    return f"/review/work/{work.pk}/claim/"


def release_url(work) -> str:
    return f"/review/work/{work.pk}/release/"


def comments_url(revision) -> str:
    return f"/review/revisions/{revision.pk}/comments/"


def add_comment(client, revision, *, path="service.py", line="5", body="Log, do not print."):
    return client.post(comments_url(revision), {"path": path, "line": line, "body": body})


def row_after(html: str, row_id: str) -> str:
    """The table row right after the row with id `row_id`."""
    rest = html.split(f'<tr id="{row_id}">', 1)[1]
    return rest.split("</tr>", 1)[1].split("</tr>", 1)[0]


# --- claims ----------------------------------------------------------------------------------------------------


def test_a_reviewer_claims_work_and_lands_on_its_review_page(world):
    revision, reviewer = world["revision"], world["reviewer"]
    work = work_of(revision)
    page = client_for(reviewer).get(review_url(revision)).content.decode()
    assert f'action="{claim_url(work)}"' in page
    assert 'value="submit" class="button" disabled>Submit review' in page
    assert "Claim this work (above) to approve or request changes." in page

    response = client_for(reviewer).post(claim_url(work))
    assert response.status_code == 302
    assert response["Location"] == review_url(revision)
    work.refresh_from_db()
    assert (work.state, work.claimed_by, work.waiting_since is not None) == ("in_review", reviewer, True)
    until = timezone.localtime(work.claim_expires_at).strftime("%H:%M")
    page = client_for(reviewer).get(review_url(revision)).content.decode()
    assert "You hold this until <time" in page and f">{until}</time>" in page
    assert f'action="{release_url(work)}"' in page
    assert 'name="action" value="submit" class="button">Submit review' in page


def test_releasing_puts_the_work_back_in_the_queue_in_its_place(world):
    revision, reviewer = world["revision"], world["reviewer"]
    work = claim(revision, reviewer)
    waited_since = work.waiting_since
    response = client_for(reviewer).post(release_url(work))
    assert response.status_code == 302
    assert response["Location"] == f"/review/{world['course'].slug}/"
    work.refresh_from_db()
    assert (work.state, work.claimed_by, work.waiting_since) == ("awaiting_review", None, waited_since)
    again = client_for(reviewer).post(release_url(work))
    assert again.status_code == 409
    assert "You do not hold a claim on this work." in again.content.decode()


def test_a_second_reviewer_is_refused_with_the_holders_name(world):
    revision = world["revision"]
    work = claim(revision, world["reviewer"])
    response = client_for(world["instructor"]).post(claim_url(work))
    assert response.status_code == 409
    html = response.content.decode()
    until = timezone.localtime(work.claim_expires_at).strftime("%H:%M")
    assert f"reviewer is reviewing this work (their claim lasts until {until})." in html
    assert "Pick another item from the queue." in html
    assert "Held by <strong>reviewer</strong> until" in html
    assert work_of(revision).claimed_by == world["reviewer"]
    # The decision stays the holder's: the other reviewer's submit is refused by the service too.
    refused = client_for(world["instructor"]).post(review_url(revision), {**SCORES, "decision": "approved"})
    assert refused.status_code == 409
    assert "reviewer holds this work; only they can decide on it." in refused.content.decode()
    assert not Review.objects.filter(submitted_at__isnull=False).exists()


def test_an_expired_claim_may_be_taken_and_the_first_reviewers_submit_is_refused(world):
    revision = world["revision"]
    work = claim(revision, world["reviewer"])
    LabWork.objects.filter(pk=work.pk).update(claim_expires_at=timezone.now() - timedelta(minutes=1))
    alone = client_for(world["reviewer"]).post(review_url(revision), {**SCORES, "decision": "approved"})
    assert alone.status_code == 409
    assert "Your claim on this work expired; your draft is kept." in alone.content.decode()

    assert client_for(world["instructor"]).post(claim_url(work)).status_code == 302
    assert work_of(revision).claimed_by == world["instructor"]
    late = client_for(world["reviewer"]).post(review_url(revision), {**SCORES, "decision": "approved"})
    assert late.status_code == 409
    assert "instructor holds this work" in late.content.decode()
    assert work_of(revision).state == "in_review"


def test_approving_unclaimed_work_is_refused(world):
    revision = world["revision"]
    response = client_for(world["reviewer"]).post(review_url(revision), {**SCORES, "decision": "approved"})
    assert response.status_code == 409
    assert "Claim this work before reviewing it: nobody holds it." in response.content.decode()
    assert work_of(revision).state == "awaiting_review"
    assert not Review.objects.exists()


def test_a_reviewer_cannot_claim_or_review_their_own_work(world):
    own = make_revision(lab=world["lab"], user=world["reviewer"])
    client = client_for(world["reviewer"])
    assert client.post(claim_url(work_of(own))).status_code == 404
    assert client.get(review_url(own)).status_code == 404
    assert add_comment(client, own).status_code == 404
    assert work_of(own).state == "awaiting_review"


def test_the_page_of_an_older_revision_points_to_the_newest(world):
    first = world["revision"]
    submit(first, world["reviewer"], decision="changes_requested", comment="Again.")
    second = make_revision(lab=world["lab"], user=world["learner"])
    page = client_for(world["reviewer"]).get(review_url(first)).content.decode()
    assert f'href="{review_url(second)}">Review revision 2</a>' in page
    assert "claim/" not in page


# --- drafts and line comments ------------------------------------------------------------------------------------


def test_a_line_number_opens_the_comment_form_under_that_line_without_javascript(world):
    revision = world["revision"]
    client = client_for(world["reviewer"])
    page = client.get(review_url(revision)).content.decode()
    assert 'href="?comment=service.py:5#new-comment"' in page
    with_form = client.get(review_url(revision), {"comment": "service.py:5"}).content.decode()
    form_row = row_after(with_form, "file-1-L5")
    assert 'id="new-comment"' in form_row
    assert '<input type="hidden" name="path" value="service.py">' in form_row
    assert '<input type="hidden" name="line" value="5">' in form_row
    assert f'action="{comments_url(revision)}"' in form_row


def test_a_comment_from_the_form_lands_on_its_line_in_a_draft(world):
    revision = world["revision"]
    client = client_for(world["reviewer"])
    response = add_comment(client, revision, line="5")
    assert response.status_code == 302
    assert response["Location"] == review_url(revision) + "#file-1-L5"
    draft = Review.objects.get()
    assert draft.submitted_at is None and draft.decision == ""
    assert draft.file_comments == [{"path": "service.py", "line": 5, "body": "Log, do not print."}]
    page = client.get(review_url(revision)).content.decode()
    comments_row = row_after(page, "file-1-L5")
    assert "Log, do not print." in comments_row
    assert "draft · only you" in comments_row
    assert f'action="/review/revisions/{revision.pk}/comments/0/delete/"' in comments_row
    assert "Log, do not print." not in row_after(page, "file-1-L4")


def test_deleting_a_comment_removes_it_from_the_draft(world):
    revision = world["revision"]
    client = client_for(world["reviewer"])
    add_comment(client, revision, line="2", body="First.")
    add_comment(client, revision, line="7", body="Second.")
    delete = f"/review/revisions/{revision.pk}/comments/0/delete/"
    moved = client.post(delete, {"path": "service.py", "line": "7"})
    assert moved.status_code == 409
    assert "Your draft changed since this page was loaded." in moved.content.decode()
    response = client.post(delete, {"path": "service.py", "line": "2"})
    assert response.status_code == 302
    assert response["Location"] == review_url(revision) + "#file-1-L2"
    assert Review.objects.get().file_comments == [{"path": "service.py", "line": 7, "body": "Second."}]
    gone = client.post(f"/review/revisions/{revision.pk}/comments/5/delete/")
    assert gone.status_code == 409
    assert "That comment is not in your draft any more." in gone.content.decode()


@pytest.mark.parametrize(
    ("path", "line", "problem"),
    [
        ("../service.py", "1", "&#x27;../service.py&#x27; is not a file of this revision; pick one of its files."),
        ("<script>x</script>.py", "1", "&#x27;&lt;script&gt;x&lt;/script&gt;.py&#x27; is not a file of this"),
        ("service.py", "99", "service.py has 8 lines; line 99 is out of range."),
        ("service.py", "0", "on service.py: the line must be a whole number from 1, got &#x27;0&#x27;."),
        ("service.py", "<b>2</b>", "the line must be a whole number from 1, got &#x27;&lt;b&gt;2&lt;/b&gt;&#x27;."),
        ("service.py", "9" * 500, "service.py has 8 lines; line 999"),
    ],
)
def test_a_hostile_path_or_line_is_refused_with_a_clear_message(world, path, line, problem):
    response = add_comment(client_for(world["reviewer"]), world["revision"], path=path, line=line)
    assert response.status_code == 400
    html = response.content.decode()
    assert "The comment was not added." in html
    assert problem in html
    assert "<script>x" not in html
    assert not Review.objects.exists()


def test_a_comment_request_for_a_line_that_is_not_there_says_so(world):
    html = client_for(world["reviewer"]).get(review_url(world["revision"]), {"comment": "nope.py:1"}).content.decode()
    assert "There is no line <code>nope.py:1</code> in this revision to comment on." in html
    assert 'id="new-comment"' not in html.split('<template id="comment-form-template">')[0]


def test_saving_a_draft_keeps_scores_and_comment_without_deciding(world):
    revision = world["revision"]
    client = client_for(world["reviewer"])
    form = {"score-clarity": "3", "score-ops": "", "comment": "Halfway.", "decision": "approved", "action": "draft"}
    response = client.post(review_url(revision), form)
    assert response.status_code == 302
    draft = Review.objects.get()
    assert (draft.submitted_at, draft.rubric_scores, draft.comment) == (None, {"clarity": 3}, "Halfway.")
    assert work_of(revision).state == "awaiting_review"
    page = client.get(review_url(revision)).content.decode()
    assert 'id="score-clarity" name="score-clarity"' in page and 'value="3"' in page and "Halfway." in page
    bad = client.post(review_url(revision), {**form, "score-clarity": "7"})
    assert bad.status_code == 400
    assert "7 is out of range" in bad.content.decode()


def test_submitting_sends_the_drafts_line_comments_and_a_line_comment_is_enough_to_request_changes(world):
    revision = world["revision"]
    client = client_for(world["reviewer"])
    add_comment(client, revision, line="5", body="Use logging.")
    claim(revision, world["reviewer"])
    response = client.post(review_url(revision), {**SCORES, "comment": "", "decision": "changes_requested"})
    assert response.status_code == 302
    review = Review.objects.get()
    assert review.submitted_at is not None and review.decision == "changes_requested"
    assert review.file_comments == [{"path": "service.py", "line": 5, "body": "Use logging."}]
    assert work_of(revision).state == "changes_requested"
    closed = add_comment(client, revision, line="6")
    assert closed.status_code == 409
    assert "You already submitted your review of revision 1" in closed.content.decode()


def test_requesting_changes_with_nothing_to_act_on_is_refused(world):
    revision = world["revision"]
    claim(revision, world["reviewer"])
    response = client_for(world["reviewer"]).post(
        review_url(revision), {**SCORES, "comment": "", "decision": "changes_requested"}
    )
    assert response.status_code == 400
    assert "Say what to change: write a general comment or at least one line comment." in response.content.decode()


def test_a_draft_is_invisible_to_the_learner_and_to_other_reviewers(world):
    revision = world["revision"]
    add_comment(client_for(world["reviewer"]), revision, body="Secret draft note.")
    client_for(world["reviewer"]).post(
        review_url(revision), {"comment": "Draft overall.", "action": "draft", "score-clarity": "1"}
    )
    assert Review.objects.get().submitted_at is None
    learner_page = client_for(world["learner"]).get(f"/revisions/{revision.pk}/").content.decode()
    other_page = client_for(world["instructor"]).get(review_url(revision)).content.decode()
    for html in (learner_page, other_page):
        assert "Secret draft note." not in html
        assert "Draft overall." not in html
    assert selectors.reviews_for_revision(revision=revision, viewer=world["learner"]) == []
    assert selectors.reviews_for_revision(revision=revision, viewer=world["instructor"]) == []
    assert [h.reviews for h in selectors.review_history(revision=revision)] == [[]]


# --- the diff -----------------------------------------------------------------------------------------------------


def test_the_review_page_diffs_against_the_last_reviewed_revision_or_a_picked_one(world):
    lab, learner = world["lab"], world["learner"]
    first = world["revision"]
    submit(first, world["reviewer"], decision="changes_requested", comment="Use logging.")
    second = make_revision(lab=lab, user=learner, files={"service.py": SERVICE_PY.replace(b"print", b"log")})
    client = client_for(world["reviewer"])
    page = client.get(review_url(second)).content.decode()
    assert "Changes since revision 1 (last reviewed)" in page
    assert re.search(r'<tr class="diff-delete"><td class="ln">5</td>', page)
    assert re.search(r'<tr class="diff-add"><td class="ln"></td><td class="ln">5</td>', page)
    third_user_revision = make_revision(lab=lab, user=world["classmate"])
    assert client.get(review_url(second), {"against": third_user_revision.pk}).status_code == 404
    assert client.get(review_url(second), {"against": "garbage"}).status_code == 200
    picked = client.get(review_url(second), {"against": first.pk}).content.decode()
    assert f'href="?against={first.pk}&amp;comment=service.py:1#new-comment"' in picked


# --- access -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["outsider", "classmate", "other_reviewer", "learner"])
def test_everyone_else_gets_404_on_every_reviewer_url(world, persona):
    revision = world["revision"]
    work = work_of(revision)
    add_comment(client_for(world["reviewer"]), revision)
    client = client_for(world[persona])
    assert client.get(f"/review/{world['course'].slug}/").status_code == 404
    assert client.get("/review/no-such-course/").status_code == 404
    assert client.post(claim_url(work)).status_code == 404
    assert client.post(release_url(work)).status_code == 404
    assert client.post("/review/work/999999/claim/").status_code == 404
    assert add_comment(client, revision).status_code == 404
    assert client.post(f"/review/revisions/{revision.pk}/comments/0/delete/").status_code == 404
    assert client.get(review_url(revision), {"comment": "service.py:1"}).status_code == 404
    assert work_of(revision).state == "awaiting_review"
    assert Review.objects.get().file_comments[0]["body"] == "Log, do not print."


def test_claim_and_comment_urls_take_posts_only(world):
    work = work_of(world["revision"])
    client = client_for(world["reviewer"])
    assert client.get(claim_url(work)).status_code == 405
    assert client.get(comments_url(world["revision"])).status_code == 405
    assert work_of(world["revision"]).state == "awaiting_review"
