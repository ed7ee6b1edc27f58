"""Reads for the lab pages, the revision page and the API. Every revision read goes through an access check."""

from __future__ import annotations

import copy
import html
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Max, Prefetch, Q
from django.utils import timezone

from courses.models import Course
from labs.grading.scoring import category_scores_json, score_results
from labs.labspec import PolicySpec
from labs.models import CheckResult, GradeOverride, GradingRun, Lab, LabSelfTest, LabWork, Revision, WorkEvent
from labs.permissions import is_course_instructor, is_course_staff

User = AbstractBaseUser | AnonymousUser
Phase = GradingRun.Phase
_OUR_OUTCOMES = (GradingRun.Outcome.ERROR, GradingRun.Outcome.ABANDONED)

LOG_DISPLAY_BYTES = 64 * 1024
EVIDENCE_DISPLAY_CHARS = 16 * 1024
# The rendered instructions' leading heading, with the anchor link the renderer adds to every heading.
_LEADING_H1 = re.compile(r"\A\s*<h1\b[^>]*>(?P<text>.*?)</h1>\s*", re.S)
_TAGS = re.compile(r"<[^>]+>")
# What a `failed` revision's page says, by Revision.failure_reason; limits noted on the run (NOTED_LIMITS) are
# listed under it without failing the revision.
_FAILURES = {
    Revision.FailureReason.TIMEOUT: "It ran past the wall-clock limit of {wall_seconds} seconds and was stopped.",
    Revision.FailureReason.OOM: "It used more memory than the limit of {memory_mb} MB and was stopped.",
}
NOTED_LIMITS = {
    "output_limit": "A command printed more than the output limit of {output_bytes} bytes; the rest was cut.",
    "pids": "A command tried to start more processes than the limit of {pids}.",
    "disk": "A command filled the scratch space of {scratch_mb} MB.",
    "crash": "A program crashed ({detail}).",
}


def revision_next_allowed_at(*, lab: Lab, user: AbstractBaseUser, now: datetime | None = None) -> datetime | None:
    """When the cooldown ends, or None if the learner may submit now (as far as the cooldown goes)."""
    cooldown = lab.labspec.policy.cooldown_seconds
    if not cooldown:
        return None
    now = now or timezone.now()
    last = Revision.objects.filter(lab=lab, user=user).aggregate(last=Max("created_at"))["last"]
    if last is None:
        return None
    next_at = last + timedelta(seconds=cooldown)
    return next_at if next_at > now else None


def labs_by_unit(*, course: Course) -> dict[int, list[dict[str, Any]]]:
    """The course page's lab list: {unit id: [{"slug", "title"}, …]}, by slug, in one query."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for lab in Lab.objects.filter(course=course).values("unit_id", "slug", "title").order_by("slug"):
        out[lab["unit_id"]].append({"slug": lab["slug"], "title": lab["title"]})
    return dict(out)


def hidden_checks_revealed(*, lab: Lab, user: User, now: datetime | None = None) -> bool:
    if is_course_staff(user=user, course=lab.course):
        return True
    return hidden_checks_public(lab=lab, now=now)


def hidden_checks_public(*, lab: Lab, now: datetime | None = None) -> bool:
    """Learners see the hidden checks: an instructor revealed them, or the lab's due date has passed."""
    now = now or timezone.now()
    if lab.hidden_revealed_at is not None and now >= lab.hidden_revealed_at:
        return True
    due = lab.labspec.policy.due
    return due is not None and now >= due


@dataclass
class CheckView:
    check_id: str
    category: str
    concealed: bool
    status: str = ""
    points: Decimal | None = None
    max_points: Decimal | None = None
    message: str = ""
    hint: str = ""
    hint_url: str = ""
    evidence: str = ""


@dataclass
class RevisionDetail:
    revision: Revision
    run: GradingRun | None
    phase: str
    phases: list[dict[str, Any]]
    queue_position: int | None
    checks: list[CheckView]
    concealed_count: int
    score: float | None
    max_score: float | None
    scores_by_category: dict[str, dict[str, float]]
    log: str
    log_truncated: bool
    resources: list[dict[str, str]]
    failure_text: str
    limit_notes: list[str]
    due_at: datetime | None
    finished: bool
    is_staff_view: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def revision_queue_position(*, revision: Revision) -> int | None:
    """How many queued revisions are ahead of this one, or None when it is not waiting. Regrade preview copies
    wait on a queue of their own and are not counted."""
    if revision.state != Revision.State.QUEUED or revision.queued_at is None:
        return None
    return (
        Revision.objects.filter(state=Revision.State.QUEUED, regrade__isnull=True)
        .filter(Q(queued_at__lt=revision.queued_at) | Q(queued_at=revision.queued_at, pk__lt=revision.pk))
        .count()
    )


def revision_detail(*, revision: Revision, viewer: User) -> RevisionDetail:
    """What the revision page and the API show `viewer`, who has already passed permissions.access_revision_by_id."""
    lab = revision.lab
    is_staff_view = is_course_staff(user=viewer, course=lab.course)
    reveal = is_staff_view or hidden_checks_revealed(lab=lab, user=viewer)
    run = revision.runs.order_by("-attempt").first()
    # A run that ended in our error is evidence for staff only: nothing of it was scored.
    learner_may_see_run = is_staff_view or (run is not None and run.outcome not in _OUR_OUTCOMES)
    results = list(run.check_results.all()) if run and learner_may_see_run else []
    hidden_ids = lab.labspec.hidden_check_ids()
    checks = []
    for result in results:
        concealed = not reveal and _is_hidden(result, hidden_ids)
        checks.append(_check_view(result, concealed=concealed, number=sum(c.concealed for c in checks) + 1))
    concealed = [c for c in checks if c.concealed]
    if concealed:
        # The total would give the hidden checks away; show only what the learner may see.
        shown = score_results(r for r, c in zip(results, checks, strict=True) if not c.concealed)
        score, max_score, by_category = shown.points, shown.max_points, shown.by_category_json()
    else:
        score, max_score = _number(revision.score), _number(revision.max_score)
        by_category = category_scores_json(revision.scores_by_category)
    log = (run.log if run and learner_may_see_run else "") or ""
    if reveal and run and run.hidden_log:
        log = f"{log}\n\n{run.hidden_log}".strip()
    limits = _limits(lab, run)
    return RevisionDetail(
        revision=revision,
        run=run,
        phase=_phase(revision, run, check_count=len(lab.labspec.checks)),
        phases=[
            {
                "key": phase.value,
                "label": phase.label,
                "at": getattr(run, attr) if run else (revision.queued_at if phase == Phase.QUEUED else None),
            }
            for phase, attr in GradingRun.STAMPED_PHASES
        ],
        queue_position=revision_queue_position(revision=revision),
        checks=checks,
        concealed_count=len(concealed),
        score=score,
        max_score=max_score,
        scores_by_category=by_category,
        log=log[:LOG_DISPLAY_BYTES],
        log_truncated=len(log) > LOG_DISPLAY_BYTES,
        resources=_resources(run, limits),
        failure_text=_failure_text(revision, limits),
        limit_notes=_limit_notes(run, limits),
        due_at=lab.labspec.policy.due,
        finished=revision.is_finished,
        is_staff_view=is_staff_view,
        extra={
            "error_detail": run.error_detail if (run and is_staff_view) else "",
            "can_grade_again": revision.state == Revision.State.ERROR
            and is_course_instructor(user=viewer, course=lab.course),
        },
    )


@dataclass
class LabPage:
    lab: Lab
    revisions: list[dict[str, Any]]
    policy: PolicySpec
    revisions_used: int
    next_allowed_at: datetime | None
    next_allowed_in: int | None
    starter_available: bool
    accept_hint: str
    instructions_html: str
    can_reveal_hidden: bool = False
    last_selftest: LabSelfTest | None = None
    work: LabWork | None = None

    @property
    def loop_finished(self) -> bool:
        """Approved: the review loop is over and no more revisions are accepted (revision_policy_check)."""
        return self.work is not None and self.work.state == LabWork.State.APPROVED


def lab_page(*, lab: Lab, user: User) -> LabPage:
    revisions: list[dict[str, Any]] = []
    next_at = None
    if user.is_authenticated:
        reveal = hidden_checks_revealed(lab=lab, user=user)
        hidden_ids = lab.labspec.hidden_check_ids()
        own = Revision.objects.filter(lab=lab, user=user).prefetch_related("runs__check_results").order_by("-number")
        for revision in own:
            score, max_score = _number(revision.score), _number(revision.max_score)
            if not reveal and hidden_ids:
                score = max_score = None
                if revision.state == Revision.State.GRADED:
                    runs = sorted(revision.runs.all(), key=lambda r: r.attempt)
                    latest = runs[-1].check_results.all() if runs else []
                    shown = score_results(r for r in latest if not _is_hidden(r, hidden_ids))
                    score, max_score = shown.points, shown.max_points
            revisions.append({"revision": revision, "score": score, "max_score": max_score})
        next_at = revision_next_allowed_at(lab=lab, user=user)
    return LabPage(
        work=LabWork.objects.filter(lab=lab, user=user).first() if user.is_authenticated else None,
        lab=lab,
        revisions=revisions,
        policy=lab.labspec.policy,
        revisions_used=len(revisions),
        next_allowed_at=next_at,
        next_allowed_in=max(1, int((next_at - timezone.now()).total_seconds() + 0.999)) if next_at else None,
        starter_available=bool(lab.starter_digest),
        accept_hint=", ".join(lab.labspec.files.allowed or ["any file"]),
        instructions_html=instructions_without_title(html_text=lab.instructions_html, title=lab.title),
        last_selftest=lab.selftests.first() if is_course_staff(user=user, course=lab.course) else None,
        can_reveal_hidden=(
            bool(lab.labspec.hidden_check_ids())
            and lab.hidden_revealed_at is None
            and is_course_instructor(user=user, course=lab.course)
        ),
    )


def instructions_without_title(*, html_text: str, title: str) -> str:
    """The instructions minus a leading <h1> repeating the lab's title: the page header already shows it, and
    two identical top headings read as a glitch (and confuse screen reader heading lists)."""
    match = _LEADING_H1.match(html_text)
    if match is None:
        return html_text
    text = html.unescape(_TAGS.sub("", match["text"])).replace("#", "").strip()
    if text.casefold() != title.strip().casefold():
        return html_text
    return html_text[match.end() :]


def _is_hidden(result: CheckResult, hidden_ids: set[str]) -> bool:
    return result.hidden_until_due or result.check_id in hidden_ids


def _check_view(result: CheckResult, *, concealed: bool, number: int) -> CheckView:
    if concealed:
        # Not even its id or category: they would say what the hidden check looks at.
        return CheckView(check_id=f"hidden-{number}", category="", concealed=True)
    evidence = ""
    if result.evidence:
        evidence = json.dumps(result.evidence, indent=2, ensure_ascii=False, default=str)[:EVIDENCE_DISPLAY_CHARS]
    return CheckView(
        check_id=result.check_id,
        category=result.category,
        concealed=False,
        status=result.status,
        points=result.points,
        max_points=result.max_points,
        message=result.message,
        hint=result.hint,
        # Only site-relative or web links: a lab author's typo must not become a javascript: URL.
        hint_url=result.hint_url if result.hint_url.startswith(("/", "https://", "http://")) else "",
        evidence=evidence,
    )


def _number(value: Decimal | float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def _phase(revision: Revision, run: GradingRun | None, *, check_count: int) -> str:
    """What the page's live status says: never a check's id, which could name a hidden check."""
    if revision.state in (Revision.State.GRADED, Revision.State.FAILED):
        return revision.state
    if run is None:
        return Phase.QUEUED
    if run.phase == Phase.CHECKS and run.check_position is not None:
        return f"check {run.check_position + 1} of {check_count}"
    return run.phase or revision.state


def _limits(lab: Lab, run: GradingRun | None) -> dict[str, Any]:
    """The limits the run had (recorded by the worker), else the lab's as they would apply today."""
    limits = lab.labspec.limits.sandbox_limits().as_dict()
    if run and isinstance(run.resources, dict):
        limits.update(run.resources.get("limits") or {})
    return limits


def _resources(run: GradingRun | None, limits: dict[str, Any]) -> list[dict[str, str]]:
    used = run.resources if run and isinstance(run.resources, dict) else {}
    rows = []
    if "wall_seconds" in used or "wall_seconds" in limits:
        wall = used.get("wall_seconds")
        rows.append(
            {
                "name": "Wall time",
                "used": f"{float(wall):.2f} s" if wall is not None else "not measured",
                "limit": f"{limits['wall_seconds']} s" if limits.get("wall_seconds") else "none",
            }
        )
    if "peak_memory_bytes" in used or "memory_mb" in limits:
        peak = used.get("peak_memory_bytes")
        rows.append(
            {
                "name": "Peak memory",
                "used": f"{int(peak) / (1024 * 1024):.1f} MB" if peak is not None else "not measured",
                "limit": f"{limits['memory_mb']} MB" if limits.get("memory_mb") else "none",
            }
        )
    return rows


def _failure_text(revision: Revision, limits: dict[str, Any]) -> str:
    if revision.state != Revision.State.FAILED:
        return ""
    template = _FAILURES.get(revision.failure_reason, "It did not finish: {reason}.")
    return template.format(reason=revision.failure_reason or "unknown reason", **limits)


def _limit_notes(run: GradingRun | None, limits: dict[str, Any]) -> list[str]:
    """Limits the submission reached that cut something short without stopping the run."""
    hits = run.resources.get("limits_hit") if run and isinstance(run.resources, dict) else None
    notes = []
    for hit in hits if isinstance(hits, list) else []:
        reason = hit.get("reason") if isinstance(hit, dict) else None
        if reason in NOTED_LIMITS:
            detail = str(hit.get("message") or "").partition("(")[2].rstrip(")") or "a signal"
            notes.append(NOTED_LIMITS[reason].format(detail=detail, **limits))
    return notes


# --- a learner's work on a lab: the timeline ---------------------------------------------------------------------

# Queue mechanics: learners see that they happened, not the reviewer's note about them.
_STAFF_ONLY_REASONS = {WorkEvent.Kind.CLAIMED, WorkEvent.Kind.RELEASED, WorkEvent.Kind.CLAIM_EXPIRED}
_CONCEALED_THRESHOLD_REASON = (
    "The autograde is under what this lab needs before review: fix the failing checks and submit again."
)


@dataclass
class CheckChange:
    check_id: str
    category: str
    was: str
    now: str


@dataclass
class TimelineRevision:
    revision: Revision
    has_results: bool
    score: float | None
    max_score: float | None
    scores_by_category: dict[str, dict[str, float]]
    concealed_count: int
    compared_with: Revision | None
    fixed: list[CheckChange]
    broken: list[CheckChange]
    note: str = ""
    submitted_by: str = ""
    submitted_reason: str = ""


@dataclass
class TimelineEvent:
    event: WorkEvent
    label: str
    actor_name: str
    reason: str
    revision: Revision | None = None  # the revision it concerns, when it is one of the work's


@dataclass
class TimelineItem:
    at: datetime
    revision: TimelineRevision | None = None
    event: TimelineEvent | None = None


@dataclass
class WorkTimeline:
    work: LabWork
    items: list[TimelineItem]  # oldest first
    revisions: list[Revision]  # newest first: the diff form's choices
    is_staff_view: bool
    is_owner: bool
    grades_concealed: bool  # autograde and final grade wait until the hidden checks are revealed
    override: GradeOverride | None
    next_allowed_at: datetime | None

    @property
    def loop_finished(self) -> bool:
        return self.work.state == LabWork.State.APPROVED

    @property
    def default_pair(self) -> tuple[Revision | None, Revision | None]:
        """What the diff form starts on: the newest revision against the one before it."""
        if len(self.revisions) < 2:
            return None, None
        return self.revisions[1], self.revisions[0]


def work_timeline(*, work: LabWork, viewer: User, now: datetime | None = None) -> WorkTimeline:
    """The learner's work on a lab for `viewer`, who passed permissions.access_work_by_id: its grades, and its
    events merged with its revisions, each revision with its score by category and the checks it fixed or broke
    against the finished revision before it. Hidden checks are concealed from the learner as on the revision
    page until they are revealed: never named among fixed or broken, their points left out of the scores, and
    the autograde and final grade (which count them) withheld. A constant number of queries."""
    lab = work.lab
    now = now or timezone.now()
    is_staff_view = is_course_staff(user=viewer, course=lab.course)
    reveal = is_staff_view or hidden_checks_public(lab=lab, now=now)
    hidden_ids = lab.labspec.hidden_check_ids()
    runs = GradingRun.objects.order_by("attempt").prefetch_related("check_results")
    revisions = list(
        Revision.objects.learner_work()
        .filter(lab_id=work.lab_id, user_id=work.user_id)
        .prefetch_related(Prefetch("runs", queryset=runs))
        .order_by("number")
    )
    events = list(WorkEvent.objects.filter(work=work).select_related("actor").order_by("created_at", "pk"))
    has_hidden = bool(hidden_ids) or any(
        result.hidden_until_due
        for revision in revisions
        for run in revision.runs.all()
        for result in run.check_results.all()
    )
    concealing = not reveal and has_hidden

    submitted = {e.revision_id: e for e in events if e.kind == WorkEvent.Kind.SUBMITTED and e.revision_id}
    by_pk = {revision.pk: revision for revision in revisions}
    items: list[TimelineItem] = []
    previous: tuple[Revision, dict[str, CheckResult]] | None = None
    for revision in revisions:
        entry, results = _timeline_revision(
            revision,
            lab=lab,
            previous=previous,
            concealing=concealing,
            hidden_ids=hidden_ids,
        )
        event = submitted.get(revision.pk)
        entry.submitted_by = _actor_name(event) if event is not None else work.user.get_username()
        entry.submitted_reason = event.reason if event is not None else ""
        items.append(TimelineItem(at=revision.created_at, revision=entry))
        if results is not None:
            previous = (revision, results)
    for event in events:
        if event.kind == WorkEvent.Kind.SUBMITTED and event.revision_id in submitted:
            continue
        shown = _timeline_event(event, staff=is_staff_view, concealing=concealing)
        shown.revision = by_pk.get(event.revision_id)
        items.append(TimelineItem(at=event.created_at, event=shown))
    items.sort(key=lambda item: (item.at, item.event is not None, item.event.event.pk if item.event else 0))

    override = None
    if work.override_grade is not None:
        override = GradeOverride.objects.filter(work=work).select_related("by").order_by("-created_at", "-pk").first()
    is_owner = viewer.pk == work.user_id
    return WorkTimeline(
        work=work,
        items=items,
        revisions=list(reversed(revisions)),
        is_staff_view=is_staff_view,
        is_owner=is_owner,
        grades_concealed=concealing,
        override=override,
        next_allowed_at=revision_next_allowed_at(lab=lab, user=work.user, now=now) if is_owner else None,
    )


def _timeline_revision(
    revision: Revision,
    *,
    lab: Lab,
    previous: tuple[Revision, dict[str, CheckResult]] | None,
    concealing: bool,
    hidden_ids: set[str],
) -> tuple[TimelineRevision, dict[str, CheckResult] | None]:
    """One revision's entry, and its visible results by check id when it can be compared (a finished revision's
    latest run), else None: a queued, running or errored revision is neither compared nor a base for the next."""
    runs = list(revision.runs.all())
    run = runs[-1] if runs else None
    results: dict[str, CheckResult] | None = None
    if revision.is_finished and run is not None and run.outcome not in _OUR_OUTCOMES:
        results = {r.check_id: r for r in run.check_results.all() if not (concealing and _is_hidden(r, hidden_ids))}
    concealed_count = 0
    if run is not None and concealing:
        concealed_count = sum(1 for r in run.check_results.all() if _is_hidden(r, hidden_ids))
    if results is None:
        score = max_score = None
        by_category: dict[str, dict[str, float]] = {}
    elif concealing:
        shown = score_results(results.values())
        score, max_score, by_category = shown.points, shown.max_points, shown.by_category_json()
    else:
        score, max_score = _number(revision.score), _number(revision.max_score)
        by_category = category_scores_json(revision.scores_by_category)
    fixed: list[CheckChange] = []
    broken: list[CheckChange] = []
    if results is not None and previous is not None:
        for check_id, now_result in results.items():
            before = previous[1].get(check_id)
            if before is None:
                continue
            change = CheckChange(check_id, now_result.category, before.status, now_result.status)
            if before.status in _FAILING and now_result.status == CheckResult.Status.PASS:
                fixed.append(change)
            elif before.status == CheckResult.Status.PASS and now_result.status in _FAILING:
                broken.append(change)
    note = ""
    if revision.state == Revision.State.FAILED:
        note = _failure_text(revision, _limits(lab, run))
    elif revision.state == Revision.State.ERROR:
        note = "Grading stopped on a problem on our side; staff will grade it again. Nothing is charged."
    elif not revision.is_finished:
        note = "Being graded."
    entry = TimelineRevision(
        revision=revision,
        has_results=results is not None,
        score=score,
        max_score=max_score,
        scores_by_category=by_category,
        concealed_count=concealed_count,
        compared_with=previous[0] if (previous is not None and results is not None) else None,
        fixed=fixed,
        broken=broken,
        note=note,
    )
    return entry, results


_FAILING = (CheckResult.Status.FAIL, CheckResult.Status.ERROR)


def _actor_name(event: WorkEvent) -> str:
    return event.actor.get_username() if event.actor is not None else "Shipshape"


def _timeline_event(event: WorkEvent, *, staff: bool, concealing: bool) -> TimelineEvent:
    reason = event.reason
    if not staff and event.kind in _STAFF_ONLY_REASONS:
        reason = ""
    if concealing and event.kind == WorkEvent.Kind.BELOW_THRESHOLD and reason:
        reason = _CONCEALED_THRESHOLD_REASON  # the stored reason quotes the autograde, hidden checks included
    return TimelineEvent(
        event=event, label=WorkEvent.Kind(event.kind).label, actor_name=_actor_name(event), reason=reason
    )


def work_for_revision(*, revision: Revision) -> LabWork | None:
    """The learner's work a revision belongs to (for a link to its timeline); None for a self-test's example or
    a regrade preview's copy."""
    if not revision.is_learner_work:
        return None
    return LabWork.objects.filter(lab_id=revision.lab_id, user_id=revision.user_id).first()


def revision_commented_files(*, revision: Revision, comments: list[dict[str, Any]]) -> list[Any]:
    """The revision's files that reviewers commented on, highlighted, each comment under its line (read-only):
    labs.sources.SourceFile. Only those files are read; the caller passes only submitted reviews'
    comments, for a viewer who may see the revision."""
    from labs.sources import revision_source

    commented = {c.get("path") for c in comments}
    if not commented:
        return []
    only = copy.copy(revision)
    only.files = [f for f in revision.files or [] if f.get("path") in commented]
    files = revision_source(revision=only, file_comments=comments)
    for source in files:
        # Comments no line shows (a binary or missing file, a line past the end) are listed under the file.
        placed = {id(c) for line in source.lines for c in line.comments}
        placed |= {id(c) for c in source.comments_elsewhere}
        source.comments_elsewhere += [c for c in comments if c.get("path") == source.path and id(c) not in placed]
    return files
