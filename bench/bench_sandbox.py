"""Sandbox overhead: a trivial check (`python -c pass`) in a fresh sandbox against the same as a bare process, a raw
`docker run --rm --network none` of the same image, and a sandbox taken from a warm pool (labs/sandbox/pool.py).

    SHIPSHAPE_DEV=1 uv run python bench/bench_sandbox.py [N]

Prints the machine (cores, CPU model, load average) and p50 (and p95) in ms of: the bare process; the whole
sandbox run (create, start, the exec that copies the submission and runs the command, peak-memory read, removal)
with its phases; the same run up to its results when removal goes to the background (remove_in_background=True,
what a caller that stores results before waiting for removal sees); and one exec into a running sandbox.
Overhead = sandbox run - bare. The machine is shared: run it twice and compare with the load average.

Pooled (issue 12; targets printed beside the figures): claim to first learner command (entering the block, which
claims a pre-started container and sends it the submission, then `true` through the learner's agent) under 50 ms;
a whole pooled run of the small program (until results, removal in the background as the orchestrator does) at
most half of the raw `docker run`. The pool is refilled (and waited for) before each pooled run: these are warm
pool figures; a burst larger than the pool falls back to fresh sandboxes.
"""

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SHIPSHAPE_DEV", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SHIPSHAPE_DATA_DIR", tempfile.mkdtemp(prefix="shipshape-bench-"))
os.environ.setdefault("SHIPSHAPE_LOG_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django

django.setup()

from django.conf import settings  # noqa: E402

from labs.labspec import LimitsSpec  # noqa: E402
from labs.sandbox import Sandbox  # noqa: E402
from labs.sandbox.pool import pool_start, pool_stop  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    limits = LimitsSpec(wall_seconds=60).sandbox_limits()
    submission = Path(tempfile.mkdtemp(prefix="bench-sub-"))
    submission.chmod(0o755)  # mkdtemp makes it 0700; the sandbox reads it as uid 1000
    (submission / "main.py").write_text("pass\n")
    bare, whole, background, execs = [], [], [], []
    phases: dict[str, list[float]] = {"start": [], "first exec": [], "remove": []}
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - started)
    for _ in range(n):
        started = time.perf_counter()
        with Sandbox(limits=limits, submission_dir=submission) as box:
            ready = time.perf_counter()
            result = box.exec(["python", "-c", "pass"], timeout_s=10)
            assert result.exit_code == 0, result
            box.resources()
            ran = time.perf_counter()
        whole.append(time.perf_counter() - started)
        phases["start"].append(ready - started)
        phases["first exec"].append(ran - ready)
        phases["remove"].append(time.perf_counter() - ran)
    for _ in range(n):
        started = time.perf_counter()
        with Sandbox(limits=limits, submission_dir=submission, remove_in_background=True) as box:
            assert box.exec(["python", "-c", "pass"], timeout_s=10).exit_code == 0
            box.resources()
        background.append(time.perf_counter() - started)
        assert box.wait_removed(timeout=60)
    with Sandbox(limits=limits) as box:
        for _ in range(n):
            started = time.perf_counter()
            box.exec(["python", "-c", "pass"], timeout_s=10)
            execs.append(time.perf_counter() - started)
    raw = [_raw_docker_run() for _ in range(n)]
    pooled, first_command, claim, agent_execs = _pooled_runs(n, limits, submission)
    b50, w50, g50, e50 = (statistics.median(x) * 1000 for x in (bare, whole, background, execs))
    r50, p50, f50, c50, a50 = (statistics.median(x) * 1000 for x in (raw, pooled, first_command, claim, agent_execs))
    print(
        f"machine: {os.cpu_count()} cores, {_cpu_model()}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"runs: {n}")
    print(f"bare process      p50 {b50:7.1f} ms   p95 {pct(bare, 0.95) * 1000:7.1f} ms")
    print(f"sandbox run       p50 {w50:7.1f} ms   p95 {pct(whole, 0.95) * 1000:7.1f} ms")
    for name, values in phases.items():
        print(f"  {name:15s} p50 {statistics.median(values) * 1000:7.1f} ms")
    print(f"run, bg removal   p50 {g50:7.1f} ms   p95 {pct(background, 0.95) * 1000:7.1f} ms   (until results)")
    print(f"exec in sandbox   p50 {e50:7.1f} ms   p95 {pct(execs, 0.95) * 1000:7.1f} ms")
    print(f"overhead per run  p50 {w50 - b50:7.1f} ms   ratio {w50 / b50:5.1f}x")
    print(f"  bg removal      p50 {g50 - b50:7.1f} ms   ratio {g50 / b50:5.1f}x")
    print(f"overhead per exec p50 {e50 - b50:7.1f} ms   ratio {e50 / b50:5.1f}x")
    print(
        f"raw docker run    p50 {r50:7.1f} ms   p95 {pct(raw, 0.95) * 1000:7.1f} ms   (docker run --rm --network none)"
    )
    print("warm pool (issue 12):")
    print(f"  claim + staging p50 {c50:7.1f} ms")
    print(
        f"  claim to first learner command p50 {f50:7.1f} ms   p95 {pct(first_command, 0.95) * 1000:7.1f} ms   target < 50 ms"
    )
    print(f"  exec via agent  p50 {a50:7.1f} ms   (a `docker exec`: {e50:.1f} ms)")
    print(
        f"  whole run       p50 {p50:7.1f} ms   p95 {pct(pooled, 0.95) * 1000:7.1f} ms   "
        f"= {p50 / r50:.2f} of a raw docker run (target <= 0.50)"
    )
    print(f"load average at the start {load_start}, at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _raw_docker_run() -> float:
    """`docker run --rm --network none IMAGE python -c pass`, as a person would type it."""
    env = {**os.environ, "DOCKER_HOST": settings.DOCKER_HOST}
    argv = ["docker", "run", "--rm", "--network", "none", settings.RUNNER_IMAGE, "python", "-c", "pass"]
    started = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _pooled_runs(n: int, limits, submission: Path) -> tuple[list[float], list[float], list[float], list[float]]:
    pool = pool_start(size=2, default_limits=limits, labels={})
    assert pool is not None
    whole, first_command, claim, agent_execs = [], [], [], []
    try:
        for _ in range(n):
            assert pool.fill(timeout=120), "the pool did not fill"
            started = time.perf_counter()
            with Sandbox(limits=limits, submission_dir=submission, remove_in_background=True) as box:
                assert box.pooled, "the sandbox did not come from the pool"
                claimed = time.perf_counter()
                assert box.exec(["true"], timeout_s=10).exit_code == 0
                first = time.perf_counter()
                assert box.exec(["python", "-c", "pass"], timeout_s=10).exit_code == 0
                box.resources()
                done = time.perf_counter()
                timed = time.perf_counter()
                box.exec(["python", "-c", "pass"], timeout_s=10)
                agent_execs.append(time.perf_counter() - timed)
            # The small lab's run: claim, first command, the program, its resources (the timing exec excluded).
            whole.append(done - started - (first - claimed))
            first_command.append(first - started)
            claim.append(claimed - started)
            assert box.wait_removed(timeout=60)
    finally:
        pool_stop()
    return whole, first_command, claim, agent_execs


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
