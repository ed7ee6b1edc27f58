"""Resilience check kinds: the learner's service runs in the sandbox against a fault-injecting upstream.

How evidence is gathered (`run_service_scenario`): the service is started as the learner in the background
(its stdout and stderr go to files in /work) behind /opt/shipshape/probe.py --await-port, so it starts only
once the upstream stub holds its port; then the probe runs as the grader user: it hosts the upstream stub in its
own process, drives one scenario, reads the service's stdout and stderr (safely, as the grader) and prints its
observations as one JSON document, capped to the sandbox's output limit. Afterwards every learner process is
killed. The judges below are pure functions from those observations to a verdict, unit-tested without Docker.

Attribution (`ServiceCheck.run`): a check ends `fail` only for what the service did, with the cause named (it
never listened, it ran out of memory or processes, it took the upstream's port, an answer never came); anything
the probe could not observe for a reason of ours (it crashed, printed nothing, ran out of its own time while
every answer was in time) is `error`, with the details in the evidence for staff, never in the message.

Against services that recognise the probe or hard-code answers: every SKU the probe asks for is random, the
upstream's price is random per check run (unless lab.yaml fixes `price`, the quote for the stub's default
12.5), fallback moves the price while the upstream is healthy, and retries and timeout require that the
upstream was actually called.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import shlex
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from labs.checks.base import Check, CheckOutcome, GradingContext, register

SERVICE_LOG = "/work/.shipshape-service-{n}.log"
SERVICE_ERR = "/work/.shipshape-service-{n}.err"
PROBE = "/opt/shipshape/probe.py"
AWAIT_STUB_S = 60  # how long the service's launcher waits for the stub to hold its port (the probe starts next)
TIMING_GRACE_S = 0.3  # added to answer-time bounds: what the probe itself may add to a measured answer time
PROBE_MARGIN_S = 10  # the probe's exec timeout beyond its own deadline (start-up, reading the logs)
CPU_BUSY_SHARE = 0.5  # the sandbox's processes used more than this share of its CPUs: the service kept it busy
_ports = itertools.count()


@dataclass
class ScenarioRun:
    started: bool
    observations: dict[str, Any]
    stub_log: list[dict[str, Any]]
    service_stdout: str
    service_stderr: str
    probe_error: str = ""
    out_of_time: bool = False
    stub_port_taken: bool = False
    probe_failed: bool = False  # no document at all (killed, timed out, cut); details in staff_evidence
    pressure: dict[str, int] = field(default_factory=dict)  # what moved while the probe ran: pids_refused, oom_kills
    cpu: dict[str, float] = field(default_factory=dict)  # the sandbox's CPU use while the probe ran (see cpu_use)
    stdout_skipped: int = 0  # bytes at the start of the service's stdout that the document left out
    staff_evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Verdict:
    """What a judge decided: status plus the observed-versus-expected message."""

    status: str  # pass | fail | error ("more": the backoff judge wants more runs)
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _pressure_delta(start: Any, end: Any) -> dict[str, int]:
    delta = {}
    if isinstance(start, dict) and isinstance(end, dict):
        for key in ("pids_refused", "oom_kills"):
            a, b = start.get(key), end.get(key)
            if isinstance(a, int) and isinstance(b, int) and a >= 0 and b > a:
                delta[key] = b - a
    return delta


def cpu_use(start: Any, end: Any) -> dict[str, float]:
    """CPU time all the sandbox's processes used between two counter readings, and time they spent throttled
    for going over the sandbox's CPU share: {"wall_s", "cpu_s", "throttled_s"}; {} when unknown."""
    if not (isinstance(start, dict) and isinstance(end, dict)):
        return {}
    values = [start.get(k) for k in ("t", "cpu_ns", "throttled_ns")] + [
        end.get(k) for k in ("t", "cpu_ns", "throttled_ns")
    ]
    if not all(isinstance(v, int) and v >= 0 for v in values) or values[3] <= values[0]:
        return {}
    t0, c0, h0, t1, c1, h1 = values
    return {"wall_s": (t1 - t0) / 1e9, "cpu_s": max(0, c1 - c0) / 1e9, "throttled_s": max(0, h1 - h0) / 1e9}


def _pressure_start_from(stderr: bytes) -> dict[str, Any] | None:
    for line in stderr.decode("utf-8", "replace").splitlines()[:5]:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("pressure_start"), dict):
            return doc["pressure_start"]
    return None


def run_service_scenario(
    ctx: GradingContext,
    *,
    scenario: str,
    args: dict[str, Any],
    params: dict[str, Any] | None = None,
    deadline_s: float = 40.0,
    call_timeout_s: float = 6.0,
) -> ScenarioRun:
    """Start the learner's service, drive one probe scenario against it, collect its output, stop it."""
    box = ctx.sandbox
    n = next(_ports)
    port, stub_port = 18000 + 2 * (n % 500), 18001 + 2 * (n % 500)
    log, err = SERVICE_LOG.format(n=n), SERVICE_ERR.format(n=n)
    command = " ".join(shlex.quote(str(c)) for c in args.get("command", ["python", "service.py"]))
    # The service starts only once the stub holds its port (a socket no other user can share), so it can never
    # take the port of UPSTREAM_URL. The learner's process outlives this exec (kill_leftovers=False); it is
    # killed below.
    launcher = f"python3 -I -S {PROBE} --await-port {stub_port} {AWAIT_STUB_S} && exec {command}"
    box.exec(
        ["sh", "-c", f"({launcher}) >{log} 2>{err} </dev/null &"],
        user="learner",
        timeout_s=10,
        env={"PORT": str(port), "UPSTREAM_URL": f"http://127.0.0.1:{stub_port}"},
        workdir=args.get("workdir", "/work"),
        kill_leftovers=False,
    )
    # The probe stops itself (and reports what it saw) before the run's budget would cut its exec short.
    deadline_s = max(1.0, min(deadline_s, ctx.remaining_s() - PROBE_MARGIN_S))
    spec = {
        "scenario": scenario,
        "service_port": port,
        "stub_port": stub_port,
        "startup_timeout_s": float(args.get("startup_timeout_s", 5)),
        "params": params or {},
        "deadline_s": deadline_s,
        "call_timeout_s": call_timeout_s,
        # Room for the document within the sandbox's output cap (the probe shortens what it prints to fit).
        "output_cap": max(1024, ctx.limits.output_bytes - 256),
        "service_log": log,
        "service_err": err,
        "learner_root": "/work",
    }
    try:
        probe = box.exec(
            ["python3", "-I", PROBE],
            user="grader",
            timeout_s=ctx.timeout_s(deadline_s + PROBE_MARGIN_S),
            stdin=json.dumps(spec).encode(),
        )
    finally:
        box.exec(["true"], user="learner", timeout_s=10)  # kill_leftovers: stops the service and its children
    try:
        doc = json.loads(probe.stdout)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict) or probe.timed_out:
        # The probe printed no document: killed (memory), timed out or cut. Whether the service used up a limit
        # meanwhile is read from the sandbox's own counters, against the probe's first line on stderr.
        start = _pressure_start_from(probe.stderr)
        counters = box.exec(["python3", "-I", "-S", PROBE, "--counters"], user="grader", timeout_s=10)
        try:
            end = json.loads(counters.stdout)
        except (ValueError, RecursionError):
            end = None
        return ScenarioRun(
            False,
            {},
            [],
            "",
            "",
            probe_failed=True,
            pressure=_pressure_delta(start, end),
            cpu=cpu_use(start, end),
            staff_evidence={
                "probe_exit_code": probe.exit_code,
                "probe_timed_out": probe.timed_out,
                "probe_oom_killed": probe.oom_killed,
                "probe_output_truncated": probe.output_truncated,
                "probe_duration_s": round(probe.duration_s, 2),
                "probe_stderr": ctx.evidence_text(probe.stderr[-3000:]),
                "probe_stdout_tail": ctx.evidence_text(probe.stdout[-500:]),
            },
        )
    pressure = doc.get("pressure") if isinstance(doc.get("pressure"), dict) else {}
    staff = {}
    if doc.get("error"):
        staff = {"probe_error": str(doc.get("error"))[:500], "probe_traceback": str(doc.get("traceback", ""))[-3000:]}
    return ScenarioRun(
        started=bool(doc.get("started")),
        observations=doc.get("observations") if isinstance(doc.get("observations"), dict) else {},
        stub_log=[],
        service_stdout=str(doc.get("service_stdout") or ""),
        service_stderr=str(doc.get("service_stderr") or ""),
        probe_error=str(doc.get("error") or ""),
        out_of_time=bool(doc.get("out_of_time")),
        stub_port_taken=bool(doc.get("stub_port_taken")),
        pressure=_pressure_delta(pressure.get("start"), pressure.get("end")),
        cpu=cpu_use(pressure.get("start"), pressure.get("end")),
        stdout_skipped=int(doc.get("service_stdout_skipped") or 0),
        staff_evidence=staff,
    )


def describe(call: dict[str, Any]) -> str:
    """One observed answer in words: `503 {"error": ...} after 0.23 s`."""
    if not isinstance(call, dict) or not call:
        return "nothing (the request was not sent)"
    if call.get("error"):
        return f"no answer ({call['error']}) after {call.get('elapsed_s', 0):.2f} s"
    body = json.dumps(call.get("json")) if call.get("json") is not None else repr(call.get("body", ""))[:120]
    return f"{call.get('status')} {body[:160]} after {call.get('elapsed_s', 0):.2f} s"


def same_price(value: Any, price: float) -> bool:
    """A JSON number equal to `price` to the cent (services may compute it with Decimal or floats)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value - price) < 0.005


def _is_live_quote(call: dict[str, Any], price: float) -> bool:
    doc = call.get("json") or {}
    return (
        call.get("status") == 200
        and isinstance(doc, dict)
        and doc.get("source") == "live"
        and same_price(doc.get("price"), price)
    )


def _is_cached_quote(call: dict[str, Any], price: float) -> bool:
    doc = call.get("json") or {}
    return (
        call.get("status") == 200
        and isinstance(doc, dict)
        and doc.get("source") == "cache"
        and same_price(doc.get("price"), price)
    )


def service_calls(obs: Any) -> list[dict[str, Any]]:
    """Every request the probe sent in a document of observations (dicts with a path and an elapsed time)."""
    found: list[dict[str, Any]] = []
    if isinstance(obs, dict):
        if isinstance(obs.get("path"), str) and "elapsed_s" in obs:
            found.append(obs)
        for value in obs.values():
            if isinstance(value, dict | list):
                found += service_calls(value)
    elif isinstance(obs, list):
        for value in obs:
            found += service_calls(value)
    return found


def _short_path(path: str) -> str:
    return path if len(path) <= 60 else path[:57] + "..."


# --- judges ------------------------------------------------------------------------------------------------------


def judge_retries(obs: dict[str, Any], *, price: float, max_attempts: int) -> Verdict:
    transient, persistent = obs.get("transient") or {}, obs.get("persistent") or {}
    if not _is_live_quote(transient, price):
        return Verdict(
            "fail",
            f"with an upstream that answered 503 twice and then a healthy price, /quote answered "
            f"{describe(transient)} after {transient.get('upstream_calls', 0)} upstream call(s); expected 200 with "
            f"the live price {price} after 3 calls.",
        )
    if not persistent.get("upstream_calls"):
        return Verdict(
            "fail",
            f"with an upstream that always answers 503, /quote answered {describe(persistent)} without calling the "
            "upstream at all; expected it to try (and retry) before giving up.",
        )
    if persistent["upstream_calls"] > max_attempts:
        return Verdict(
            "fail",
            f"with an upstream that always answers 503, one /quote made {persistent['upstream_calls']} upstream "
            f"calls; expected at most {max_attempts} attempts in all.",
        )
    return Verdict("pass", f"transient 503s were retried ({transient['upstream_calls']} calls, then 200 live)")


# Backoff ----------------------------------------------------------------------------------------------------------
#
# Growth is judged on averages: with full or decorrelated jitter a second wait is often shorter than the first
# of the same run, but on average it must be BACKOFF_GROWTH times the first or more. While the average is not yet
# clear (full jitter varies a lot), more runs are measured.
#
# Jitter. A wait "varies" when its spread across runs is beyond what fixed sleeps show on this machine right now:
# after each of the service's runs the probe replays the gaps it just saw with fixed sleeps (a control client, see
# probe.control_run), and the spread n fixed sleeps would exceed only once in a thousand is resampled from how late
# the control's sleeps came (noise_limit). A wait is "fixed" when its spread is below what even the smallest
# jitter the contract allows (BACKOFF_MIN_JITTER of the wait, spread evenly) shows but once in five thousand,
# less what the machine can bunch together (on a loaded machine wake-ups snap to the scheduler's ticks: the
# spread of the lowest third of the control's own delays). The schedule is fixed only when both waits are, and neither varies.
# Otherwise more runs; if the noise still hides the answer after max_runs, the check is undecided (ours,
# retried), never a verdict.
#
# Spreads are measured from the smallest value up to a low quantile, never over all values: a busy machine only
# ever makes a sleep longer, and its bursts hit some runs, not most. "Varies" uses the lowest third (bursts that
# hit up to a third of the runs cannot fake it); "fixed" the lowest half (a random wait spreads it more).

BACKOFF_GROWTH = 1.3  # the second wait must average at least this times the first
BACKOFF_MIN_JITTER = 0.10  # the random part must span at least this fraction of the wait
BACKOFF_NOISE_FACTOR = 1.5  # a spread beyond this times what fixed sleeps show (see noise_limit) is jitter ...
BACKOFF_NOISE_FLOOR_S = 0.0015  # ... if it is also beyond this, and
BACKOFF_NOISE_FLOOR_REL = 0.015  # this fraction of the wait (a service's own code adds some noise of its own)
BACKOFF_Z = 3.0  # standard errors of the average growth needed before a growth verdict on the runs so far
BACKOFF_MISS = 0.001  # accepted chance that fixed sleeps look random (per judgement)
FIXED_MISS = 0.0002  # accepted chance that the smallest allowed jitter looks fixed (per judgement; up to 5 rounds)
VARIES_KEEP = 1 / 3  # "varies" looks at the lowest third of the values, "fixed" at the lowest half
FIXED_KEEP = 1 / 2


def backoff_gaps(runs: list[dict[str, Any]]) -> list[list[float]]:
    """Gaps in seconds between consecutive upstream attempts, per run."""
    out = []
    for r in runs:
        times = [t for t in r.get("attempt_times") or [] if isinstance(t, int | float)]
        out.append([round(b - a, 5) for a, b in itertools.pairwise(times)])
    return out


def control_deviations(control: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """For the control client's fixed sleeps: how much later than the sleep each gap came, for the first and the
    second gap of each control run."""
    first, second = [], []
    for c in control or []:
        sleeps, times = c.get("sleeps") or [], c.get("times") or []
        if len(times) != len(sleeps) + 1 or not all(isinstance(x, int | float) for x in [*sleeps, *times]):
            continue
        for k, (sleep, (a, b)) in enumerate(zip(sleeps, itertools.pairwise(times), strict=False)):
            (first if k == 0 else second).append(b - a - sleep)
    return first, second


def _kept(n: int, keep: float) -> int:
    return min(n, max(2, math.ceil(n * keep - 1e-9)))


def low_spread(values: list[float], keep: float = FIXED_KEEP) -> float:
    """From the smallest value up to the `keep` quantile (see the section comment); 0 for fewer than 2 values."""
    ordered = sorted(values)
    if len(ordered) < 2:
        return 0.0
    return ordered[_kept(len(ordered), keep) - 1] - ordered[0]


def _binom_tail(n: int, x: float, k: int) -> float:
    """P(Binomial(n, x) >= k)."""
    return sum(math.comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(k, n + 1))


def uniform_low_spread_quantile(n: int, p: float = FIXED_MISS, keep: float = FIXED_KEEP) -> float:
    """The p-quantile of low_spread(n uniform values on [0, 1], keep): the smallest spread a uniform jitter of
    width 1 shows, except with probability p. (For order statistics, X(k) - X(1) follows Beta(k-1, n-k+2).)"""
    if n < 2:
        return 0.0
    k = _kept(n, keep)
    a, b = k - 1, n - k + 2
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        # P(Beta(a, b) <= mid) = P(Binomial(a + b - 1, mid) >= a)
        if _binom_tail(a + b - 1, mid, a) < p:
            lo = mid
        else:
            hi = mid
    return lo


def noise_limit(deviations: list[float], n: int, p: float = BACKOFF_MISS, draws: int = 2000) -> float:
    """The spread that n fixed sleeps would exceed with probability p only, if they came late the way the
    control's did: resampled from the control's deviations (with a fixed seed, so a verdict is reproducible)."""
    if len(deviations) < 3 or n < 2:
        return 0.0
    rng = random.Random(len(deviations) * 7919 + n)
    spreads = sorted(low_spread(rng.choices(deviations, k=n), VARIES_KEEP) for _ in range(draws))
    return spreads[min(draws - 1, int((1 - p) * draws))]


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.1f} ms" if abs(ms) < 10 else f"{ms:.0f} ms"


def _growth(first: list[float], second: list[float], offset: float) -> tuple[float, float]:
    """(ratio of the average second wait to the average first, its standard error) after removing `offset`, the
    machine's average delay (from the control)."""
    n = len(first)
    mean_a, mean_b = statistics.fmean(first), statistics.fmean(second)
    a = max(mean_a - offset, 0.001)
    b = max(mean_b - offset, 0.0)
    ratio = b / a
    if n < 3:
        return ratio, float("inf")
    var_a, var_b = statistics.variance(first), statistics.variance(second)
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(first, second, strict=True)) / (n - 1)
    rel = var_a / (n * a * a)
    if b > 0:
        rel += var_b / (n * b * b) - 2 * cov / (n * a * b)
    return ratio, ratio * math.sqrt(max(rel, 0.0))


def judge_backoff(
    runs: list[dict[str, Any]], control: list[dict[str, Any]] | None = None, *, final: bool = True
) -> Verdict:
    """runs: the service's runs (upstream attempt times); control: the control client's runs (see the section
    comment). With final=False an unclear answer is Verdict("more"): measure more runs and judge them all again."""
    gaps = backoff_gaps(runs)
    attempts = [len(g) + 1 for g in gaps]
    usable = [g[:2] for g in gaps if len(g) >= 2]
    evidence: dict[str, Any] = {"gaps_s": [[round(x, 4) for x in g] for g in gaps[:60]]}
    if not runs or len(usable) < max(2, math.ceil(2 * len(runs) / 3)):
        return Verdict(
            "fail",
            f"with an upstream that failed twice and then answered, the service made {attempts[:20]} upstream "
            "attempts per /quote; backoff is measured between the first, second and third attempts, so each request "
            "must make 3 (see the retries check).",
            evidence,
        )
    first = [g[0] for g in usable]
    second = [g[1] for g in usable]
    dev_first, dev_second = control_deviations(control or [])
    deviations = dev_first + dev_second
    offset = max(0.0, statistics.fmean(deviations)) if deviations else 0.0
    evidence["control_late_s"] = [round(x, 4) for x in deviations[:60]]

    # Growth, on averages.
    ratio, se = _growth(first, second, offset)
    evidence["growth"] = round(ratio, 3)
    mean_first, mean_second = statistics.fmean(first), statistics.fmean(second)
    # Before the last round a verdict needs clear evidence: growth well away from none (1.0), or well below the
    # smallest legal average growth (about 1.75, for decorrelated jitter).
    # (The margin is widened for few runs, where the standard error itself is uncertain.)
    z = BACKOFF_Z * (1 + 4 / len(usable))
    if ratio >= BACKOFF_GROWTH and ratio - z * se >= 1.1:
        growth = "ok"
    elif ratio < BACKOFF_GROWTH and ratio + z * se <= 1.5:
        growth = "fail"
    elif final:
        growth = "ok" if ratio >= BACKOFF_GROWTH else "fail"
    else:
        growth = "unclear"
    if growth == "fail":
        return Verdict(
            "fail",
            f"the waits between retries did not grow: over {len(usable)} runs the second wait averaged "
            f"{_ms(mean_second)} and the first {_ms(mean_first)} (x{ratio:.2f}); expected the second to be about "
            f"twice the first (exponential backoff), at least {BACKOFF_GROWTH} times on average.",
            evidence,
        )

    # Jitter (see the section comment).
    n = len(usable)
    q = uniform_low_spread_quantile(n)
    limit = noise_limit(deviations, n) if len(deviations) >= 6 else None
    # How much a loaded machine can bunch values together (wake-ups snap to scheduler ticks): the spread of the
    # control's own delays, which a fixed-looking spread must undercut the smallest jitter's by.
    bunching = low_spread(deviations, VARIES_KEEP) if len(deviations) >= 6 else None
    states, thresholds = [], []
    for values in (first, second):
        wait = max(statistics.fmean(values) - offset, 0.0)
        spread, narrow = low_spread(values, VARIES_KEEP), low_spread(values, FIXED_KEEP)
        threshold = max(BACKOFF_NOISE_FACTOR * (limit or 0.0), BACKOFF_NOISE_FLOOR_S, BACKOFF_NOISE_FLOOR_REL * wait)
        smallest = q * BACKOFF_MIN_JITTER * wait - (bunching or 0.0)
        if limit is not None and spread > threshold:
            states.append("varies")
        elif bunching is not None and narrow < smallest:
            states.append("fixed")
        else:
            states.append("unclear")
        thresholds.append(threshold)
        evidence.setdefault("spread_s", []).append([round(spread, 4), round(narrow, 4)])
        evidence.setdefault("varies_above_s", []).append(round(threshold, 4))
        evidence.setdefault("fixed_below_s", []).append(round(smallest, 4))
    evidence["jitter"] = states
    if states == ["fixed", "fixed"]:
        shown = [round(x, 3) for x in first[:9]], [round(x, 3) for x in second[:9]]
        return Verdict(
            "fail",
            f"the waits were the same in every run: first waits {shown[0]} s, second waits {shown[1]} s (the lower "
            f"half of the {n} runs spread by {_ms(low_spread(first))} and {_ms(low_spread(second))}, less than "
            f"even the smallest allowed jitter would); expected random jitter of at least "
            f"{BACKOFF_MIN_JITTER:.0%} of each wait, so that many clients do not retry in lockstep.",
            evidence,
        )
    if growth == "ok" and "varies" in states:
        return Verdict(
            "pass",
            f"over {len(usable)} runs the waits grow (second x{ratio:.2f} the first on average: {_ms(mean_first)}, "
            f"then {_ms(mean_second)}) and vary between runs beyond the machine's timing noise",
            evidence,
        )
    if not final:
        return Verdict("more", "not decided yet", evidence)
    return Verdict(
        "error",
        f"could not tell whether the waits vary: the machine's timing noise (fixed sleeps could spread by "
        f"{_ms(min(thresholds))}) was too large next to the smallest jitter allowed ({BACKOFF_MIN_JITTER:.0%} of the "
        f"wait) after {n} runs. This is not your fault; the check will be run again.",
        evidence,
    )


def judge_timeout(obs: dict[str, Any], *, bound_s: float) -> Verdict:
    slow = obs.get("slow") or {}
    limit = bound_s + TIMING_GRACE_S
    if not slow.get("error") and not slow.get("upstream_calls"):
        return Verdict(
            "fail",
            f"/quote answered {describe(slow)} without calling the upstream; expected it to call the (slow) upstream "
            f"and cut the call off within {bound_s:.1f} s.",
        )
    if slow.get("error") or slow.get("elapsed_s", 0) > limit:
        return Verdict(
            "fail",
            f"with an upstream that takes {obs.get('delay_ms', 0) / 1000:.1f} s to answer, /quote gave "
            f"{describe(slow)}; expected an answer (a cached price or a 503) within {bound_s:.1f} s.",
        )
    return Verdict("pass", f"a slow upstream was cut off: answered {slow.get('status')} in {slow['elapsed_s']:.2f} s")


def judge_fallback(obs: dict[str, Any], *, price: float, bound_s: float, price_2: float | None = None) -> Verdict:
    """price: the quote for the first healthy answer; price_2: for the second, after the upstream's price moved."""
    warm, cached, uncached = obs.get("warm") or {}, obs.get("cached") or {}, obs.get("uncached") or {}
    limit = bound_s + TIMING_GRACE_S
    if not _is_live_quote(warm, price):
        return Verdict("fail", f"with a healthy upstream /quote answered {describe(warm)}; expected 200 live {price}.")
    if price_2 is not None and "warm_again" in obs:
        if not _is_live_quote(obs["warm_again"], price_2):
            return Verdict(
                "fail",
                f"with a healthy upstream whose price had changed, /quote answered {describe(obs['warm_again'])}; "
                f"expected 200 live {price_2} (a cache is for when the upstream fails, not instead of calling it).",
            )
        price = price_2
    if not _is_cached_quote(cached, price) or cached.get("elapsed_s", 99) > limit:
        return Verdict(
            "fail",
            f"with the upstream down, /quote for a SKU served before answered {describe(cached)}; expected 200 with "
            f'the last good price {price} and "source": "cache" within {bound_s:.1f} s.',
        )
    body = uncached.get("json")
    if uncached.get("status") != 503 or not isinstance(body, dict) or uncached.get("elapsed_s", 99) > limit:
        return Verdict(
            "fail",
            f"with the upstream down, /quote for a SKU never served answered {describe(uncached)}; expected 503 with "
            f"a JSON error body within {bound_s:.1f} s.",
        )
    return Verdict("pass", "served the cached price marked as cache, and a quick 503 when nothing was cached")


BREAKER_LEAK_TOLERANCE_S = 0.1  # a retry this much before min_open_s is the breaker's clock, not a leak


def judge_circuit_breaker(obs: dict[str, Any], *, price: float) -> Verdict:
    failing = obs.get("failing") or []
    calls = [f.get("upstream_calls", 0) for f in failing]
    min_open_s = float(obs.get("min_open_s", 5.0))
    max_open_s = float(obs.get("max_open_s", 30.0))
    if not obs.get("opened"):
        return Verdict(
            "fail",
            f"the upstream kept failing and {len(failing)} requests made {calls} upstream calls each; expected the "
            "breaker to open after 5 failed calls, so that later requests make 0 calls.",
        )
    after_open = [t for t in obs.get("upstream_after_open_s") or [] if isinstance(t, int | float)]
    first_retry = after_open[0] if after_open else None
    evidence = {"upstream_calls_per_request": calls, "retried_after_s": first_retry}
    if first_retry is not None and first_retry < min_open_s - BREAKER_LEAK_TOLERANCE_S:
        return Verdict(
            "fail",
            f"the breaker opened, but {first_retry:.1f} s later a request reached the upstream again; expected no "
            f"upstream call at all for at least {min_open_s:g} s after it opened.",
            evidence,
        )
    if first_retry is None or first_retry > max_open_s + 1.0:
        polls = len(obs.get("recovery") or [])
        return Verdict(
            "fail",
            f"the breaker opened and then never let a request reach the upstream again: {polls} requests over the "
            f"{max_open_s:g} s after it opened (the upstream was healthy again from {min_open_s:g} s) made no "
            f"upstream call; expected the service to try again after its cool-down, within {max_open_s:g} s.",
            evidence,
        )
    recovery = obs.get("recovery") or []
    tried = [c for c in recovery if c.get("upstream_calls")]
    if not any(_is_live_quote(c, price) for c in tried):
        last = tried[-1] if tried else (recovery[-1] if recovery else {})
        return Verdict(
            "fail",
            f"{first_retry:.1f} s after the breaker opened the service tried the (healthy again) upstream, but /quote "
            f"answered {describe(last)}; expected 200 live with the upstream's price once it answers again.",
            evidence,
        )
    return Verdict(
        "pass",
        f"opened after {calls.index(0) if 0 in calls else len(calls)} failing requests, made no upstream call for "
        f"{first_retry:.1f} s, then tried again and recovered",
        evidence,
    )


def judge_contract(obs: dict[str, Any], *, price: float) -> Verdict:
    baseline = obs.get("baseline") or {}
    if not _is_live_quote(baseline, price):
        return Verdict("fail", f"with a healthy upstream /quote answered {describe(baseline)}; expected 200.")
    cases = {**(obs.get("cases") or {}), "negative_price_with_cache": obs.get("cached_case") or {}}
    for name, call in cases.items():
        served_cache = _is_cached_quote(call, price)
        if call.get("error") or not call:
            return Verdict("fail", f"upstream data case {name}: {describe(call)}; expected a JSON 503 (or the cache).")
        if call.get("status") == 200 and not served_cache:
            return Verdict(
                "fail",
                f"upstream data case {name}: /quote answered {describe(call)}; expected the malformed price to be "
                "rejected (503, or the cached good price), never passed on.",
            )
    return Verdict("pass", f"rejected malformed upstream data in {len(cases)} cases")


def judge_health(obs: dict[str, Any]) -> Verdict:
    """up, down, back: the last /health answer of each phase (the probe polls a phase until it sees the expected
    status or max_stale_s has passed, so a result reused for up to max_stale_s passes)."""
    expected = {"up": 200, "down": 503, "back": 200}
    words = {"up": "reachable", "down": "down", "back": "back again"}
    stale = obs.get("max_stale_s")
    for phase, status in expected.items():
        call = obs.get(phase) or {}
        if call.get("status") != status:
            waited = f" for {stale:g} s" if stale and phase != "up" else ""
            return Verdict(
                "fail",
                f"/health answered {describe(call)} while the upstream was {words[phase]}{waited}; expected {status}"
                + (f" (a cached result may be up to {stale:g} s old)." if waited else "."),
            )
    up_doc = (obs.get("up") or {}).get("json")
    if not isinstance(up_doc, dict) or up_doc.get("status") != "ok":
        return Verdict(
            "fail", f'/health answered {describe(obs.get("up") or {})}; expected the body {{"status": "ok"}}.'
        )
    return Verdict("pass", "/health followed the upstream: 200, 503 while down, 200 again")


# --- check kinds -----------------------------------------------------------------------------------------------


class ServiceCheck(Check):
    """A check that drives one probe scenario; subclasses give the scenario and the judge."""

    default_category = "resilience"
    scenario: str = ""
    hint_text: str = ""
    # Each run starts its own service and upstream stub on ports of its own, and stops them when it ends.
    runs_alone = True

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems = []
        command = args.get("command", ["python", "service.py"])
        if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
            problems.append("args.command must be a list of strings, e.g. [python, service.py]")
        for key in ("bound_s", "startup_timeout_s", "price", "markup", "probe_timeout_s", "max_stale_s"):
            if key in args and (not isinstance(args[key], int | float) or isinstance(args[key], bool)):
                problems.append(f"args.{key} must be a number")
        return problems

    # The expected live quote (and the second one for fallback); set per run by pick_prices().
    price: float = 15.0
    price_2: float | None = None

    @property
    def bound_s(self) -> float:
        return float(self.args.get("bound_s", 3.0))

    @property
    def call_timeout_s(self) -> float:
        """How long the probe waits for one answer: well past the contract's bound, so a late answer is seen."""
        return self.bound_s + 3.0

    def params(self) -> dict[str, Any]:
        return {}

    def budget_s(self) -> float:
        """The probe's own deadline: room for the slowest service the contract allows (every answer within
        bound_s), and for a few answers that come later still."""
        return 6 * self.call_timeout_s

    def deadline_s(self) -> float:
        base = float(self.args.get("startup_timeout_s", 5)) + 5.0
        return float(self.args["probe_timeout_s"]) if "probe_timeout_s" in self.args else base + self.budget_s()

    def judge(self, run: ScenarioRun) -> Verdict:
        raise NotImplementedError

    def pick_prices(self) -> dict[str, Any]:
        """The upstream's prices for this run and the quotes they imply.

        Random per run unless lab.yaml fixes `price` (the quote for the stub's default 12.5): a service that
        hard-codes the answer, or never calls the upstream, cannot give the right live price.
        """
        if "price" in self.args:
            return {"params": {}, "quote": float(self.args["price"]), "quote_2": None}
        markup = float(self.args.get("markup", 1.2))
        first, second = (x / 10 for x in random.sample(range(50, 1000), 2))
        return {
            "params": {"upstream_price": first, "upstream_price_2": second},
            "quote": round(first * markup, 2),
            "quote_2": round(second * markup, 2),
        }

    def observe(self, ctx: GradingContext, extra: dict[str, Any] | None = None) -> ScenarioRun:
        prices = self.pick_prices()
        self.price, self.price_2 = prices["quote"], prices["quote_2"]
        params = {**self.params(), **(extra or {}), **prices["params"]}
        return run_service_scenario(
            ctx,
            scenario=self.scenario,
            args=self.args,
            params=params,
            deadline_s=self.deadline_s(),
            call_timeout_s=self.call_timeout_s,
        )

    def cpu_hog(self, ctx: GradingContext, cpu: dict[str, float], what: str) -> CheckOutcome | None:
        """A named fail when the sandbox's CPU was kept busy while the probe ran (an idle service, the probe and
        the upstream together use a few percent): the service's doing, and it makes timing meaningless."""
        wall, used = cpu.get("wall_s", 0.0), cpu.get("cpu_s", 0.0)
        if wall <= 0 or used / (wall * ctx.limits.cpus) <= CPU_BUSY_SHARE:
            return None
        return self.failed(
            f"your service kept the sandbox's CPU busy while {what}: its processes used {used:.1f} s of CPU in "
            f"{wall:.1f} s ({used / (wall * ctx.limits.cpus):.0%} of the {ctx.limits.cpus:g} CPU it has), so their "
            "timing could not be measured; an idle service uses almost none.",
            hint="Wait with time.sleep or an event loop, never a busy loop; do no heavy work in the background.",
            cpu=cpu,
        )

    def attribute(self, ctx: GradingContext, run: ScenarioRun) -> CheckOutcome | None:
        """Whose is a run the judge cannot read: the service's (a named fail) or ours (error); None when the
        observations are complete and the judge decides."""
        staff = {**run.staff_evidence, "service_stderr": ctx.evidence_text(run.service_stderr, 1500)}
        limits = ctx.limits
        if run.pressure.get("oom_kills"):
            return self.failed(
                f"your service ran out of memory while it was being checked: the sandbox's limit is "
                f"{limits.memory_mb} MB and a process was killed for going over it.",
                hint="Keep the service's memory small: bounded caches, no unbounded lists of requests.",
                service_stderr=ctx.evidence_text(run.service_stderr, 1500),
            )
        if run.pressure.get("pids_refused"):
            return self.failed(
                f"your service reached the sandbox's process limit ({limits.pids} processes and threads) while it "
                "was being checked, so it could not start any more.",
                hint="Use a bounded number of threads (a thread per request is fine; threads that never end are not).",
                service_stderr=ctx.evidence_text(run.service_stderr, 1500),
            )
        if run.probe_failed:
            if run.staff_evidence.get("probe_timed_out") and (hog := self.cpu_hog(ctx, run.cpu, "it was checked")):
                return hog
            return self.undecided("the grader's probe stopped without reporting; this is on our side.", **staff)
        if run.probe_error:
            return self.undecided("the grader's probe failed; this is on our side.", **staff)
        if run.stub_port_taken:
            return self.failed(
                "your service listened on the port of UPSTREAM_URL, which belongs to the grader's upstream; expected "
                "it to listen on $PORT and only connect to UPSTREAM_URL.",
                hint="Listen on 127.0.0.1:$PORT; UPSTREAM_URL is the address of the service you call.",
                service_stderr=ctx.evidence_text(run.service_stderr, 1500),
            )
        if not run.started:
            because = ""
            if "address already in use" in run.service_stderr.lower():
                because = " (its stderr says an address was already in use: UPSTREAM_URL's port is the grader's)"
            return self.failed(
                f"your service never started listening on 127.0.0.1:$PORT within "
                f"{self.args.get('startup_timeout_s', 5)} s{because}. Its stderr is below.",
                hint="Run it locally with PORT=8000 UPSTREAM_URL=http://127.0.0.1:9000 python service.py and fix "
                "what it prints.",
                stderr=ctx.evidence_text(run.service_stderr),
            )
        calls = service_calls(run.observations)
        late = [c for c in calls if c.get("error") or c.get("elapsed_s", 0) > self.bound_s + TIMING_GRACE_S]
        if run.out_of_time:
            if late:
                return self.failed(self._late_message(late), hint=self.hint_text, **staff)
            if hog := self.cpu_hog(ctx, run.cpu, "it was checked"):
                return hog
            return self.undecided(
                "the grader's probe ran out of time although every answer came in time; this is on our side.", **staff
            )
        unanswered = [c for c in calls if c.get("error")]
        if unanswered and self.fails_unanswered:
            return self.failed(self._late_message(unanswered), hint=self.hint_text, **staff)
        return None

    # Whether a request without an answer fails the check before the judge (timeout judges it itself).
    fails_unanswered: bool = True

    def _late_message(self, late: list[dict[str, Any]]) -> str:
        worst = next((c for c in late if c.get("error")), None) or max(late, key=lambda c: c.get("elapsed_s", 0))
        return (
            f"GET {_short_path(str(worst.get('path')))} got {describe(worst)}; expected every answer within "
            f"{self.bound_s:g} s (this check waits {self.call_timeout_s:g} s for one)."
        )

    def outcome(self, ctx: GradingContext, run: ScenarioRun, verdict: Verdict) -> CheckOutcome:
        # Messages quote what the service answered: learner-controlled text, so cleaned like any output.
        verdict.message = ctx.evidence_text(verdict.message, 2000)
        evidence = {**verdict.evidence, "service_stderr": ctx.evidence_text(run.service_stderr, 1500)}
        if verdict.status == "pass":
            return self.passed(verdict.message, **verdict.evidence)
        if verdict.status == "fail":
            return self.failed(verdict.message, hint=self.hint_text, **evidence)
        return CheckOutcome("error", verdict.message, evidence={**evidence, **run.staff_evidence})

    def run(self, ctx: GradingContext) -> CheckOutcome:
        run = self.observe(ctx)
        problem = self.attribute(ctx, run)
        if problem is not None:
            return problem
        return self.outcome(ctx, run, self.judge(run))


@register
class Retries(ServiceCheck):
    kind = "resilience.retries"
    scenario = "retries"
    hint_text = "Retry 5xx answers and timeouts, at most 3 attempts in all, and only then give up."

    def budget_s(self) -> float:
        return 2 * self.call_timeout_s

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_retries(run.observations, price=self.price, max_attempts=int(self.args.get("max_attempts", 3)))


@register
class Backoff(ServiceCheck):
    kind = "resilience.backoff"
    expected_s = 5.0  # rounds of nine requests until the noise lets it decide
    scenario = "backoff"
    hint_text = (
        "Wait base * 2**attempt between attempts, with a random part (jitter) of at least 10 % of the wait, "
        "e.g. half fixed, half random."
    )

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems = super().validate_args(args)
        for key in ("runs", "max_runs"):
            if key in args and (not isinstance(args[key], int) or isinstance(args[key], bool) or args[key] < 3):
                problems.append(f"args.{key} must be a whole number of at least 3")
        return problems

    @property
    def runs(self) -> int:
        return int(self.args.get("runs", 9))

    @property
    def max_runs(self) -> int:
        return max(self.runs, int(self.args.get("max_runs", 45)))

    def params(self) -> dict[str, Any]:
        return {"runs": self.runs}

    def budget_s(self) -> float:
        # Per run: one answer (at most bound_s by the contract) and the control replaying its gaps (less than
        # that answer took), plus connection set-up. A service slower than its contract runs into the deadline
        # and is failed for its late answers.
        return self._round_runs * (2 * self.bound_s + 1.0)

    _round_runs: int = 9

    def run(self, ctx: GradingContext) -> CheckOutcome:
        """Rounds of `runs` runs, each with a fresh service process, until the judge decides or max_runs is
        reached (or the run's budget would not fit another round)."""
        runs: list[dict[str, Any]] = []
        control: list[dict[str, Any]] = []
        size, rounds, with_control = self.runs, 0, True
        cpu = {"wall_s": 0.0, "cpu_s": 0.0, "throttled_s": 0.0}
        while True:
            self._round_runs = size
            started = time.monotonic()
            result = self.observe(ctx, {"runs": size, "control": with_control})
            problem = self.attribute(ctx, result)
            if problem is not None:
                return problem
            rounds += 1
            per_run = (time.monotonic() - started) / max(1, size)
            runs += result.observations.get("runs") or []
            control += result.observations.get("control") or []
            for key in cpu:
                cpu[key] += result.cpu.get(key, 0.0)
            next_size = min(self.runs, self.max_runs - len(runs))
            # Another round must fit in what is left of the run's budget, with room for the checks after this.
            final = next_size < 3 or ctx.remaining_s() < 2 * per_run * next_size + 30
            verdict = judge_backoff(runs, control, final=final)
            verdict.evidence["rounds"] = rounds
            if verdict.status != "fail" and (hog := self.cpu_hog(ctx, cpu, "the check timed its retries")):
                # A busy sandbox makes waits look random (or hides whether they are): the service's doing.
                return hog
            if verdict.status != "more":
                return self.outcome(ctx, result, verdict)
            # Once the waits clearly vary, more runs are only for the average growth: no control needed.
            with_control = "varies" not in verdict.evidence.get("jitter", [])
            size = next_size


@register
class Timeout(ServiceCheck):
    kind = "resilience.timeout"
    expected_s = 3.5  # a slow upstream, cut at the service's own deadline
    scenario = "timeout"
    hint_text = "Pass timeout= to every upstream call (at most 1 s) and keep retries inside the answer's time budget."
    fails_unanswered = False

    def params(self) -> dict[str, Any]:
        return {"bound_s": self.bound_s, "delay_ms": int(self.args.get("delay_ms", 5000))}

    def budget_s(self) -> float:
        return self.bound_s + 3.0 + 2.0

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_timeout(run.observations, bound_s=self.bound_s)


@register
class Fallback(ServiceCheck):
    kind = "resilience.fallback"
    scenario = "fallback"
    hint_text = 'Keep the last good price per SKU; serve it with "source": "cache" when the upstream fails.'

    def budget_s(self) -> float:
        return 4 * self.call_timeout_s

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_fallback(run.observations, price=self.price, price_2=self.price_2, bound_s=self.bound_s)


@register
class CircuitBreaker(ServiceCheck):
    kind = "resilience.circuit_breaker"
    expected_s = 8.0  # waits out the service's cool-down (at least min_open_s)
    scenario = "circuit_breaker"
    hint_text = (
        "Count consecutive failed calls; after 5, skip the upstream for a cool-down (at least 5 s, at most 30 s), "
        "then try again."
    )
    MAX_REQUESTS = 8

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems = super().validate_args(args)
        for key in ("min_open_s", "max_open_s"):
            if key in args and (not isinstance(args[key], int | float) or isinstance(args[key], bool)):
                problems.append(f"args.{key} must be a number of seconds")
        if not problems and float(args.get("max_open_s", 30.0)) < float(args.get("min_open_s", 5.0)):
            problems.append("args.max_open_s must be at least args.min_open_s")
        return problems

    @property
    def min_open_s(self) -> float:
        return float(self.args.get("min_open_s", 5.0))

    @property
    def max_open_s(self) -> float:
        return float(self.args.get("max_open_s", 30.0))

    def params(self) -> dict[str, Any]:
        return {"min_open_s": self.min_open_s, "max_open_s": self.max_open_s, "max_requests": self.MAX_REQUESTS}

    def budget_s(self) -> float:
        return self.MAX_REQUESTS * (self.bound_s + 1.0) + self.max_open_s + self.call_timeout_s + 3.0

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_circuit_breaker(run.observations, price=self.price)


@register
class Contract(ServiceCheck):
    kind = "resilience.contract"
    scenario = "contract"
    hint_text = "Validate the upstream's answer (JSON object, numeric non-negative price) before using it."

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_contract(run.observations, price=self.price)


@register
class Health(ServiceCheck):
    kind = "resilience.health"
    scenario = "health"
    hint_text = "Make /health call the upstream (with a short timeout) and answer 503 when it cannot reach it."

    @property
    def max_stale_s(self) -> float:
        return float(self.args.get("max_stale_s", 2.0))

    def params(self) -> dict[str, Any]:
        return {"max_stale_s": self.max_stale_s}

    def budget_s(self) -> float:
        return 3 * self.call_timeout_s + 2 * self.max_stale_s

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_health(run.observations)
