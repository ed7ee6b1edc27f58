"""Resilience judges, attribution and the trusted probe.

1. Judges on recorded observations (dicts as the probe prints them): which behaviours the contract accepts and
   which it rejects, named after the behaviour.
2. Attribution: what the check makes of a probe that reports a service that never listened, a limit the service
   used up, its own failure (a fake sandbox stands in for Docker).
3. The probe with its in-process upstream stub, driving the quote-service reference and broken variants as plain
   local processes, without Docker. The same probe runs in the sandbox in test_flagship_quote_service.py.
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from labs.checks import resilience as r
from labs.checks.base import GradingContext
from labs.sandbox import ExecResult, SandboxLimits

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "platform/sandbox/probe.py"
sys.path.insert(0, str(ROOT / "tests/fixtures/labs/quote-service"))
sys.path.insert(0, str(ROOT / "platform/sandbox"))
from upstream_stub import Stub  # noqa: E402
from variants import materialise  # noqa: E402

PRICE = 15.0


def call(status=200, body=None, calls=1, elapsed=0.05, **extra):
    doc = {"path": "/quote?sku=x", "status": status, "json": body, "elapsed_s": elapsed, "upstream_calls": calls}
    return {**doc, **extra}


def live(price=PRICE, calls=1):
    return call(200, {"sku": "x", "price": price, "currency": "EUR", "source": "live"}, calls=calls)


# --- 1. judges on recorded observations ----------------------------------------------------------------------

# Backoff: the service's runs and the control client's runs, as the probe records them. A gap is the wait the
# service chose plus what the machine added; the control replays the same gaps with fixed sleeps.


def quiet(rng, i):
    return 0.0012 + rng.expovariate(1 / 0.0003)


def bursty(rng, i):
    """A busy machine: a third of the runs come 30-60 ms late."""
    return 0.0012 + rng.expovariate(1 / 0.0003) + (rng.uniform(0.03, 0.06) if i % 3 == 1 else 0.0)


def swamped(rng, i):
    """A machine so busy that most sleeps come late by anything up to 40 ms."""
    return 0.0012 + rng.uniform(0.0, 0.04)


def backoff_obs(schedule, noise=quiet, n=9, seed=1):
    rng = random.Random(seed)
    runs, control, t = [], [], 100.0
    for i in range(n):
        w1, w2 = schedule(rng)
        g1, g2 = w1 + noise(rng, i), w2 + noise(rng, i)
        runs.append({"path": "/quote", "status": 200, "upstream_calls": 3, "attempt_times": [t, t + g1, t + g1 + g2]})
        d1, d2 = noise(rng, i), noise(rng, i)
        control.append({"sleeps": [g1, g2], "times": [t + 5, t + 5 + g1 + d1, t + 5 + g1 + d1 + g2 + d2]})
        t += 10
    return runs, control


def judged(schedule, noise=quiet, max_runs=45, seed=1):
    """The check's rounds: 9 runs, then 9 more while the judge wants more, up to max_runs."""
    runs, control = [], []
    while True:
        more_runs, more_control = backoff_obs(schedule, noise, n=9, seed=seed + len(runs))
        runs, control = runs + more_runs, control + more_control
        verdict = r.judge_backoff(runs, control, final=len(runs) + 9 > max_runs)
        if verdict.status != "more":
            return verdict


FULL = lambda rng: (rng.uniform(0, 0.1), rng.uniform(0, 0.2))  # noqa: E731
EQUAL = lambda rng: (0.05 + rng.uniform(0, 0.05), 0.1 + rng.uniform(0, 0.1))  # noqa: E731
PROPORTIONAL = lambda rng: (0.1 * rng.uniform(0.95, 1.05), 0.2 * rng.uniform(0.95, 1.05))  # noqa: E731
FIXED = lambda rng: (0.1, 0.2)  # noqa: E731


def decorrelated(rng):
    first = rng.uniform(0.075, 0.125)
    return first, min(0.4, rng.uniform(1.5 * first, 2.5 * first))


@pytest.mark.parametrize("seed", range(5))
def test_it_accepts_full_jitter(seed):
    verdict = judged(FULL, seed=seed)
    assert verdict.status == "pass", verdict.message


def test_full_jitter_is_judged_on_the_average_though_a_later_gap_is_often_shorter():
    runs, _ = backoff_obs(FULL, n=45, seed=3)
    gaps = r.backoff_gaps(runs)
    assert any(b < a for a, b in gaps)  # run by run it often "shrinks"
    assert judged(FULL, seed=3).status == "pass"


@pytest.mark.parametrize("seed", range(3))
def test_it_accepts_equal_jitter(seed):
    verdict = judged(EQUAL, seed=seed)
    assert verdict.status == "pass", verdict.message


@pytest.mark.parametrize("seed", range(3))
def test_it_accepts_decorrelated_jitter(seed):
    verdict = judged(decorrelated, seed=seed)
    assert verdict.status == "pass", verdict.message


@pytest.mark.parametrize("seed", range(3))
def test_it_accepts_a_proportional_spread_of_ten_percent(seed):
    verdict = judged(PROPORTIONAL, seed=seed)
    assert verdict.status == "pass", verdict.message


def test_it_accepts_jitter_on_a_busy_machine():
    for schedule in (FULL, EQUAL, PROPORTIONAL, decorrelated):
        verdict = judged(schedule, noise=bursty, seed=7)
        assert verdict.status == "pass", verdict.message


def test_it_accepts_a_cap_on_the_waits():
    capped = lambda rng: (rng.uniform(0.05, 0.1), min(0.15, rng.uniform(0.1, 0.2)))  # noqa: E731
    assert judged(capped).status == "pass"


def test_a_fixed_schedule_fails():
    verdict = judged(FIXED)
    assert verdict.status == "fail"
    assert "same in every run" in verdict.message
    assert "at least 10% of each wait" in verdict.message


def test_a_fixed_schedule_fails_even_with_large_machine_noise_in_the_control():
    _, control = backoff_obs(FIXED, noise=bursty, n=9)
    first, second = r.control_deviations(control)
    late = [d for d in first + second if d > 0.02]
    assert len(late) >= 5  # the control saw the machine's bursts too
    verdict = judged(FIXED, noise=bursty)
    assert verdict.status == "fail", verdict.message
    assert "same in every run" in verdict.message


def test_noise_too_large_to_decide_is_our_error_never_a_verdict():
    verdict = judged(FIXED, noise=swamped)
    assert verdict.status == "error"
    assert "not your fault" in verdict.message
    assert r.judge_backoff(*backoff_obs(FIXED, noise=swamped), final=False).status == "more"


def test_gaps_that_do_not_grow_on_average_fail():
    flat = lambda rng: (0.05 + rng.uniform(0, 0.05), 0.05 + rng.uniform(0, 0.05))  # noqa: E731
    verdict = judged(flat)
    assert verdict.status == "fail"
    assert "did not grow" in verdict.message


def test_too_few_attempts_to_measure_backoff_fail_naming_the_cause():
    runs = [{"attempt_times": [1.0]}, {"attempt_times": [2.0]}, {"attempt_times": [3.0, 3.1]}]
    verdict = r.judge_backoff(runs, [])
    assert verdict.status == "fail"
    assert "[1, 1, 2] upstream attempts" in verdict.message
    assert "must make 3" in verdict.message


def test_without_a_control_jitter_is_never_called_random():
    runs, _ = backoff_obs(EQUAL)
    assert r.judge_backoff(runs, [], final=True).status == "error"


def test_the_smallest_jitter_quantile_grows_with_the_runs():
    quantiles = [r.uniform_low_spread_quantile(n) for n in (9, 18, 27, 45)]
    assert quantiles == sorted(quantiles)
    assert 0.02 < quantiles[0] < 0.1 < quantiles[-1] < 0.4


# Circuit breaker: the probe's observations for a breaker with a given cool-down.


def breaker_obs(cooldown_s, *, min_open_s=5.0, max_open_s=30.0, leak_at=None, answer=None):
    failing = [call(503, calls=3) for _ in range(5)] + [call(503, calls=0), call(503, calls=0)]
    during = [call(503, calls=0) for _ in range(9)]
    if leak_at is not None:
        during[3] = call(503, calls=1)
    recovery, after = [], []
    t = min_open_s - 0.3
    while t <= max_open_s + 1.0:
        if t >= cooldown_s:
            recovery.append(answer or live())
            after.append(round(t, 3))
            break
        recovery.append(call(503, calls=0))
        t += 0.5
    if leak_at is not None:
        after.insert(0, leak_at)
    return {
        "min_open_s": min_open_s,
        "max_open_s": max_open_s,
        "opened": True,
        "failing": failing,
        "t_open": 1000.0,
        "during": during,
        "recovery": recovery,
        "upstream_after_open_s": after,
    }


@pytest.mark.parametrize("cooldown_s", [5.0, 7.0, 12.0, 20.0, 29.5])
def test_it_accepts_any_cool_down_from_min_open_s_to_max_open_s(cooldown_s):
    verdict = r.judge_circuit_breaker(breaker_obs(cooldown_s), price=PRICE)
    assert verdict.status == "pass", verdict.message
    assert verdict.evidence["retried_after_s"] >= cooldown_s


def test_a_breaker_that_lets_a_call_through_during_min_open_s_fails():
    verdict = r.judge_circuit_breaker(breaker_obs(7.0, leak_at=2.4), price=PRICE)
    assert verdict.status == "fail"
    assert "2.4 s later a request reached the upstream" in verdict.message


def test_a_breaker_that_never_retries_within_max_open_s_fails():
    verdict = r.judge_circuit_breaker(breaker_obs(45.0), price=PRICE)
    assert verdict.status == "fail"
    assert "within 30 s" in verdict.message


def test_a_breaker_that_retries_but_does_not_recover_fails():
    verdict = r.judge_circuit_breaker(breaker_obs(6.0, answer=call(503, calls=1)), price=PRICE)
    assert verdict.status == "fail"
    assert "expected 200 live" in verdict.message


def test_a_breaker_that_never_opens_fails():
    obs = {"opened": False, "failing": [call(503, calls=3) for _ in range(8)], "min_open_s": 5.0}
    verdict = r.judge_circuit_breaker(obs, price=PRICE)
    assert verdict.status == "fail"
    assert "expected the breaker to open" in verdict.message


# Health, timeout, fallback, contract, retries.


def health_call(status, **extra):
    return call(status, {"status": "ok"} if status == 200 else {"status": "down"}, path="/health", **extra)


def test_health_accepts_a_result_cached_for_a_moment():
    down_calls = [health_call(200), health_call(200), health_call(503)]  # polled: the cache expired after ~1 s
    obs = {"max_stale_s": 2.0, "up": health_call(200), "down_calls": down_calls, "down": down_calls[-1]}
    obs.update({"back_calls": [health_call(503), health_call(200)], "back": health_call(200)})
    assert r.judge_health(obs).status == "pass"


def test_health_that_stays_ok_while_the_upstream_is_down_fails():
    obs = {"max_stale_s": 2.0, "up": health_call(200), "down": health_call(200), "back": health_call(200)}
    verdict = r.judge_health(obs)
    assert verdict.status == "fail"
    assert "while the upstream was down for 2 s; expected 503" in verdict.message


def test_timeout_accepts_an_answer_just_within_the_bound_and_rejects_a_late_one():
    slow = call(503, {"error": "x"}, calls=3, elapsed=3.1)
    assert r.judge_timeout({"slow": slow, "delay_ms": 5000}, bound_s=3.0).status == "pass"  # 0.3 s for the machine
    slow = call(503, {"error": "x"}, calls=3, elapsed=4.0)
    assert r.judge_timeout({"slow": slow, "delay_ms": 5000}, bound_s=3.0).status == "fail"


def test_fallback_accepts_the_cache_and_a_quick_503():
    obs = {
        "warm": live(),
        "cached": call(200, {"price": PRICE, "source": "cache"}, calls=0),
        "uncached": call(503, {"error": "down"}, calls=0),
    }
    assert r.judge_fallback(obs, price=PRICE, bound_s=3.0).status == "pass"


def test_contract_accepts_a_503_or_the_cache_and_rejects_a_passed_on_price():
    bad = {name: call(503, {"error": "bad data"}) for name in ("not_json", "negative_price", "string_price")}
    obs = {"baseline": live(), "cases": bad, "cached_case": call(200, {"price": PRICE, "source": "cache"})}
    assert r.judge_contract(obs, price=PRICE).status == "pass"
    obs["cases"]["string_price"] = call(200, {"price": "twelve", "source": "live"})
    assert r.judge_contract(obs, price=PRICE).status == "fail"


def test_retries_reject_more_attempts_than_allowed():
    obs = {"transient": live(calls=3), "persistent": call(503, {"error": "x"}, calls=5)}
    verdict = r.judge_retries(obs, price=PRICE, max_attempts=3)
    assert verdict.status == "fail"
    assert "at most 3 attempts" in verdict.message


# --- 2. attribution ------------------------------------------------------------------------------------------

LIMITS = SandboxLimits(cpus=1.0, memory_mb=256, wall_seconds=180, pids=128, output_bytes=65536, scratch_mb=64)


class FakeBox:
    """Stands in for a Sandbox: records commands; the probe's exec returns `probe`, its --counters mode
    `counters` (the sandbox's own counters after the probe)."""

    def __init__(self, probe: ExecResult, counters: dict | None = None) -> None:
        self.probe = probe
        self.counters = counters
        self.commands: list[tuple[list[str], str]] = []

    def exec(self, argv, *, user, timeout_s, **kwargs):
        self.commands.append((argv, user))
        if user == "grader" and "--counters" in argv:
            return ExecResult(0, json.dumps(self.counters).encode() if self.counters else b"", b"", False, 0.01, False)
        if user == "grader" and "/opt/shipshape/probe.py" in argv:
            return self.probe
        return ExecResult(0, b"", b"", False, 0.01, False)


def pressure(pids_refused=0, oom_kills=0):
    return {"pids_refused": pids_refused, "oom_kills": oom_kills, "cpu_ns": 10**8, "throttled_ns": 0, "t": 10**10}


def context(box):
    return GradingContext(
        sandbox=box, submission_dir=Path("/x"), grader_dir=Path("/y"), limits=LIMITS, deadline=time.monotonic() + 170
    )


def probe_result(doc=None, *, stdout=b"", stderr=b"", code=0, timed_out=False):
    out = json.dumps(doc).encode() if doc is not None else stdout
    return ExecResult(code, out, stderr, timed_out, 1.0, False)


def outcome(probe, counters_after=None, check=None):
    box = FakeBox(probe, counters_after)
    check = check or r.Retries(check_id="retries", args={}, points=6)
    return check.run(context(box)), box


START = b'{"pressure_start": {"pids_refused": 0, "oom_kills": 0, "cpu_ns": 0, "throttled_ns": 0, "t": 0}}\n'


def test_the_service_is_started_only_once_the_stub_holds_its_port():
    _, box = outcome(probe_result({"started": False}))
    assert len(box.commands) == 3
    (launch, user), (probe, grader), (kill, _) = box.commands
    assert user == "learner" and grader == "grader"
    assert "--await-port" in launch[-1] and launch[-1].index("--await-port") < launch[-1].index("service.py")
    assert kill == ["true"]


def test_a_service_that_never_listened_is_the_learners_fail():
    result, _ = outcome(probe_result({"started": False, "service_stderr": "SyntaxError: invalid syntax"}))
    assert result.status == "fail"
    assert "never started listening on 127.0.0.1:$PORT within 5 s" in result.message
    assert "SyntaxError" in result.evidence["stderr"]


def test_a_service_that_wanted_the_upstreams_port_is_told_whose_port_it_is():
    doc = {"started": False, "service_stderr": "OSError: [Errno 98] Address already in use"}
    result, _ = outcome(probe_result(doc))
    assert result.status == "fail"
    assert "UPSTREAM_URL's port is the grader's" in result.message
    taken, _ = outcome(probe_result({"started": False, "stub_port_taken": True}))
    assert taken.status == "fail"
    assert "listened on the port of UPSTREAM_URL, which belongs to the grader's upstream" in taken.message


def test_a_probe_that_printed_nothing_is_our_error_and_shows_no_traceback():
    stderr = START + b"Traceback (most recent call last):\n  File probe.py\nKeyError: 'x'\n"
    result, _ = outcome(probe_result(stderr=stderr, code=1), pressure())
    assert result.status == "error"
    assert "Traceback" not in result.message and "KeyError" not in result.message
    assert "KeyError" in result.evidence["probe_stderr"]


def test_a_probe_that_timed_out_is_our_error():
    result, _ = outcome(probe_result(stdout=b"", stderr=START, code=124, timed_out=True), pressure())
    assert result.status == "error"


def test_a_probe_that_timed_out_while_the_service_kept_the_cpu_busy_is_its_fail():
    busy_after = {**pressure(), "cpu_ns": 39 * 10**9, "t": 40 * 10**9}
    result, _ = outcome(probe_result(stdout=b"", stderr=START, code=124, timed_out=True), busy_after)
    assert result.status == "fail"
    assert "kept the sandbox's CPU busy while it was checked" in result.message


def test_a_service_that_ran_out_of_memory_while_probed_is_a_named_fail():
    result, _ = outcome(probe_result(stderr=START, code=137), pressure(oom_kills=1))
    assert result.status == "fail"
    assert "ran out of memory" in result.message and "256 MB" in result.message


def test_a_service_that_exhausted_the_process_limit_is_a_named_fail():
    doc = {"started": True, "observations": {}, "pressure": {"start": {"pids_refused": 3}, "end": {"pids_refused": 9}}}
    result, _ = outcome(probe_result(doc))
    assert result.status == "fail"
    assert "process limit (128" in result.message


def test_a_probe_that_reports_its_own_failure_is_our_error_without_the_traceback():
    doc = {"started": True, "error": "KeyError: 'x'", "traceback": "Traceback (most recent call last): ..."}
    result, _ = outcome(probe_result(doc))
    assert result.status == "error"
    assert "Traceback" not in result.message and "KeyError" not in result.message
    assert "Traceback" in result.evidence["probe_traceback"]


def test_out_of_time_with_late_answers_is_the_services_fail_and_without_them_ours():
    late = {"started": True, "out_of_time": True, "observations": {"transient": call(200, elapsed=5.9)}}
    result, _ = outcome(probe_result(late))
    assert result.status == "fail"
    assert "expected every answer within 3 s" in result.message
    in_time = {"started": True, "out_of_time": True, "observations": {"transient": call(200, elapsed=0.2)}}
    assert outcome(probe_result(in_time))[0].status == "error"


def test_an_answer_that_never_came_fails_before_the_judge():
    doc = {
        "started": True,
        "observations": {"transient": {"path": "/quote?sku=x", "error": "no answer", "elapsed_s": 6}},
    }
    result, _ = outcome(probe_result(doc))
    assert result.status == "fail"
    assert "got no answer (no answer) after 6.00 s" in result.message


def counters(t_s, cpu_s, **extra):
    return {"t": int(t_s * 1e9), "cpu_ns": int(cpu_s * 1e9), "throttled_ns": 0, **extra}


def test_out_of_time_while_the_service_kept_the_cpu_busy_is_its_fail():
    busy = {"start": counters(0, 0), "end": counters(40, 39.5)}
    doc = {"started": True, "out_of_time": True, "observations": {"transient": call(200)}, "pressure": busy}
    result, _ = outcome(probe_result(doc))
    assert result.status == "fail"
    assert "kept the sandbox's CPU busy" in result.message and "99%" in result.message
    idle = {"start": counters(0, 0), "end": counters(40, 1.0)}
    assert outcome(probe_result({**doc, "pressure": idle}))[0].status == "error"


class RoundsBox(FakeBox):
    """Answers each backoff round with the next prepared probe document."""

    def __init__(self, docs):
        super().__init__(probe_result({}))
        self.docs = list(docs)

    def exec(self, argv, *, user, timeout_s, **kwargs):
        if user == "grader" and "/opt/shipshape/probe.py" in argv:
            self.probe = probe_result(self.docs.pop(0))
        return super().exec(argv, user=user, timeout_s=timeout_s, **kwargs)


def backoff_round(schedule, seed, cpu_s=0.3):
    runs, control = backoff_obs(schedule, n=9, seed=seed)
    pressure = {"start": counters(0, 0), "end": counters(6, cpu_s)}
    return {"started": True, "observations": {"runs": runs, "control": control}, "pressure": pressure}


def test_backoff_measures_more_rounds_until_it_can_decide():
    docs = [backoff_round(FULL, seed) for seed in range(5)]
    box = RoundsBox(docs)
    result = r.Backoff(check_id="backoff", args={}, points=6).run(context(box))
    assert result.status == "pass", result.message
    assert result.evidence["rounds"] == 5 - len(box.docs) > 1
    probes = [argv for argv, user in box.commands if user == "grader"]
    assert len(probes) == result.evidence["rounds"]


def test_backoff_of_a_service_that_keeps_the_cpu_busy_is_its_fail_not_our_noise():
    # Busy waits look random (or hide whether they are): the measurement is the service's doing.
    box = RoundsBox([backoff_round(EQUAL, 1, cpu_s=5.9)])
    result = r.Backoff(check_id="backoff", args={}, points=6).run(context(box))
    assert result.status == "fail"
    assert "kept the sandbox's CPU busy while the check timed its retries" in result.message
    # A verdict the noise cannot fake stands.
    box = RoundsBox([backoff_round(FIXED, 1, cpu_s=5.9)])
    result = r.Backoff(check_id="backoff", args={}, points=6).run(context(box))
    assert "same in every run" in result.message


def test_the_probes_deadline_fits_the_slowest_legal_service():
    backoff = r.Backoff(check_id="backoff", args={"runs": 9}, points=6)
    # nine runs whose every answer takes the 3 s the contract allows, each replayed by the control
    assert backoff.deadline_s() >= 9 * (3.0 + 3.0)
    breaker = r.CircuitBreaker(check_id="cb", args={"max_open_s": 30}, points=8)
    assert breaker.deadline_s() >= 8 * 3.0 + 30
    assert r.CircuitBreaker.validate_args({"min_open_s": 10, "max_open_s": 5})


# --- 3. the probe and the stub, with local processes -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_probe(root: Path, scenario: str, params: dict | None = None, *, command=None, **spec) -> dict:
    """The probe's document for one scenario against the service in `root`, started as the sandbox does: only
    once the stub holds its port, with stdout and stderr in files the probe reads."""
    port, stub_port = free_port(), free_port()
    log, err = root / ".service.log", root / ".service.err"
    full = {
        "scenario": scenario,
        "service_port": port,
        "stub_port": stub_port,
        "params": params or {},
        "service_log": str(log),
        "service_err": str(err),
        "learner_root": str(root),
        **spec,
    }
    probe = subprocess.Popen(
        [sys.executable, str(PROBE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    probe.stdin.write(json.dumps(full).encode())
    probe.stdin.close()
    argv = " ".join(command or [sys.executable, "service.py"])
    launcher = f"{sys.executable} -I -S {PROBE} --await-port {stub_port} 20 && exec {argv}"
    env = {"PORT": str(port), "UPSTREAM_URL": f"http://127.0.0.1:{stub_port}", "PATH": "/usr/bin:/bin"}
    # A session of its own: the service runs in a subshell of `sh`, and killing `sh` alone would leave it running.
    service = subprocess.Popen(
        ["sh", "-c", f"({launcher}) >{log} 2>{err} </dev/null"], cwd=root, env=env, start_new_session=True
    )
    try:
        out = probe.stdout.read()
        probe.wait(timeout=120)
    finally:
        os.killpg(service.pid, signal.SIGKILL)
        service.wait()
    return json.loads(out)


def processes_in(root: Path) -> list[int]:
    """Pids of this user's processes whose working directory is `root` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == root:
                found.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return found


def test_the_probe_harness_leaves_no_service_running(tmp_path):
    root = write_service(tmp_path, CHATTY)
    run_probe(root, "health", output_cap=20_000)
    deadline = time.monotonic() + 10
    while processes_in(root.resolve()) and time.monotonic() < deadline:
        time.sleep(0.05)  # SIGKILL is delivered at once, but the kernel reaps the process asynchronously
    assert processes_in(root.resolve()) == []


def run_local(tmp_path: Path, variant: str, scenario: str, params: dict | None = None) -> tuple[dict, str]:
    """(probe document, service stdout) for one scenario against a variant of the quote-service reference."""
    root = materialise(variant, tmp_path / f"{variant}-{scenario}")
    doc = run_probe(root, scenario, params)
    assert doc["started"], doc
    return doc, doc["service_stdout"]


def write_service(tmp_path: Path, source: str) -> Path:
    root = tmp_path / "svc"
    root.mkdir(exist_ok=True)
    (root / "service.py").write_text(textwrap.dedent(source))
    return root


def test_the_probe_reports_a_service_that_never_listens(tmp_path):
    root = write_service(tmp_path, "import sys\nsys.exit('no port for you')\n")
    doc = run_probe(root, "retries", startup_timeout_s=0.5)
    assert doc["started"] is False and "observations" not in doc
    assert "no port for you" in doc["service_stderr"]


def test_the_probe_reports_a_stub_port_someone_else_holds(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        spec = {"scenario": "retries", "service_port": free_port(), "stub_port": holder.getsockname()[1]}
        out = subprocess.run([sys.executable, str(PROBE), json.dumps(spec)], capture_output=True, timeout=30)
    finally:
        holder.close()
    doc = json.loads(out.stdout)
    assert doc["stub_port_taken"] is True and doc["started"] is False


def test_the_stub_keeps_its_port_while_it_is_down():
    port = free_port()
    stub = Stub(port)
    stub.start()
    try:
        stub.set_scenario([{"down": True}])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
        other = socket.socket()
        with pytest.raises(OSError):  # a plain bind (no SO_REUSEPORT by the same user) cannot have it
            other.bind(("127.0.0.1", port))
        other.close()
        stub.set_scenario([])
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        stub.close()


def test_await_port_returns_once_the_port_listens_and_gives_up_otherwise():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        port = holder.getsockname()[1]
        assert subprocess.run([sys.executable, str(PROBE), "--await-port", str(port), "5"], timeout=30).returncode == 0
    finally:
        holder.close()
    assert subprocess.run([sys.executable, str(PROBE), "--await-port", str(port), "0.3"], timeout=30).returncode == 1


CHATTY = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        for i in range(2000):
            print(json.dumps({"event": "noise", "i": i, "pad": "\\u00e9" * 100}))
        sys.stdout.flush()
        body = b'{"status": "ok"}'
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def test_the_probe_output_fits_the_cap_whatever_the_service_prints(tmp_path):
    root = write_service(tmp_path, CHATTY)
    cap = 20_000
    doc = run_probe(root, "health", output_cap=cap)
    text = json.dumps(doc)
    assert len(text) <= cap
    assert doc["service_stdout_skipped"] > 0
    lines = doc["service_stdout"].splitlines()
    assert lines and all(json.loads(line)["event"] == "noise" for line in lines)  # whole lines, from the end


METRICS_SERVICE = """
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
TEXT = ("# TYPE other_total counter\\n" + "".join(f'other_total{{n="{i}"}} 1\\n' for i in range(20000))
        + "# TYPE quote_requests_total counter\\nquote_requests_total{status=\\"200\\"} 0\\n")
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        body = TEXT.encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def test_the_probe_keeps_only_the_labs_metric_families_of_a_large_metrics_page(tmp_path):
    root = write_service(tmp_path, METRICS_SERVICE)
    doc = run_probe(root, "metrics", output_cap=65536)
    before = doc["observations"]["before"]
    assert before["body_bytes"] > 300_000
    assert before["body"] == '# TYPE quote_requests_total counter\nquote_requests_total{status="200"} 0\n'


LATE_LOGGER = """
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        rid = self.headers.get("X-Request-ID", "x")
        body = b'{}'
        self.send_response(404); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(body)
        def later():
            time.sleep(0.4)
            print(json.dumps({"request_id": rid, "event": "late"}), flush=True)
        threading.Thread(target=later).start()
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"""


def test_the_probe_waits_for_log_lines_written_just_after_the_answer(tmp_path):
    root = write_service(tmp_path, LATE_LOGGER)
    doc = run_probe(root, "json_logs")
    ids = [c["sent_request_id"] for c in doc["observations"]["calls"]]
    assert ids[-1] in doc["service_stdout"]
    assert doc["observations"]["log_wait_s"] > 0.1


def test_retries_pass_for_the_reference_and_fail_without_them(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "retries")
    assert r.judge_retries(doc["observations"], price=PRICE, max_attempts=3).status == "pass"
    assert doc["observations"]["persistent"]["upstream_calls"] == 3
    doc, _ = run_local(tmp_path, "broken-retries", "retries")
    verdict = r.judge_retries(doc["observations"], price=PRICE, max_attempts=3)
    assert verdict.status == "fail"
    assert "after 1 upstream call(s)" in verdict.message


def test_backoff_passes_with_jitter_and_fails_without(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "backoff", {"runs": 18})
    obs = doc["observations"]
    assert len(obs["control"]) == 18
    verdict = r.judge_backoff(obs["runs"], obs["control"])
    assert verdict.status == "pass", verdict.message
    doc, _ = run_local(tmp_path, "broken-backoff-growth", "backoff", {"runs": 9})
    obs = doc["observations"]
    verdict = r.judge_backoff(obs["runs"], obs["control"])
    assert verdict.status == "fail"
    assert "did not grow" in verdict.message


def test_timeout_cuts_off_a_slow_upstream_and_fails_without_a_timeout(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "timeout", {"delay_ms": 5000, "bound_s": 3.0})
    assert r.judge_timeout(doc["observations"], bound_s=3.0).status == "pass"
    doc, _ = run_local(tmp_path, "broken-timeout", "timeout", {"delay_ms": 5000, "bound_s": 3.0})
    verdict = r.judge_timeout(doc["observations"], bound_s=3.0)
    assert verdict.status == "fail"
    assert "within 3.0 s" in verdict.message


def test_fallback_serves_the_cache_and_fails_without_one(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "fallback")
    assert r.judge_fallback(doc["observations"], price=PRICE, bound_s=3.0).status == "pass"
    doc, _ = run_local(tmp_path, "broken-fallback", "fallback")
    verdict = r.judge_fallback(doc["observations"], price=PRICE, bound_s=3.0)
    assert verdict.status == "fail"
    assert '"source": "cache"' in verdict.message


def test_contract_rejects_malformed_prices_and_fails_when_they_are_passed_on(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "contract")
    assert r.judge_contract(doc["observations"], price=PRICE).status == "pass"
    doc, _ = run_local(tmp_path, "broken-contract", "contract")
    verdict = r.judge_contract(doc["observations"], price=PRICE)
    assert verdict.status == "fail"
    assert "negative_price" in verdict.message


def test_health_follows_the_upstream_and_fails_when_always_ok(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "health")
    assert r.judge_health(doc["observations"]).status == "pass"
    doc, _ = run_local(tmp_path, "broken-health", "health", {"max_stale_s": 0.5})
    verdict = r.judge_health(doc["observations"])
    assert verdict.status == "fail"
    assert "while the upstream was down for 0.5 s; expected 503" in verdict.message


@pytest.mark.slow
def test_circuit_breaker_opens_stays_open_and_recovers(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "circuit_breaker", {"min_open_s": 5.0, "max_open_s": 30.0})
    obs = doc["observations"]
    assert r.judge_circuit_breaker(obs, price=PRICE).status == "pass"
    assert [f["upstream_calls"] for f in obs["failing"]] == [3, 3, 3, 3, 3, 0, 0]
    assert obs["during"] and all(d["upstream_calls"] == 0 for d in obs["during"])
    assert 5.0 <= obs["upstream_after_open_s"][0] < 6.5


def test_circuit_breaker_fails_when_the_breaker_never_opens(tmp_path):
    doc, _ = run_local(tmp_path, "broken-circuit-breaker", "circuit_breaker", {"min_open_s": 5.0})
    verdict = r.judge_circuit_breaker(doc["observations"], price=PRICE)
    assert verdict.status == "fail"
    assert "expected the breaker to open" in verdict.message
