"""The previewed course as last read from disk, re-read whenever a file under its folder changes."""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from courses.coursefs import load_course
from courses.coursefs.spec import LoadResult, Rendered
from courses.errors import CourseProblem
from courses.preview.pages import lab_path, lesson_path

logger = logging.getLogger(__name__)

# What a file looks like without reading it: (modification time in ns, size). Cheap enough to poll often.
Snapshot = dict[str, tuple[int, int]]


def folder_snapshot(root: Path) -> Snapshot:
    """Every file under `root` with its mtime and size; hidden files and folders (.git, editor swap files) skipped,
    as the loader skips them."""
    seen: Snapshot = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:  # deleted or a dangling link between listing and stat: the next poll sees it
                continue
            seen[os.path.relpath(path, root)] = (st.st_mtime_ns, st.st_size)
    return seen


@dataclass
class MemoryRenderCache:
    """The loader's render cache (same keys as the importer's), kept in memory between two reads of the course.

    Only documents whose file had no problem are kept: a cache hit skips rendering, and with it the renderer's
    problems, so a document with problems is rendered again on every read and its problems are shown again.
    """

    entries: dict[str, Rendered] = field(default_factory=dict)

    def lookup(self, keys: list[str]) -> dict[str, Rendered]:
        return {key: self.entries[key] for key in keys if key in self.entries}

    def remember(self, result: LoadResult) -> None:
        course = result.course
        if course is None:
            return
        troubled = {problem.file for problem in result.problems}
        docs = [(lesson.render_key, lesson.file, lesson.rendered) for lesson in course.lessons()]
        docs += [(lab.render_key, lab.instructions_file, lab.rendered) for lab in course.labs()]
        # Replaced, not merged: memory stays bounded by the course's size however long the author edits.
        self.entries = {key: rendered for key, file, rendered in docs if rendered and key and file not in troubled}


class CoursePreview:
    """The course read from `root`, its version token, and a way to wait until it changes.

    The version token names this process (a random prefix) and counts reads, so a page opened before a restart
    of the preview server differs from every new token and reloads too.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = MemoryRenderCache()
        self._changed = threading.Condition()
        self._boot = secrets.token_hex(4)
        self._reads = 0
        self.snapshot: Snapshot = {}
        self.result = LoadResult(None, [])
        self.known_files: dict[str, str] = {}  # page path -> file, from every read: a lesson that stops loading
        self.reload()

    @property
    def version(self) -> str:
        return f"{self._boot}-{self._reads}"

    def reload(self) -> LoadResult:
        """Read the course again; a loader failure becomes a problem on the page rather than a dead server."""
        snapshot = folder_snapshot(self.root)
        try:
            result = load_course(self.root, render_cache=self.cache)
        except Exception as exc:  # whatever the loader trips on, the author must see it
            logger.exception("the preview could not read the course at %s", self.root)
            result = LoadResult(
                None,
                [
                    CourseProblem(
                        "course.yaml",
                        None,
                        f"the preview could not read the course ({type(exc).__name__}: {exc})",
                        "run `python manage.py validate_course DIR`; if it fails the same way, report it with "
                        "the traceback the preview printed",
                    )
                ],
            )
        self.cache.remember(result)
        with self._changed:
            self.snapshot = snapshot
            self.result = result
            if result.course is not None:
                self.known_files.update(page_files(result))
            self._reads += 1
            self._changed.notify_all()
        return result

    def check(self) -> bool:
        """Re-read the course if a file under its folder changed since the last read; True when it did."""
        if folder_snapshot(self.root) == self.snapshot:
            return False
        self.reload()
        return True

    def wait_for_change(self, *, since: str, timeout: float) -> str:
        """The version once it differs from `since`, or the same version after `timeout` seconds (long poll)."""
        with self._changed:
            self._changed.wait_for(lambda: self.version != since, timeout=timeout)
            return self.version

    def watch(
        self, stop: threading.Event, *, interval: float = 0.3, on_reload: Callable[[LoadResult], None] | None = None
    ) -> None:
        """Poll the folder until `stop` is set (run in a thread by the server); `on_reload` hears of each read."""
        while not stop.wait(interval):
            try:
                if self.check() and on_reload is not None:
                    on_reload(self.result)
            except Exception:  # the watcher must outlive any one bad read
                logger.exception("the preview's watcher failed to check %s", self.root)


def page_files(result: LoadResult) -> dict[str, str]:
    """Each page path of the course and the file it shows."""
    course = result.course
    assert course is not None
    files = {lesson_path(course, lesson): lesson.file for lesson in course.lessons()}
    files.update({lab_path(course, lab): lab.instructions_file or lab.folder for lab in course.labs()})
    return files
