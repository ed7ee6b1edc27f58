"""Independent checks run concurrently, each in a sandbox of its own (issue 12): overlap, order, the cap, the
sequential setting, and our errors in a parallel check. Concurrency is observed with barriers and counts, never
with wall-clock thresholds (a barrier's timeout only bounds how long a broken schedule takes to fail)."""

from __future__ import annotations

import threading

import pytest

from labs.checks.base import CHECK_KINDS, Check, CheckOutcome, register
from labs.errors import SandboxUnavailable
from labs.grading import schedule
from labs.grading.orchestrator import grade_revision
from labs.labspec import CheckSpec
from labs.models import CheckResult, Revision
from tests.labs.conftest import HELLO_LAB_DIR

GOOD = HELLO_LAB_DIR / "examples" / "good"
BARRIER_TIMEOUT_S = 60  # only how long a schedule that never overlaps takes to fail


class Probe:
    """What the test kinds saw, shared between their threads."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.running = 0
        self.most = 0
        self.finished: list[str] = []
        self.containers: dict[str, str] = {}
        self.barrier: threading.Barrier | None = None

    def reset(self, *, barrier: int | None = None) -> None:
        self.__init__()
        self.barrier = threading.Barrier(barrier, timeout=BARRIER_TIMEOUT_S) if barrier else None


PROBE = Probe()


class _Alone(Check):
    """Records its sandbox and how many ran at once; meets the others at the barrier when there is one; ends only
    once `after` other checks have ended (so they end in an order the test chooses)."""

    kind = "tests.parallel_alone"
    runs_alone = True

    def run(self, ctx):
        with PROBE.lock:
            PROBE.running += 1
            PROBE.most = max(PROBE.most, PROBE.running)
            PROBE.containers[self.check_id] = ctx.sandbox.container_id
        try:
            if PROBE.barrier is not None:
                PROBE.barrier.wait()
            with PROBE.lock:
                if not PROBE.lock.wait_for(
                    lambda: len(PROBE.finished) >= int(self.args.get("after", 0)), timeout=BARRIER_TIMEOUT_S
                ):
                    return CheckOutcome("error", "the checks it waited for never ended")
            if self.args.get("limit"):
                ctx.sandbox.note_limit("timeout", "timed out after 3 s")
            if self.args.get("unavailable"):
                raise SandboxUnavailable("the engine went away")
            r = ctx.sandbox.exec(["python", "greet.py", "Ada"], user="learner", timeout_s=30)
            return self.passed(f"greeted: {r.stdout.decode().strip()}")
        finally:
            with PROBE.lock:
                PROBE.running -= 1
                PROBE.finished.append(self.check_id)
                PROBE.lock.notify_all()


class _InOrder(_Alone):
    kind = "tests.parallel_in_order"
    runs_alone = False


for _kind in (_Alone, _InOrder):
    if _kind.kind not in CHECK_KINDS:
        register(_kind)


def _checks(*specs: dict) -> list[dict]:
    return [
        {
            "id": s["id"],
            "kind": s.get("kind", _Alone.kind),
            "points": 1,
            "args": s.get("args", {}),
            **s.get("extra", {}),
        }
        for s in specs
    ]


@pytest.fixture
def counted_sandboxes(monkeypatch):
    """Counts the sandboxes the schedule opens for checks of their own: how many were open at once, in all."""
    seen = {"open": 0, "most": 0, "total": 0}
    lock = threading.Lock()
    original = schedule.Sandbox

    class Counted(original):
        def __enter__(self):
            box = super().__enter__()
            with lock:
                seen["open"] += 1
                seen["total"] += 1
                seen["most"] = max(seen["most"], seen["open"])
            return box

        def __exit__(self, *exc_info):
            with lock:
                seen["open"] -= 1
            return super().__exit__(*exc_info)

    monkeypatch.setattr(schedule, "Sandbox", Counted)
    return seen


# --- the plan (no sandbox) ---------------------------------------------------------------------------------------


def _spec(check_id: str, kind: str, visibility: str = "visible") -> CheckSpec:
    return CheckSpec(id=check_id, kind=kind, category="correctness", visibility=visibility)


def test_it_keeps_commands_in_order_and_runs_services_hidden_checks_and_training_runs_alone():
    checks = [
        _spec("pinned", "repro.pinned_dependencies"),
        _spec("build", "command"),
        _spec("retries", "resilience.retries"),
        _spec("breaker", "resilience.circuit_breaker", "hidden"),
        _spec("hidden-tests", "tests.pytest", "hidden"),
        _spec("metrics", "obs.metrics"),
        _spec("deterministic", "repro.deterministic_output"),
        _spec("offline", "repro.offline_install"),
        _spec("then-test", "command"),
    ]

    plan = schedule.plan_checks(checks, parallel=3)

    # Commands, static checks and the offline install keep their order. Retries and metrics come before a command
    # of the chain ("then-test"), so they may not join its end: they would see what it left.
    assert plan.in_order == (0, 1, 7, 8)
    assert plan.concurrent == (3, 6, 2, 4, 5)  # the longest expected starts first
    assert plan.own_sandbox == frozenset({2, 3, 4, 5, 6})


def test_short_independent_checks_after_the_whole_chain_join_its_end():
    checks = [
        _spec("build", "command"),
        _spec("retries", "resilience.retries"),
        _spec("breaker", "resilience.circuit_breaker"),
        _spec("metrics", "obs.metrics"),
    ]

    plan = schedule.plan_checks(checks, parallel=3)

    # Metrics comes after the build in the lab's order and is short beside the breaker: it saves a sandbox's
    # start by running after the build in the main sandbox, as it would in a sequential run.
    assert plan.in_order == (0, 1, 3)
    assert plan.concurrent == (2,)


def test_it_runs_everything_in_the_labs_order_when_the_cap_is_one():
    checks = [_spec("retries", "resilience.retries"), _spec("breaker", "resilience.circuit_breaker", "hidden")]

    plan = schedule.plan_checks(checks, parallel=1)

    assert (plan.in_order, plan.concurrent, plan.own_sandbox) == ((0, 1), (), frozenset({1}))


@pytest.mark.django_db
def test_it_hands_results_back_by_position_and_calls_back_on_the_calling_thread():
    plan = schedule.Plan(in_order=(0, 3), concurrent=(1, 2), own_sandbox=frozenset({1, 2}), parallel=3)
    caller = threading.current_thread()
    calls = []

    def callback(kind):
        return lambda position, *rest: calls.append((kind, position, threading.current_thread() is caller))

    done = schedule.run_checks(
        plan,
        in_main=lambda p: f"main {p}",
        in_own=lambda p: f"own {p}",
        started=callback("started"),
        finished=callback("finished"),
    )

    assert done.results == {0: "main 0", 1: "own 1", 2: "own 2", 3: "main 3"}
    assert sorted(done.timings) == [0, 1, 2, 3]
    assert all(on_caller for _kind, _position, on_caller in calls)
    assert sorted(p for kind, p, _ in calls if kind == "finished") == [0, 1, 2, 3]


@pytest.mark.django_db
def test_it_raises_a_checks_exception_once_the_checks_running_beside_it_have_ended():
    plan = schedule.Plan(in_order=(), concurrent=(0, 1), own_sandbox=frozenset({0, 1}), parallel=2)
    both_started = threading.Barrier(2, timeout=BARRIER_TIMEOUT_S)
    zero_raised = threading.Event()
    ended = []

    def in_own(position):
        both_started.wait()
        if position == 0:
            zero_raised.set()
            raise SandboxUnavailable("no engine")
        zero_raised.wait(BARRIER_TIMEOUT_S)
        ended.append(position)
        return position

    with pytest.raises(SandboxUnavailable):
        schedule.run_checks(plan, in_main=lambda p: p, in_own=in_own)

    assert ended == [1]


# --- through the orchestrator, with real sandboxes ---------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_it_runs_independent_checks_at_the_same_time_each_in_a_sandbox_of_its_own(lab_factory, submit, settings):
    settings.GRADING_PARALLEL_CHECKS = 3
    PROBE.reset(barrier=3)  # passes only if all three run at once
    lab = lab_factory(HELLO_LAB_DIR, spec_overrides={"checks": _checks({"id": "a"}, {"id": "b"}, {"id": "c"})})
    revision = submit(lab, GOOD, enqueue=False)

    assert grade_revision(revision_id=revision.pk) == "graded"

    assert PROBE.most == 3
    assert len(set(PROBE.containers.values())) == 3  # three sandboxes
    results = CheckResult.objects.filter(run__revision=revision).order_by("position")
    assert [(r.check_id, r.status) for r in results] == [("a", "pass"), ("b", "pass"), ("c", "pass")]
    assert "Hello, Ada!" in results[0].message


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_it_stores_results_and_the_log_in_the_labs_order_whatever_order_they_end_in(lab_factory, submit, settings):
    settings.GRADING_PARALLEL_CHECKS = 3
    PROBE.reset()
    # a ends last, c first: each waits for the ones after it.
    checks = _checks({"id": "a", "args": {"after": 2}}, {"id": "b", "args": {"after": 1}}, {"id": "c"})
    lab = lab_factory(HELLO_LAB_DIR, spec_overrides={"checks": checks})
    revision = submit(lab, GOOD, enqueue=False)

    assert grade_revision(revision_id=revision.pk) == "graded"

    assert PROBE.finished == ["c", "b", "a"]
    run = revision.runs.get()
    stored = list(run.check_results.order_by("pk").values_list("check_id", flat=True))
    assert stored == ["c", "b", "a"]  # each stored as it ended, for the live page
    by_position = list(run.check_results.order_by("position").values_list("check_id", "position"))
    assert by_position == [("a", 0), ("b", 1), ("c", 2)]
    assert run.log.index("== a") < run.log.index("== b") < run.log.index("== c")


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_it_never_runs_more_checks_at_once_than_the_cap(lab_factory, submit, settings, counted_sandboxes):
    settings.GRADING_PARALLEL_CHECKS = 2
    PROBE.reset(barrier=2)  # pairs: the cap is reached, not only respected
    checks = _checks(*({"id": f"c{n}"} for n in range(6)))
    lab = lab_factory(HELLO_LAB_DIR, spec_overrides={"checks": checks})
    revision = submit(lab, GOOD, enqueue=False)

    assert grade_revision(revision_id=revision.pk) == "graded"

    assert PROBE.most == 2
    assert counted_sandboxes["most"] == 2  # sandboxes of their own open at once (besides the main one)
    assert counted_sandboxes["total"] == 6
    assert len(set(PROBE.containers.values())) == 6


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_it_counts_the_in_order_chain_as_one_of_the_cap(lab_factory, submit, settings, counted_sandboxes):
    settings.GRADING_PARALLEL_CHECKS = 2
    PROBE.reset(barrier=2)
    checks = _checks(
        {"id": "first", "kind": _InOrder.kind},
        {"id": "x"},
        {"id": "second", "kind": _InOrder.kind},
        {"id": "y"},
    )
    lab = lab_factory(HELLO_LAB_DIR, spec_overrides={"checks": checks})
    revision = submit(lab, GOOD, enqueue=False)

    assert grade_revision(revision_id=revision.pk) == "graded"

    assert PROBE.most == 2
    assert counted_sandboxes["most"] == 1  # the chain holds one place, in the main sandbox
    assert PROBE.containers["first"] == PROBE.containers["second"]
    assert PROBE.containers["x"] != PROBE.containers["first"] != PROBE.containers["y"]


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_it_runs_every_check_one_after_another_in_the_main_sandbox_when_the_cap_is_one(
    lab_factory, submit, settings, counted_sandboxes
):
    settings.GRADING_PARALLEL_CHECKS = 1
    PROBE.reset()
    lab = lab_factory(HELLO_LAB_DIR, spec_overrides={"checks": _checks({"id": "a"}, {"id": "b"}, {"id": "c"})})
    revision = submit(lab, GOOD, enqueue=False)

    assert grade_revision(revision_id=revision.pk) == "graded"

    assert PROBE.most == 1
    assert PROBE.finished == ["a", "b", "c"]
    assert len(set(PROBE.containers.values())) == 1
    assert counted_sandboxes["total"] == 0


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_a_sandbox_unavailable_in_a_parallel_check_requeues_the_run(lab_factory, submit, settings):
    from labs.sandbox import PlatformError

    settings.GRADING_PARALLEL_CHECKS = 3
    PROBE.reset()
    checks = _checks({"id": "a"}, {"id": "broken", "args": {"unavailable": True}}, {"id": "c"})
    lab = lab_factory(HELLO_LAB_DIR, spec_overrides={"checks": checks})
    revision = submit(lab, GOOD, enqueue=False)

    with pytest.raises(PlatformError, match="engine went away"):
        grade_revision(revision_id=revision.pk)

    revision.refresh_from_db()
    assert (revision.state, revision.error_count, revision.score) == (Revision.State.QUEUED, 1, None)


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("visibility", ["visible", "hidden"])
def test_a_limit_hit_in_a_sandbox_of_its_own_counts_for_the_run_as_before(lab_factory, submit, settings, visibility):
    settings.GRADING_PARALLEL_CHECKS = 3
    PROBE.reset()
    checks = _checks({"id": "a"}, {"id": "slow", "args": {"limit": True}, "extra": {"visibility": visibility}})
    lab = lab_factory(HELLO_LAB_DIR, spec_overrides={"checks": checks})
    revision = submit(lab, GOOD, enqueue=False)

    assert grade_revision(revision_id=revision.pk) == "failed"

    revision.refresh_from_db()
    run = revision.runs.get()
    assert revision.failure_reason == "timeout"
    if visibility == "visible":
        assert revision.failure_message == "Your code was stopped: timed out after 3 s."
        assert run.resources["limits_hit"] == [{"reason": "timeout", "message": "timed out after 3 s"}]
    else:
        assert "a check that stays hidden" in revision.failure_message
        assert run.resources["limits_hit"] == []
