"""Scenario driver for service labs. Trusted: runs as the grader user inside the sandbox.

It hosts the fault-injecting upstream (upstream_stub.Stub) in its own process, so nothing else can reprogram
it, drives the learner's service (already started by the check as the learner, listening on 127.0.0.1) through
one named scenario, and prints ONE JSON document of observations on stdout. It never judges: pass or fail is
decided on the host by the check classes from these observations.

Input: a JSON document on stdin (or as the first argument):
  {"scenario": "retries", "service_port": 8000, "stub_port": 9100, "startup_timeout_s": 5, "params": {...}}
Output: {"scenario": ..., "started": bool, "startup_s": float, "observations": {...}, "stub_log": [...]}
Standard library only.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upstream_stub import Stub

BODY_CAP = 4096
METRICS_CAP = 200_000
OK = []  # an empty scenario: the upstream answers normally
FAIL_503 = [{"status": 503, "count": "inf"}]
DOWN = [{"down": True}]


class Driver:
    def __init__(self, *, service_port: int, stub: Stub) -> None:
        self.port = service_port
        self.stub = stub

    def call(self, path: str, *, request_id: str | None = None, timeout_s: float = 6.0) -> dict[str, Any]:
        """One GET against the service, with everything observable about it."""
        headers = {"X-Request-ID": request_id} if request_id else {}
        n_before = len(self.stub.log())
        started = time.monotonic()
        obs: dict[str, Any] = {"path": path, "sent_request_id": request_id, "t_start": started}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            raw = resp.read(METRICS_CAP if path.startswith("/metrics") else BODY_CAP)
            obs["status"] = resp.status
            obs["headers"] = {k.lower(): v for k, v in resp.getheaders()}
            obs["body"] = raw.decode("utf-8", "replace")
            try:
                obs["json"] = json.loads(raw)
            except (ValueError, RecursionError):
                obs["json"] = None
        except TimeoutError:
            obs["error"] = f"no answer within {timeout_s} s"
        except (OSError, http.client.HTTPException) as exc:
            obs["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        obs["elapsed_s"] = round(time.monotonic() - started, 4)
        obs["upstream_calls"] = len(self.stub.log()) - n_before
        return obs


def sku() -> str:
    """A fresh random SKU: a service cannot recognise the probe's requests by their names."""
    return uuid.uuid4().hex[:10]


def wait_listening(port: int, timeout_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return round(time.monotonic() - started, 3)
        except OSError:
            time.sleep(0.05)
    return None


# --- scenarios: each returns observations, never a verdict --------------------------------------------------


def scenario_retries(d: Driver, p: dict[str, Any]) -> dict[str, Any]:
    d.stub.set_scenario([{"status": 503, "count": 2}])
    transient = d.call(f"/quote?sku={sku()}")
    d.stub.set_scenario(FAIL_503)
    persistent = d.call(f"/quote?sku={sku()}")
    return {"transient": transient, "persistent": persistent}


def scenario_backoff(d: Driver, p: dict[str, Any]) -> dict[str, Any]:
    runs = []
    for _ in range(int(p.get("runs", 4))):
        d.stub.set_scenario([{"status": 503, "count": 2}])
        n0 = len(d.stub.log())
        obs = d.call(f"/quote?sku={sku()}")
        obs["attempt_times"] = [r["t"] for r in d.stub.log()[n0:]]
        runs.append(obs)
    return {"runs": runs}


def scenario_timeout(d: Driver, p: dict[str, Any]) -> dict[str, Any]:
    delay_ms = int(p.get("delay_ms", 5000))
    d.stub.set_scenario([{"delay_ms": delay_ms, "count": "inf"}])
    slow = d.call(f"/quote?sku={sku()}", timeout_s=float(p.get("bound_s", 3.0)) + 3.0)
    return {"slow": slow, "delay_ms": delay_ms}


def scenario_fallback(d: Driver, p: dict[str, Any]) -> dict[str, Any]:
    cached_sku = sku()
    d.stub.set_scenario(OK)
    warm = d.call(f"/quote?sku={cached_sku}")
    out: dict[str, Any] = {"warm": warm}
    if "upstream_price_2" in p:
        # The price moves while the upstream is healthy: a service that always replays its first answer
        # (never calling the upstream again) must not pass as one that caches the last good price.
        d.stub.set_scenario([{"price": p["upstream_price_2"], "count": "inf"}])
        out["warm_again"] = d.call(f"/quote?sku={cached_sku}")
    d.stub.set_scenario(DOWN)
    out["cached"] = d.call(f"/quote?sku={cached_sku}")
    out["uncached"] = d.call(f"/quote?sku={sku()}")
    d.stub.set_scenario(OK)
    return out


def scenario_circuit_breaker(d: Driver, p: dict[str, Any]) -> dict[str, Any]:
    max_requests = int(p.get("max_requests", 8))
    min_open_s = float(p.get("min_open_s", 5.0))
    d.stub.set_scenario(FAIL_503)
    failing = []
    for _ in range(max_requests):
        obs = d.call(f"/quote?sku={sku()}")
        failing.append(obs)
        # Two requests in a row that did not reach the upstream: the breaker is open.
        if len(failing) >= 2 and failing[-1]["upstream_calls"] == 0 and failing[-2]["upstream_calls"] == 0:
            break
    log = d.stub.log()
    opened = len(failing) >= 2 and failing[-1]["upstream_calls"] == 0 and failing[-2]["upstream_calls"] == 0
    result: dict[str, Any] = {"failing": failing, "opened": opened, "min_open_s": min_open_s}
    if not opened or not log:
        return result
    t_open = log[-1]["t"]  # the last failed attempt: the breaker opened right after it
    during = []
    while time.monotonic() < t_open + min_open_s - 0.6:
        during.append(d.call(f"/quote?sku={sku()}"))
        time.sleep(0.8)
    d.stub.set_scenario(OK)
    time.sleep(max(0.0, t_open + min_open_s + float(p.get("grace_s", 1.0)) - time.monotonic()))
    after = d.call(f"/quote?sku={sku()}")
    result.update({"t_open": t_open, "during": during, "after": after})
    return result


def scenario_contract(d: Driver, p: dict[str, Any]) -> dict[str, Any]:
    d.stub.set_scenario(OK)
    good_sku = sku()
    baseline = d.call(f"/quote?sku={good_sku}")
    bad = {
        "not_json": {"body": "<html>oops</html>"},
        "negative_price": {"price": -1},
        "string_price": {"price": "twelve"},
        "missing_price": {"json": {"sku": "x"}},
    }
    cases = {}
    for name, step in bad.items():
        d.stub.set_scenario([{**step, "count": "inf"}])
        cases[name] = d.call(f"/quote?sku={sku()}")
    d.stub.set_scenario([{"price": -1, "count": "inf"}])
    cached_case = d.call(f"/quote?sku={good_sku}")
    d.stub.set_scenario(OK)
    return {"baseline": baseline, "cases": cases, "cached_case": cached_case}


def scenario_health(d: Driver, p: dict[str, Any]) -> dict[str, Any]:
    d.stub.set_scenario(OK)
    up = d.call("/health")
    d.stub.set_scenario(DOWN)
    down = d.call("/health")
    d.stub.set_scenario(OK)
    back = d.call("/health")
    return {"up": up, "down": down, "back": back}


def scenario_json_logs(d: Driver, p: dict[str, Any]) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    d.stub.set_scenario(OK)
    calls = [d.call(f"/quote?sku={sku()}", request_id=f"log-{tag}-1"), d.call("/health", request_id=f"log-{tag}-2")]
    d.stub.set_scenario(FAIL_503)
    calls.append(d.call(f"/quote?sku={sku()}", request_id=f"log-{tag}-3"))
    d.stub.set_scenario(OK)
    calls.append(d.call("/no-such-page", request_id=f"log-{tag}-4"))
    return {"calls": calls}


def scenario_request_id(d: Driver, p: dict[str, Any]) -> dict[str, Any]:
    d.stub.set_scenario(OK)
    given_id = f"rid-{uuid.uuid4().hex[:12]}"
    n0 = len(d.stub.log())
    given = d.call(f"/quote?sku={sku()}", request_id=given_id)
    given["upstream_request_ids"] = [r["headers"].get("x-request-id") for r in d.stub.log()[n0:]]
    n1 = len(d.stub.log())
    generated = d.call(f"/quote?sku={sku()}")
    generated["upstream_request_ids"] = [r["headers"].get("x-request-id") for r in d.stub.log()[n1:]]
    return {"given": given, "generated": generated}


def scenario_metrics(d: Driver, p: dict[str, Any]) -> dict[str, Any]:
    ok_requests = int(p.get("ok_requests", 3))
    d.stub.set_scenario(OK)
    before = d.call("/metrics")
    sent = [d.call(f"/quote?sku={sku()}") for _ in range(ok_requests)]
    # A scrape between healthy and failing traffic: upstream_errors_total must not move without errors.
    mid = d.call("/metrics")
    d.stub.set_scenario(FAIL_503)
    sent.append(d.call(f"/quote?sku={sku()}"))
    d.stub.set_scenario(OK)
    after = d.call("/metrics")
    return {
        "before": before,
        "mid": mid,
        "after": after,
        "sent": [{"status": s.get("status"), "upstream_calls": s.get("upstream_calls")} for s in sent],
        "failed_upstream_calls": sent[-1].get("upstream_calls", 0),
    }


SCENARIOS = {
    "retries": scenario_retries,
    "backoff": scenario_backoff,
    "timeout": scenario_timeout,
    "fallback": scenario_fallback,
    "circuit_breaker": scenario_circuit_breaker,
    "contract": scenario_contract,
    "health": scenario_health,
    "json_logs": scenario_json_logs,
    "request_id": scenario_request_id,
    "metrics": scenario_metrics,
}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    name = spec["scenario"]
    if name not in SCENARIOS:
        return {"scenario": name, "error": f"unknown scenario; known: {sorted(SCENARIOS)}"}
    params = spec.get("params") or {}
    stub = Stub(int(spec["stub_port"]), price=float(params.get("upstream_price", 12.5)))
    stub.start()
    try:
        startup = wait_listening(int(spec["service_port"]), float(spec.get("startup_timeout_s", 5.0)))
        out: dict[str, Any] = {"scenario": name, "started": startup is not None, "startup_s": startup}
        if startup is None:
            return out
        driver = Driver(service_port=int(spec["service_port"]), stub=stub)
        out["observations"] = SCENARIOS[name](driver, spec.get("params") or {})
        out["stub_log"] = stub.log()
        return out
    finally:
        stub.stop()


def main(argv: list[str]) -> int:
    raw = argv[1] if len(argv) > 1 else sys.stdin.read()
    result = run(json.loads(raw))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
