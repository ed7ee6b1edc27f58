"""Observability judges: JSON log lines, request ids and Prometheus metrics, on recorded observations (what the
contract accepts and rejects, named after the behaviour) and on real service output (the reference and broken
variants run locally by the trusted probe)."""

import json

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from labs.checks import obs
from labs.checks.resilience import ScenarioRun
from tests.labs.test_checks_resilience import run_local

FIELDS = {"ts": "2026-01-01T00:00:00Z", "level": "info", "event": "request"}


def line(rid, status=200, **extra):
    return json.dumps({**FIELDS, "request_id": rid, "status": status, "duration_ms": 1.5, **extra})


def sent(rid, status=200, path="/quote?sku=x"):
    return {"sent_request_id": rid, "path": path, "status": status}


CALLS = [sent("r1"), sent("r2", 503)]


def logs(*lines):
    return "\n".join(lines) + "\n"


# --- obs.json_logs ---------------------------------------------------------------------------------------------


def test_json_logs_accept_one_access_line_per_request():
    assert obs.judge_json_logs(logs(line("r1"), line("r2", 503)), CALLS).status == "pass"


def test_json_logs_accept_several_lines_per_request_id_beside_the_access_line():
    warning = json.dumps({**FIELDS, "level": "warning", "event": "upstream_failed", "request_id": "r2", "status": 503})
    startup = json.dumps({**FIELDS, "event": "startup", "port": 8000})
    text = logs(startup, warning, warning, warning, line("r1"), line("r2", 503))
    assert obs.judge_json_logs(text, CALLS).status == "pass"


def test_json_logs_accept_a_status_written_as_text_and_blank_lines():
    assert obs.judge_json_logs(logs(line("r1", "200"), "", line("r2", "503")), CALLS).status == "pass"


def test_json_logs_reject_a_request_without_an_access_line():
    verdict = obs.judge_json_logs(logs(line("r1")), CALLS)
    assert verdict.status == "fail"
    assert "X-Request-ID r2 produced no log line with that request_id" in verdict.message


def test_json_logs_reject_lines_for_a_request_that_all_lack_a_field():
    no_duration = json.dumps({**FIELDS, "request_id": "r2", "status": 503})
    verdict = obs.judge_json_logs(logs(line("r1"), no_duration), CALLS)
    assert verdict.status == "fail"
    assert "lacks ['duration_ms']" in verdict.message


def test_json_logs_reject_two_access_lines_for_one_request():
    verdict = obs.judge_json_logs(logs(line("r1"), line("r2", 503), line("r2", 503, event="upstream_failed")), CALLS)
    assert verdict.status == "fail"
    assert "produced 2 access lines" in verdict.message
    assert "leave out at least one of those fields" in verdict.message


def test_json_logs_reject_a_line_that_is_not_json():
    verdict = obs.judge_json_logs("listening on 8000\n" + logs(line("r1"), line("r2", 503)), CALLS)
    assert verdict.status == "fail"
    assert "stdout line 1 is not a JSON object" in verdict.message
    array = obs.judge_json_logs(logs(line("r1"), "[1, 2]", line("r2", 503)), CALLS)
    assert array.status == "fail"


def test_json_logs_reject_a_status_that_is_not_the_answers():
    verdict = obs.judge_json_logs(logs(line("r1"), line("r2", 200)), CALLS)
    assert verdict.status == "fail"
    assert "says status 200 but the answer was 503" in verdict.message


def test_json_logs_read_stdout_only_stderr_is_not_the_log():
    check = obs.JsonLogs(check_id="logs", args={}, points=6)
    run = ScenarioRun(
        started=True,
        observations={"calls": CALLS},
        stub_log=[],
        service_stdout=logs(line("r1"), line("r2", 503)),
        service_stderr="Traceback (most recent call last):\nplain text on stderr is fine\n",
    )
    assert check.judge(run).status == "pass"


def test_json_logs_say_when_the_start_of_a_long_stdout_was_not_read():
    verdict = obs.judge_json_logs(logs(line("r1")), CALLS, skipped=10_000_000)
    assert verdict.status == "fail"
    assert "printed 10000000 more bytes" in verdict.message


def test_json_logs_with_a_custom_field_list():
    text = logs(json.dumps({"request_id": "r1", "status": 200}), json.dumps({"request_id": "r2", "status": 503}))
    assert obs.judge_json_logs(text, CALLS, required=("request_id", "status")).status == "pass"


# --- obs.request_id --------------------------------------------------------------------------------------------


def rid_obs(given="rid-1", echoed="rid-1", upstream=("rid-1",), new="7f3c", new_upstream=("7f3c",)):
    return {
        "given": {
            "sent_request_id": given,
            "headers": {"x-request-id": echoed},
            "upstream_request_ids": list(upstream),
        },
        "generated": {
            "sent_request_id": None,
            "headers": {"x-request-id": new},
            "upstream_request_ids": list(new_upstream),
        },
    }


def test_request_id_accepts_any_generated_id_format():
    for new in ("5f1e6c0e-3b2a-4c8e-9a61-7c9f1d3e2b10", "42", "req_000017", "a"):
        stdout = logs(line("rid-1"), line(new))
        verdict = obs.judge_request_id(rid_obs(new=new, new_upstream=(new,)), stdout)
        assert verdict.status == "pass", (new, verdict.message)


def test_request_id_accepts_a_numeric_id_logged_as_a_number():
    stdout = logs(line("rid-1"), json.dumps({**FIELDS, "request_id": 17, "status": 200, "duration_ms": 1}))
    assert obs.judge_request_id(rid_obs(new="17", new_upstream=("17",)), stdout).status == "pass"


def test_request_id_rejects_an_id_not_echoed_not_forwarded_or_not_logged():
    stdout = logs(line("rid-1"), line("7f3c"))
    assert "echoed back" in obs.judge_request_id(rid_obs(echoed="other"), stdout).message
    assert "every upstream call" in obs.judge_request_id(rid_obs(upstream=("rid-1", None)), stdout).message
    assert "was not sent upstream" in obs.judge_request_id(rid_obs(new_upstream=()), stdout).message
    verdict = obs.judge_request_id(rid_obs(), logs(line("rid-1")))
    assert verdict.status == "fail"
    assert "generated request id 7f3c does not appear" in verdict.message
    assert obs.judge_request_id(rid_obs(new=""), stdout).status == "fail"


# --- obs.metrics -----------------------------------------------------------------------------------------------

METRICS_BEFORE = """\
# TYPE quote_requests_total counter
quote_requests_total{status="200"} 2
# TYPE quote_request_duration_seconds histogram
quote_request_duration_seconds_bucket{le="0.5"} 2
quote_request_duration_seconds_bucket{le="+Inf"} 2
quote_request_duration_seconds_sum 0.1
quote_request_duration_seconds_count 2
# TYPE upstream_errors_total counter
upstream_errors_total 0
"""


def after(ok: int, failed: int, errors: int, duration_type: str = "histogram") -> str:
    total = 2 + ok + failed
    return (
        "# TYPE quote_requests_total counter\n"
        f'quote_requests_total{{status="200"}} {2 + ok}\n'
        f'quote_requests_total{{status="503"}} {failed}\n'
        f"# TYPE quote_request_duration_seconds {duration_type}\n"
        + (
            f'quote_request_duration_seconds_bucket{{le="0.5"}} {total}\n'
            f'quote_request_duration_seconds_bucket{{le="+Inf"}} {total}\n'
            f"quote_request_duration_seconds_sum 0.9\nquote_request_duration_seconds_count {total}\n"
            if duration_type == "histogram"
            else "quote_request_duration_seconds 0.2\n"
        )
        + f"# TYPE upstream_errors_total counter\nupstream_errors_total {errors}\n"
    )


def test_metrics_pass_when_counters_move_by_exactly_the_traffic_sent():
    assert obs.judge_metrics(METRICS_BEFORE, after(3, 1, 3), [200, 200, 200, 503]).status == "pass"


def prometheus_client_text(ok: int, failed: int, errors: int, *, extra_labels: bool = False) -> str:
    """What a service built on prometheus-client serves: _created series, its own buckets, other metrics."""
    registry = CollectorRegistry()
    labels = ["method", "status"] if extra_labels else ["status"]
    requests = Counter("quote_requests_total", "Answers to /quote", labels, registry=registry)
    latency = Histogram(
        "quote_request_duration_seconds", "Time to answer", buckets=(0.01, 0.3, 1.7, 4.0), registry=registry
    )
    upstream = Counter("upstream_errors_total", "Failed upstream attempts", ["reason"], registry=registry)
    Gauge("cache_entries", "Prices in the cache", registry=registry).set(3)
    for status, count in (("200", ok), ("503", failed)):
        for _ in range(count):
            (requests.labels(method="GET", status=status) if extra_labels else requests.labels(status=status)).inc()
            latency.observe(0.2)
    for _ in range(errors):
        upstream.labels(reason="503").inc()
    return generate_latest(registry).decode()


def test_metrics_accept_prometheus_client_output_with_created_series_and_any_buckets():
    before, end = prometheus_client_text(0, 0, 0), prometheus_client_text(3, 1, 3)
    assert "quote_requests_created" in end and 'le="1.7"' in end
    verdict = obs.judge_metrics(before, end, [200, 200, 200, 503], mid_text=prometheus_client_text(3, 0, 0))
    assert verdict.status == "pass", verdict.message


def test_metrics_accept_extra_labels_in_any_order():
    before, end = prometheus_client_text(0, 0, 0, extra_labels=True), prometheus_client_text(3, 1, 3, extra_labels=True)
    assert obs.judge_metrics(before, end, [200, 200, 200, 503]).status == "pass"
    reordered = end.replace('method="GET",status="200"', 'status="200",method="GET"')
    assert obs.judge_metrics(before, reordered, [200, 200, 200, 503]).status == "pass"


def test_metrics_fail_when_a_counter_moves_by_more_than_the_traffic():
    verdict = obs.judge_metrics(METRICS_BEFORE, after(4, 1, 3), [200, 200, 200, 503])
    assert verdict.status == "fail"
    assert 'status="200"} moved by 4' in verdict.message


def test_metrics_fail_when_latency_is_not_a_histogram_or_errors_are_not_counted():
    gauge = obs.judge_metrics(METRICS_BEFORE, after(3, 1, 3, "gauge"), [200, 200, 200, 503])
    assert gauge.status == "fail"
    assert "expected a histogram" in gauge.message
    silent = obs.judge_metrics(METRICS_BEFORE, after(3, 1, 0), [200, 200, 200, 503])
    assert silent.status == "fail"
    assert "upstream_errors_total did not move" in silent.message


def test_metrics_fail_on_text_that_is_not_prometheus_format():
    verdict = obs.judge_metrics("{not: metrics}", "{not: metrics}", [200])
    assert verdict.status == "fail"
    assert "not valid Prometheus text" in verdict.message


# --- on real service output ------------------------------------------------------------------------------------


def test_json_logs_pass_for_the_reference_and_fail_for_print_style_logs(tmp_path):
    doc, stdout = run_local(tmp_path, "reference", "json_logs")
    assert obs.judge_json_logs(stdout, doc["observations"]["calls"]).status == "pass"
    doc, stdout = run_local(tmp_path, "broken-json-logs", "json_logs")
    verdict = obs.judge_json_logs(stdout, doc["observations"]["calls"])
    assert verdict.status == "fail"
    assert "is not a JSON object" in verdict.message


def test_request_ids_pass_for_the_reference_and_fail_when_not_forwarded(tmp_path):
    doc, stdout = run_local(tmp_path, "reference", "request_id")
    assert obs.judge_request_id(doc["observations"], stdout).status == "pass"
    doc, stdout = run_local(tmp_path, "broken-request-id", "request_id")
    verdict = obs.judge_request_id(doc["observations"], stdout)
    assert verdict.status == "fail"
    assert "the upstream received [None]" in verdict.message


def test_metrics_pass_for_the_reference_and_fail_when_every_path_is_counted(tmp_path):
    for variant, status in (("reference", "pass"), ("broken-metrics", "fail")):
        doc, _ = run_local(tmp_path, variant, "metrics")
        o = doc["observations"]
        verdict = obs.judge_metrics(o["before"]["body"], o["after"]["body"], [s["status"] for s in o["sent"]])
        assert verdict.status == status, verdict.message
