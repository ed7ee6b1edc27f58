"""Environment for a test session, set before Django reads its settings.

pytest-django imports the settings before any conftest.py, so this module must be loaded as an early plugin
(`-p tests.platform.session_env`, which ./bin/test passes) for the values to reach settings.py; tests/conftest.py
imports it too, so subprocesses such as Celery workers always inherit them.
"""

import os
import tempfile
from pathlib import Path

USER_DATA_DIR = os.environ.get("SHIPSHAPE_DATA_DIR")
# One scratch data directory per session: tests never write into the developer's var/.
TEST_DATA_DIR = Path(USER_DATA_DIR) if USER_DATA_DIR else Path(tempfile.mkdtemp(prefix="shipshape-test-data-"))

# collectstatic never runs in tests; an existing STATIC_ROOT keeps WhiteNoise from warning on every request.
(TEST_DATA_DIR / "static").mkdir(parents=True, exist_ok=True)
os.environ.setdefault("SHIPSHAPE_DEV", "1")
os.environ.setdefault("SHIPSHAPE_DATA_DIR", str(TEST_DATA_DIR))
# Throttle counters live in a cache shared by web processes (Redis in production); a test session keeps its own,
# in-process, so tests never write counters into a developer's Redis. Tests of the shared cache start their own.
os.environ.setdefault("SHIPSHAPE_CACHE_URL", "locmem://")
# No pre-started sandboxes unless a test starts a pool itself: a pool's idle containers would count as containers
# left behind. The pooled tests (tests/labs/test_sandbox_pool.py and the pooled hostile submissions) start one.
os.environ.setdefault("SHIPSHAPE_SANDBOX_POOL_SIZE", "0")
