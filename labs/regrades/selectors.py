"""Reads for regrade pages and `manage.py regrade` (HackSoft selectors)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from labs.models import Lab, Regrade, Revision

S = Revision.State


@dataclass(frozen=True)
class RegradeProgress:
    total: int
    finished: int  # graded, failed, or stopped on our side (error)
    errors: int

    @property
    def percent(self) -> int:
        return 100 if not self.total else int(self.finished * 100 / self.total)


def regrade_progress(*, regrade: Regrade) -> RegradeProgress:
    """How far a preview got: copies finished over copies made."""
    counts = regrade.shadow_revisions.aggregate(
        total=Count("pk"),
        finished=Count("pk", filter=Q(state__in=(S.GRADED, S.FAILED, S.ERROR))),
        errors=Count("pk", filter=Q(state=S.ERROR)),
    )
    return RegradeProgress(total=counts["total"], finished=counts["finished"], errors=counts["errors"])


def regrades_for_lab(*, lab: Lab) -> QuerySet[Regrade]:
    """The lab's regrade history, newest first."""
    return Regrade.objects.filter(lab=lab).select_related("requested_by", "decided_by")


def regrade_running_for_lab(*, lab: Lab) -> Regrade | None:
    return Regrade.objects.filter(lab=lab, status=Regrade.Status.RUNNING).first()
