"""Reads for the lab pages, the revision page and the API. Every revision read goes through an access check."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Max, Q
from django.utils import timezone

from courses.models import Course, Enrollment
from labs.models import CheckResult, GradingRun, Lab, Revision
from labs.reviews.permissions import can_view_revision

User = AbstractBaseUser | AnonymousUser

LOG_DISPLAY_BYTES = 64 * 1024
EVIDENCE_DISPLAY_CHARS = 16 * 1024
# The rendered instructions' leading heading, with the anchor link the renderer adds to every heading.
_LEADING_H1 = re.compile(r"\A\s*<h1\b[^>]*>(?P<text>.*?)</h1>\s*", re.S)
_TAGS = re.compile(r"<[^>]+>")
PHASES = (
    ("queued", "queued_at", "Queued"),
    ("started", "started_at", "Started"),
    ("sandbox_ready", "sandbox_ready_at", "Sandbox ready"),
    ("checks_finished", "checks_finished_at", "Checks finished"),
    ("results_stored", "results_stored_at", "Results stored"),
)
_FAILURES = {
    "timeout": "It ran past the wall-clock limit of {wall_seconds} seconds and was stopped.",
    "oom": "It used more memory than the limit of {memory_mb} MB and was stopped.",
    "output_limit": "It printed more than the output limit of {output_bytes} bytes and was stopped.",
    "pids": "It started more processes than the limit of {pids} and was stopped.",
    "disk": "It wrote more than the scratch space limit of {scratch_mb} MB.",
    "crash": "It crashed before the checks could finish.",
}


@dataclass(frozen=True)
class RevisionPolicy:
    max_revisions: int | None
    cooldown_seconds: int
    due_at: datetime | None
    late: str  # "accept" | "reject"

    @classmethod
    def for_lab(cls, lab: Lab) -> RevisionPolicy:
        # The model's columns are filled by the importer from lab.yaml; the spec is the fallback.
        policy = (lab.spec or {}).get("policy") or {}
        max_revisions = lab.max_revisions if lab.max_revisions is not None else policy.get("max_revisions")
        cooldown = lab.cooldown_seconds or int(policy.get("cooldown_seconds") or 0)
        due_at = lab.due_at
        if due_at is None and policy.get("due"):
            due_at = _parse_due(policy["due"])
        return cls(
            max_revisions=int(max_revisions) if max_revisions is not None else None,
            cooldown_seconds=int(cooldown),
            due_at=due_at,
            late=str(policy.get("late") or "accept"),
        )


def revision_next_allowed_at(*, lab: Lab, user: AbstractBaseUser, now: datetime | None = None) -> datetime | None:
    """When the cooldown ends, or None if the learner may submit now (as far as the cooldown goes)."""
    policy = RevisionPolicy.for_lab(lab)
    if not policy.cooldown_seconds:
        return None
    now = now or timezone.now()
    last = Revision.objects.filter(lab=lab, user=user).aggregate(last=Max("created_at"))["last"]
    if last is None:
        return None
    next_at = last + timedelta(seconds=policy.cooldown_seconds)
    return next_at if next_at > now else None


def course_staff_check(*, user: User, course: Course) -> bool:
    """Staff, and the course's reviewers and instructors, see every revision of the course in full."""
    if not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return Enrollment.objects.filter(
        user=user, course=course, role__in=[Enrollment.Role.REVIEWER, Enrollment.Role.INSTRUCTOR]
    ).exists()


def lab_get(*, course_slug: str, lab_slug: str) -> Lab | None:
    return Lab.objects.select_related("course", "unit").filter(course__slug=course_slug, slug=lab_slug).first()


def revision_get_for_user(*, revision_id: int, user: User) -> Revision | None:
    """The revision if `user` may see it: its author, or staff of its course. None otherwise (shown as 404, so
    ids of other people's revisions reveal nothing)."""
    if not user.is_authenticated:
        return None
    revision = Revision.objects.select_related("lab", "lab__course", "user").filter(pk=revision_id).first()
    if revision is None:
        return None
    if not can_view_revision(user=user, revision=revision):
        return None
    return revision


def hidden_checks_revealed(*, lab: Lab, user: User, now: datetime | None = None) -> bool:
    if course_staff_check(user=user, course=lab.course):
        return True
    due_at = RevisionPolicy.for_lab(lab).due_at
    return due_at is not None and (now or timezone.now()) >= due_at


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
    score: Decimal | None
    max_score: Decimal | None
    scores_by_category: dict[str, Any]
    log: str
    log_truncated: bool
    resources: list[dict[str, str]]
    failure_text: str
    due_at: datetime | None
    finished: bool
    is_staff_view: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def revision_queue_position(*, revision: Revision) -> int | None:
    """How many queued revisions are ahead of this one, or None when it is not waiting."""
    if revision.state != Revision.State.QUEUED or revision.queued_at is None:
        return None
    return (
        Revision.objects.filter(state=Revision.State.QUEUED)
        .filter(Q(queued_at__lt=revision.queued_at) | Q(queued_at=revision.queued_at, pk__lt=revision.pk))
        .count()
    )


def revision_detail(*, revision: Revision, viewer: User) -> RevisionDetail:
    """What the revision page and the API show `viewer`, who has already passed revision_get_for_user."""
    lab = revision.lab
    is_staff_view = course_staff_check(user=viewer, course=lab.course)
    reveal = is_staff_view or hidden_checks_revealed(lab=lab, user=viewer)
    run = revision.runs.order_by("-attempt").first()
    results = list(run.check_results.all()) if run else []
    hidden_ids = _hidden_check_ids(lab)
    checks = [_check_view(result, concealed=not reveal and _is_hidden(result, hidden_ids)) for result in results]
    concealed = [c for c in checks if c.concealed]
    if concealed:
        # The total would give the hidden checks away; show only what the learner may see.
        score, max_score, by_category = _score_of(r for r, c in zip(results, checks, strict=True) if not c.concealed)
    else:
        score, max_score, by_category = revision.score, revision.max_score, revision.scores_by_category
    log = run.log if run else ""
    limits = _limits(lab, run)
    return RevisionDetail(
        revision=revision,
        run=run,
        phase=_phase(revision, run),
        phases=[
            {
                "key": key,
                "label": label,
                "at": getattr(run, attr) if run else (revision.queued_at if key == "queued" else None),
            }
            for key, attr, label in PHASES
        ],
        queue_position=revision_queue_position(revision=revision),
        checks=checks,
        concealed_count=len(concealed),
        score=score,
        max_score=max_score,
        scores_by_category=by_category or {},
        log=log[:LOG_DISPLAY_BYTES],
        log_truncated=len(log) > LOG_DISPLAY_BYTES,
        resources=_resources(run, limits),
        failure_text=_failure_text(revision, limits),
        due_at=RevisionPolicy.for_lab(lab).due_at,
        finished=revision.is_finished,
        is_staff_view=is_staff_view,
        extra={"error_detail": run.error_detail if (run and is_staff_view) else ""},
    )


@dataclass
class LabPage:
    lab: Lab
    revisions: list[dict[str, Any]]
    policy: RevisionPolicy
    revisions_used: int
    next_allowed_at: datetime | None
    next_allowed_in: int | None
    starter_available: bool
    accept_hint: str
    instructions_html: str


def lab_page(*, lab: Lab, user: User) -> LabPage:
    policy = RevisionPolicy.for_lab(lab)
    revisions: list[dict[str, Any]] = []
    next_at = None
    if user.is_authenticated:
        reveal = hidden_checks_revealed(lab=lab, user=user)
        hidden_ids = _hidden_check_ids(lab)
        own = Revision.objects.filter(lab=lab, user=user).prefetch_related("runs__check_results").order_by("-number")
        for revision in own:
            score, max_score = revision.score, revision.max_score
            if not reveal and hidden_ids:
                runs = sorted(revision.runs.all(), key=lambda r: r.attempt)
                results = [r for r in (runs[-1].check_results.all() if runs else []) if not _is_hidden(r, hidden_ids)]
                score, max_score, _ = (
                    _score_of(results) if revision.state == Revision.State.GRADED else (None, None, {})
                )
            revisions.append({"revision": revision, "score": score, "max_score": max_score})
        next_at = revision_next_allowed_at(lab=lab, user=user)
    files = (lab.spec or {}).get("files") or {}
    accepted = ", ".join(files.get("allowed") or ["any file"])
    return LabPage(
        lab=lab,
        revisions=revisions,
        policy=policy,
        revisions_used=len(revisions),
        next_allowed_at=next_at,
        next_allowed_in=max(1, int((next_at - timezone.now()).total_seconds() + 0.999)) if next_at else None,
        starter_available=bool(lab.starter_digest),
        accept_hint=accepted,
        instructions_html=instructions_without_title(html_text=lab.instructions_html, title=lab.title),
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


def _hidden_check_ids(lab: Lab) -> set[str]:
    return {c.get("id") for c in (lab.spec or {}).get("checks") or [] if c.get("visibility") == "hidden"}


def _is_hidden(result: CheckResult, hidden_ids: set[str]) -> bool:
    return result.hidden_until_due or result.check_id in hidden_ids


def _check_view(result: CheckResult, *, concealed: bool) -> CheckView:
    if concealed:
        return CheckView(check_id=result.check_id, category=result.category, concealed=True)
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


def _score_of(results: Any) -> tuple[Decimal, Decimal, dict[str, dict[str, str]]]:
    score = Decimal(0)
    max_score = Decimal(0)
    by_category: dict[str, dict[str, Decimal]] = {}
    for result in results:
        score += result.points
        max_score += result.max_points
        entry = by_category.setdefault(result.category, {"score": Decimal(0), "max": Decimal(0)})
        entry["score"] += result.points
        entry["max"] += result.max_points
    return score, max_score, {k: {"score": str(v["score"]), "max": str(v["max"])} for k, v in by_category.items()}


def _phase(revision: Revision, run: GradingRun | None) -> str:
    if revision.state in (Revision.State.GRADED, Revision.State.FAILED):
        return revision.state
    if run is None:
        return "queued"
    return run.phase or revision.state


def _limits(lab: Lab, run: GradingRun | None) -> dict[str, Any]:
    limits = dict((lab.spec or {}).get("limits") or {})
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
    values = {key: limits.get(key, "?") for key in ("wall_seconds", "memory_mb", "output_bytes", "pids", "scratch_mb")}
    return template.format(reason=revision.failure_reason or "unknown reason", **values)


def _parse_due(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
