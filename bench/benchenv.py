"""Environment for a benchmark that runs the real stack: import this module before anything from the project.

It makes a temporary data dir with a file SQLite database, picks a free port for a private redis-server, points
the settings at both, and sets Django up. Call `cleanup()` at the end.
"""

import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(tempfile.mkdtemp(prefix="shipshape-bench-"))
DB = DATA / "bench.sqlite3"
with socket.socket() as _probe:
    _probe.bind(("127.0.0.1", 0))
    REDIS_PORT = _probe.getsockname()[1]
os.environ.update(
    SHIPSHAPE_DEV="1",
    DJANGO_SETTINGS_MODULE="config.settings",
    SHIPSHAPE_DATA_DIR=str(DATA),
    DATABASE_URL=f"sqlite:///{DB}",
    SHIPSHAPE_LOG_LEVEL="WARNING",
    REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}/0",
)
sys.path.insert(0, str(REPO))

import django  # noqa: E402

django.setup()


def cleanup() -> None:
    shutil.rmtree(DATA, ignore_errors=True)
