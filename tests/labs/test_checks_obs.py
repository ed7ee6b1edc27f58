"""Observability judges: JSON log lines, request ids and Prometheus metrics, on real service output (the
reference and broken variants run locally by the trusted probe) and on hand-written metrics text."""

from labs.checks import obs
from tests.labs.test_checks_resilience import run_local

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


def test_json_logs_reject_a_plain_text_line_and_a_missing_field():
    calls = [{"sent_request_id": "a", "path": "/quote", "status": 200}]
    line = '{"ts": "t", "level": "info", "event": "request", "request_id": "a", "status": 200, "duration_ms": 1}'
    assert obs.judge_json_logs(line + "\n", calls).status == "pass"
    plain = obs.judge_json_logs("listening on 8000\n" + line + "\n", calls)
    assert plain.status == "fail"
    assert "line 1 is not a JSON object" in plain.message
    missing = obs.judge_json_logs(line.replace(', "duration_ms": 1', "") + "\n", calls)
    assert missing.status == "fail"
    assert "duration_ms" in missing.message


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
