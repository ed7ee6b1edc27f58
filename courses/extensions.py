"""What the courses app needs from the labs app, as an interface the labs app registers.

The apps depend one way, labs → courses (as the foreign keys do): this package never imports labs. A course
directory holds lab folders, though, so the loader, the importer and the course page reach labs through the
`CourseLabs` registered here (by `labs.apps.LabsConfig.ready`), the way the loader reaches the rendering cache
through `RenderCache`. Without a registration, a course with labs does not validate: the problem says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from core.yamlsrc import CourseProblem
    from courses.coursefs.spec import LabDefinition, LabEntry
    from courses.models import Course, Unit


class CourseLabs(Protocol):
    def lab_parse(
        self, text: str, *, file: str, folder_slug: str, problems: list[CourseProblem]
    ) -> LabDefinition | None:
        """Validate one lab.yaml; append every problem to `problems`; None when unusable."""

    def lab_check(self, *, lab: LabEntry, problems: list[CourseProblem]) -> None:
        """Check a lab once its folders are read (grader files its checks need, examples against its upload rules);
        append every problem to `problems`. Reads files, writes nothing."""

    def lab_bundles_store(self, *, lab: LabEntry) -> None:
        """Store the lab's grader, starter and example folders (before the import's transaction; content-addressed)."""

    def labs_upsert(self, *, course: Course, labs: Sequence[LabEntry], units: dict[str, Unit], report: Any) -> None:
        """Bring the course's lab rows in line with `labs`, inside the import's transaction; record what changed
        (and any learner data removed with removed labs) on `report` (courses.services.importing.ImportReport)."""

    def labs_by_unit(self, *, course: Course) -> dict[int, list[dict[str, Any]]]:
        """The course page's lab list: {unit id: [{"slug", "title"}, …]} in page order, one query."""


_registered: CourseLabs | None = None


def course_labs_register(labs: CourseLabs) -> None:
    global _registered
    _registered = labs


def course_labs() -> CourseLabs | None:
    """The registered labs support, or None on a site without the labs app."""
    return _registered
