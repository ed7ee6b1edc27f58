"""Benchmark (not a test): import a generated 1,000-lesson course, re-import it unchanged, then with one lesson edited.

Run: `uv run python bench/bench_import.py` (targets on 2 cores: cold < 20 s, unchanged re-import < 3 s).
Everything happens in a temporary directory: its own SQLite database and data directory.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

UNITS = 10
LESSONS_PER_UNIT = 100

LESSON = """---
title: Lesson {u}.{n} on deployment detail {n}
tagline: Generated for the import benchmark
objective: Measure how long an import takes.
deliverable: A number in docs/benchmarks.md.
outcomes:
  - Read a table
  - Answer a quiz
estimated_minutes: 15
references:
  - kind: article
    title: Reference {n}
    url: https://example.org/{u}/{n}
---
## Overview {n}

Lesson {n} of unit {u}. See [the next one](./{next_file}) and [unit one](../unit-01/001-lesson-1.md#overview-1).

| Metric | Description | Alert threshold |
|---|---|---|
| p99 latency | Slowest 1% of requests | > 500 ms for 5 min |
| error rate | Share of 5xx responses | > 1% for 10 min |
| saturation | Worker pool busy | > 80% for 15 min |

```python
def handler(request):
    started = time.monotonic()
    response = app(request)
    LATENCY.observe(time.monotonic() - started)
    return response
```

```dockerfile
FROM python:3.11.9-slim
COPY requirements.lock .
RUN pip install --no-cache-dir -r requirements.lock
```

::: tip Keep it small
Small images start fast.
:::

## Details

Some *emphasis*, some `code`, a list:

- one
- two
- three

```quiz
id: check-{n}
questions:
  - prompt: Which threshold pages someone?
    kind: single
    choices:
      - text: p99 above 500 ms for 5 minutes
        correct: true
      - text: any single slow request
    explanation: Alerts fire on sustained symptoms, not single events.
```
"""


def generate(root: Path) -> None:
    units = "\n".join(f"  - slug: unit-{u:02d}\n    title: Unit {u}" for u in range(1, UNITS + 1))
    (root / "course.yaml").write_text(
        f"slug: bench-course\ntitle: Benchmark course\nunit_label: Week\nunits:\n{units}\n"
    )
    for u in range(1, UNITS + 1):
        folder = root / f"unit-{u:02d}"
        folder.mkdir()
        for n in range(1, LESSONS_PER_UNIT + 1):
            nxt = n + 1 if n < LESSONS_PER_UNIT else 1
            text = LESSON.format(u=u, n=n, next_file=f"{nxt:03d}-lesson-{nxt}.md")
            (folder / f"{n:03d}-lesson-{n}.md").write_text(text)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="shipshape-bench-import-"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["SHIPSHAPE_DEV"] = "1"
    os.environ["SHIPSHAPE_DATA_DIR"] = str(tmp / "data")
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ.setdefault("SHIPSHAPE_LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    (tmp / "data").mkdir()

    import django

    django.setup()
    from django.core.management import call_command

    from courses.models import Lesson
    from courses.services.importing import course_import

    call_command("migrate", verbosity=0)
    course = tmp / "course"
    course.mkdir()
    generate(course)

    started = time.perf_counter()
    cold = course_import(path=course)
    cold_s = time.perf_counter() - started

    started = time.perf_counter()
    warm = course_import(path=course)
    warm_s = time.perf_counter() - started

    edited = course / "unit-05" / "050-lesson-50.md"
    edited.write_text(edited.read_text() + "\nOne more paragraph.\n")
    started = time.perf_counter()
    one = course_import(path=course)
    one_s = time.perf_counter() - started

    lessons = Lesson.objects.count()
    print(f"lessons imported: {lessons} ({UNITS} units x {LESSONS_PER_UNIT}), CPUs available: {os.cpu_count()}")
    print(f"cold import:               {cold_s:6.2f} s  ({cold.rendered} rendered, target < 20 s)")
    print(f"unchanged re-import:       {warm_s:6.2f} s  ({warm.rendered} rendered, target < 3 s)")
    print(f"one lesson changed:        {one_s:6.2f} s  ({one.rendered} rendered, {len(one.changed)} changed)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
