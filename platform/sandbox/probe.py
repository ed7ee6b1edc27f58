"""Scenario driver for service labs. Trusted: runs as the grader user inside the sandbox.

It hosts the fault-injecting upstream (upstream_stub.Stub) in its own process, so nothing else can reprogram
it, drives the learner's service (started by the check as the learner, listening on 127.0.0.1) through one
named scenario, and prints ONE JSON document of observations on stdout. It never judges: pass or fail is
decided on the host by the check classes from these observations.

Two modes:

  python3 -I probe.py [SPEC]
      Run one scenario. SPEC is a JSON document on stdin (or the first argument):
        {"scenario": "retries", "service_port": 8000, "stub_port": 9100, "startup_timeout_s": 5, "params": {...},
         "deadline_s": 60, "call_timeout_s": 6, "output_cap": 1048576,
         "service_log": "/work/.shipshape-service-0.log", "service_err": "...", "learner_root": "/work"}
      deadline_s: the probe's own budget from its start. Calls are cut to it; a scenario that runs out stops
        and the document says "out_of_time": true, with what was observed until then.
      call_timeout_s: how long one request to the service may take.
      output_cap: what the printed document may weigh, in bytes: long strings (the service's stdout first,
        kept from its end) are shortened to fit, so a chatty service never makes the output unreadable.
      service_log / service_err: the service's stdout and stderr files, read safely (no symlinks, regular files
        under learner_root only) and returned as service_stdout (its last part) and service_stderr. Scenarios
        that judge the log wait briefly until the ids they sent show up in it.
      Output: {"scenario", "started", "startup_s", "observations", "out_of_time", "stub_port_taken", "error",
        "pressure": {"start", "end"}, "service_stdout", "service_stdout_skipped", "service_stderr",
        "stub_requests", "stub_errors", "shortened"}. "started" is false only when the stub held its port and
        the service did not listen within startup_timeout_s. At start the probe also writes one line
        {"pressure_start": {...}} to stderr, so the host can compare even if the probe itself is killed.

  python3 -I -S probe.py --counters
      Print the sandbox's own counters (see cgroup_counters) as JSON: the check reads them when the probe
      printed no document, to compare with the {"pressure_start": ...} line.

  python3 -I -S probe.py --await-port PORT TIMEOUT
      Exit 0 as soon as something listens on 127.0.0.1:PORT (read from /proc/net/tcp: no connection is made),
      1 after TIMEOUT seconds. The check starts the learner's service behind this, so the stub holds its port
      (see upstream_stub: reserved for the stub's whole life) before any learner code runs.

Standard library only.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time

BODY_CAP = 2048  # bytes of an answer's body kept (JSON answers of this service are small)
METRICS_READ_CAP = 1 << 20  # bytes of a /metrics answer read; only the lab's metric families are kept
METRICS_KEEP_CAP = 32 * 1024  # characters of those kept
METRIC_PREFIXES = ("quote_request", "upstream_errors")
HEADER_CAP = 200
LOG_READ_CAP = 4 << 20
STDERR_CAP = 4000
LOG_WAIT_S = 2.0  # how long a scenario waits for its request ids to reach the service's log
OK: list = []  # an empty scenario: the upstream answers normally
FAIL_503 = [{"status": 503, "count": "inf"}]
DOWN = [{"down": True}]


# --- mode 2: wait until a port is bound (runs as the learner, before the service; no imports beyond os) ---------


def port_listening(port: int) -> bool:
    """True when a TCP socket listens on 127.0.0.1:port or *:port. (A socket that is only bound is not listed
    in /proc/net/tcp; the stub listens right after reserving its port.)"""
    try:
        with open("/proc/net/tcp") as handle:
            lines = handle.read().splitlines()[1:]
    except OSError:
        return False
    wanted = f"{port:04X}"
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _, hexport = fields[1].partition(":")
        if hexport == wanted and address in ("0100007F", "00000000") and fields[3] == "0A":  # 0A: LISTEN
            return True
    return False


def await_port(port: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_listening(port):
            return 0
        time.sleep(0.01)
    return 1


# --- reading the learner's files and the sandbox's counters ---------------------------------------------------


def safe_open(path: str, root: str) -> int:
    """A read-only fd for a regular file under root, never through a symlink (the grader can read /grader; the
    learner must not borrow that through a link where a log file should be)."""
    root = root.rstrip("/") or "/"
    if not path.startswith(root + "/"):
        raise PermissionError(path)
    parts = path[len(root) + 1 :].split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PermissionError(path)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        f = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    import stat

    if not stat.S_ISREG(os.fstat(f).st_mode):
        os.close(f)
        raise PermissionError(path)
    return f


def read_tail(path: str | None, root: str, limit: int) -> tuple[bytes, int]:
    """(the last `limit` bytes of the file, how many bytes before them were left out); b"" when unreadable."""
    if not path:
        return b"", 0
    try:
        fd = safe_open(path, root)
    except OSError:
        return b"", 0
    try:
        size = os.fstat(fd).st_size
        skipped = max(0, size - limit)
        os.lseek(fd, skipped, 0)
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), skipped
    except OSError:
        return b"", 0
    finally:
        os.close(fd)


def cgroup_counters() -> dict[str, int]:
    """The sandbox's own counters since its container started (-1: unknown): forks the pids limit refused,
    processes the OOM killer ended, CPU time used by all its processes and time they were throttled for using
    more than the sandbox's CPU share (nanoseconds)."""

    def counter(paths: tuple[str, ...], name: str | None, scale: int = 1) -> int:
        for path in paths:
            try:
                with open(path) as handle:
                    for line in handle:
                        if name is None:
                            return int(line.strip()) * scale
                        key, _, value = line.partition(" ")
                        if key == name and value.strip().isdigit():
                            return int(value) * scale
            except (OSError, ValueError):
                pass
        return -1

    cpu = counter(("/sys/fs/cgroup/cpuacct/cpuacct.usage",), None)
    if cpu < 0:
        cpu = counter(("/sys/fs/cgroup/cpu.stat",), "usage_usec", 1000)
    throttled = counter(("/sys/fs/cgroup/cpu/cpu.stat",), "throttled_time")
    if throttled < 0:
        throttled = counter(("/sys/fs/cgroup/cpu.stat",), "throttled_usec", 1000)
    return {
        "pids_refused": counter(("/sys/fs/cgroup/pids/pids.events", "/sys/fs/cgroup/pids.events"), "max"),
        "oom_kills": counter(("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events"), "oom_kill"),
        "cpu_ns": cpu,
        "throttled_ns": throttled,
        "t": time.monotonic_ns(),
    }


# --- mode 1: the scenarios ---------------------------------------------------------------------------------------


class OutOfTime(Exception):
    """The probe's deadline leaves no room for the next step."""


def keep_metric_lines(text: str) -> str:
    """Only the lab's metric families (their samples and # HELP / # TYPE lines), at most METRICS_KEEP_CAP
    characters: a service may expose any number of other metrics, and they must not crowd the output."""
    kept, size = [], 0
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            words = stripped.split()
            name = words[2] if len(words) > 2 and words[1] in ("HELP", "TYPE") else ""
        else:
            name = stripped.split("{", 1)[0].split(" ", 1)[0]
        if name.startswith(METRIC_PREFIXES):
            if size + len(line) + 1 > METRICS_KEEP_CAP:
                break
            kept.append(line)
            size += len(line) + 1
    return "\n".join(kept) + ("\n" if kept else "")


class Driver:
    def __init__(self, *, service_port: int, stub: object, deadline: float, call_timeout_s: float, spec: dict) -> None:
        self.port = service_port
        self.stub = stub
        self.deadline = deadline
        self.call_timeout_s = call_timeout_s
        self.spec = spec

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if seconds > self.remaining() - 0.3:
            raise OutOfTime
        time.sleep(seconds)

    def call(self, path: str, *, request_id: str | None = None, timeout_s: float | None = None) -> dict:
        """One GET against the service, with everything observable about it."""
        import http.client

        timeout = min(timeout_s or self.call_timeout_s, self.remaining() - 0.3)
        if timeout < 0.2:
            raise OutOfTime
        headers = {"X-Request-ID": request_id} if request_id else {}
        n_before = self.stub.log_count()
        started = time.monotonic()
        obs: dict = {"path": path, "sent_request_id": request_id, "t_start": round(started, 4)}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            metrics = path.startswith("/metrics")
            raw = resp.read(METRICS_READ_CAP if metrics else BODY_CAP)
            obs["status"] = resp.status
            obs["headers"] = {
                k.lower(): v[:HEADER_CAP] for k, v in resp.getheaders() if k.lower() in ("x-request-id", "content-type")
            }
            text = raw.decode("utf-8", "replace")
            if metrics:
                obs["body_bytes"] = len(raw)
                if len(raw) >= METRICS_READ_CAP:
                    text = text.rsplit("\n", 1)[0]  # the last line was cut
                text = keep_metric_lines(text)
            obs["body"] = text
            try:
                obs["json"] = None if metrics else json.loads(raw)
            except (ValueError, RecursionError):
                obs["json"] = None
        except TimeoutError:
            obs["error"] = f"no answer within {timeout:.1f} s"
        except (OSError, http.client.HTTPException) as exc:
            obs["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        finally:
            conn.close()
        obs["elapsed_s"] = round(time.monotonic() - started, 4)
        obs["upstream_calls"] = self.stub.log_count() - n_before
        return obs

    def wait_for_log(self, needles: list[str], timeout_s: float = LOG_WAIT_S) -> float:
        """Wait until every needle appears in the service's stdout (a line may be written just after the answer);
        returns how long it took. Never a verdict: the judge reads the log afterwards."""
        started = time.monotonic()
        needles = [n for n in needles if n]
        end = started + min(timeout_s, max(0.0, self.remaining() - 1.0))
        root = self.spec.get("learner_root", "/work")
        while True:
            data, _ = read_tail(self.spec.get("service_log"), root, LOG_READ_CAP)
            text = data.decode("utf-8", "replace")
            if all(n in text for n in needles) or time.monotonic() >= end:
                return round(time.monotonic() - started, 3)
            time.sleep(0.05)


def sku() -> str:
    """A fresh random SKU: a service cannot recognise the probe's requests by their names."""
    import uuid

    return uuid.uuid4().hex[:10]


def wait_listening(port: int, timeout_s: float) -> float | None:
    import socket

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return round(time.monotonic() - started, 3)
        except OSError:
            time.sleep(0.05)
    return None


def answered(call: dict) -> bool:
    return "error" not in call


# Each scenario fills `obs` as it goes, so what was observed survives when the deadline cuts it short. A call
# that got no answer ends the scenario: the service broke the contract, and waiting on would only spend time.


def scenario_retries(d: Driver, p: dict, obs: dict) -> None:
    d.stub.set_scenario([{"status": 503, "count": 2}])
    obs["transient"] = d.call(f"/quote?sku={sku()}")
    if not answered(obs["transient"]):
        return
    d.stub.set_scenario(FAIL_503)
    obs["persistent"] = d.call(f"/quote?sku={sku()}")


def control_run(d: Driver, sleeps: list[float], worker: ControlWorker | None = None) -> dict:
    """A client with fixed sleeps, the size of the gaps just observed, against the same stub: what the machine
    adds to a fixed schedule right now (timer and scheduling delays, a thread hand-off, connection set-up).
    The sleeps run in this thread and each request in `worker`'s, the way a service's event loop hands its
    upstream calls to a thread pool (or, without a worker, in this thread)."""
    n0 = len(d.stub.control_log())
    for k in range(len(sleeps) + 1):
        ok = worker.request() if worker else _control_request(d.stub)
        if not ok:
            return {"sleeps": sleeps, "times": []}
        if k < len(sleeps):
            d.sleep(sleeps[k])
    return {"sleeps": sleeps, "times": [round(t, 5) for t in d.stub.control_log()[n0:]]}


def _control_request(stub: object) -> bool:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", stub.port, timeout=5)
    try:
        conn.request("GET", f"/price?sku={sku()}", headers={"X-Shipshape-Control": stub.control_token})
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class ControlWorker:
    """A thread that makes the control's requests when asked (see control_run)."""

    def __init__(self, stub: object) -> None:
        import queue
        import threading

        self.stub = stub
        self.asks: queue.Queue = queue.Queue()
        self.answers: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.asks.get():
            self.answers.put(_control_request(self.stub))

    def request(self) -> bool:
        import queue

        self.asks.put(True)
        try:
            return self.answers.get(timeout=10)
        except queue.Empty:
            return False

    def stop(self) -> None:
        self.asks.put(False)


def scenario_backoff(d: Driver, p: dict, obs: dict) -> None:
    runs: list = obs.setdefault("runs", [])
    control: list = obs.setdefault("control", [])
    style = p.get("control_style", "handoff")
    worker = ControlWorker(d.stub) if style == "handoff" else None
    try:
        _backoff_runs(d, p, runs, control, worker)
    finally:
        if worker:
            worker.stop()


def _backoff_runs(d: Driver, p: dict, runs: list, control: list, worker: ControlWorker | None) -> None:
    for _ in range(int(p.get("runs", 9))):
        d.stub.set_scenario([{"status": 503, "count": 2}])
        n0 = d.stub.log_count()
        call = d.call(f"/quote?sku={sku()}")
        times = [r["t"] for r in d.stub.log_since(n0)[:10]]
        call["attempt_times"] = [round(t, 5) for t in times]
        for key in ("body", "headers", "json"):
            call.pop(key, None)
        runs.append(call)
        d.stub.set_scenario(OK)
        if not answered(call):
            return
        gaps = [b - a for a, b in itertools.pairwise(times)][:2]
        if gaps and p.get("control", True):
            control.append(control_run(d, gaps, worker))


def scenario_timeout(d: Driver, p: dict, obs: dict) -> None:
    delay_ms = int(p.get("delay_ms", 5000))
    obs["delay_ms"] = delay_ms
    d.stub.set_scenario([{"delay_ms": delay_ms, "count": "inf"}])
    obs["slow"] = d.call(f"/quote?sku={sku()}", timeout_s=float(p.get("bound_s", 3.0)) + 3.0)
    d.stub.set_scenario(OK)


def scenario_fallback(d: Driver, p: dict, obs: dict) -> None:
    cached_sku = sku()
    d.stub.set_scenario(OK)
    obs["warm"] = d.call(f"/quote?sku={cached_sku}")
    if not answered(obs["warm"]):
        return
    if "upstream_price_2" in p:
        # The price moves while the upstream is healthy: a service that always replays its first answer
        # (never calling the upstream again) must not pass as one that caches the last good price.
        d.stub.set_scenario([{"price": p["upstream_price_2"], "count": "inf"}])
        obs["warm_again"] = d.call(f"/quote?sku={cached_sku}")
        if not answered(obs["warm_again"]):
            return
    d.stub.set_scenario(DOWN)
    obs["cached"] = d.call(f"/quote?sku={cached_sku}")
    if answered(obs["cached"]):
        obs["uncached"] = d.call(f"/quote?sku={sku()}")
    d.stub.set_scenario(OK)


def scenario_circuit_breaker(d: Driver, p: dict, obs: dict) -> None:
    max_requests = int(p.get("max_requests", 8))
    min_open_s = float(p.get("min_open_s", 5.0))
    max_open_s = float(p.get("max_open_s", 30.0))
    poll_s = float(p.get("poll_s", 0.5))
    obs.update({"min_open_s": min_open_s, "max_open_s": max_open_s, "opened": False})
    d.stub.set_scenario(FAIL_503)
    failing: list = obs.setdefault("failing", [])
    for _ in range(max_requests):
        call = d.call(f"/quote?sku={sku()}")
        failing.append(call)
        if not answered(call):
            return
        # Two requests in a row that did not reach the upstream: the breaker is open.
        if len(failing) >= 2 and failing[-1]["upstream_calls"] == 0 and failing[-2]["upstream_calls"] == 0:
            break
    log = d.stub.log()
    opened = len(failing) >= 2 and failing[-1]["upstream_calls"] == 0 and failing[-2]["upstream_calls"] == 0
    obs["opened"] = opened and bool(log)
    if not obs["opened"]:
        return
    n_open = len(log)
    t_open = log[-1]["t"]  # the last failed attempt: the breaker opened right after it
    obs["t_open"] = round(t_open, 4)
    # While the breaker must stay open (min_open_s), the upstream still fails and requests keep coming: none may
    # reach it. The last one starts a little before min_open_s, so a breaker of exactly min_open_s is not caught
    # by the time it takes a request to reach the breaker.
    during: list = obs.setdefault("during", [])
    end_during = t_open + min_open_s - 0.3
    while time.monotonic() < end_during:
        call = d.call(f"/quote?sku={sku()}")
        during.append(call)
        if not answered(call) or call["upstream_calls"]:
            break
        d.sleep(min(poll_s, end_during - time.monotonic()))
    # Then the upstream recovers, and the service must try it again within max_open_s of opening: polled until
    # a request reaches the upstream and gets a 200, so any cool-down up to max_open_s passes.
    d.stub.set_scenario(OK)
    obs["t_healthy"] = round(time.monotonic(), 4)
    recovery: list = obs.setdefault("recovery", [])
    give_up = t_open + max_open_s + 1.0
    tries_with_calls = 0
    try:
        while True:
            call = d.call(f"/quote?sku={sku()}")
            recovery.append(call)
            if not answered(call):
                break
            if call["upstream_calls"]:
                tries_with_calls += 1
                if call.get("status") == 200 or tries_with_calls >= 3:
                    break
            if time.monotonic() + poll_s > give_up:
                break
            d.sleep(poll_s)
    finally:
        after = [r["t"] - t_open for r in d.stub.log_since(n_open)[:20]]
        obs["upstream_after_open_s"] = [round(x, 4) for x in after]


def scenario_contract(d: Driver, p: dict, obs: dict) -> None:
    d.stub.set_scenario(OK)
    good_sku = sku()
    obs["baseline"] = d.call(f"/quote?sku={good_sku}")
    if not answered(obs["baseline"]):
        return
    bad = {
        "not_json": {"body": "<html>oops</html>"},
        "negative_price": {"price": -1},
        "string_price": {"price": "twelve"},
        "missing_price": {"json": {"sku": "x"}},
    }
    cases: dict = obs.setdefault("cases", {})
    for name, step in bad.items():
        d.stub.set_scenario([{**step, "count": "inf"}])
        cases[name] = d.call(f"/quote?sku={sku()}")
        if not answered(cases[name]):
            return
    d.stub.set_scenario([{"price": -1, "count": "inf"}])
    obs["cached_case"] = d.call(f"/quote?sku={good_sku}")
    d.stub.set_scenario(OK)


def poll_health(d: Driver, want: int, changed_at: float, window_s: float, poll_s: float = 0.2) -> list:
    """/health until it answers `want`, for at most window_s after the upstream changed (a service may reuse a
    recent result for a moment)."""
    calls: list = []
    while True:
        call = d.call("/health")
        call["since_change_s"] = round(call["t_start"] - changed_at, 4)
        calls.append(call)
        if not answered(call) or call.get("status") == want or time.monotonic() + poll_s > changed_at + window_s:
            return calls
        d.sleep(poll_s)


def scenario_health(d: Driver, p: dict, obs: dict) -> None:
    stale_s = float(p.get("max_stale_s", 2.0))
    obs["max_stale_s"] = stale_s
    d.stub.set_scenario(OK)
    obs["up"] = d.call("/health")
    if not answered(obs["up"]):
        return
    d.stub.set_scenario(DOWN)
    obs["down_calls"] = poll_health(d, 503, time.monotonic(), stale_s)
    obs["down"] = obs["down_calls"][-1]
    if not answered(obs["down"]):
        return
    d.stub.set_scenario(OK)
    obs["back_calls"] = poll_health(d, 200, time.monotonic(), stale_s)
    obs["back"] = obs["back_calls"][-1]


def scenario_json_logs(d: Driver, p: dict, obs: dict) -> None:
    import uuid

    tag = uuid.uuid4().hex[:8]
    calls: list = obs.setdefault("calls", [])
    plan = [
        (OK, f"/quote?sku={sku()}"),
        (OK, "/health"),
        (FAIL_503, f"/quote?sku={sku()}"),
        (OK, "/no-such-page"),
    ]
    for number, (steps, path) in enumerate(plan, start=1):
        d.stub.set_scenario(steps)
        call = d.call(path, request_id=f"log-{tag}-{number}")
        calls.append(call)
        if not answered(call):
            break
    d.stub.set_scenario(OK)
    obs["log_wait_s"] = d.wait_for_log([c["sent_request_id"] for c in calls])


def scenario_request_id(d: Driver, p: dict, obs: dict) -> None:
    import uuid

    d.stub.set_scenario(OK)
    given_id = f"rid-{uuid.uuid4().hex[:12]}"
    n0 = d.stub.log_count()
    given = d.call(f"/quote?sku={sku()}", request_id=given_id)
    given["upstream_request_ids"] = [r["headers"].get("x-request-id") for r in d.stub.log_since(n0)[:20]]
    obs["given"] = given
    if not answered(given):
        return
    n1 = d.stub.log_count()
    generated = d.call(f"/quote?sku={sku()}")
    generated["upstream_request_ids"] = [r["headers"].get("x-request-id") for r in d.stub.log_since(n1)[:20]]
    obs["generated"] = generated
    new = (generated.get("headers") or {}).get("x-request-id") or ""
    obs["log_wait_s"] = d.wait_for_log([given_id, new])


def scenario_metrics(d: Driver, p: dict, obs: dict) -> None:
    ok_requests = int(p.get("ok_requests", 3))
    settle_s = float(p.get("settle_s", 0.2))  # a service may count a request just after answering it
    d.stub.set_scenario(OK)
    obs["before"] = d.call("/metrics")
    if not answered(obs["before"]):
        return
    sent = []
    obs["sent"] = sent
    for _ in range(ok_requests):
        call = d.call(f"/quote?sku={sku()}")
        sent.append({"status": call.get("status"), "upstream_calls": call.get("upstream_calls"), **_error(call)})
        if not answered(call):
            return
    # A scrape between healthy and failing traffic: upstream_errors_total must not move without errors.
    d.sleep(settle_s)
    obs["mid"] = d.call("/metrics")
    if not answered(obs["mid"]):
        return
    d.stub.set_scenario(FAIL_503)
    call = d.call(f"/quote?sku={sku()}")
    sent.append({"status": call.get("status"), "upstream_calls": call.get("upstream_calls"), **_error(call)})
    obs["failed_upstream_calls"] = call.get("upstream_calls", 0)
    d.stub.set_scenario(OK)
    if not answered(call):
        return
    d.sleep(settle_s)
    obs["after"] = d.call("/metrics")


def _error(call: dict) -> dict:
    return {"error": call["error"], "elapsed_s": call.get("elapsed_s")} if "error" in call else {}


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


# --- the printed document ------------------------------------------------------------------------------------


def _shorten(value: object, limit: int) -> tuple[object, bool]:
    if isinstance(value, str):
        return (value[:limit], True) if len(value) > limit else (value, False)
    if isinstance(value, dict):
        changed = False
        out = {}
        for k, v in value.items():
            out[k], c = _shorten(v, limit)
            changed |= c
        return out, changed
    if isinstance(value, list):
        changed = False
        items = []
        for v in value:
            item, c = _shorten(v, limit)
            items.append(item)
            changed |= c
        return items, changed
    return value, False


def _without_partial_first_line(text: str) -> str:
    return text.split("\n", 1)[1] if "\n" in text else ""


def render(out: dict, spec: dict) -> str:
    """The document as one line of JSON of at most spec["output_cap"] bytes (ASCII, so characters are bytes)."""
    cap = max(1024, int(spec.get("output_cap", 1 << 20)))
    root = spec.get("learner_root", "/work")
    stdout_raw, skipped = read_tail(spec.get("service_log"), root, min(LOG_READ_CAP, cap))
    stderr_raw, _ = read_tail(spec.get("service_err"), root, STDERR_CAP)
    total = skipped + len(stdout_raw)
    stdout = stdout_raw.decode("utf-8", "replace")
    if skipped:
        stdout = _without_partial_first_line(stdout)
    out["service_stderr"] = stderr_raw.decode("utf-8", "replace")
    out["service_stdout"] = ""
    out["service_stdout_skipped"] = 0
    # First the observations must fit in half the room, then the service's stdout gets what is left (its end).
    limit = 1 << 16
    while len(json.dumps(out)) > cap // 2 and limit >= 16:
        out, changed = _shorten(out, limit)
        out["shortened"] = bool(out.get("shortened") or changed)
        limit //= 2
    room = cap - len(json.dumps(out)) - 64
    keep = stdout
    for _ in range(8):
        encoded = len(json.dumps(keep))
        if encoded <= room:
            break
        cut = max(0, int(len(keep) * room / max(1, encoded) * 0.9))
        keep = _without_partial_first_line(keep[len(keep) - cut :]) if cut else ""
    else:
        keep = ""
    out["service_stdout"] = keep
    out["service_stdout_skipped"] = max(0, total - len(keep.encode("utf-8", "replace")))
    text = json.dumps(out)
    if len(text) > cap:  # cannot happen with the steps above; never print more than the cap
        text = json.dumps({"scenario": out.get("scenario"), "error": "observations too large to print"})
    return text


def run(spec: dict) -> dict:
    """Run one scenario and return the document (see the module docstring)."""
    import traceback

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from upstream_stub import PortTaken, Stub

    started_at = time.monotonic()
    deadline = started_at + float(spec.get("deadline_s", 60))
    name = spec.get("scenario")
    out: dict = {"scenario": name, "started": False, "startup_s": None}
    pressure_start = cgroup_counters()
    sys.stderr.write(json.dumps({"pressure_start": pressure_start}) + "\n")
    sys.stderr.flush()
    if name not in SCENARIOS:
        out["error"] = f"unknown scenario {name!r}; known: {sorted(SCENARIOS)}"
        return out
    params = spec.get("params") or {}
    stub = Stub(int(spec["stub_port"]), price=float(params.get("upstream_price", 12.5)))
    try:
        stub.start()
    except PortTaken:
        out["stub_port_taken"] = True
        out["pressure"] = {"start": pressure_start, "end": cgroup_counters()}
        return out
    except OSError as exc:
        out["error"] = f"the upstream stub could not start: {type(exc).__name__}: {exc}"[:500]
        return out
    try:
        startup = wait_listening(int(spec["service_port"]), float(spec.get("startup_timeout_s", 5.0)))
        out["started"] = startup is not None
        out["startup_s"] = startup
        if startup is not None:
            driver = Driver(
                service_port=int(spec["service_port"]),
                stub=stub,
                deadline=deadline,
                call_timeout_s=float(spec.get("call_timeout_s", 6.0)),
                spec=spec,
            )
            obs: dict = {}
            out["observations"] = obs
            try:
                SCENARIOS[name](driver, params, obs)
            except OutOfTime:
                out["out_of_time"] = True
    except Exception as exc:  # our own failure: reported as such, never as the service's
        out["error"] = f"{type(exc).__name__}: {exc}"[:500]
        out["traceback"] = traceback.format_exc()[-3000:]
    finally:
        stub.close()
    out["stub_requests"] = stub.log_count()
    out["stub_errors"] = stub.errors
    out["probe_s"] = round(time.monotonic() - started_at, 3)
    out["pressure"] = {"start": pressure_start, "end": cgroup_counters()}
    return out


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--await-port":
        return await_port(int(argv[2]), float(argv[3]))
    if len(argv) >= 2 and argv[1] == "--counters":
        sys.stdout.write(json.dumps(cgroup_counters()) + "\n")
        return 0
    raw = argv[1] if len(argv) > 1 else sys.stdin.read()
    spec = json.loads(raw)
    result = run(spec)
    sys.stdout.write(render(result, spec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
