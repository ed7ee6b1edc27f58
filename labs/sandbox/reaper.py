"""Removal of sandbox containers nobody is using any more (a worker killed mid-run leaves its container).

The sandbox does not know about grading runs: the caller says which runs are still live.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone

from labs.errors import SandboxUnavailable
from labs.sandbox.environment import LIFETIME_MARGIN_S, docker_client
from labs.sandbox.pool import POOL_LABEL, pool_owner_gone

logger = logging.getLogger(__name__)


def database_label() -> str:
    """Tells apart containers of different databases (test runs, other checkouts) sharing one engine."""
    name = f"{connection.settings_dict.get('ENGINE')}:{connection.settings_dict.get('NAME')}"
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def containers_reap(*, live_runs: Callable[[Iterable[int]], set[int]], min_age_s: float | None = None) -> int:
    """Remove this database's sandbox containers whose grading run is not live (`live_runs` says which of the
    given run ids are), and run-less ones older than `min_age_s`; returns how many were removed."""
    try:
        client = docker_client()
    except SandboxUnavailable as exc:
        logger.warning("reaper: %s", exc)
        return 0
    runless_age = settings.GRADING_MAX_WALL_SECONDS + 60 if min_age_s is None else min_age_s
    pool_age = settings.SANDBOX_POOL_MAX_IDLE_SECONDS + settings.GRADING_MAX_WALL_SECONDS + 2 * LIFETIME_MARGIN_S
    own_db = database_label()
    removed = 0
    try:
        mine = [
            c
            for c in client.containers.list(all=True, filters={"label": "shipshape.managed=1"})
            if c.labels.get("shipshape.db", own_db) == own_db  # another database's worker owns the rest
        ]
        run_ids = {int(c.labels["shipshape.run"]) for c in mine if c.labels.get("shipshape.run", "").isdigit()}
        live = live_runs(run_ids) if run_ids else set()
        for container in mine:
            run_id = container.labels.get("shipshape.run", "")
            pool_owner = container.labels.get(POOL_LABEL, "")
            if run_id.isdigit():
                if int(run_id) in live:
                    continue
            elif pool_owner:
                # Pre-started (labs.sandbox.pool): idle or serving a grading the label cannot name. Removed once
                # its owner process is gone, or when it outlived an idle wait and a whole grading.
                if not pool_owner_gone(pool_owner) and _age_s(container.attrs.get("Created", "")) < pool_age:
                    continue
            elif _age_s(container.attrs.get("Created", "")) < runless_age:
                continue
            try:
                container.remove(force=True, v=True)
                removed += 1
            except Exception:
                logger.exception("reaper: could not remove %s", container.id)
    finally:
        client.close()
    if removed:
        logger.info("reaper: removed %s sandbox containers", removed)
    return removed


def _age_s(created: str) -> float:
    started = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
    return (timezone.now() - started).total_seconds()
