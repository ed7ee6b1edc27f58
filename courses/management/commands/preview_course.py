"""`python manage.py preview_course DIR [--port N]`: an author's live preview of a course folder.

Serves the course at http://127.0.0.1:<port>/ straight from the folder (no import, no database), reads it again
whenever a file is saved, reloads the open pages, and shows every problem on the page at its line.
"""

from __future__ import annotations

import threading
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from courses.coursefs.spec import LoadResult
from courses.preview.app import PreviewApp
from courses.preview.server import DEFAULT_PORT, PreviewError, preview_server, server_url
from courses.preview.watch import CoursePreview


def _summary(result: LoadResult) -> str:
    count = len(result.problems)
    problems = "no problems" if not count else f"{count} problem{'s' if count != 1 else ''}"
    if result.course is None:
        return f"the course could not be read: {problems} (shown on the page)"
    course = result.course
    return f"{course.title}: {len(course.lessons())} lessons, {len(course.labs())} labs, {problems}"


class Command(BaseCommand):
    help = (
        "Serve a course folder at http://127.0.0.1:PORT/ for its author: pages re-render and reload on save and "
        "show each problem at its line. No import and no database."
    )
    # System checks and the migration check would reach for the database; the preview must work without one.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", help="the course folder, the one holding course.yaml")
        parser.add_argument(
            "--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks a free one"
        )
        parser.add_argument("--address", default="127.0.0.1", help="127.0.0.1 (default) or ::1; nothing else")

    def handle(self, *args: object, directory: str, port: int, address: str, **options: object) -> None:
        root = Path(directory)
        if not root.is_dir():
            raise CommandError(f"course directory not found: {directory} (pass the folder that holds course.yaml)")
        preview = CoursePreview(root.resolve())
        try:
            server = preview_server(PreviewApp(preview), address=address, port=port)
        except PreviewError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Previewing {root.resolve()}: {_summary(preview.result)}")
        self.stdout.write(
            self.style.SUCCESS(f"Open {server_url(server)}  (saving a file reloads the page; Ctrl-C stops)")
        )
        self.stdout.flush()
        stop = threading.Event()
        watcher = threading.Thread(
            target=preview.watch, args=(stop,), kwargs={"on_reload": self._reloaded}, name="preview-watch", daemon=True
        )
        watcher.start()
        try:
            server.serve_forever(poll_interval=0.3)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            server.server_close()
            watcher.join(timeout=2)
        self.stdout.write("Preview stopped.")

    def _reloaded(self, result: LoadResult) -> None:
        self.stdout.write(f"Reloaded: {_summary(result)}")
        self.stdout.flush()
