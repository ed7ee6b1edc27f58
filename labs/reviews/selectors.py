"""Reads for reviewing: the queue, a revision's source files, the loop's history, and what a learner sees."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Count, F, Prefetch, Q, QuerySet
from django.utils import timezone

from courses.models import Course
from labs import selectors as lab_selectors
from labs.models import Lab, LabWork, Review, Revision
from labs.permissions import REVIEW_ROLES, REVIEWABLE_STATES, User, can_read_reviews, is_site_staff
from labs.reviews.rubric import ReviewSpec, review_spec_for_lab
from labs.sources import MAX_SHOWN_FILE_BYTES, MAX_SHOWN_TOTAL_BYTES, SourceFile, SourceLine, revision_source

logger = logging.getLogger(__name__)

QUEUE_PAGE_SIZE = 50

# The model's choice labels read as buttons ("Request Changes"); people read a verdict.
DECISION_LABELS = {Review.Decision.APPROVE: "Approved", Review.Decision.REQUEST_CHANGES: "Changes requested"}


# --- the queue ---------------------------------------------------------------------------------------------------

W = LabWork.State
QUEUE_STATES = (W.AWAITING_REVIEW, W.IN_REVIEW)
# Not waiting, but a reviewer may look back at them with the state filter.
LOOK_BACK_STATES = (W.CHANGES_REQUESTED, W.APPROVED)
QUEUE_STATE_CHOICES = [(state, W(state).label) for state in (*QUEUE_STATES, *LOOK_BACK_STATES)]


def reviewable_courses(*, reviewer: User) -> QuerySet[Course]:
    if is_site_staff(user=reviewer):
        return Course.objects.all()
    return Course.objects.filter(enrollments__user=reviewer, enrollments__role__in=REVIEW_ROLES)


@dataclass
class CourseQueue:
    course: Course
    awaiting: int
    in_review: int


def review_courses(*, reviewer: User) -> list[CourseQueue]:
    """The courses `reviewer` reviews, with how much work waits in each (their own work left out). One query."""
    mine = Q(labs__works__user=reviewer)
    courses = (
        reviewable_courses(reviewer=reviewer)
        .annotate(
            awaiting=Count("labs__works", filter=Q(labs__works__state=W.AWAITING_REVIEW) & ~mine),
            in_review=Count("labs__works", filter=Q(labs__works__state=W.IN_REVIEW) & ~mine),
        )
        .order_by("title", "pk")
    )
    return [CourseQueue(course=c, awaiting=c.awaiting, in_review=c.in_review) for c in courses]


def review_queue(
    *, reviewer: User, course: Course | None = None, lab_id: int | None = None, state: str | None = None
) -> QuerySet[LabWork]:
    """Learners' work waiting for a review (awaiting_review, or in_review under a claim), longest waiting first,
    in `course` or in every course `reviewer` reviews; never the reviewer's own work. `state` narrows it to one
    state, and also looks back at changes_requested or approved work (most recently decided first)."""
    states = (state,) if state in (*QUEUE_STATES, *LOOK_BACK_STATES) else QUEUE_STATES
    works = _queue_columns(LabWork.objects.filter(state__in=states).exclude(user=reviewer))
    if course is not None:
        works = works.filter(lab__course=course)
    elif not is_site_staff(user=reviewer):
        works = works.filter(lab__course__in=reviewable_courses(reviewer=reviewer).values("pk"))
    if lab_id is not None:
        works = works.filter(lab_id=lab_id)
    if states[0] in LOOK_BACK_STATES:
        return works.order_by("-updated_at", "-pk")
    return works.order_by(F("waiting_since").asc(nulls_last=True), "pk")


# What a queue row shows (course_queue.html), and no more: a lab's instructions, spec and table of contents and a
# revision's file list are big and the queue never shows them. Other fields load on access, one query each.
QUEUE_ROW_FIELDS = (
    "lab__title", "lab__course__slug", "lab__course__title",
    "user__username",
    "state", "revision__number", "claimed_by__username", "claim_expires_at",
    "waiting_since", "autograde", "is_late",
)  # fmt: skip


def _queue_columns(works: QuerySet[LabWork]) -> QuerySet[LabWork]:
    return works.select_related("lab", "lab__course", "user", "revision", "claimed_by").only(*QUEUE_ROW_FIELDS)


def review_queue_labs(*, course: Course) -> list[Lab]:
    """The labs of `course` to filter its queue by."""
    return list(Lab.objects.filter(course=course).only("title").order_by("unit__position", "slug"))


def review_queue_page(
    *, reviewer: User, course: Course, lab_id: int | None = None, state: str | None = None, page: Any = 1
) -> Page:
    """One page of review_queue. The page is picked on the works' ids alone and only its rows are joined to their
    lab, learner, revision and claimant: sorting the whole queue's joined rows costs tens of milliseconds in a big
    course. Still two queries: the count, and the page's rows (its ids are a subquery)."""
    works = review_queue(reviewer=reviewer, course=course, lab_id=lab_id, state=state)
    found = Paginator(works.values_list("pk", flat=True), QUEUE_PAGE_SIZE).get_page(page)
    found.object_list = list(
        _queue_columns(LabWork.objects.filter(pk__in=found.object_list)).order_by(*works.query.order_by)
    )
    return found


@dataclass
class ClaimView:
    """Where the work stands for the reviewer looking at it: "mine", "other" (held by `holder`), "open" (may be
    claimed: waiting, or its claim expired) or "closed" (not waiting for review: decided, or not graded yet)."""

    state: str
    holder: str = ""
    until: datetime | None = None


def claim_view(*, work: LabWork | None, reviewer: User, now: datetime | None = None) -> ClaimView:
    now = now or timezone.now()
    if work is None:
        return ClaimView("closed")
    if work.state == W.IN_REVIEW and work.claim_expires_at and work.claim_expires_at > now and work.claimed_by_id:
        if work.claimed_by_id == reviewer.pk:
            return ClaimView("mine", holder=work.claimed_by.get_username(), until=work.claim_expires_at)
        return ClaimView("other", holder=work.claimed_by.get_username(), until=work.claim_expires_at)
    if work.state in QUEUE_STATES:
        return ClaimView("open")
    return ClaimView("closed")


# --- reviews as people read them -------------------------------------------------------------------------------


@dataclass
class ScoreView:
    criterion_id: str
    title: str
    points: Any
    max_points: Decimal | None


@dataclass
class ReviewView:
    review: Review
    decision: str
    decision_label: str
    reviewer_name: str
    scores: list[ScoreView]
    total: Decimal | None
    max_total: Decimal
    comment: str
    file_comments: list[dict[str, Any]]


def review_view(*, review: Review, spec: ReviewSpec) -> ReviewView:
    criteria = {c.id: c for c in spec.criteria}
    scores = []
    for criterion in spec.criteria:
        if criterion.id in (review.rubric_scores or {}):
            scores.append(
                ScoreView(criterion.id, criterion.title, review.rubric_scores[criterion.id], criterion.points)
            )
    # Scores for criteria the rubric has since dropped stay visible, under their id.
    for criterion_id, points in (review.rubric_scores or {}).items():
        if criterion_id not in criteria:
            scores.append(ScoreView(criterion_id, criterion_id, points, None))
    return ReviewView(
        review=review,
        decision=review.decision,
        decision_label=DECISION_LABELS.get(review.decision, review.decision),
        reviewer_name=review.reviewer.get_username(),
        scores=scores,
        total=review.rubric_total,
        max_total=spec.max_total,
        comment=review.comment,
        file_comments=sorted(review.file_comments or [], key=lambda c: (c.get("path", ""), int(c.get("line", 0)))),
    )


def reviews_for_revision(*, revision: Revision, viewer: User) -> list[ReviewView]:
    """The reviews of one revision for its revision page: the learner who submitted it and its reviewers see
    them; anyone else gets an empty list."""
    if not can_read_reviews(user=viewer, revision=revision):
        return []
    spec = review_spec_for_lab(revision.lab)
    reviews = (
        Review.objects.filter(revision=revision, submitted_at__isnull=False)  # drafts are their author's alone
        .select_related("reviewer")
        .order_by("created_at", "pk")
    )
    return [review_view(review=review, spec=spec) for review in reviews]


@dataclass
class HistoryEntry:
    revision: Revision
    reviews: list[ReviewView]
    is_current: bool


def review_history(*, revision: Revision) -> list[HistoryEntry]:
    """The loop so far: every revision of this learner on this lab with its submitted reviews, newest first.
    Drafts are left out: only their author sees them, on the review page (review_draft_get)."""
    spec = review_spec_for_lab(revision.lab)
    submitted = Review.objects.filter(submitted_at__isnull=False).select_related("reviewer").order_by("created_at")
    revisions = list(
        Revision.objects.filter(lab=revision.lab, user=revision.user)
        .prefetch_related(Prefetch("reviews", queryset=submitted))
        .order_by("-number")
    )
    return [
        HistoryEntry(
            revision=r,
            reviews=[review_view(review=review, spec=spec) for review in r.reviews.all()],
            is_current=r.pk == revision.pk,
        )
        for r in revisions
    ]


def review_get_own(*, revision: Revision, reviewer: User) -> Review | None:
    """`reviewer`'s review of `revision`: their draft (submitted_at None) or the review they submitted."""
    return Review.objects.filter(revision=revision, reviewer=reviewer).order_by("-pk").first()


@dataclass
class TreeNode:
    name: str
    anchor: str = ""  # files: the id of the file's section on the page
    path: str = ""
    children: list[TreeNode] = field(default_factory=list)

    @property
    def is_folder(self) -> bool:
        return not self.anchor


def file_tree(*, files: list[SourceFile]) -> list[TreeNode]:
    """The files as nested folders (folders first, then files, each by name) for the review page's file tree."""
    root = TreeNode(name="")
    for source in files:
        node = root
        *folders, name = source.path.split("/")
        for folder in folders:
            found = next((c for c in node.children if c.is_folder and c.name == folder), None)
            if found is None:
                found = TreeNode(name=folder)
                node.children.append(found)
            node = found
        node.children.append(TreeNode(name=name, anchor=source.anchor, path=source.path))

    def ordered(node: TreeNode) -> None:
        node.children.sort(key=lambda c: (not c.is_folder, c.name))
        for child in node.children:
            ordered(child)

    ordered(root)
    return root.children


def comment_target_parse(value: str | None) -> tuple[str, int] | None:
    """`?comment=<path>:<line>` as (path, line), or None when it is not one."""
    if not value or len(value) > 2000:
        return None
    path, _, line = value.rpartition(":")
    if not path or not (line.isascii() and line.isdigit()) or len(line) > 9 or int(line) < 1:
        return None
    return path, int(line)


@dataclass
class ReviewPage:
    revision: Revision
    spec: ReviewSpec
    grading: lab_selectors.RevisionDetail
    files: list[SourceFile]
    tree: list[TreeNode]
    history: list[HistoryEntry]
    own_review: Review | None
    draft: Review | None
    reviewable: bool
    text_paths: list[str]
    work: LabWork | None
    claim: ClaimView
    is_current: bool  # the newest revision of the work: the one a claim and a decision are about
    against: Revision | None  # the revision the diff compares with (None: no diff)
    diffs: list[Any] | None
    comment_target: tuple[str, int] | None
    comment_target_missing: str
    query_prefix: str  # keeps ?against= on the page's own links
    shown_file_limit: int = MAX_SHOWN_FILE_BYTES
    shown_total_limit: int = MAX_SHOWN_TOTAL_BYTES

    @property
    def can_decide(self) -> bool:
        return self.reviewable and self.is_current and self.claim.state == "mine"

    @property
    def can_draft(self) -> bool:
        return self.reviewable and (self.own_review is None or self.own_review.submitted_at is None)


def review_page(
    *, revision: Revision, reviewer: User, against: Revision | None = None, comment: str | None = None
) -> ReviewPage:
    """Everything the review page shows `reviewer`, who passed permissions.access_revision_for_review_by_id.
    `against` (through permissions.access_revision_pair_by_ids) picks the diff's other side; by default it is
    the revision last decided on. `comment` is the ?comment=<path>:<line> whose form opens without JavaScript."""
    from labs.reviews.diffs import revisions_diff

    picked = against is not None and against.pk != revision.pk
    spec = review_spec_for_lab(revision.lab)
    history = review_history(revision=revision)
    current = next((h for h in history if h.is_current), None)
    own = review_get_own(revision=revision, reviewer=reviewer)
    draft = own if own is not None and own.submitted_at is None else None
    comments_here = [
        {**c, "reviewer_name": view.reviewer_name}
        for view in (current.reviews if current else [])
        for c in view.file_comments
    ]
    if draft is not None:
        comments_here += [
            {**c, "reviewer_name": reviewer.get_username(), "is_draft": True, "index": index}
            for index, c in enumerate(draft.file_comments or [])
        ]
    files = revision_source(revision=revision, file_comments=comments_here)
    target = comment_target_parse(comment)
    target_missing = ""
    if comment:
        line = _line_for(files, target)
        if line is None:
            target_missing = comment[:200]
            target = None
        else:
            line.comment_form = True
    work = (
        LabWork.objects.select_related("claimed_by", "reviewed_revision")
        .filter(lab_id=revision.lab_id, user_id=revision.user_id)
        .first()
    )
    reviewed = work.reviewed_revision if work is not None else None
    if against is None and reviewed is not None and reviewed.number < revision.number:
        against = reviewed
    if against is not None and against.pk == revision.pk:
        against = None
    prefix = f"against={against.pk}&" if picked else ""
    return ReviewPage(
        revision=revision,
        spec=spec,
        grading=lab_selectors.revision_detail(revision=revision, viewer=reviewer),
        files=files,
        tree=file_tree(files=files),
        history=history,
        own_review=own,
        draft=draft,
        reviewable=revision.state in REVIEWABLE_STATES,
        text_paths=[f.path for f in files if f.kind in ("text", "too_large", "over_page_budget")],
        work=work,
        claim=claim_view(work=work, reviewer=reviewer),
        is_current=work is not None and work.revision_id == revision.pk,
        against=against,
        diffs=revisions_diff(old=against, new=revision) if against is not None else None,
        comment_target=target,
        comment_target_missing=target_missing,
        query_prefix=prefix,
    )


def _line_for(files: list[SourceFile], target: tuple[str, int] | None) -> SourceLine | None:
    if target is None:
        return None
    path, number = target
    for source in files:
        if source.path == path and source.kind == "text" and 1 <= number <= len(source.lines):
            return source.lines[number - 1]
    return None


# --- where a learner stands ------------------------------------------------------------------------------------


def lab_review_state(*, lab: Lab, user: User) -> str:
    """Where `user` stands with the review of `lab`: "approved" (the lab is done), "changes_requested" (submit a
    new revision), "awaiting_review", or "not_submitted"."""
    revisions = Revision.objects.filter(lab=lab, user=user)
    if revisions.filter(review_status="approved").exists():
        return "approved"
    latest = revisions.order_by("-number").only("review_status").first()
    if latest is None:
        return "not_submitted"
    if latest.review_status == "changes_requested":
        return "changes_requested"
    return "awaiting_review"
