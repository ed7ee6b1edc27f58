"""`manage.py kernel_manager`: the process that owns this host's code-cell kernels (kernels.manager)."""

from __future__ import annotations

import os
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from kernels.manager import KernelManager
from labs.sandbox.environment import USERS


class Command(BaseCommand):
    help = "Run the kernel manager: starts, drives, culls and stops the learners' code-cell kernels on this host."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", help="The name this host's kernels are labelled with (default: the hostname).")

    def handle(self, *args: Any, **options: Any) -> None:
        if os.getuid() == int(USERS["learner"].split(":")[0]):
            raise CommandError(
                f"The kernel manager runs as uid {os.getuid()}, the uid learner code has in sandboxes: that code could "
                "then write into the kernels' folders on this host. Run it as another user (root, or the app's user)."
            )
        manager = KernelManager(host=options.get("host"))

        def stop(signum: int, frame: Any) -> None:
            manager.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        manager.run()
