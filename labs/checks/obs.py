"""Observability check kinds: structured logs, request ids, Prometheus metrics.

Evidence comes from the same harness as the resilience kinds (labs.checks.resilience.run_service_scenario);
judgement is pure functions over the service's stdout and /metrics text, unit-tested without Docker.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from labs.checks.base import register
from labs.checks.resilience import ScenarioRun, ServiceCheck, Verdict, describe

REQUIRED_LOG_FIELDS = ("ts", "level", "event", "request_id", "status", "duration_ms")


def _same_id(value: Any, rid: str) -> bool:
    return value == rid or (isinstance(value, int | float) and not isinstance(value, bool) and str(value) == rid)


def judge_json_logs(
    stdout: str, calls: list[dict[str, Any]], *, required: tuple[str, ...] = REQUIRED_LOG_FIELDS, skipped: int = 0
) -> Verdict:
    """Every non-blank stdout line is a JSON object, and each request sent has exactly one ACCESS line: a line
    with its request_id that carries every required field, whose status is the answer's. Other lines (a start-up
    line, a warning per failed upstream attempt, with or without the request id) are fine as long as they are
    JSON objects and do not carry every required field. stderr is not the log.

    skipped: bytes at the start of stdout that were not read (the service printed more than the grader keeps)."""
    records = []
    for number, line in enumerate(stdout.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict):
            where = f"stdout line {number}" + (f" (after the first {skipped} bytes)" if skipped else "")
            return Verdict(
                "fail",
                f"{where} is not a JSON object: {line[:160]!r}; expected every line on stdout to be one JSON object "
                "(print anything else on stderr).",
            )
        records.append(record)
    note = f" (the service printed {skipped} more bytes before what the grader read)" if skipped else ""
    for call in calls:
        rid = call.get("sent_request_id")
        path = call.get("path")
        if call.get("error") or "status" not in call:
            return Verdict("fail", f"GET {path} with X-Request-ID {rid} got {describe(call)}; expected an answer.")
        mine = [r for r in records if _same_id(r.get("request_id"), rid)]
        access = [r for r in mine if all(f in r for f in required)]
        if not access:
            if not mine:
                return Verdict(
                    "fail",
                    f"GET {path} with X-Request-ID {rid} produced no log line with that request_id{note}; expected "
                    f"one access line with {list(required)}.",
                )
            best = min(mine, key=lambda r: sum(f not in r for f in required))
            missing = [f for f in required if f not in best]
            return Verdict(
                "fail",
                f"GET {path} with X-Request-ID {rid} produced {len(mine)} log line(s) with that request_id, none with "
                f"every access-line field: {json.dumps(best, default=str)[:200]} lacks {missing}; expected one line "
                f"with {list(required)}.",
            )
        if len(access) > 1:
            return Verdict(
                "fail",
                f"GET {path} with X-Request-ID {rid} produced {len(access)} access lines (lines with that request_id "
                f"and all of {list(required)}); expected exactly one per request. Other lines about the same request "
                "(warnings, upstream attempts) are fine if they leave out at least one of those fields.",
            )
        status = access[0].get("status")
        if status != call.get("status") and str(status) != str(call.get("status")):
            return Verdict(
                "fail",
                f"the access line for GET {path} says status {status!r} but the answer was {call.get('status')}.",
            )
    return Verdict("pass", f"{len(calls)} requests gave one JSON access line each with {list(required)}")


def _logged_ids(stdout: str) -> set[str]:
    """Every request_id value on a JSON line of stdout, as text."""
    ids = set()
    for line in stdout.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and record.get("request_id") is not None:
            ids.add(str(record["request_id"]))
    return ids


def judge_request_id(obs: dict[str, Any], stdout: str) -> Verdict:
    """Any id format passes (a generated one may be a uuid, a counter, anything non-empty); "logged" means the
    id is the request_id of a JSON line, or at least appears in stdout."""
    given, generated = obs.get("given") or {}, obs.get("generated") or {}
    rid = given.get("sent_request_id")
    echoed = (given.get("headers") or {}).get("x-request-id")
    logged = _logged_ids(stdout)

    def in_log(value: str) -> bool:
        return value in logged or value in stdout

    if echoed != rid:
        return Verdict(
            "fail",
            f"sent X-Request-ID {rid}; the answer's X-Request-ID was {echoed!r}; expected the same id echoed back.",
        )
    upstream = given.get("upstream_request_ids") or []
    if not upstream or any(u != rid for u in upstream):
        return Verdict(
            "fail",
            f"sent X-Request-ID {rid}; the upstream received {upstream}; expected every upstream call to carry the "
            "same id.",
        )
    if not in_log(rid):
        return Verdict("fail", f"the request id {rid} does not appear in the service's log; expected it logged.")
    new = (generated.get("headers") or {}).get("x-request-id")
    if not new or not new.strip():
        return Verdict("fail", "a request without X-Request-ID got no X-Request-ID back; expected a generated one.")
    upstream = generated.get("upstream_request_ids") or []
    if not upstream or any(u != new for u in upstream):
        return Verdict("fail", f"the generated id {new} was not sent upstream (upstream saw {upstream}).")
    if not in_log(new):
        return Verdict("fail", f"the generated request id {new} does not appear in the service's log.")
    return Verdict("pass", "request ids are echoed, logged and forwarded; missing ones are generated")


def parse_metrics(text: str) -> dict[str, Any]:
    """Families by name -> {"type", "samples": [(sample_name, labels, value)]}; ValueError when unparsable."""
    families: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {
            "type": family.type,
            "samples": [(s.name, dict(s.labels), s.value) for s in family.samples],
        }
    return families


def _family(families: dict[str, Any], name: str) -> dict[str, Any] | None:
    # The parser strips _total from counter names in recent prometheus-client versions.
    return families.get(name) or families.get(name.removesuffix("_total"))


def _sample_sum(family: dict[str, Any] | None, sample: str, **labels: str) -> float:
    if not family:
        return 0.0
    return sum(
        v for n, lab, v in family["samples"] if n == sample and all(lab.get(k) == val for k, val in labels.items())
    )


def judge_metrics(
    before_text: str,
    after_text: str,
    sent_statuses: list[int],
    *,
    mid_text: str | None = None,
    failed_upstream_calls: int | None = None,
) -> Verdict:
    """mid_text: a scrape after the healthy requests and before the failing one; failed_upstream_calls: the
    upstream calls (all answered 503) that the failing request made, counted at the stub."""
    try:
        before, after = parse_metrics(before_text), parse_metrics(after_text)
        mid = parse_metrics(mid_text) if mid_text is not None else None
    except Exception as exc:  # the parser raises many kinds on hostile text; any of them means "not parseable"
        return Verdict("fail", f"/metrics is not valid Prometheus text: {exc}; expected the exposition format.")
    requests = _family(after, "quote_requests_total")
    if not requests or requests["type"] != "counter":
        return Verdict("fail", "quote_requests_total is missing or not a counter; expected a counter labelled status.")
    histogram = _family(after, "quote_request_duration_seconds")
    if not histogram or histogram["type"] != "histogram":
        kind = histogram["type"] if histogram else "missing"
        return Verdict("fail", f"quote_request_duration_seconds is {kind}; expected a histogram with buckets.")
    errors = _family(after, "upstream_errors_total")
    if not errors or errors["type"] != "counter":
        return Verdict("fail", "upstream_errors_total is missing or not a counter.")
    expected: dict[str, int] = {}
    for status in sent_statuses:
        expected[str(status)] = expected.get(str(status), 0) + 1
    b_requests = _family(before, "quote_requests_total")
    for status, count in expected.items():
        delta = _sample_sum(requests, "quote_requests_total", status=status) - _sample_sum(
            b_requests, "quote_requests_total", status=status
        )
        if delta != count:
            return Verdict(
                "fail",
                f'quote_requests_total{{status="{status}"}} moved by {delta:g} while the probe sent {count} /quote '
                f"requests answered {status}; expected it to move by exactly {count}.",
            )
    total = sum(expected.values())
    moved = _sample_sum(requests, "quote_requests_total") - _sample_sum(b_requests, "quote_requests_total")
    if moved != total:
        return Verdict(
            "fail", f"quote_requests_total moved by {moved:g} in all; the probe sent {total} /quote requests."
        )
    count_delta = _sample_sum(histogram, "quote_request_duration_seconds_count") - _sample_sum(
        _family(before, "quote_request_duration_seconds"), "quote_request_duration_seconds_count"
    )
    if count_delta != total:
        return Verdict(
            "fail",
            f"quote_request_duration_seconds_count moved by {count_delta:g}; expected {total}, one per /quote request.",
        )
    error_delta = _sample_sum(errors, "upstream_errors_total") - _sample_sum(
        _family(before, "upstream_errors_total"), "upstream_errors_total"
    )
    if error_delta < 1:
        return Verdict(
            "fail", "upstream_errors_total did not move while the upstream answered 503; expected it to count them."
        )
    if mid is not None:
        # Errors counted while every upstream answer was healthy were never observed: a forged counter.
        healthy_delta = _sample_sum(_family(mid, "upstream_errors_total"), "upstream_errors_total") - _sample_sum(
            _family(before, "upstream_errors_total"), "upstream_errors_total"
        )
        if healthy_delta != 0:
            return Verdict(
                "fail",
                f"upstream_errors_total moved by {healthy_delta:g} while every upstream answer was healthy; expected "
                "it to count only failed upstream calls.",
            )
    if failed_upstream_calls is not None and error_delta > max(1, failed_upstream_calls):
        return Verdict(
            "fail",
            f"upstream_errors_total moved by {error_delta:g}, but the upstream saw only {failed_upstream_calls} "
            "failing call(s); expected it to count the errors that happened, no more.",
        )
    return Verdict("pass", f"counters moved by exactly the {total} requests sent; errors counted; latency histogram")


@register
class JsonLogs(ServiceCheck):
    kind = "obs.json_logs"
    default_category = "observability"
    scenario = "json_logs"
    hint_text = (
        "Log one json.dumps({...}) line per request to stdout with ts, level, event, request_id, status, duration_ms."
    )

    def budget_s(self) -> float:
        return 4 * self.call_timeout_s + 3.0

    def judge(self, run: ScenarioRun) -> Verdict:
        required = tuple(self.args.get("fields", REQUIRED_LOG_FIELDS))
        calls = run.observations.get("calls") or []
        return judge_json_logs(run.service_stdout, calls, required=required, skipped=run.stdout_skipped)


@register
class RequestId(ServiceCheck):
    kind = "obs.request_id"
    default_category = "observability"
    scenario = "request_id"
    hint_text = "Read X-Request-ID (or make a uuid4), return it in the answer, log it and send it on upstream calls."

    def budget_s(self) -> float:
        return 2 * self.call_timeout_s + 3.0

    def judge(self, run: ScenarioRun) -> Verdict:
        return judge_request_id(run.observations, run.service_stdout)


@register
class Metrics(ServiceCheck):
    kind = "obs.metrics"
    default_category = "observability"
    scenario = "metrics"
    hint_text = "Count each /quote answer once by status, observe its duration in a histogram, count upstream errors."

    def budget_s(self) -> float:
        return 7 * self.call_timeout_s + 1.0

    def judge(self, run: ScenarioRun) -> Verdict:
        obs = run.observations
        for scrape in ("before", "mid", "after"):
            # A service that crashed on the failing request has no body to scrape: its failure, not ours.
            if (scrape in obs or scrape != "mid") and (
                (obs.get(scrape) or {}).get("status") != 200 or not isinstance((obs.get(scrape) or {}).get("body"), str)
            ):
                return Verdict(
                    "fail", f"GET /metrics answered {describe(obs.get(scrape) or {})}; expected 200 with metrics text."
                )
        return judge_metrics(
            obs["before"]["body"],
            obs["after"]["body"],
            [s.get("status") for s in obs.get("sent") or []],
            mid_text=obs["mid"]["body"] if "mid" in obs else None,
            failed_upstream_calls=obs.get("failed_upstream_calls"),
        )
