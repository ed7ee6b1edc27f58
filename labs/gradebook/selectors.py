"""Reads for instructors: the gradebook (learners x labs), its CSV rows and a lab's analytics.

Every function here runs a fixed number of queries whatever the size of the course (the CSV export one pair per
chunk of learners), so the pages stay as fast with 2,000 learners as with 5. Nothing here writes; grades and
states are written by labs.reviews.loop only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from django.contrib.auth import get_user_model
from django.core.paginator import Page, Paginator
from django.db.models import (
    Count,
    F,
    FloatField,
    Func,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce, Floor

from courses.models import Course, Enrollment
from labs.models import CheckResult, GradingRun, Lab, LabWork, Revision, WorkEvent
from labs.reviews.rubric import review_spec_for_lab

LEARNERS_PER_PAGE = 50
CSV_CHUNK = 500
FINISHED = (Revision.State.GRADED, Revision.State.FAILED)
STATES = LabWork.State


# --- the gradebook -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradebookFilters:
    """What the instructor asked for; every field empty means the whole course."""

    lab: str = ""  # a lab's slug
    state: str = ""  # a LabWork.State value
    learner: str = ""  # part of a username

    @classmethod
    def from_query(cls, query: Any) -> GradebookFilters:
        """From request.GET (or any mapping); unknown states are dropped rather than refused."""
        state = (query.get("state") or "").strip()
        return cls(
            lab=(query.get("lab") or "").strip()[:100],
            state=state if state in STATES.values else "",
            learner=(query.get("learner") or "").strip()[:150],
        )

    def as_query(self) -> dict[str, str]:
        return {
            key: value for key, value in (("lab", self.lab), ("state", self.state), ("learner", self.learner)) if value
        }


@dataclass
class GradebookRow:
    learner: Any  # a User
    cells: list[tuple[Lab, WorkCell | None]]  # in the order of GradebookPage.labs; None: nothing submitted
    html: str = ""  # the cells as HTML, filled by the view (labs/gradebook/cells.py)


@dataclass
class GradebookPage:
    course: Course
    labs: list[Lab]  # the columns (one lab when filtered by lab)
    all_labs: list[Lab]  # for the filter's choices
    page: Page
    rows: list[GradebookRow] = field(default_factory=list)


def course_labs(*, course: Course) -> list[Lab]:
    return list(Lab.objects.filter(course=course).select_related("unit").only("pk", "slug", "title", "spec", "unit"))


def gradebook_labs(*, labs: list[Lab], filters: GradebookFilters) -> list[Lab]:
    """The columns: every lab, or the one the filter names (none if it names no lab of the course)."""
    if not filters.lab:
        return labs
    return [lab for lab in labs if lab.slug == filters.lab]


def gradebook_learners(*, course: Course, labs: list[Lab], filters: GradebookFilters) -> QuerySet:
    """The rows: learners enrolled as learners, and anyone with work in the course (a learner who left, a reviewer
    who submitted), by username; narrowed by name and by the state of their work in the shown labs."""
    lab_ids = [lab.pk for lab in labs]
    enrolled = Enrollment.objects.filter(course=course, role=Enrollment.Role.LEARNER).values("user_id")
    with_work = LabWork.objects.filter(lab__course=course).values("user_id")
    learners = get_user_model().objects.filter(Q(pk__in=enrolled) | Q(pk__in=with_work))
    if filters.learner:
        learners = learners.filter(username__icontains=filters.learner)
    if filters.state:
        learners = learners.filter(
            pk__in=LabWork.objects.filter(lab_id__in=lab_ids, state=filters.state).values("user_id")
        )
    if filters.lab and not labs:
        learners = learners.none()
    return learners.only("pk", "username", "email").order_by("username", "pk")


class WorkCell(NamedTuple):
    """The part of a LabWork the gradebook shows, read as plain values (thousands per CSV chunk)."""

    pk: int
    lab_id: int
    user_id: int
    state: str
    autograde: Decimal | None
    rubric: Decimal | None
    final_grade: Decimal | None
    override_grade: Decimal | None
    is_late: bool
    revision_count: int

    @property
    def grade(self) -> Decimal | None:
        """As LabWork.grade: an override, else the loop's final grade."""
        return self.override_grade if self.override_grade is not None else self.final_grade


def works_for(*, learner_ids: list[int], labs: list[Lab]) -> dict[tuple[int, int], WorkCell]:
    """{(user id, lab id): work} for these learners and labs, in one query."""
    if not learner_ids or not labs:
        return {}
    rows = LabWork.objects.filter(user_id__in=learner_ids, lab_id__in=[lab.pk for lab in labs]).values_list(
        *WorkCell._fields
    )
    works = (WorkCell(*row) for row in rows)
    return {(w.user_id, w.lab_id): w for w in works}


def gradebook_page(*, course: Course, filters: GradebookFilters, page_number: Any = 1) -> GradebookPage:
    """One page of the gradebook: four queries (labs, count, learners, their work) however big the course."""
    all_labs = course_labs(course=course)
    labs = gradebook_labs(labs=all_labs, filters=filters)
    learners = gradebook_learners(course=course, labs=labs, filters=filters)
    page = Paginator(learners, LEARNERS_PER_PAGE).get_page(page_number)
    people = list(page.object_list)
    works = works_for(learner_ids=[u.pk for u in people], labs=labs)
    rows = [GradebookRow(learner=u, cells=[(lab, works.get((u.pk, lab.pk))) for lab in labs]) for u in people]
    return GradebookPage(course=course, labs=labs, all_labs=all_labs, page=page, rows=rows)


# --- the CSV export ------------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "username",
    "email",
    "lab",
    "state",
    "autograde",
    "rubric",
    "final_grade",
    "override",
    "late",
    "revisions",
)


def gradebook_csv_rows(*, course: Course, filters: GradebookFilters) -> Iterator[dict[str, Any]]:
    """One dict per learner and lab (CSV_COLUMNS; values as typed: str, Decimal, int, bool or None), learners by
    username, labs in course order. A learner with nothing submitted gets state "not_submitted" (left out when
    filtering by state). `final_grade` is the grade that counts (the override if any); `override` the override
    alone. Two queries per CSV_CHUNK learners, streamed."""
    labs = gradebook_labs(labs=course_labs(course=course), filters=filters)
    learners = gradebook_learners(course=course, labs=labs, filters=filters)
    last_key: tuple[str, int] | None = None
    while True:
        chunk_query = learners
        if last_key is not None:
            name, pk = last_key
            chunk_query = chunk_query.filter(Q(username__gt=name) | Q(username=name, pk__gt=pk))
        chunk = list(chunk_query[:CSV_CHUNK])
        if not chunk:
            return
        last_key = (chunk[-1].username, chunk[-1].pk)
        works = works_for(learner_ids=[u.pk for u in chunk], labs=labs)
        for user in chunk:
            for lab in labs:
                work = works.get((user.pk, lab.pk))
                if work is None:
                    if filters.state:
                        continue
                    yield _csv_row(user=user, lab=lab, state="not_submitted")
                    continue
                if filters.state and work.state != filters.state:
                    continue
                yield _csv_row(user=user, lab=lab, state=work.state, work=work)


def _csv_row(*, user: Any, lab: Lab, state: str, work: WorkCell | None = None) -> dict[str, Any]:
    return {
        "username": user.username,
        "email": user.email,
        "lab": lab.slug,
        "state": state,
        "autograde": work.autograde if work else None,
        "rubric": work.rubric if work else None,
        "final_grade": work.grade if work else None,
        "override": work.override_grade if work else None,
        "late": bool(work and work.is_late),
        "revisions": work.revision_count if work else 0,
    }


# --- overrides -----------------------------------------------------------------------------------------------------


def work_override_history(*, work: LabWork) -> list:
    """The work's GradeOverride rows, oldest first, with who made each."""
    return list(work.overrides.select_related("by").order_by("created_at", "pk"))


# --- per-lab analytics ---------------------------------------------------------------------------------------------

SCORE_BUCKETS = tuple((low, low + 10) for low in range(0, 100, 10))  # the last one takes 100 too
HOUR_BUCKETS = ((0, 1), (1, 4), (4, 12), (12, 24), (24, 48), (48, 96), (96, 168), (168, None))


@dataclass
class CheckPassRate:
    check_id: str
    hidden: bool
    passed: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.passed / self.total if self.total else 0.0


@dataclass
class LabAnalytics:
    lab: Lab
    works: int  # learners with work on the lab
    checks: list[CheckPassRate]
    revisions_to_pass: list[tuple[str, int]]  # (label, learners)
    hours_to_review: list[tuple[str, int]]  # (label, reviews)
    scores: list[tuple[str, int]]  # (label, learners)
    passed: int
    reviewed: bool  # the lab has review (else passing is 100% autograde)
    reviews: int
    median_hours: float | None


def lab_analytics(*, lab: Lab) -> LabAnalytics:
    """Everything the analytics page draws, in six queries whatever the number of learners."""
    return LabAnalytics(
        lab=lab,
        works=LabWork.objects.filter(lab=lab).count(),
        checks=lab_check_pass_rates(lab=lab),
        revisions_to_pass=(passes := lab_revisions_to_pass(lab=lab)),
        hours_to_review=(hours := lab_hours_to_review(lab=lab))[0],
        scores=lab_score_distribution(lab=lab),
        passed=sum(n for _, n in passes),
        reviewed=review_spec_for_lab(lab).reviewed,
        reviews=hours[1],
        median_hours=hours[2],
    )


def lab_check_pass_rates(*, lab: Lab) -> list[CheckPassRate]:
    """Per check, how many learners pass it, from each learner's newest finished revision and its latest finished
    run. Hidden checks are included (staff only). Checks in the lab's order; one query."""
    newest_finished = (
        Revision.objects.learner_work()
        .filter(lab_id=lab.pk, user_id=OuterRef("user_id"), state__in=FINISHED)
        .order_by("-number")
        .values("pk")[:1]
    )
    revisions = Revision.objects.learner_work().filter(lab_id=lab.pk, state__in=FINISHED, pk=Subquery(newest_finished))
    latest_run = (
        GradingRun.objects.filter(
            revision_id=OuterRef("revision_id"), outcome__in=[GradingRun.Outcome.GRADED, GradingRun.Outcome.FAILED]
        )
        .order_by("-attempt")
        .values("pk")[:1]
    )
    runs = GradingRun.objects.filter(revision__in=revisions, pk=Subquery(latest_run))
    rows = (
        CheckResult.objects.filter(run__in=runs)
        .values("check_id")
        .annotate(
            total=Count("pk"),
            passed=Count("pk", filter=Q(status=CheckResult.Status.PASS)),
            hidden=Count("pk", filter=Q(hidden_until_due=True)),
        )
        .order_by("check_id")
    )
    order = {c.get("id"): i for i, c in enumerate((lab.spec or {}).get("checks") or []) if isinstance(c, dict)}
    hidden_in_spec = {
        c.get("id")
        for c in (lab.spec or {}).get("checks") or []
        if isinstance(c, dict) and c.get("visibility") == "hidden"
    }
    rates = [
        CheckPassRate(
            check_id=r["check_id"],
            hidden=bool(r["hidden"]) or r["check_id"] in hidden_in_spec,
            passed=r["passed"],
            total=r["total"],
        )
        for r in rows
    ]
    return sorted(rates, key=lambda r: (order.get(r.check_id, len(order)), r.check_id))


def lab_revisions_to_pass(*, lab: Lab) -> list[tuple[str, int]]:
    """How many revisions learners needed to pass: the number of the approved revision; for a lab without review,
    the first revision that scored 100%. One query. Buckets 1..9 and "10+"."""
    if review_spec_for_lab(lab).reviewed:
        numbers = list(
            LabWork.objects.filter(lab=lab, state=STATES.APPROVED)
            .annotate(n=Coalesce("reviewed_revision__number", "revision__number"))
            .values_list("n", flat=True)
        )
    else:
        numbers = list(
            Revision.objects.learner_work()
            .filter(lab=lab, state=Revision.State.GRADED, max_score__gt=0, score__gte=F("max_score"))
            .values("user_id")
            .annotate(first=Min("number"))
            .values_list("first", flat=True)
        )
    counts = Counter(min(n, 10) for n in numbers if n)
    if not counts:
        return []
    top = max(counts)
    return [(f"{n}" if n < 10 else "10+", counts.get(n, 0)) for n in range(1, top + 1)]


class Epoch(Func):
    """Seconds since the epoch of a datetime, computed by the database: subtracting them costs no parsing of
    timestamps in Python (SQLite's Python-level timestamp functions dominated the analytics page)."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)"  # PostgreSQL
    output_field = FloatField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, template="(julianday(%(expressions)s) * 86400.0)", **extra_context)


def lab_hours_to_review(*, lab: Lab) -> tuple[list[tuple[str, int]], int, float | None]:
    """Hours from a revision's `submitted` event to the reviewer's decision on it (approved or changes requested).
    Returns (histogram buckets, number of decisions, median hours). One query; the database subtracts."""
    submitted_at = (
        WorkEvent.objects.filter(
            work_id=OuterRef("work_id"), revision_id=OuterRef("revision_id"), kind=WorkEvent.Kind.SUBMITTED
        )
        .order_by("created_at", "pk")
        .values("created_at")[:1]
    )
    waits = (
        WorkEvent.objects.filter(
            work__lab=lab, kind__in=[WorkEvent.Kind.APPROVED, WorkEvent.Kind.CHANGES_REQUESTED], revision__isnull=False
        )
        .annotate(wait=Epoch("created_at") - Epoch(Subquery(submitted_at)))
        .values_list("wait", flat=True)
    )
    hours = sorted(max(float(wait), 0.0) / 3600 for wait in waits if wait is not None)
    if not hours:
        return [], 0, None
    buckets = []
    for low, high in HOUR_BUCKETS:
        label = f"{low}-{high} h" if high is not None else f"{low} h+"
        buckets.append((label, sum(1 for h in hours if h >= low and (high is None or h < high))))
    middle = len(hours) // 2
    median = hours[middle] if len(hours) % 2 else (hours[middle - 1] + hours[middle]) / 2
    return buckets, len(hours), median


def lab_score_distribution(*, lab: Lab) -> list[tuple[str, int]]:
    """Learners per 10-point bucket of their grade (the override, else the final grade, else the autograde); 100
    counts in the top bucket. One grouped query; empty when nobody has a score yet."""
    score = Coalesce("override_grade", "final_grade", "autograde")
    rows = (
        LabWork.objects.filter(lab=lab)
        .annotate(bucket=Floor(score / 10))
        .filter(bucket__isnull=False)
        .values("bucket")
        .annotate(n=Count("pk"))
        .values_list("bucket", "n")
    )
    counts: Counter = Counter()
    for bucket, n in rows:
        counts[min(max(int(bucket), 0), 9)] += n
    if not counts:
        return []
    return [(f"{low}-{high - 1 if high < 100 else 100}", counts.get(low // 10, 0)) for low, high in SCORE_BUCKETS]
