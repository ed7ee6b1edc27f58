"""Which checks of a lab run at the same time, and running them so (issue 12).

    plan_checks(checks, parallel=3) ─▶ Plan: the in-order chain (main sandbox) and the concurrent checks
    run_checks(plan, in_main=..., in_own=..., started=..., finished=...) ─▶ results by position, with timings

A check whose kind `runs_alone` (labs.checks.base.Check) needs nothing an earlier check left in /work and leaves
nothing a later one needs; a hidden check always has a sandbox of its own. Both run concurrently, each in a sandbox
of its own (`own_sandbox`), while the other checks keep their order in the run's main sandbox: they may build on
each other's files. At most `parallel` checks run at once, the in-order chain counting as one; `parallel=1` is the
sequential run: every check in the lab's order on the calling thread, hidden ones in sandboxes of their own.

Concurrent checks start longest first (Check.expected_s) so the longest does not start last. `started` and
`finished` are called on the calling thread, in the order things happen, so database writes stay on it; the
results come back by position whatever order they finished in. An exception in any check's thread (a
SandboxUnavailable, say) stops what has not started yet and is raised once every running check has ended.

Not in charge of: what a check concludes (the caller's `in_main`/`in_own`), storing it (labs.grading.orchestrator),
containers (labs.sandbox). Used by the orchestrator and by bench/bench_flagship.py, so the bench times the real
schedule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.db import connection

from labs.checks.base import GradingContext, check_kind
from labs.labspec import CheckSpec
from labs.sandbox import Sandbox

R = TypeVar("R")


@dataclass(frozen=True)
class Plan:
    """Positions (0-based, in the lab's order) and where each runs."""

    in_order: tuple[int, ...]  # one after another; visible ones in the main sandbox, hidden ones in their own
    concurrent: tuple[int, ...]  # each in a sandbox of its own, longest expected first
    own_sandbox: frozenset[int]  # every position that gets a sandbox of its own (hidden, or concurrent)
    parallel: int  # most checks at once, the in-order chain counting as one


def plan_checks(checks: Sequence[CheckSpec], *, parallel: int) -> Plan:
    """Split a lab's checks into the in-order chain and the checks that may run concurrently."""
    hidden = {p for p, spec in enumerate(checks) if spec.visibility == "hidden"}
    if parallel <= 1:
        return Plan(tuple(range(len(checks))), (), frozenset(hidden), 1)
    alone = [p for p, spec in enumerate(checks) if p in hidden or _runs_alone(spec)]
    alone.sort(key=lambda p: -_expected_s(checks[p]))  # stable: equal estimates keep the lab's order
    chain = [p for p in range(len(checks)) if p not in alone]
    # The chain is a lane like the others: short independent visible checks join its end while it stays shorter
    # than the longest concurrent check, which bounds the wall time anyway. Each saves a sandbox's start, and on
    # a machine with few cores the checks beside it run faster for it.
    longest = _expected_s(checks[alone[0]]) if alone else 0.0
    chain_s = sum(_expected_s(checks[p]) for p in chain)
    # Only checks after the whole chain in the lab's order may join it: the chain then still runs in the lab's
    # order, and no check sees files a check after it would have left in a sequential run.
    last_in_chain = max(chain, default=-1)
    joined = []
    for p in sorted(alone, key=lambda p: (_expected_s(checks[p]), p)):  # the shortest first
        if p not in hidden and p > last_in_chain and chain_s + _expected_s(checks[p]) < longest:
            chain_s += _expected_s(checks[p])
            joined.append(p)
    concurrent = tuple(p for p in alone if p not in joined)
    return Plan((*chain, *sorted(joined)), concurrent, frozenset(concurrent) | hidden, parallel)


def _runs_alone(spec: CheckSpec) -> bool:
    cls = check_kind(spec.kind)
    return bool(cls is not None and cls.runs_alone)


def _expected_s(spec: CheckSpec) -> float:
    cls = check_kind(spec.kind)
    return float(cls.expected_s) if cls is not None else 0.0


@contextlib.contextmanager
def own_sandbox(ctx: GradingContext) -> Iterator[tuple[GradingContext, Sandbox]]:
    """`ctx` with a sandbox of its own: the same limits, submission, grader bundle, ids and labels (a fresh
    container with the lab's full limits), removed when the block ends. Limits the learner hits there are the
    caller's to count (box.limit_events), as for a hidden check."""
    box = Sandbox(
        limits=ctx.limits,
        submission_dir=ctx.submission_dir,
        grader_dir=ctx.grader_dir,
        revision_id=ctx.revision_id,
        run_id=ctx.run_id,
        labels=ctx.sandbox_labels,
    )
    with box:
        yield dataclasses.replace(ctx, sandbox=box), box


@dataclass
class Timing:
    position: int
    lane: str  # the thread that ran it: the checks of one lane ran one after another
    started: float  # time.monotonic()
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Outcome(Generic[R]):
    results: dict[int, R] = field(default_factory=dict)
    timings: dict[int, Timing] = field(default_factory=dict)
    started: float = 0.0
    ended: float = 0.0
    most_at_once: int = 0  # the most checks that ran at the same time

    def critical_path(self) -> list[Timing]:
        """The chain of checks that bounds the wall time: those of the lane that ended last, in order (a lane
        takes its next check as soon as one ends, so its checks ran back to back)."""
        if not self.timings:
            return []
        last = max(self.timings.values(), key=lambda t: t.ended)
        return sorted((t for t in self.timings.values() if t.lane == last.lane), key=lambda t: t.started)


def run_checks(
    plan: Plan,
    *,
    in_main: Callable[[int], R],
    in_own: Callable[[int], R],
    started: Callable[[int], None] | None = None,
    finished: Callable[[int, R], None] | None = None,
) -> Outcome[R]:
    """Run every planned position: `in_main(p)` for the in-order chain's visible checks (one thread, the main
    sandbox's), `in_own(p)` for the others (each opens its own sandbox, in the thread that runs it)."""
    started = started or (lambda position: None)
    finished = finished or (lambda position, result: None)
    outcome: Outcome[R] = Outcome(started=time.monotonic())
    if not plan.concurrent:
        for position in plan.in_order:
            started(position)
            t0 = time.monotonic()
            result = (in_own if position in plan.own_sandbox else in_main)(position)
            outcome.timings[position] = Timing(position, threading.current_thread().name, t0, time.monotonic())
            outcome.results[position] = result
            finished(position, result)
        outcome.most_at_once = 1 if plan.in_order else 0
        outcome.ended = time.monotonic()
        return outcome
    _run_concurrently(plan, outcome, in_main=in_main, in_own=in_own, started=started, finished=finished)
    outcome.ended = time.monotonic()
    return outcome


def _run_concurrently(
    plan: Plan,
    outcome: Outcome[R],
    *,
    in_main: Callable[[int], R],
    in_own: Callable[[int], R],
    started: Callable[[int], None],
    finished: Callable[[int, R], None],
) -> None:
    events: queue.Queue[tuple[Any, ...]] = queue.Queue()
    stop = threading.Event()

    def task(positions: Sequence[int]) -> None:
        try:
            for position in positions:
                if stop.is_set():
                    return
                events.put(("started", position))
                t0 = time.monotonic()
                result = (in_own if position in plan.own_sandbox else in_main)(position)
                timing = Timing(position, threading.current_thread().name, t0, time.monotonic())
                events.put(("finished", position, result, timing))
        except BaseException as exc:  # handed to the calling thread, which raises it once all have ended
            stop.set()
            events.put(("raised", exc))
        finally:
            # Each thread's own database connection (Django opens one per thread) is closed with it.
            connection.close()
            events.put(("exit",))

    # The in-order chain is one task (one thread, one after another); each concurrent check is one.
    tasks: list[Sequence[int]] = [plan.in_order] if plan.in_order else []
    tasks += [(position,) for position in plan.concurrent]
    raised: BaseException | None = None
    running = 0
    with ThreadPoolExecutor(max_workers=plan.parallel, thread_name_prefix="check") as pool:
        for positions in tasks:
            pool.submit(task, positions)
        exits = 0
        while exits < len(tasks):
            event = events.get()
            try:
                if event[0] == "started":
                    running += 1
                    outcome.most_at_once = max(outcome.most_at_once, running)
                    if not stop.is_set():
                        started(event[1])
                elif event[0] == "finished":
                    running -= 1
                    _, position, result, timing = event
                    outcome.results[position] = result
                    outcome.timings[position] = timing
                    if not stop.is_set():
                        finished(position, result)
                elif event[0] == "raised":
                    running -= 1
                    raised = raised or event[1]
                else:
                    exits += 1
            except BaseException as exc:  # our own callback failed (the database, say): stop the rest
                stop.set()
                raised = raised or exc
    if raised is not None:
        raise raised
