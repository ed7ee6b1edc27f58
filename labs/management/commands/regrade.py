"""manage.py regrade COURSE/LAB --preview [--wait] | --apply ID | --discard ID | --cancel ID [--by USERNAME]

--preview runs the lab's current grader over every learner's newest graded revision on the low-priority queue
and prints the preview's id; with --wait it prints the progress until the preview is ready, then the learners
whose results would change, check by check. --apply, --discard and --cancel act on a preview of that lab. The
actor recorded (audit trail, timelines) is --by, or the system account `shipshape-regrade`.

Exit codes: 0 done; 1 refused (the preview is in the wrong state, or --wait ran out of time); 2 a usage problem
(an unknown course, lab, preview or user).
"""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from labs.errors import LearnerError
from labs.models import Lab, Regrade
from labs.regrades.report import regrade_finish_if_done
from labs.regrades.selectors import regrade_progress
from labs.regrades.services import (
    regrade_apply,
    regrade_cancel,
    regrade_discard,
    regrade_preview_start,
    regrade_user,
)

USAGE = 2
REFUSED = 1


class Command(BaseCommand):
    help = "Preview a regrade of a lab over every learner's newest revision, then apply, discard or cancel it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("lab", metavar="COURSE/LAB", help="the lab, as in its page's address")
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--preview", action="store_true", help="start a preview and print its id")
        action.add_argument("--apply", type=int, metavar="PREVIEW_ID", help="apply a ready preview")
        action.add_argument("--discard", type=int, metavar="PREVIEW_ID", help="discard a ready preview")
        action.add_argument("--cancel", type=int, metavar="PREVIEW_ID", help="cancel a running preview")
        parser.add_argument("--wait", action="store_true", help="with --preview: wait until ready, print changes")
        parser.add_argument("--by", metavar="USERNAME", help="who does it, for the audit trail")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)")
        parser.add_argument("--poll", type=float, default=1.0, help="seconds between progress checks")

    def handle(self, *args: Any, **options: Any) -> None:
        lab = self._lab(options["lab"])
        by = self._by(options["by"])
        if options["wait"] and not options["preview"]:
            raise CommandError("--wait goes with --preview", returncode=USAGE)
        try:
            if options["preview"]:
                regrade = regrade_preview_start(lab=lab, by=by)
                self.stdout.write(f"preview {regrade.pk} of {options['lab']}: {regrade.total} revisions queued")
                self._skipped(regrade)
                if options["wait"]:
                    self._wait(regrade, options)
                return
            for name, action in (("apply", regrade_apply), ("discard", regrade_discard), ("cancel", regrade_cancel)):
                if options[name] is not None:
                    regrade = action(regrade=self._regrade(lab, options[name], options["lab"]), by=by)
                    self.stdout.write(f"preview {regrade.pk}: {regrade.get_status_display().lower()}")
                    self._applied(regrade)
        except LearnerError as exc:
            raise CommandError(f"{exc.message} {exc.hint}".strip(), returncode=REFUSED) from exc

    def _lab(self, value: str) -> Lab:
        course_slug, _, lab_slug = value.partition("/")
        lab = Lab.objects.select_related("course").filter(course__slug=course_slug, slug=lab_slug).first()
        if lab is None:
            raise CommandError(
                f"no lab {value!r}; write COURSE/LAB, e.g. production-systems/quote-service", returncode=USAGE
            )
        return lab

    def _by(self, username: str | None):
        if not username:
            return regrade_user()
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}", returncode=USAGE)
        return user

    def _regrade(self, lab: Lab, regrade_id: int, name: str) -> Regrade:
        regrade = Regrade.objects.filter(pk=regrade_id, lab=lab).first()
        if regrade is None:
            raise CommandError(f"no regrade preview {regrade_id} of {name}", returncode=USAGE)
        return regrade

    def _wait(self, regrade: Regrade, options: dict[str, Any]) -> None:
        deadline = time.monotonic() + options["timeout"]
        last = None
        while True:
            regrade_finish_if_done(regrade_id=regrade.pk)  # idempotent: catches up a lost notice from a worker
            regrade.refresh_from_db()
            progress = regrade_progress(regrade=regrade)
            if progress.finished != last:
                self.stdout.write(f"  {progress.finished} of {progress.total} graded")
                last = progress.finished
            if regrade.status != Regrade.Status.RUNNING:
                break
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"preview {regrade.pk} still running after {options['timeout']:.0f} s: are workers consuming "
                    "the `regrades` queue (celery worker -Q celery,grading-long,regrades)?",
                    returncode=REFUSED,
                )
            time.sleep(options["poll"])
        self._changes(regrade)

    def _skipped(self, regrade: Regrade) -> None:
        for row in regrade.report.get("skipped", []):
            self.stdout.write(f"  not previewed: {row['username']} revision {row['revision_number']}: {row['reason']}")

    def _changes(self, regrade: Regrade) -> None:
        report = regrade.report
        self.stdout.write(
            f"preview {regrade.pk}: {regrade.get_status_display().lower()}, {regrade.changed} learner(s) would "
            f"change, {report.get('unchanged', 0)} unchanged"
        )
        for row in report.get("learners", []):
            old, new = row["old"], row["new"]
            verdict = f" ({old['state']} -> {new['state']})" if old["state"] != new["state"] else ""
            self.stdout.write(
                f"{row['username']} revision {row['revision_number']}: "
                f"{_n(old['score'])}/{_n(old['max_score'])} -> {_n(new['score'])}/{_n(new['max_score'])}{verdict}"
            )
            for check in row["checks"]:
                hidden = " (hidden)" if check["hidden"] else ""
                self.stdout.write(
                    f"    {check['check_id']}{hidden}: {check['old_status']} -> {check['new_status']}"
                    f" ({_n(check['old_points'])} -> {_n(check['new_points'])} of {_n(check['max_points'])} points)"
                )
        for row in report.get("errors", []):
            self.stdout.write(
                f"stopped on our side (not a change): {row['username']} revision {row['revision_number']}"
            )
        if report.get("graders_mixed"):
            self.stdout.write("the lab's grader changed while the preview ran: start a new preview")
        if regrade.status == Regrade.Status.READY:
            lab = regrade.lab
            self.stdout.write(
                f"apply with: manage.py regrade {lab.course.slug}/{lab.slug} --apply {regrade.pk} "
                f"(or --discard {regrade.pk})"
            )

    def _applied(self, regrade: Regrade) -> None:
        report = regrade.report
        if regrade.status == Regrade.Status.APPLIED:
            names = ", ".join(row["username"] for row in report.get("applied", [])) or "nobody"
            self.stdout.write(f"applied to {len(report.get('applied', []))} learner(s): {names}")
            for row in report.get("apply_skipped", []):
                self.stdout.write(
                    f"  not applied: {row['username']} revision {row['revision_number']}: {row['reason']}"
                )


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
