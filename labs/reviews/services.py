"""Writes for reviewing. One review per reviewer per revision. A reviewer must hold a live claim on the work
(labs.reviews.loop.work_claim) to submit; submitting decides the loop (approved, or changes requested) and ends
the claim, so the decision cannot be submitted twice. Reviews stored before claims existed are kept as they
were: several reviewers' reviews of one revision all stay on the timeline."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.utils import timezone

from labs.errors import LearnerError
from labs.models import Review, Revision
from labs.permissions import User, can_review, is_reviewable
from labs.reviews import loop
from labs.reviews.rubric import Criterion, review_spec_for_lab
from labs.sources import revision_file_line_count, revision_paths

logger = logging.getLogger(__name__)

MAX_COMMENT_CHARS = 20_000
MAX_FILE_COMMENT_CHARS = 4_000
MAX_FILE_COMMENTS = 200
# Line comments on a file are checked against its first 8 MiB; nobody reviews further than that by line.
LINE_COUNT_MAX_BYTES = 8 * 1024 * 1024


class ReviewRejected(LearnerError):
    """The review form has problems; `problems` lists every one so the reviewer fixes them in one go."""

    def __init__(self, problems: list[str]) -> None:
        count = len(problems)
        super().__init__(
            f"The review was not saved ({count} problem{'s' if count != 1 else ''}).",
            "Fix every problem listed and submit the review again.",
            problems=problems,
        )


class ReviewNotAllowed(LearnerError):
    """Raised when someone who may not review the revision tries to; views answer 404 before getting here."""

    http_status = 404


@transaction.atomic
def review_submit(
    *,
    revision: Revision,
    reviewer: User,
    decision: str,
    rubric_scores: Mapping[str, Any],
    comment: str,
    file_comments: Iterable[Mapping[str, Any]],
) -> Review:
    """Validate and store `reviewer`'s review of `revision` and set the revision's review_status.

    The revision row is locked first, so two submits of the same form serialise and the second updates the
    review the first created instead of adding a duplicate.
    """
    locked = _revision_locked_for_review(revision=revision, reviewer=reviewer)
    work = loop.work_for_review(revision=locked)
    loop.work_claim_check(work=work, reviewer=reviewer, revision=locked)
    spec = review_spec_for_lab(locked.lab)
    problems: list[str] = []
    decision = _decision(decision, problems)
    scores, total = _scores(rubric_scores, spec.criteria, problems)
    comment = _comment(comment, problems)
    line_comments = _file_comments(file_comments, revision=locked, problems=problems)
    if decision == Review.Decision.REQUEST_CHANGES and not comment and not line_comments:
        problems.append("Say what to change: write a general comment or at least one line comment.")
    if problems:
        raise ReviewRejected(problems)

    fields = {
        "decision": decision,
        "rubric_scores": scores,
        "rubric_total": total,
        "comment": comment,
        "file_comments": line_comments,
        "submitted_at": timezone.now(),
    }
    review = Review.objects.filter(revision=locked, reviewer=reviewer).order_by("-pk").first()
    if review is None:
        review = Review.objects.create(revision=locked, reviewer=reviewer, **fields)
    else:
        for name, value in fields.items():
            setattr(review, name, value)
        review.save(update_fields=list(fields))
    locked.review_status = decision
    locked.save(update_fields=["review_status"])
    revision.review_status = decision  # keep the caller's copy in step
    loop.work_review_decide(work=work, review=review, reviewer=reviewer)
    logger.info("review stored", extra={"revision_id": locked.pk, "review_id": review.pk, "decision": decision})
    return review


def _decision(value: Any, problems: list[str]) -> str:
    if value in Review.Decision.values:
        return str(value)
    problems.append("Choose a decision: approve, or request changes.")
    return ""


def _scores(
    raw: Mapping[str, Any], criteria: tuple[Criterion, ...], problems: list[str]
) -> tuple[dict[str, int | float], Decimal]:
    raw = dict(raw or {})
    max_digits = 40  # a score has at most this many digits, and a decimal exponent within ± this many
    scores: dict[str, int | float] = {}
    total = Decimal(0)
    for criterion in criteria:
        value = raw.pop(criterion.id, None)
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(f"Score “{criterion.title}”: missing; give 0 to {criterion.points:f} points.")
            continue
        try:
            points = Decimal(str(value).strip())
        except InvalidOperation:
            problems.append(f"Score “{criterion.title}”: {str(value)[:40]!r} is not a number.")
            continue
        if isinstance(value, bool) or not points.is_finite():
            problems.append(f"Score “{criterion.title}”: {str(value)[:40]!r} is not a number.")
            continue
        # `1e999999999` parses in no time but `{points:f}` would spell out a billion digits: refuse any score too
        # long or too far from 1 to be a score, quoting what was typed, before a message formats the number.
        _sign, digits, exponent = points.as_tuple()
        if len(digits) > max_digits or not -max_digits <= int(exponent) <= max_digits:
            problems.append(
                f"Score “{criterion.title}”: {str(value)[:40]!r} is out of range; give 0 to {criterion.points:f}."
            )
            continue
        if points < 0 or points > criterion.points:
            problems.append(f"Score “{criterion.title}”: {points:f} is out of range; give 0 to {criterion.points:f}.")
            continue
        if points.as_tuple().exponent < -2:
            problems.append(f"Score “{criterion.title}”: use at most two decimal places, got {points:f}.")
            continue
        total += points
        scores[criterion.id] = int(points) if points == points.to_integral_value() else float(points)
    for unknown in raw:
        problems.append(f"Score for {str(unknown)[:64]!r}: the lab's rubric has no such criterion.")
    return scores, total


def _comment(value: Any, problems: list[str]) -> str:
    comment = str(value or "").strip()
    if len(comment) > MAX_COMMENT_CHARS:
        problems.append(f"The general comment is {len(comment)} characters; keep it under {MAX_COMMENT_CHARS}.")
    return comment


def _file_comments(
    raw: Iterable[Mapping[str, Any]], *, revision: Revision, problems: list[str]
) -> list[dict[str, Any]]:
    entries = list(raw or [])
    if len(entries) > MAX_FILE_COMMENTS:
        problems.append(f"{len(entries)} line comments; at most {MAX_FILE_COMMENTS} fit in one review.")
        return []
    paths = set(revision_paths(revision=revision))
    sizes = {str(f.get("path")): int(f.get("size") or 0) for f in revision.files or []}
    line_counts: dict[str, int | None] = {}
    comments: list[dict[str, Any]] = []
    for number, entry in enumerate(entries, start=1):
        where = f"Line comment {number}"
        path = str(entry.get("path") or "").strip()
        body = str(entry.get("body") or "").strip()
        if path not in paths:
            problems.append(f"{where}: {path[:200]!r} is not a file of this revision; pick one of its files.")
            continue
        line = _line_number(entry.get("line"))
        if line is None:
            problems.append(f"{where} on {path}: the line must be a whole number from 1, got {entry.get('line')!r}.")
            continue
        if path not in line_counts:
            line_counts[path] = revision_file_line_count(
                revision=revision, path=path, max_bytes=min(sizes.get(path, 0), LINE_COUNT_MAX_BYTES)
            )
        count = line_counts[path]
        if count is None:
            problems.append(f"{where}: {path} is binary or unreadable, so it has no lines; use the general comment.")
            continue
        if line > count:
            problems.append(
                f"{where}: {path} has {count} line{'s' if count != 1 else ''}; line {line} is out of range."
            )
            continue
        if not body:
            problems.append(f"{where} on {path}:{line}: the comment is empty; write it or remove the row.")
            continue
        if len(body) > MAX_FILE_COMMENT_CHARS:
            problems.append(f"{where} on {path}:{line}: keep it under {MAX_FILE_COMMENT_CHARS} characters.")
            continue
        comments.append({"path": path, "line": line, "body": body})
    comments.sort(key=lambda c: (c["path"], c["line"]))
    return comments


def _line_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        line = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return line if line >= 1 else None


# --- the reviewer's draft: line comments, scores and the general comment, saved before deciding ---------------------


class ReviewClosed(LearnerError):
    """The reviewer already submitted their review of this revision: it is part of the loop and stays as it is."""

    http_status = 409


class CommentRejected(LearnerError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("The comment was not added.", "Fix what is listed and add it again.", problems=problems)


def _revision_locked_for_review(*, revision: Revision, reviewer: User) -> Revision:
    """The revision, locked, once `reviewer` may review it and grading has finished."""
    locked = Revision.objects.select_for_update(of=("self",)).select_related("lab", "lab__course").get(pk=revision.pk)
    if not can_review(user=reviewer, revision=locked):
        raise ReviewNotAllowed(
            "You cannot review this revision.", "Only the course's reviewers can, and not their own."
        )
    if not is_reviewable(revision=locked):
        raise ReviewRejected(
            [f"Revision {locked.number} is still {locked.state}: wait until grading finishes, then review it."]
        )
    return locked


def _draft_for_update(*, revision: Revision, reviewer: User) -> tuple[Revision, Review | None]:
    """The revision (locked) and `reviewer`'s draft of it, if any; raises if they may not write one."""
    locked = _revision_locked_for_review(revision=revision, reviewer=reviewer)
    review = Review.objects.select_for_update().filter(revision=locked, reviewer=reviewer).first()
    if review is not None and review.submitted_at is not None:
        raise ReviewClosed(
            f"You already submitted your review of revision {locked.number}; it cannot change now.",
            "Comment on the learner's next revision instead.",
        )
    return locked, review


@transaction.atomic
def review_draft_comment_add(
    *, revision: Revision, reviewer: User, path: str, line: Any, body: str
) -> tuple[Review, dict[str, Any]]:
    """Add a line comment to `reviewer`'s draft of `revision` (creating the draft on the first comment). The path
    must be a text file of the revision and the line one of its lines. Returns the draft and the comment."""
    locked, review = _draft_for_update(revision=revision, reviewer=reviewer)
    existing = list(review.file_comments or []) if review is not None else []
    problems: list[str] = []
    if len(existing) >= MAX_FILE_COMMENTS:
        problems.append(f"Your review already has {len(existing)} line comments, the most one review holds.")
    else:
        added = _file_comments([{"path": path, "line": line, "body": body}], revision=locked, problems=problems)
    if problems:
        raise CommentRejected([p.removeprefix("Line comment 1: ").removeprefix("Line comment 1 ") for p in problems])
    comment = added[0]
    comments = sorted([*existing, comment], key=lambda c: (str(c.get("path", "")), int(c.get("line", 0))))
    if review is None:
        review = Review.objects.create(revision=locked, reviewer=reviewer, file_comments=comments)
    else:
        review.file_comments = comments
        review.save(update_fields=["file_comments", "updated_at"])
    logger.info("draft comment added", extra={"revision_id": locked.pk, "review_id": review.pk})
    return review, comment


@transaction.atomic
def review_draft_comment_delete(
    *, revision: Revision, reviewer: User, index: int, path: str | None = None, line: Any = None
) -> dict[str, Any]:
    """Remove the `index`-th line comment of `reviewer`'s draft. With `path` and `line` (the form sends the ones
    it showed), a comment that moved meanwhile (another tab changed the draft) is refused, not deleted."""
    _locked, review = _draft_for_update(revision=revision, reviewer=reviewer)
    comments = list(review.file_comments or []) if review is not None else []
    if not 0 <= index < len(comments):
        raise ReviewClosed("That comment is not in your draft any more.", "Reload the page to see your draft.")
    comment = comments[index]
    moved = path is not None and (comment.get("path") != path or str(comment.get("line")) != str(line))
    if moved:
        raise ReviewClosed("Your draft changed since this page was loaded.", "Reload the page and delete it again.")
    del comments[index]
    review.file_comments = comments
    review.save(update_fields=["file_comments", "updated_at"])
    return comment


@transaction.atomic
def review_draft_save(
    *, revision: Revision, reviewer: User, decision: str, rubric_scores: Mapping[str, Any], comment: str
) -> Review:
    """Store `reviewer`'s rubric scores, general comment and chosen decision as a draft, deciding nothing. Scores
    left blank stay blank; those given are checked as on submit. No claim is needed: only submitting decides."""
    locked, review = _draft_for_update(revision=revision, reviewer=reviewer)
    spec = review_spec_for_lab(locked.lab)
    problems: list[str] = []
    given = {
        key: value for key, value in (rubric_scores or {}).items() if str(value if value is not None else "").strip()
    }
    criteria = tuple(c for c in spec.criteria if c.id in given)
    scores, total = _scores(given, criteria, problems)
    comment = _comment(comment, problems)
    if problems:
        raise ReviewRejected(problems)
    fields = {
        "decision": decision if decision in Review.Decision.values else "",
        "rubric_scores": scores,
        "rubric_total": total if len(criteria) == len(spec.criteria) else None,
        "comment": comment,
    }
    if review is None:
        review = Review.objects.create(revision=locked, reviewer=reviewer, **fields)
    else:
        for name, value in fields.items():
            setattr(review, name, value)
        review.save(update_fields=[*fields, "updated_at"])
    return review
