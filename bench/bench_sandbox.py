"""Sandbox overhead: a trivial check (`python -c pass`) in a fresh sandbox against the same as a bare process.

    SHIPSHAPE_DEV=1 uv run python bench/bench_sandbox.py [N]

Prints the machine (cores, CPU model, load average) and p50 (and p95) in ms of: the bare process; the whole
sandbox run (create, start, the exec that copies the submission and runs the command, peak-memory read, removal)
with its phases; the same run up to its results when removal goes to the background (remove_in_background=True,
what a caller that stores results before waiting for removal sees); and one exec into a running sandbox.
Overhead = sandbox run - bare. The machine is shared: run it twice and compare with the load average.
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django

django.setup()

from labs.labspec import LimitsSpec  # noqa: E402
from labs.sandbox import Sandbox  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
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
    b50, w50, g50, e50 = (statistics.median(x) * 1000 for x in (bare, whole, background, execs))
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
