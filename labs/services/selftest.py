"""Lab self-tests: a lab's examples graded through the normal queue and workers, judged against what lab.yaml
says each must get (`expect: all-pass`, or the checks that must fail), with every verdict that flips between
repeats reported. Self-test revisions belong to a system account and carry `selftest`, so they never appear as
a learner's work, in the review queue or in grades.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from labs import storage
from labs.errors import PlatformError
from labs.models import CheckResult, Lab, LabSelfTest, Revision
from labs.services.grading import revision_enqueue

SELFTEST_USERNAME = "shipshape-selftest"
FINISHED = (Revision.State.GRADED, Revision.State.FAILED, Revision.State.ERROR)


def selftest_user():
    """The system account self-test revisions belong to: inactive, no usable password, so nobody logs in as it."""
    user, created = get_user_model().objects.get_or_create(
        username=SELFTEST_USERNAME, defaults={"is_active": False, "first_name": "Lab self-test"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def selftest_start(*, lab: Lab, repeat: int = 1, load: bool = False, requested_by: str = "") -> LabSelfTest:
    """Queue every example of `lab` `repeat` times; the workers grade them like any revision."""
    examples = lab.labspec.examples
    if not examples:
        raise PlatformError(f"lab {lab.slug} declares no examples; add `examples:` to its lab.yaml")
    # Read from the database (labs.blobs): the workers that grade them may run on other hosts.
    manifests = {}
    for example in examples:
        manifest = storage.tree_manifest(tree_sha256=example.tree_sha256) if example.tree_sha256 else None
        if manifest is None:
            raise PlatformError(f"example {example.folder} of lab {lab.slug} is not stored; import the course again")
        manifests[example.folder] = manifest
    user = selftest_user()
    with transaction.atomic():
        selftest = LabSelfTest.objects.create(lab=lab, repeat=repeat, load=load, requested_by=requested_by[:150])
        number = Revision.objects.filter(lab=lab, user=user).aggregate(n=Max("number"))["n"] or 0
        now = timezone.now()
        for round_ in range(repeat):
            for example in examples:
                number += 1
                manifest = manifests[example.folder]
                revision = Revision.objects.create(
                    lab=lab,
                    user=user,
                    number=number,
                    tree_sha256=example.tree_sha256,
                    files=manifest,
                    total_bytes=sum(int(f.get("size", 0)) for f in manifest),
                    queued_at=now,
                    selftest=selftest,
                    example=f"{example.folder}#{round_ + 1}",
                )
                revision_enqueue(revision=revision)
    return selftest


def selftest_pending(*, selftest: LabSelfTest) -> int:
    return selftest.revisions.exclude(state__in=FINISHED).count()


def selftest_judge(*, selftest: LabSelfTest, timed_out: bool = False) -> LabSelfTest:
    """Compare every graded example with its expectation, find verdicts that flipped between repeats, store it."""
    expected = {example.folder: set(example.expect_fail) for example in selftest.lab.labspec.examples}
    check_ids = [check.id for check in selftest.lab.labspec.checks]
    rows: dict[str, dict[str, Any]] = {}
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for revision in selftest.revisions.order_by("number"):
        folder, _, round_ = revision.example.rpartition("#")
        row = rows.setdefault(
            folder, {"example": folder, "expect_fail": sorted(expected.get(folder, ())), "runs": [], "problems": []}
        )
        statuses = _statuses(revision)
        seconds = _seconds(revision)
        row["runs"].append({"round": int(round_ or 1), "state": revision.state, "checks": statuses, "seconds": seconds})
        if revision.state != Revision.State.GRADED:
            row["problems"].append(f"round {round_}: the revision ended {revision.state} ({revision.failure_reason})")
        for check_id in check_ids:
            actual = statuses.get(check_id, "missing")
            seen[(folder, check_id)].add(actual)
            want = "fail" if check_id in expected.get(folder, ()) else "pass"
            if revision.state == Revision.State.GRADED and actual != want:
                row["problems"].append(f"round {round_}: {check_id} expected {want}, got {actual}")
    flips = [
        {"example": folder, "check": check_id, "statuses": sorted(statuses)}
        for (folder, check_id), statuses in sorted(seen.items())
        if len(statuses) > 1
    ]
    agreed = not timed_out and not flips and not any(row["problems"] for row in rows.values())
    selftest.report = {"check_ids": check_ids, "examples": list(rows.values()), "flips": flips, "timed_out": timed_out}
    selftest.status = (
        LabSelfTest.Status.TIMED_OUT
        if timed_out
        else LabSelfTest.Status.AGREED
        if agreed
        else LabSelfTest.Status.DISAGREED
    )
    selftest.finished_at = timezone.now()
    selftest.save(update_fields=["report", "status", "finished_at"])
    return selftest


def _statuses(revision: Revision) -> dict[str, str]:
    run = revision.runs.order_by("-attempt").first()
    if run is None:
        return {}
    return dict(CheckResult.objects.filter(run=run).values_list("check_id", "status"))


def _seconds(revision: Revision) -> float | None:
    run = revision.runs.order_by("-attempt").first()
    if run is None or run.started_at is None or run.results_stored_at is None:
        return None
    return round((run.results_stored_at - run.started_at).total_seconds(), 2)
