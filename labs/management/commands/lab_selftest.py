"""manage.py lab_selftest COURSE/LAB [--repeat K] [--load] [--timeout S]

Grades every example the lab declares (lab.yaml `examples:`) through the normal queue and workers, so it tests
the lab wherever workers run, not in this process. Prints expected against actual per check and every verdict
that flipped between repeats; exits 1 on any disagreement, 2 on a usage problem.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labs.errors import PlatformError
from labs.models import Lab, LabSelfTest
from labs.services.selftest import selftest_judge, selftest_pending, selftest_start


def _spin(stop: Any) -> None:  # pragma: no cover - runs in a child process
    while not stop.is_set():
        sum(i * i for i in range(10_000))


class Command(BaseCommand):
    help = "Grade a lab's examples through the queue and compare each verdict with what lab.yaml expects."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("lab", metavar="COURSE/LAB", help="the lab, as in its page's address")
        parser.add_argument("--repeat", type=int, default=1, help="grade each example K times (default 1)")
        parser.add_argument("--load", action="store_true", help="keep every core busy meanwhile")
        parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the workers")
        parser.add_argument("--poll", type=float, default=1.0, help="seconds between progress checks")

    def handle(self, *args: Any, **options: Any) -> None:
        course_slug, _, lab_slug = options["lab"].partition("/")
        lab = Lab.objects.select_related("course").filter(course__slug=course_slug, slug=lab_slug).first()
        if lab is None:
            raise CommandError(f"no lab {options['lab']!r}; write COURSE/LAB, e.g. production-systems/quote-service")
        if options["repeat"] < 1:
            raise CommandError("--repeat must be at least 1")
        try:
            selftest = selftest_start(lab=lab, repeat=options["repeat"], load=options["load"], requested_by="cli")
        except PlatformError as exc:
            raise CommandError(str(exc)) from exc
        total = selftest.revisions.count()
        self.stdout.write(f"self-test {selftest.pk} of {options['lab']}: {total} gradings queued")
        timed_out = self._wait(selftest, options, total)
        selftest = selftest_judge(selftest=selftest, timed_out=timed_out)
        self._print(selftest)
        if selftest.status != LabSelfTest.Status.AGREED:
            raise SystemExit(1)

    def _wait(self, selftest: LabSelfTest, options: dict[str, Any], total: int) -> bool:
        stop = multiprocessing.Event()
        spinners = []
        if options["load"]:
            spinners = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(os.cpu_count() or 2)]
            for spinner in spinners:
                spinner.start()
        deadline = time.monotonic() + options["timeout"]
        last = None
        try:
            while (pending := selftest_pending(selftest=selftest)) and time.monotonic() < deadline:
                if pending != last:
                    self.stdout.write(f"  {total - pending} of {total} graded")
                    last = pending
                time.sleep(options["poll"])
            return bool(pending)
        finally:
            stop.set()
            for spinner in spinners:
                spinner.join(timeout=5)

    def _print(self, selftest: LabSelfTest) -> None:
        report = selftest.report
        for row in report["examples"]:
            expectation = f"fail {', '.join(row['expect_fail'])}" if row["expect_fail"] else "all-pass"
            seconds = [run["seconds"] for run in row["runs"] if run["seconds"] is not None]
            timing = f", {min(seconds):.1f} to {max(seconds):.1f} s" if seconds else ""
            verdict = "ok" if not row["problems"] else "DISAGREES"
            self.stdout.write(f"{row['example']} (expect {expectation}{timing}): {verdict}")
            for check_id in report["check_ids"]:
                actual = [run["checks"].get(check_id, "missing") for run in row["runs"]]
                want = "fail" if check_id in row["expect_fail"] else "pass"
                mark = "" if all(a == want for a in actual) else "   <-- expected " + want
                self.stdout.write(f"    {check_id:<22} {' '.join(actual)}{mark}")
            for problem in row["problems"]:
                self.stdout.write(f"    ! {problem}")
        for flip in report["flips"]:
            self.stdout.write(
                f"flipped between repeats: {flip['example']} {flip['check']}: {'/'.join(flip['statuses'])}"
            )
        if report.get("timed_out"):
            self.stdout.write("timed out waiting for the workers: are they running on this queue?")
        self.stdout.write(f"self-test {selftest.pk}: {selftest.status}")
