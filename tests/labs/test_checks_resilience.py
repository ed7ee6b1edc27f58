"""Resilience judges on real observations: the trusted probe (with its in-process upstream stub) drives the
quote-service reference and broken variants as plain local processes, without Docker. The same probe runs in
the sandbox in test_flagship_quote_service.py."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labs.checks import resilience as r

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "platform/sandbox/probe.py"
sys.path.insert(0, str(ROOT / "tests/fixtures/labs/quote-service"))
from variants import materialise  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_local(tmp_path: Path, variant: str, scenario: str, params: dict | None = None) -> tuple[dict, str]:
    """(probe document, service stdout) for one scenario against a variant run as a local process."""
    root = materialise(variant, tmp_path / variant)
    port, stub_port = free_port(), free_port()
    env = {"PORT": str(port), "UPSTREAM_URL": f"http://127.0.0.1:{stub_port}", "PATH": "/usr/bin:/bin"}
    service = subprocess.Popen(
        [sys.executable, "service.py"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        spec = {"scenario": scenario, "service_port": port, "stub_port": stub_port, "params": params or {}}
        probe = subprocess.run(
            [sys.executable, str(PROBE)], input=json.dumps(spec), capture_output=True, text=True, timeout=60
        )
    finally:
        service.kill()
        stdout = service.communicate()[0].decode()
    doc = json.loads(probe.stdout)
    assert doc["started"], probe.stderr
    return doc, stdout


def test_the_probe_reports_a_service_that_never_listens(tmp_path):
    spec = {"scenario": "retries", "service_port": free_port(), "stub_port": free_port(), "startup_timeout_s": 0.5}
    probe = subprocess.run([sys.executable, str(PROBE), json.dumps(spec)], capture_output=True, text=True, timeout=30)
    assert json.loads(probe.stdout) == {"scenario": "retries", "started": False, "startup_s": None}


def test_retries_pass_for_the_reference_and_fail_without_them(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "retries")
    assert r.judge_retries(doc["observations"], price=15.0, max_attempts=3).status == "pass"
    assert doc["observations"]["persistent"]["upstream_calls"] == 3
    doc, _ = run_local(tmp_path, "broken-retries", "retries")
    verdict = r.judge_retries(doc["observations"], price=15.0, max_attempts=3)
    assert verdict.status == "fail"
    assert "after 1 upstream call(s)" in verdict.message


def test_backoff_passes_with_jitter_and_fails_without(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "backoff", {"runs": 9})
    assert r.judge_backoff(doc["observations"]["runs"]).status == "pass"
    doc, _ = run_local(tmp_path, "broken-backoff-jitter", "backoff", {"runs": 9})
    verdict = r.judge_backoff(doc["observations"]["runs"])
    assert verdict.status == "fail"
    assert "same in every run" in verdict.message


def test_backoff_without_jitter_fails_even_when_a_few_gaps_come_out_late():
    # Fixed gaps of 0.1 s and 0.2 s; three of nine runs were delayed by a busy machine.
    late = {2: 0.045, 5: 0.03, 7: 0.06}
    runs = [
        {"attempt_times": [10.0 * i, 10.0 * i + 0.1 + late.get(i, 0.002), 10.0 * i + 0.3 + late.get(i, 0.003)]}
        for i in range(9)
    ]
    verdict = r.judge_backoff(runs)
    assert verdict.status == "fail"
    assert "same in every run" in verdict.message


def test_backoff_is_skipped_when_there_are_no_retries_to_measure():
    runs = [{"attempt_times": [1.0]}, {"attempt_times": [2.0]}]
    assert r.judge_backoff(runs).status == "skipped"


def test_backoff_fails_when_gaps_do_not_grow():
    runs = [{"attempt_times": [t, t + 0.1 + j, t + 0.2 + 2 * j]} for t, j in ((0, 0.0), (5, 0.03), (9, 0.06))]
    verdict = r.judge_backoff(runs)
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
    assert r.judge_fallback(doc["observations"], price=15.0, bound_s=3.0).status == "pass"
    doc, _ = run_local(tmp_path, "broken-fallback", "fallback")
    verdict = r.judge_fallback(doc["observations"], price=15.0, bound_s=3.0)
    assert verdict.status == "fail"
    assert '"source": "cache"' in verdict.message


def test_contract_rejects_malformed_prices_and_fails_when_they_are_passed_on(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "contract")
    assert r.judge_contract(doc["observations"], price=15.0).status == "pass"
    doc, _ = run_local(tmp_path, "broken-contract", "contract")
    verdict = r.judge_contract(doc["observations"], price=15.0)
    assert verdict.status == "fail"
    assert "negative_price" in verdict.message


def test_health_follows_the_upstream_and_fails_when_always_ok(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "health")
    assert r.judge_health(doc["observations"]).status == "pass"
    doc, _ = run_local(tmp_path, "broken-health", "health")
    verdict = r.judge_health(doc["observations"])
    assert verdict.status == "fail"
    assert "while the upstream was down; expected 503" in verdict.message


@pytest.mark.slow
def test_circuit_breaker_opens_stays_open_and_recovers(tmp_path):
    doc, _ = run_local(tmp_path, "reference", "circuit_breaker", {"min_open_s": 5.0})
    obs = doc["observations"]
    assert r.judge_circuit_breaker(obs, price=15.0).status == "pass"
    assert [f["upstream_calls"] for f in obs["failing"]] == [3, 3, 3, 3, 3, 0, 0]
    assert obs["during"] and all(d["upstream_calls"] == 0 for d in obs["during"])


def test_circuit_breaker_fails_when_the_breaker_never_opens(tmp_path):
    doc, _ = run_local(tmp_path, "broken-circuit-breaker", "circuit_breaker", {"min_open_s": 5.0})
    verdict = r.judge_circuit_breaker(doc["observations"], price=15.0)
    assert verdict.status == "fail"
    assert "expected the breaker to open" in verdict.message
