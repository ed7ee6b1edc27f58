"""Resilience check kinds: the learner's service runs in the sandbox against a fault-injecting upstream.

How evidence is gathered (`run_service_scenario`): the service is started as the learner in the background
(its stdout and stderr go to files in /work), then /opt/shipshape/probe.py runs as the grader user: it hosts
the upstream stub in its own process, drives one scenario and prints its observations as JSON. Afterwards the
service's stdout is read (by the grader, never through a symlink) and every learner process is killed. The
judges below are pure functions from those observations to a verdict, unit-tested without Docker.

Against services that recognise the probe or hard-code answers: every SKU the probe asks for is random, the
upstream's price is random per check run (unless lab.yaml fixes `price`, the quote for the stub's default
12.5), fallback moves the price while the upstream is healthy, and retries and timeout require that the
upstream was actually called.
"""

from __future__ import annotations

import itertools
import json
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

from labs.checks.base import Check, CheckOutcome, GradingContext, register
from labs.checks.repro import read_learner_file

SERVICE_LOG = "/work/.shipshape-service-{n}.log"
SERVICE_ERR = "/work/.shipshape-service-{n}.err"
_ports = itertools.count()


@dataclass
class ScenarioRun:
    started: bool
    observations: dict[str, Any]
    stub_log: list[dict[str, Any]]
    service_stdout: str
    service_stderr: str
    probe_error: str = ""


@dataclass
class Verdict:
    """What a judge decided: status plus the observed-versus-expected message."""

    status: str  # pass | fail | skipped | error
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


def run_service_scenario(
    ctx: GradingContext, *, scenario: str, args: dict[str, Any], params: dict[str, Any] | None = None
) -> ScenarioRun:
    """Start the learner's service, drive one probe scenario against it, collect its output, stop it."""
    box = ctx.sandbox
    n = next(_ports)
    port, stub_port = 18000 + 2 * (n % 500), 18001 + 2 * (n % 500)
    log, err = SERVICE_LOG.format(n=n), SERVICE_ERR.format(n=n)
    command = " ".join(_sh_quote(c) for c in args.get("command", ["python", "service.py"]))
    # The learner's process outlives this exec (kill_leftovers=False); it is killed below.
    box.exec(
        ["sh", "-c", f"{command} >{log} 2>{err} </dev/null &"],
        user="learner",
        timeout_s=10,
        env={"PORT": str(port), "UPSTREAM_URL": f"http://127.0.0.1:{stub_port}"},
        workdir=args.get("workdir", "/work"),
        kill_leftovers=False,
    )
    spec = {
        "scenario": scenario,
        "service_port": port,
        "stub_port": stub_port,
        "startup_timeout_s": float(args.get("startup_timeout_s", 5)),
        "params": params or {},
    }
    try:
        probe = box.exec(
            ["python3", "-I", "/opt/shipshape/probe.py"],
            user="grader",
            timeout_s=ctx.timeout_s(float(args.get("probe_timeout_s", 40))),
            stdin=json.dumps(spec).encode(),
        )
        output = read_learner_file(box, log, limit=ctx.limits.output_bytes)
        errors = read_learner_file(box, err, limit=4000)
    finally:
        box.exec(["true"], user="learner", timeout_s=10)  # kill_leftovers: stops the service and its children
    try:
        doc = json.loads(probe.stdout)
    except (ValueError, RecursionError):
        return ScenarioRun(False, {}, [], "", "", probe_error=(probe.stderr or probe.stdout)[-1000:].decode())
    return ScenarioRun(
        started=bool(doc.get("started")),
        observations=doc.get("observations") or {},
        stub_log=doc.get("stub_log") or [],
        service_stdout=output.decode("utf-8", "replace"),
        service_stderr=errors.decode("utf-8", "replace"),
        probe_error=doc.get("error", ""),
    )


def _sh_quote(word: str) -> str:
    import shlex

    return shlex.quote(str(word))


def describe(call: dict[str, Any]) -> str:
    """One observed answer in words: `503 {"error": ...} after 0.23 s`."""
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


# --- judges ------------------------------------------------------------------------------------------------------


def judge_retries(obs: dict[str, Any], *, price: float, max_attempts: int) -> Verdict:
    transient, persistent = obs["transient"], obs["persistent"]
    if not _is_live_quote(transient, price):
        return Verdict(
            "fail",
            f"with an upstream that answered 503 twice and then a healthy price, /quote answered "
            f"{describe(transient)} after {transient['upstream_calls']} upstream call(s); expected 200 with the live "
            f"price {price} after 3 calls.",
        )
    if not persistent["upstream_calls"]:
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


def backoff_gaps(runs: list[dict[str, Any]]) -> list[list[float]]:
    """Gaps in seconds between consecutive upstream attempts, per run."""
    return [[round(b - a, 4) for a, b in itertools.pairwise(r.get("attempt_times", []))] for r in runs]


def _low_spread(values: list[float]) -> float:
    """Spread of the lower two thirds of the values. Scheduling delays only ever make a sleep longer, and on a
    loaded machine a few gaps come out tens of milliseconds late: measured over all values, a service without
    jitter would look random. Real jitter spreads the low values too; noise leaves them together."""
    ordered = sorted(values)
    kept = ordered[: max(2, len(ordered) - len(ordered) // 3)]
    return kept[-1] - kept[0]


def judge_backoff(runs: list[dict[str, Any]], *, growth: float = 1.3, min_spread_s: float = 0.015) -> Verdict:
    gaps = backoff_gaps(runs)
    usable = [g[:2] for g in gaps if len(g) >= 2]
    if len(usable) < 2:
        return Verdict(
            "skipped",
            f"could not measure backoff: the service made {[len(g) + 1 for g in gaps]} attempts per failing call, "
            "and gaps need at least 3 (see the retries check).",
            {"gaps_s": gaps},
        )
    first = [g[0] for g in usable]
    second = [g[1] for g in usable]
    if statistics.mean(second) < growth * statistics.mean(first) or any(b < 0.8 * a for a, b in usable):
        return Verdict(
            "fail",
            f"gaps between retries did not grow: {usable} s (first, second) across runs; expected the second "
            f"gap to be about twice the first (exponential backoff), at least {growth} times on average.",
            {"gaps_s": gaps},
        )
    spreads = [_low_spread(values) for values in (first, second)]
    thresholds = [max(min_spread_s, 0.1 * statistics.median(values)) for values in (first, second)]
    if all(s < t for s, t in zip(spreads, thresholds, strict=True)):
        return Verdict(
            "fail",
            f"the gaps were the same in every run ({usable} s, spread {max(spreads) * 1000:.0f} ms); expected "
            "random jitter so that many clients do not retry in lockstep.",
            {"gaps_s": gaps},
        )
    return Verdict("pass", f"gaps grow and vary between runs: {usable} s", {"gaps_s": gaps})


def judge_timeout(obs: dict[str, Any], *, bound_s: float) -> Verdict:
    slow = obs["slow"]
    if not slow.get("error") and not slow.get("upstream_calls"):
        return Verdict(
            "fail",
            f"/quote answered {describe(slow)} without calling the upstream; expected it to call the (slow) upstream "
            f"and cut the call off within {bound_s:.1f} s.",
        )
    if slow.get("error") or slow.get("elapsed_s", 0) > bound_s:
        return Verdict(
            "fail",
            f"with an upstream that takes {obs['delay_ms'] / 1000:.1f} s to answer, /quote gave "
            f"{describe(slow)}; expected an answer (a cached price or a 503) within {bound_s:.1f} s.",
        )
    return Verdict("pass", f"a slow upstream was cut off: answered {slow.get('status')} in {slow['elapsed_s']:.2f} s")


def judge_fallback(obs: dict[str, Any], *, price: float, bound_s: float, price_2: float | None = None) -> Verdict:
    """price: the quote for the first healthy answer; price_2: for the second, after the upstream's price moved."""
    warm, cached, uncached = obs["warm"], obs["cached"], obs["uncached"]
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
    if not _is_cached_quote(cached, price) or cached.get("elapsed_s", 99) > bound_s:
        return Verdict(
            "fail",
            f"with the upstream down, /quote for a SKU served before answered {describe(cached)}; expected 200 with "
            f'the last good price {price} and "source": "cache" within {bound_s:.1f} s.',
        )
    body = uncached.get("json")
    if uncached.get("status") != 503 or not isinstance(body, dict) or uncached.get("elapsed_s", 99) > bound_s:
        return Verdict(
            "fail",
            f"with the upstream down, /quote for a SKU never served answered {describe(uncached)}; expected 503 with "
            f"a JSON error body within {bound_s:.1f} s.",
        )
    return Verdict("pass", "served the cached price marked as cache, and a quick 503 when nothing was cached")


def judge_circuit_breaker(obs: dict[str, Any], *, price: float) -> Verdict:
    failing = obs["failing"]
    calls = [f["upstream_calls"] for f in failing]
    if not obs.get("opened"):
        return Verdict(
            "fail",
            f"the upstream kept failing and {len(failing)} requests made {calls} upstream calls each; expected the "
            "breaker to open after 5 failed calls, so later requests make 0 calls.",
        )
    during = obs.get("during", [])
    leaked = [d["upstream_calls"] for d in during if d["upstream_calls"]]
    if leaked:
        return Verdict(
            "fail",
            f"while the breaker should be open (less than {obs['min_open_s']:.0f} s after it opened) requests still "
            f"reached the upstream ({sum(leaked)} calls); expected none during the cool-down.",
        )
    after = obs.get("after") or {}
    if not after.get("upstream_calls") or not _is_live_quote(after, price):
        return Verdict(
            "fail",
            f"after the cool-down, with the upstream healthy again, /quote answered {describe(after)} with "
            f"{after.get('upstream_calls', 0)} upstream calls; expected the breaker to try again and answer 200 live.",
        )
    return Verdict(
        "pass",
        f"opened after {calls.index(0)} failing requests, no calls for {obs['min_open_s']:.0f} s, then recovered",
        {"upstream_calls_per_request": calls},
    )


def judge_contract(obs: dict[str, Any], *, price: float) -> Verdict:
    if not _is_live_quote(obs["baseline"], price):
        return Verdict("fail", f"with a healthy upstream /quote answered {describe(obs['baseline'])}; expected 200.")
    cases = {**obs["cases"], "negative_price_with_cache": obs["cached_case"]}
    for name, call in cases.items():
        served_cache = _is_cached_quote(call, price)
        if call.get("error"):
            return Verdict("fail", f"upstream data case {name}: {describe(call)}; expected a JSON 503 (or the cache).")
        if call.get("status") == 200 and not served_cache:
            return Verdict(
                "fail",
                f"upstream data case {name}: /quote answered {describe(call)}; expected the malformed price to be "
                "rejected (503, or the cached good price), never passed on.",
            )
    return Verdict("pass", f"rejected malformed upstream data in {len(cases)} cases")


def judge_health(obs: dict[str, Any]) -> Verdict:
    expected = {"up": 200, "down": 503, "back": 200}
    words = {"up": "reachable", "down": "down", "back": "back again"}
    for phase, status in expected.items():
        call = obs[phase]
        if call.get("status") != status:
            return Verdict(
                "fail", f"/health answered {describe(call)} while the upstream was {words[phase]}; expected {status}."
            )
    up_doc = obs["up"].get("json")
    if not isinstance(up_doc, dict) or up_doc.get("status") != "ok":
        return Verdict("fail", f'/health answered {describe(obs["up"])}; expected the body {{"status": "ok"}}.')
    return Verdict("pass", "/health followed the upstream: 200, 503 while down, 200 again")


# --- check kinds -----------------------------------------------------------------------------------------------


class ServiceCheck(Check):
    """A check that drives one probe scenario; subclasses give the scenario and the judge."""

    default_category = "resilience"
    scenario: str = ""
    hint_text: str = ""

    @classmethod
    def validate_args(cls, args: dict[str, Any]) -> list[str]:
        problems = []
        command = args.get("command", ["python", "service.py"])
        if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
            problems.append("args.command must be a list of strings, e.g. [python, service.py]")
        for key in ("bound_s", "startup_timeout_s", "price", "markup"):
            if key in args and not isinstance(args[key], int | float):
                problems.append(f"args.{key} must be a number")
        return problems

    def params(self) -> dict[str, Any]:
        return {}

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

    def run(self, ctx: GradingContext) -> CheckOutcome:
        prices = self.pick_prices()
        self.price, self.price_2 = prices["quote"], prices["quote_2"]
        params = {**self.params(), **prices["params"]}
        result = run_service_scenario(ctx, scenario=self.scenario, args=self.args, params=params)
        if result.probe_error:
            return self.undecided(f"the grader's probe failed: {result.probe_error}")
        if not result.started:
            return self.undecided(
                f"the service never started listening on $PORT within {self.args.get('startup_timeout_s', 5)} s, "
                "so this could not be checked. Its stderr is below.",
                stderr=ctx.evidence_text(result.service_stderr),
            )
        verdict = self.judge(result)
        # Messages quote what the service answered: learner-controlled text, so cleaned like any output.
        verdict.message = ctx.evidence_text(verdict.message, 2000)
        evidence = {**verdict.evidence, "service_stderr": ctx.evidence_text(result.service_stderr, 1500)}
        if verdict.status == "pass":
            return self.passed(verdict.message, **verdict.evidence)
        if verdict.status == "fail":
            return self.failed(verdict.message, hint=self.hint_text, **evidence)
        return CheckOutcome(verdict.status, verdict.message, evidence=evidence)

    # The expected live quote (and the second one for fallback); set per run by pick_prices().
    price: float = 15.0
    price_2: float | None = None


@register
class Retries(ServiceCheck):
    kind = "resilience.retries"
    scenario = "retries"
    hint_text = "Retry 5xx answers and timeouts, at most 3 attempts in all, and only then give up."

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_retries(run.observations, price=self.price, max_attempts=int(self.args.get("max_attempts", 3)))


@register
class Backoff(ServiceCheck):
    kind = "resilience.backoff"
    scenario = "backoff"
    hint_text = "Wait base * 2**attempt between attempts, with a random part (jitter), e.g. half fixed, half random."

    def params(self) -> dict[str, Any]:
        return {"runs": int(self.args.get("runs", 9))}

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_backoff(run.observations["runs"])


@register
class Timeout(ServiceCheck):
    kind = "resilience.timeout"
    scenario = "timeout"
    hint_text = "Pass timeout= to every upstream call (at most 1 s) and keep retries inside the answer's time budget."

    def params(self) -> dict[str, Any]:
        return {"bound_s": self.bound_s, "delay_ms": int(self.args.get("delay_ms", 5000))}

    @property
    def bound_s(self) -> float:
        return float(self.args.get("bound_s", 3.0))

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_timeout(run.observations, bound_s=self.bound_s)


@register
class Fallback(ServiceCheck):
    kind = "resilience.fallback"
    scenario = "fallback"
    hint_text = 'Keep the last good price per SKU; serve it with "source": "cache" when the upstream fails.'

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_fallback(
            run.observations, price=self.price, price_2=self.price_2, bound_s=float(self.args.get("bound_s", 3.0))
        )


@register
class CircuitBreaker(ServiceCheck):
    kind = "resilience.circuit_breaker"
    scenario = "circuit_breaker"
    hint_text = "Count consecutive failed calls; after 5, skip the upstream for a cool-down of 5 s, then try again."

    def params(self) -> dict[str, Any]:
        return {"min_open_s": float(self.args.get("min_open_s", 5.0)), "max_requests": 8}

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

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_health(run.observations)
